"""Benchmarks of the assistant at scale (not part of `make test`): see bench/README.md."""
