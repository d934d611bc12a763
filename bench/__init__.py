"""Benchmarks: one module per measured path; `python -m bench` (or `make bench`) runs them all."""
