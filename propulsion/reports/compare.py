"""A user's own runs side by side: ``propulsion-compare RUNS_DIR`` (``make compare RUNS=...``).

One row per model x task x method x degree, the task's main metric as mean ± sample std over the completed seeds
(x100, as the paper prints it), with the seeds counted and failed runs counted apart. Reads
:func:`propulsion.records.load` only, so it works on any folder of records and never writes the paper's tables.
A group whose runs differ in more than the seed (say two learning rates) is marked: its mean would mix settings.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from propulsion import records

KEYS = ["model", "task", "method", "degree"]
COLUMNS = ["model", "task", "method", "degree", "metric", "mean", "std", "seeds", "failed", "settings"]


def _settings(paths) -> int:
    """How many distinct configurations, the seed left out, the records at ``paths`` ran."""
    fingerprints = set()
    for path in paths:
        config = dict(records.read_record(path).get("config") or {})
        config.pop("seed", None)
        fingerprints.add(records.config_fingerprint(records.run_identity(config)))
    return len(fingerprints)


def comparison(runs_dir: str | Path):
    """The comparison as a DataFrame with COLUMNS (mean and std x100; std NaN for one seed)."""
    import pandas as pd

    frame = records.load(runs_dir)
    frame = frame[frame.status.isin(["completed", "failed"])]
    rows = []
    for key, group in frame.groupby(KEYS, sort=True):
        done = group[group.status == "completed"]
        values = [float(v) * 100 for v in done.main_value if v is not None and not pd.isna(v)]
        mean = sum(values) / len(values) if values else math.nan
        std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1
               else math.nan)
        metric = ", ".join(sorted({str(m) for m in group.main_metric.dropna()}))
        rows.append([*key, metric, mean, std, len(values), int((group.status == "failed").sum()),
                     _settings(done.path) if len(done) else 0])
    return pd.DataFrame(rows, columns=COLUMNS)


def _cell(value: float, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(table) -> str:
    lines = ["| model | task | method | degree | metric | mean ± std (×100) | seeds | failed |",
             "|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        shown = f"{_cell(row.mean)} ± {_cell(row.std)}"
        if row.settings > 1:
            shown += f" (mixes {row.settings} settings)"
        lines.append(f"| {row.model} | {row.task} | {row.method} | {row.degree} | {row.metric} | {shown} | "
                     f"{row.seeds} | {row.failed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="propulsion-compare", description="Your runs side by side: mean ± std over "
                                     "seeds per model x task x method x degree (records only; writes nothing else).")
    parser.add_argument("runs", help="folder searched for record.json files (e.g. results/runs)")
    parser.add_argument("--out", help="also write the table to this Markdown file (and a .csv next to it)")
    args = parser.parse_args(argv)
    if not Path(args.runs).is_dir():
        print(f"error: {args.runs} is not a directory of runs (record.json files under it)", file=sys.stderr)
        return 2
    table = comparison(args.runs)
    if table.empty:
        print(f"error: no completed or failed run records under {args.runs}", file=sys.stderr)
        return 2
    text = markdown(table)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        table.to_csv(out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
