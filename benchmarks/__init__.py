"""Benchmarks of the two hot paths against naive baselines (``make bench``); not part of the test suite."""
