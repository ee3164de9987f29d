"""Developer tooling: throwaway local database servers for tests, the demo and the benchmarks."""
