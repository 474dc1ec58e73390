"""The drill that `make demo` and `make bench` run on the stand-in (world, scenarios, traffic, run, bench)."""
