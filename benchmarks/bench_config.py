"""Benchmark: loading the shipped configuration files (target: median < 50 ms).

Run in a fresh process from the repository root::

    .venv/bin/python benchmarks/bench_config.py [--runs 50]

One "load" reads and validates everything a DAG run needs: ``foreign_keys.yml`` for both shipped domains
(``load_fk_configs`` twice, as two ``ensure_references`` calls would) and ``reference_sync.yml``.
Prints the import time, the first (cold) load and the median over ``--runs`` loads; writes nothing.
Exit status 1 when the median misses the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
TARGET_MS = 50.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from airflow_provider_refdata.config import load_fk_configs, load_sync_config, processing_order

    import_ms = (time.perf_counter() - started) * 1000

    def load_all() -> None:
        for domain in ("annuity_performance", "annuity_income"):
            processing_order(load_fk_configs(CONFIG_DIR / "foreign_keys.yml", domain))
        load_sync_config(CONFIG_DIR / "reference_sync.yml")

    timings = []
    for _ in range(args.runs + 1):
        started = time.perf_counter()
        load_all()
        timings.append((time.perf_counter() - started) * 1000)
    cold, warm = timings[0], timings[1:]
    median = statistics.median(warm)
    print(f"import airflow_provider_refdata.config: {import_ms:.1f} ms")
    print(f"first load (cold):                      {cold:.2f} ms")
    print(
        f"load shipped config, {args.runs} runs:        median {median:.2f} ms, "
        f"min {min(warm):.2f} ms, max {max(warm):.2f} ms (target < {TARGET_MS:.0f} ms)"
    )
    return 0 if median < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
