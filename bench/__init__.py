"""Benchmarks (scripts, not tests): `make bench`."""
