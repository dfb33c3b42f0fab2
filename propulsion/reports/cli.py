"""``make tables``: every declaration rendered from run records (``python -m propulsion.reports``).

The paper's tables (``engine``) and figures (``figures``) from the records under --runs, then every study
(``study``, and a study's pilot, ``pilot``; a reasoning study, ``reasoning_study``) from its own folders. A row no
record fills still gets our #TPs, counted on the meta device from the suite's configs: composing a config is
compose.py's job (only it and run.py know Hydra), so this entrypoint hands its counter to the engine instead of the
engine importing it. ``--only NAME`` renders one part; ``--lr-overrides`` prints a study's lr choice for its sweep
(``make small-scale``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from propulsion import records
from propulsion.reports import engine, figures, pilot, reasoning_study, study
from propulsion.reports.declarations import REASONING_STUDIES, STUDIES, TABLES
from propulsion.reports.selection import PAPER_DIR

PAPER = "paper"  # --only: the paper's tables and figures


def render_paper(runs_dir: str | Path, out: str | Path, paper_dir: str | Path = PAPER_DIR,
                 count: engine.Counter | None = None, draw: bool = True) -> None:
    """Tables 1/2/3/5 (and the figures) from the records under runs_dir, into OUT/tables (and OUT/figures)."""
    loaded, skipped = records.load_records(runs_dir)
    runs = [r for r in loaded if r.get("family") not in records.STUDY_FAMILIES]  # NTK and bench: no table runs
    tables = Path(out) / "tables"
    made = [table.name for table in TABLES if engine.make_table(table, runs, Path(paper_dir), tables, count)]
    tables.mkdir(parents=True, exist_ok=True)
    lines = ["# Skipped records", ""] + [f"- {skip.path}: {skip.reason}" for skip in skipped]
    (tables / "skipped.md").write_text("\n".join(lines) + "\n")
    print(f"{len(runs)} completed records, {len(skipped)} skipped; tables in {tables}: {', '.join(made)}")
    for skip in skipped:
        print(f"  skipped {skip.path}: {skip.reason}")
    if draw:
        drawn, notes = figures.make_all(runs, Path(out) / "figures", bench=figures.newest_bench(loaded),
                                        paper_dir=Path(paper_dir))
        print(f"figures in {Path(out) / 'figures'}: {', '.join(drawn) or 'none'}")
        for note in notes:
            print(f"  {note}")


def main(argv: list[str] | None = None, count: engine.Counter | None = None) -> int:
    """The command line. ``count`` gives #TPs for rows no record fills; by default compose.py's meta-device count
    (without it, or with --no-offline-counts, those rows show "–")."""
    studies = {s.name: s for s in STUDIES}
    reasoning = {s.name: s for s in REASONING_STUDIES}
    parser = argparse.ArgumentParser(description="Paper tables and figures from run records, ours beside the "
                                                 "paper's, and every study's table (make tables).")
    parser.add_argument("--only", choices=[PAPER, *studies, *reasoning], default=None,
                        help="render one part: the paper's tables and figures, or one study (default: all)")
    parser.add_argument("--runs", default=None, help="folder searched for record.json files (default: "
                        "results/runs for the paper's tables; a study's own folder for --only STUDY)")
    parser.add_argument("--out", default=None, help="the paper's: tables go to OUT/tables, figures to OUT/figures "
                        "(default: results); --only STUDY: its table.md, lr_search.md and figure (default: its own)")
    parser.add_argument("--paper", default=str(PAPER_DIR), help="folder of the paper's numbers (CSV)")
    parser.add_argument("--no-offline-counts", action="store_true",
                        help="do not count parameters on the meta device for rows without a record")
    parser.add_argument("--no-figures", action="store_true", help="the paper's tables only, no figures")
    parser.add_argument("--lr-search", default=None, help="--only STUDY: its lr search's records "
                        "(default: its own; a missing folder is skipped)")
    parser.add_argument("--readme", default=None,
                        help="also write each study's table into this file between its markers (README.md)")
    parser.add_argument("--lr-overrides", action="store_true",
                        help="--only STUDY: print the search's choice as vars.lr.METHOD=LR overrides for the "
                             "sweep, write nothing")
    args = parser.parse_args(argv)
    if args.lr_overrides:
        chosen = studies[args.only] if args.only in studies else STUDIES[0]
        print(study.lr_overrides(chosen, args.lr_search))
        return 0
    if args.only in (None, PAPER):
        if count is None and not args.no_offline_counts:
            from propulsion.compose import trainable_count  # composes configs: Hydra's side of the house

            count = trainable_count
        render_paper(args.runs or "results/runs", args.out or "results", args.paper,
                     None if args.no_offline_counts else count, draw=not args.no_figures)
    for name, declared in studies.items():
        if args.only in (None, name):
            single = args.only == name  # --runs/--out/--lr-search name this study's folders only then
            code = study.render(declared, args.runs if single else None, args.lr_search if single else None,
                                args.out if single else None, args.readme)
            if code:
                return code
            if declared.pilot is not None and not (single and (args.runs or args.out)):  # its own folders only
                pilot.render(declared.pilot)
    for name, declared in reasoning.items():
        if args.only in (None, name):
            single = args.only == name
            reasoning_study.render(declared, args.runs if single else None, args.out if single else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
