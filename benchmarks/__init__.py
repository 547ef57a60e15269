"""minyun benchmarks: `make bench` (all groups) or `make bench BENCH=audit` (one group)."""
