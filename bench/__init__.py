"""swarmlite benchmarks: see bench/run.py and docs/benchmarks.md."""
