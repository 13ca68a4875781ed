"""Benchmarks: `make bench` (or `python -m bench.run_all [--quick]`). Results in bench/results/<name>.json."""
