"""Benchmarks of iadbench's methods (run with ``python -m bench.methods``)."""
