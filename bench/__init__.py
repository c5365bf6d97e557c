"""Benchmarks: ingest against the HTTP floor, end to end, apply; see bench/README.md."""
