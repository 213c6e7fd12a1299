"""Benchmark scripts (not tests): one figure per script, results in benchmarks/results/."""
