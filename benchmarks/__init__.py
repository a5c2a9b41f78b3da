"""Reproducible measurements: `make bench` (full) and `make bench-quick`; see __main__.py."""
