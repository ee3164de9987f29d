"""Run every ``benchmarks/bench_*.py`` in a fresh process, one after the other (``make bench``).

``python -m benchmarks [name …]`` runs only the named ones (``sync``, ``hybrid``, ``config``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    wanted = set(argv)
    failures = 0
    for script in sorted(here.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        print(f"\n=== benchmark: {name} ===", flush=True)
        failures += subprocess.run([sys.executable, "-m", f"benchmarks.{script.stem}"], check=False).returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
