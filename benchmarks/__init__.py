"""Latency and detection benchmarks (nothing imports this package)."""
