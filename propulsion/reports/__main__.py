"""``python -m propulsion.reports`` (``make tables``): see ``propulsion.reports.cli``."""

from propulsion.reports.cli import main

raise SystemExit(main())
