"""Benchmark of training cost per method (see propulsion/studies/bench.py): python scripts/bench.py [--quick]."""

from propulsion.studies.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
