#!/usr/bin/env bash
# refdata-seed (docker-compose.yaml): load the legacy MySQL database with the sample data unless it already
# holds rows (so `docker compose up` again keeps the mutations), and write the month's fact file where the
# Airflow containers read it (REFDATA_FACT_DIR).
set -euo pipefail
cd /opt/refdata
python -m devtools.sample_data load --if-empty
python -m devtools.sample_data facts   # writes $REFDATA_FACT_DIR/annuity_performance_<YYYYMM>.csv
