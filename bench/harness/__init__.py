"""porter benchmark harness modules; bench/bench.py is the entry point."""
