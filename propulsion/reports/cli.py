"""``make tables``: the paper's tables and figures from run records (``python -m propulsion.reports.cli --runs DIR``).

The tables (``aggregate``) read records only; a row no record fills still gets our #TPs, counted on the meta
device from the suite's configs. Composing a config is Hydra's job and only run.py knows Hydra, so this entrypoint
hands run.py's counter to the tables instead of the tables importing the Hydra entrypoint.
"""

from __future__ import annotations

from propulsion.compose import trainable_count
from propulsion.reports import engine


def main(argv: list[str] | None = None) -> int:
    return engine.main(argv, count=trainable_count)


if __name__ == "__main__":
    raise SystemExit(main())
