"""A reasoning study's table (``declarations.ReasoningStudyDeclaration``; the first is Table 3 at small scale on
SmolLM2, issue 26) from its records and the per-example predictions beside them. ``make tables`` renders it.

Rules, so that a number can be traced:
- One table per task (commonsense, arithmetic), Table 3's columns for the test sets the study evaluates. A cell is
  the record's ``<set>/accuracy`` (×100 as the reasoning family stores it) and, beside it, ``fail %``: the share
  of the set's evaluated rows whose answer extraction found nothing (``"extracted": null`` in the run's
  ``predictions.jsonl``, written by tasks/reasoning.evaluate; the records carry no such count). Mean ± sample sd
  over seeds; n where a cell has fewer seeds than its row. "Avg." is the per-seed mean over the task's sets (seeds
  with every set), then over seeds.
- Rows: one per method. The zero-shot method's record with ``trainer.max_steps == 0`` (no optimizer step) is the
  row "zero-shot (untrained)", never mixed with its trained runs; another method's untrained run is left out and
  named. The majority-answer row is a reference, not a method: per set, the share of the evaluated rows whose gold
  answer is the set's most frequent one, read from the gold answers in the predictions.
- A (task, row) with several configs keeps the one with most seeds, then the newest (``selection.pick`` under
  ``Protocol(paper_first=False)``); the others are named. One record per seed: the newest.
- #TPs: the records' params.trainable (0 for zero-shot: nothing is trained); wall time and peak memory: the median
  per run over the row's records.
- Decoding (num_beams, max_new_tokens) and the rows evaluated per set are read from the records, as they resolved
  them. The sweep's planned runs without a completed record are listed.
Output is deterministic: the same records give byte-identical files (sorted rows, fixed formats, no times).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from propulsion import records
from propulsion.reports import selection
from propulsion.reports.declarations import Column, ReasoningStudyDeclaration

ZERO_SHOT = "zero-shot"  # the row key of the untrained model
ZERO_SHOT_LABEL = "zero-shot (untrained)"
MAJORITY_LABEL = "majority answer (reference)"
PROTOCOL = selection.Protocol(paper_first=False)
Cell = tuple[float | None, float | None, int]  # mean, sd, n


def tasks_of(study: ReasoningStudyDeclaration) -> dict[str, list[Column]]:
    """task -> its columns, in the declaration's order."""
    out: dict[str, list[Column]] = {}
    for column in study.columns:
        out.setdefault(column.run_task, []).append(column)
    return out


def row_of(study: ReasoningStudyDeclaration, record: dict[str, Any]) -> str | None:
    """The row a record fills: its method, ZERO_SHOT for the zero-shot method's untrained run, None for another
    method's untrained run (no row means it)."""
    untrained = ((record.get("config") or {}).get("trainer") or {}).get("max_steps") == 0
    method = str(record.get("method"))
    if not untrained:
        return method
    return ZERO_SHOT if method == study.zero_shot_method else None


def planned(study: ReasoningStudyDeclaration, experiments: Path = selection.EXPERIMENTS_DIR
            ) -> list[tuple[str, str, int]]:
    """(task, row, seed) of every run the sweep plans: seed × task × method of its hydra.sweeper.params, and the
    zero-shot command's run (the sweep narrowed to the zero-shot method, trainer.max_steps=0) per task and seed."""
    data = yaml.safe_load((Path(experiments) / f"{study.sweep}.yaml").read_text()) or {}
    params = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}

    def values(key: str) -> list[str]:
        return [v.strip() for v in str(params.get(key, "")).split(",") if v.strip()]

    seeds = [int(s) for s in values("seed")] or [0]
    rows = [*values("method"), ZERO_SHOT]
    return [(task, row, seed) for task in values("task") for row in rows for seed in seeds]


def predictions(record: dict[str, Any]) -> dict[str, list[dict[str, Any]]] | None:
    """The lines of the run's predictions file by test set, None when there is none or it cannot be read.
    (reports/stats.load_predictions reads the GLUE schema, set/index/prediction/label; the reasoning family writes
    dataset/instruction/generation/extracted/gold/correct.)"""
    path = Path(str(record.get("_path", ""))).parent / records.PREDICTIONS_NAME
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        by_set: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            by_set.setdefault(str(line["dataset"]), []).append(line)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return by_set


def failure_rate(lines: list[dict[str, Any]]) -> float | None:
    """Percent of rows whose extraction found no answer (``extracted`` null or absent); None for no rows."""
    if not lines:
        return None
    return 100.0 * sum(line.get("extracted") is None for line in lines) / len(lines)


def majority_share(lines: list[dict[str, Any]]) -> float | None:
    """Percent of rows whose gold answer is the most frequent one (the gold as the test file gives it)."""
    if not lines:
        return None
    return 100.0 * Counter(str(line.get("gold")) for line in lines).most_common(1)[0][1] / len(lines)


def cells(study: ReasoningStudyDeclaration, runs: list[dict[str, Any]]
          ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[str]]:
    """(task, row) -> the chosen group's records (one per seed), and notes on what was left out."""
    tasks = tasks_of(study)
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    notes = []
    for record in runs:
        task, row = str(record.get("task")), row_of(study, record)
        where = f"{record.get('_path')}"
        if task not in tasks:
            notes.append(f"{where}: task {task!r} is not one of the study's ({', '.join(tasks)})")
        elif row is None:
            notes.append(f"{where}: {record.get('method')} with trainer.max_steps=0 (untrained; only "
                         f"{study.zero_shot_method}'s is the zero-shot row)")
        else:
            groups[(task, row)][selection.group_key(record.get("config") or {})].append(record)
    chosen = {}
    for cell in sorted(groups):
        choice = selection.pick(dict(groups[cell]), PROTOCOL)
        chosen[cell] = choice.runs
        kept = selection.group_key(choice.runs[0].get("config") or {})
        if choice.duplicates:
            notes.append(f"{cell[0]} × {_label(study, cell[1])}: {choice.duplicates} older duplicate run(s) of a "
                         f"seed not counted (the newest is)")
        for group in choice.others:
            seeds = len(selection.one_per_seed(group)[0])
            notes.append(f"{cell[0]} × {_label(study, cell[1])}: config "
                         f"{selection.group_key(group[0].get('config') or {})} ({seeds} seed(s)) left out for "
                         f"{kept} ({len(chosen[cell])} seed(s))")
    return chosen, sorted(notes)


def _label(study: ReasoningStudyDeclaration, row: str) -> str:
    return ZERO_SHOT_LABEL if row == ZERO_SHOT else study.methods.get(row, row)


def _mean_sd(values: list[float]) -> Cell:
    if not values:
        return None, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def row_stats(columns: list[Column], group: list[dict[str, Any]], zero_shot: bool) -> dict[str, Any]:
    """Everything one row shows: per column (accuracy, fail %) as (mean, sd, n), the Avg., #TPs, wall, memory."""
    loaded = [(record, predictions(record)) for record in group]
    stats: dict[str, Any] = {"seeds": len(group), "accuracy": {}, "failure": {}, "no_predictions": []}
    per_seed: dict[str, dict[str, float]] = defaultdict(dict)
    for column in columns:
        found = []
        for record in group:
            if (value := selection.scaled(record, column.key_in(record))) is not None:
                found.append(value)
                per_seed[str(record.get("seed"))][column.header] = value
        stats["accuracy"][column.header] = _mean_sd(found)
        rates = [rate for _, by_set in loaded if by_set is not None
                 and (rate := failure_rate(by_set.get(column.task, []))) is not None]
        stats["failure"][column.header] = _mean_sd(rates)
    stats["no_predictions"] = sorted(str(record.get("_path")) for record, by_set in loaded if by_set is None)
    averages = [statistics.fmean(v.values()) for _, v in sorted(per_seed.items()) if len(v) == len(columns)]
    stats["avg"] = _mean_sd(averages)
    trainable = sorted({int(r["params"]["trainable"]) for r in group
                        if isinstance((r.get("params") or {}).get("trainable"), int)})
    stats["tps"] = "0" if zero_shot and group else _tps(trainable)
    stats["zero_shot_counted"] = trainable if zero_shot else []
    walls = [float(r["wall_time_s"]) for r in group if _number(r.get("wall_time_s"))]
    memory = [float(r["peak_memory_bytes"]) for r in group if _number(r.get("peak_memory_bytes"))]
    stats["wall"] = f"{statistics.median(walls):.0f}" if walls else "–"
    stats["memory"] = f"{statistics.median(memory) / 2**20:.0f}" if memory else "–"
    return stats


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tps(trainable: list[int]) -> str:
    if not trainable:
        return "–"
    return f"{trainable[0]:,}" if trainable[0] == trainable[-1] else f"{trainable[0]:,}–{trainable[-1]:,}"


def _fmt(cell: Cell, full: int) -> str:
    mean, sd, n = cell
    if mean is None:
        return "–"
    text = f"{mean:.1f}" + (f" ± {sd:.1f}" if sd is not None else "")
    return text if n == full else f"{text} (n={n})"


def majority_row(columns: list[Column], chosen: dict[tuple[str, str], list[dict[str, Any]]], task: str
                 ) -> tuple[dict[str, float | None], list[str]]:
    """header -> the majority answer's share, from the first run (row, then seed order) with predictions for the
    set; and notes where runs evaluated different gold answers."""
    shares, notes = {}, []
    runs = [r for (t, _row), group in sorted(chosen.items()) if t == task for r in group]
    by_run = [(r, by_set) for r in runs if (by_set := predictions(r)) is not None]
    for column in columns:
        golds = [(r, by_set[column.task]) for r, by_set in by_run if by_set.get(column.task)]
        shares[column.header] = majority_share(golds[0][1]) if golds else None
        if len({tuple(sorted(str(line.get("gold")) for line in lines)) for _, lines in golds}) > 1:
            notes.append(f"{task} / {column.header}: runs evaluated different gold answers; the majority row "
                         f"reads {golds[0][0].get('_path')}")
    return shares, notes


def _distinct(values: list[Any]) -> str:
    found = sorted({json.dumps(v, sort_keys=True) if not isinstance(v, str) else v for v in values if v is not None})
    return ", ".join(found) or "–"


def _rows_evaluated(record: dict[str, Any], column: Column) -> int | None:
    """Rows of a test set the run evaluated: its metrics' <set>/n, else the record's evaluation.final.rows."""
    n = records.metric_value(record.get("metrics"), f"{column.task}/n")
    if _number(n):
        return int(n)
    final = (record.get("evaluation") or {}).get("final") or {}
    rows = (final.get("rows") or {}).get(column.task)
    return int(rows) if _number(rows) else None


def decoding_lines(study: ReasoningStudyDeclaration, chosen: dict[tuple[str, str], list[dict[str, Any]]]
                   ) -> list[str]:
    """Per task, the decoding the records resolved (config.task.options.generation) and the rows evaluated."""
    lines = []
    for task, columns in tasks_of(study).items():
        runs = [r for (t, _), group in sorted(chosen.items()) if t == task for r in group]
        if not runs:
            lines.append(f"- {task}: no records yet")
            continue
        generation = [((((r.get("config") or {}).get("task") or {}).get("options") or {}).get("generation")
                       or ((r.get("evaluation") or {}).get("final") or {}).get("generation") or {}) for r in runs]
        beams = _distinct([g.get("num_beams") for g in generation])
        tokens = _distinct([g.get("max_new_tokens") for g in generation])
        sizes = "; ".join(f"{c.task} {_distinct([_rows_evaluated(r, c) for r in runs])}" for c in columns)
        lines.append(f"- {task}: num_beams {beams}{' (greedy)' if beams == '1' else ''}, max_new_tokens {tokens}; "
                     f"rows evaluated per test set: {sizes}")
    return lines


def table(study: ReasoningStudyDeclaration, runs: list[dict[str, Any]], skipped: list[str],
          experiments: Path = selection.EXPERIMENTS_DIR) -> str:
    """table.md's text."""
    chosen, notes = cells(study, runs)
    lines = [f"# {study.title}", "",
             "Accuracy (×100) of the extracted answer on each test set's evaluated rows, and beside it fail %: the "
             "share of those rows whose answer extraction found nothing (`extracted: null` in the run's "
             "predictions.jsonl). Mean ± sd over seeds (n where a cell has fewer seeds than its row; one seed: its "
             "value). Avg.: the mean over the task's test sets, per seed, then over seeds. Zero-shot (untrained): "
             f"{study.zero_shot_method} with trainer.max_steps=0, no optimizer step (z = 1: the base model). The "
             "majority answer is a reference, not a method: the share of the evaluated rows whose gold answer is the "
             "test set's most frequent one. Generated from the records by:", "", f"    {study.command}"]
    extra_notes = []
    for task, columns in tasks_of(study).items():
        headers = ["Method", "#TPs", *[h for c in columns for h in (c.header, f"{c.task} fail %")], "Avg.",
                   "seeds", "wall s/run", "peak MiB/run"]
        lines += ["", f"## {task}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        found = {row for t, row in chosen if t == task}
        order = [*study.methods, *sorted(found - set(study.methods) - {ZERO_SHOT}), ZERO_SHOT]
        for row in order:
            group = chosen.get((task, row), [])
            s = row_stats(columns, group, row == ZERO_SHOT)
            full = s["seeds"]
            cols = [_fmt(cell, full) for c in columns
                    for cell in (s["accuracy"][c.header], s["failure"][c.header])]
            lines.append("| " + " | ".join([_label(study, row), s["tps"], *cols, _fmt(s["avg"], full),
                                            str(full) if group else "–", s["wall"], s["memory"]]) + " |")
            extra_notes += [f"{task} × {_label(study, row)}: no readable {records.PREDICTIONS_NAME} beside {path} "
                            f"(fail % not counted)" for path in s["no_predictions"]]
            if s["zero_shot_counted"]:
                extra_notes.append(f"{task} × {ZERO_SHOT_LABEL}: #TPs 0 (no step taken); its records count "
                                   f"{_tps(s['zero_shot_counted'])} untrained {study.zero_shot_method} parameters")
        shares, majority_notes = majority_row(columns, chosen, task)
        extra_notes += majority_notes
        complete = [v for v in shares.values() if v is not None]
        average = statistics.fmean(complete) if len(complete) == len(columns) else None
        cols = [text for c in columns for text in (_fmt((shares[c.header], None, 1), 1), "–")]
        lines.append("| " + " | ".join([MAJORITY_LABEL, "–", *cols, _fmt((average, None, 1), 1), "–", "–", "–"])
                     + " |")
    lines += ["", "Decoding and test subsets, as the records resolved them (config.task.options.generation; the "
              "metrics' <set>/n):", *decoding_lines(study, chosen)]
    if any(c.header != c.task for c in study.columns):
        lines += ["", "† MultiArith, AddSub and SingleEq are subsets of MAWPS (Table 3's mark); on the training "
                  f"data's overlap with MAWPS see experiments/{study.sweep}.yaml."]
    have = {(t, row, r.get("seed")) for (t, row), group in chosen.items() for r in group}
    wanted = planned(study, experiments)
    absent = [(t, row, seed) for t, row, seed in wanted if (t, row, seed) not in have]
    lines += ["", f"{len(runs)} completed records."]
    if absent:
        lines += ["", f"Missing ({len(absent)} of {len(wanted)} planned runs have no completed record yet; "
                  f"experiments/{study.sweep}.yaml):",
                  *[f"- {t} × {_label(study, row)}: seed {seed}" for t, row, seed in absent]]
    if notes or extra_notes:
        lines += ["", "Notes:", *[f"- {note}" for note in [*notes, *extra_notes]]]
    if skipped:
        lines += ["", f"Skipped ({len(skipped)}):", *[f"- {line}" for line in skipped]]
    return "\n".join(lines) + "\n"


def render(study: ReasoningStudyDeclaration, runs_dir: str | Path | None = None, out: str | Path | None = None,
           experiments: Path = selection.EXPERIMENTS_DIR) -> int:
    """The study's table.md from its records; a missing or empty folder gives the empty table and the missing list."""
    runs_dir, out = Path(runs_dir or study.runs), Path(out or study.out)
    loaded, skipped = records.load_records(runs_dir) if runs_dir.is_dir() else ([], [])
    runs = [r for r in loaded if r.get("family") not in records.STUDY_FAMILIES]
    text = table(study, runs, [f"{s.path}: {s.reason}" for s in skipped], experiments)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    print(f"{len(runs)} completed records, {len(skipped)} skipped: {out / 'table.md'}")
    return 0
