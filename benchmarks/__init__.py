"""The WORKLOADS.md benchmark suite: graphflow at each opt_level beside numpy and the
installed peers. Run `python -m benchmarks --help`."""
