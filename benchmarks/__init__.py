"""Benchmarks: `make bench` (bench.py) and the in-process micro-benchmarks."""
