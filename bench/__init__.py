"""Benchmark harness (``python -m bench``)."""
