"""Benchmarks: scripts that print figures (run with `python -m tests.bench.<name>`), not tests."""
