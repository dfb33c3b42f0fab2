"""Benchmark of training cost per method (see propulsion/bench.py): python scripts/bench.py [--quick]."""

from propulsion.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
