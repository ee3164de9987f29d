"""``python -m airflow_provider_refdata sync|health|export-review|…``: the same as the ``refdata`` console script."""

from airflow_provider_refdata.cli import main

raise SystemExit(main())
