"""Peak-memory measurement shared by the benchmarks: RSS sampled in a thread, reported as growth in MiB."""

from __future__ import annotations

import threading
import time


class PeakRss:
    """Samples this process's RSS every ``interval`` seconds; ``growth_mb`` = peak − RSS when created (MiB).

    Use it in a fresh process right after the imports, so the baseline is "the process after imports"::

        with PeakRss() as rss:
            work()
        print(rss.growth_mb)

    :param interval: seconds between samples.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.baseline = self._proc.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20
