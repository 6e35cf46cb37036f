"""Benchmarks: see bench/run.py and bench/RESULTS.md."""
