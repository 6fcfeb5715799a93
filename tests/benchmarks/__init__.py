"""Benchmarks and the quality evaluation: scripts (`make bench-*`, `make eval`) that print figures and ratios
against a reference measured in the same run. They are not timed tests; docs/benchmarks.md explains each."""
