"""The engine: any table declaration (``declarations.TABLES``) rendered from run records, ours beside the paper's
(``make tables``: ``python -m propulsion.reports``).

Rules, so that a number in a table can be traced:
- Only records with status "completed" count; unreadable, foreign-schema, failed or unfinished records are
  listed in results/tables/skipped.md (and printed) and skipped. NTK and benchmark records are not table runs.
- Records come from ``records.load_records``, the package's one loader.
- Which records fill a cell is ``propulsion.reports.selection``'s rule, shared with the figures: groups of seeds of one
  config (never averaged across configs), the table's method setting and the paper's protocol first (Table 1:
  the ``authors`` and ``paper`` trainer presets, ``authors`` first for Propulsion rows), one record per seed,
  footnotes for whatever was set aside. A completed run whose metric is not finite (STS-B's Pearson of constant
  predictions) is left out of its cell and footnoted, never dropped silently.
- A table row is (model, method); Table 5's rows are (model, Propulsion targets).
- GLUE metrics are stored as fractions and shown ×100; SQuAD, ROUGE and reasoning accuracy are stored ×100.
- F1 (MRPC, QQP): the paper's is sklearn's macro F1 (the authors' notebooks); a record's ``f1_macro`` fills the
  column, and a cell whose records hold only GLUE's binary ``f1`` is filled with it and footnoted.
- The paper's Table 1 "Avg." is two numbers: the mean over the 8 tasks of each task's first metric (CoLA MCC,
  SST-2 acc, MRPC acc, STS-B Pearson, QQP acc, MNLI-m, QNLI, RTE), and the mean of the three second metrics
  (MRPC F1, STS-B Spearman, QQP F1). That rule reproduces 26 of the paper's 28 printed averages to rounding;
  the other two (RoBERTa-base BitFit, RoBERTa-large AdaLoRA) disagree with the paper's own cells.
- #TPs (Tables 1, 2, 5): ours from the chosen records' params.trainable (a range when the task heads differ),
  else from ``count`` (injected by the caller: ``propulsion.reports.cli`` passes compose.py's meta-device count,
  since only compose.py composes configs) for the paper's first task of the row; the paper's beside.
Output is deterministic: the same records give byte-identical files (sorted rows, fixed formats, no times).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from propulsion.reports import selection
from propulsion.reports.declarations import Column, TableDeclaration
from propulsion.reports.selection import scaled

OUR_METHODS = ("full_ft", "prompt", "prefix", "ia3", "bitfit", "lora", "adalora", "lokr", "loha", "propulsion",
               "propulsion_attn", "adapter_s", "parallel", "mam", "propetl_adapter", "propetl_lora", "propetl_prefix")
# Trainable parameters of model × method × task with config overrides, None when there is no such config.
Counter = Callable[[str, str, str, tuple[str, ...]], int | None]


def _belongs(record: dict[str, Any], column: Column, table: TableDeclaration) -> bool:
    family = table.by_family
    if family:  # Table 3: any reasoning run that scored this test set
        return record.get("family") == family and column.key_in(record) in (record.get("metrics") or {})
    return record.get("task") == column.task and column.key_in(record) in (record.get("metrics") or {})


def _matches(record: dict[str, Any], column: Column, table: TableDeclaration) -> bool:
    return _belongs(record, column, table) and scaled(record, column.key_in(record)) is not None


def columns_of(table: TableDeclaration, runs: list[dict[str, Any]]) -> list[Column]:
    return [c for c in table.columns if not c.optional or any(_matches(r, c, table) for r in runs)]


def _std(values: list[float]) -> float | None:
    return float(pd.Series(values).std()) if len(values) > 1 else (0.0 if values else None)


def _cell_notes(chosen: dict[tuple[str, str, str], selection.Choice], columns: list[Column]) -> list[str]:
    """Per row: the trainer preset that filled each cell (where records say), and F1 cells filled with binary F1."""
    by_header = {c.header: c for c in columns}
    presets: dict[tuple[str, str], dict[str, list[str]]] = {}
    binary: dict[tuple[str, str], list[str]] = {}
    for (model, method, header), choice in chosen.items():
        if choice.preset is not None:
            presets.setdefault((model, method), {}).setdefault(choice.preset, []).append(header)
        column = by_header[header]
        if column.fallback and any(column.key_in(r) == column.fallback for r in choice.runs):
            binary.setdefault((model, method), []).append(header)
    order = {c.header: i for i, c in enumerate(columns)}
    notes = []
    for (model, method), named in presets.items():
        parts = [f"{p} ({', '.join(sorted(h, key=order.get))})" for p, h in sorted(named.items())]
        notes.append(f"{model} / {method}: trainer preset of the filled cells: {'; '.join(parts)}.")
    for (model, method), headers in binary.items():
        notes.append(f"{model} / {method}: {', '.join(sorted(headers, key=order.get))} had only GLUE's binary F1 "
                     f"(no f1_macro in the records): not the paper's macro F1.")
    return notes


def build_table(table: TableDeclaration, runs: list[dict[str, Any]], paper: pd.DataFrame
                ) -> tuple[pd.DataFrame, list[str], dict[tuple[str, str], list[dict]]]:
    """Long format: one row per (model, method, column) with ours (mean, std, n), the paper's value, the gap.
    Also the notes and the records chosen per (model, method) row (for parameter counts)."""
    name = table.name
    columns = columns_of(table, runs)
    cells: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    set_aside_notes = set()
    for record in runs:
        method = table.rows(record)
        if not method:
            continue
        for column in columns:
            key = (str(record.get("model")), method, column.header)
            if _matches(record, column, table):
                cells.setdefault(key, {}).setdefault(selection.group_key(record["config"]), []).append(record)
            elif _belongs(record, column, table):
                set_aside_notes.add(f"{key[0]} / {key[1]}: {column.header} of run {record.get('run_id')} is not a "
                                    f"finite number; left out.")
    chosen: dict[tuple[str, str, str], selection.Choice] = {}
    for key, groups in sorted(cells.items()):
        chosen[key] = selection.pick(groups, table.protocol, table.row_settings)
        set_aside_notes.update(selection.footnotes(f"{key[0]} / {key[1]}", key[2], chosen[key]))
    set_aside_notes.update(_cell_notes(chosen, columns))
    paper_rows = {(r.model, r.method, r.task, r.metric): r.value for r in paper.itertuples()} if len(paper) else {}
    row_keys = sorted({(m, me) for (m, me, _t, _x) in paper_rows} | {(m, me) for (m, me, _c) in chosen})
    out, by_row = [], {}
    for model, method in row_keys:
        for column in columns:
            choice = chosen.get((model, method, column.header))
            group = choice.runs if choice else []
            by_row.setdefault((model, method), []).extend(group)
            values = [v for v in (scaled(r, column.key_in(r)) for r in group) if v is not None]
            mean = sum(values) / len(values) if values else None
            theirs = paper_rows.get((model, method, column.task, column.metric))
            keys = sorted({column.key_in(r) for r in group}) or [column.record_key]
            out.append({"table": name, "model": model, "method": method, "column": column.header,
                        "task": column.task, "metric": "|".join(keys), "ours_mean": mean,
                        "ours_std": _std(values), "n": len(values), "paper": theirs,
                        "diff": None if mean is None or theirs is None else mean - theirs})
    return pd.DataFrame(out), list(table.notes) + sorted(set_aside_notes), by_row


AVERAGE_FIRST = ["CoLA", "SST-2", "MRPC acc", "STS-B P", "QQP acc", "MNLI-m", "QNLI", "RTE"]
AVERAGE_SECOND = ["MRPC F1", "STS-B S", "QQP F1"]


def paper_average(cells: dict[str, float]) -> tuple[float, float]:
    """The paper's Avg. pair from one row's cells keyed by column header (the rule in the module docstring)."""
    return (sum(cells[c] for c in AVERAGE_FIRST) / len(AVERAGE_FIRST),
            sum(cells[c] for c in AVERAGE_SECOND) / len(AVERAGE_SECOND))


def add_average(frame: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 1's Avg. column pair: ours by the paper's rule (on our seed means), theirs as printed."""
    printed = {(r.model, r.method, r.metric): r.value for r in paper.itertuples() if r.task == "average"}
    rows = []
    for (model, method), part in frame.groupby(["model", "method"], sort=True):
        by = part.set_index("column")
        for header, columns, paper_metric in (("Avg.", AVERAGE_FIRST, "accuracy"),
                                              ("Avg. 2nd", AVERAGE_SECOND, "f1")):
            ours = by.loc[columns, "ours_mean"]
            mean = float(ours.mean()) if ours.notna().all() else None
            theirs = printed.get((model, method, paper_metric))
            rows.append({"table": "table1", "model": model, "method": method, "column": header, "task": "average",
                         "metric": header, "ours_mean": mean, "ours_std": None,
                         "n": int(by.loc[columns, "n"].min()), "paper": theirs,
                         "diff": None if mean is None or theirs is None else mean - theirs})
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def cell_text(row: pd.Series) -> str:
    """"ours ± std (n=…) / paper [ours − paper]"; "–" where either side has no number."""
    if _missing(row["ours_mean"]):
        ours = "–"
    else:
        spread = f" ± {_fmt(row['ours_std'])}" if row["n"] > 1 else ""
        ours = f"{_fmt(row['ours_mean'])}{spread} (n={int(row['n'])})"
    gap = "" if _missing(row["diff"]) else f" [{row['diff']:+.2f}]"
    return f"{ours} / {_fmt(row['paper'])}{gap}"


def wide(frame: pd.DataFrame, headers: list[str], counts: dict[tuple[str, str], str]) -> pd.DataFrame:
    table = frame.assign(text=frame.apply(cell_text, axis=1)).pivot(index=["model", "method"], columns="column",
                                                                     values="text")
    table = table[headers].reset_index()
    if counts:
        rows = zip(table.model, table.method, strict=True)
        table.insert(2, "#TPs ours / paper", [counts.get(row, "–") for row in rows])
    return table


def parameter_counts(frame: pd.DataFrame, by_row: dict[tuple[str, str], list[dict]], paper: pd.DataFrame,
                     count: Counter | None) -> dict[tuple[str, str], str]:
    """"ours / paper" per row: ours from the chosen records (a range when task heads differ), else from ``count``
    for the methods we implement ("–" without a counter or where it has no config)."""
    theirs = {}
    if "params" in paper:
        theirs = {(r.model, r.method): r.params for r in paper.itertuples() if isinstance(r.params, str)}
    counts = {}
    for (model, method), part in frame[frame.task != "average"].groupby(["model", "method"], sort=True):
        found = sorted({int(r["params"]["trainable"]) for r in by_row.get((model, method), [])
                        if isinstance(r.get("params"), dict) and r["params"].get("trainable") is not None})
        ours = f"{found[0]:,}" if len(found) == 1 else (f"{found[0]:,}–{found[-1]:,}" if found else "–")
        base, _, targets = method.partition(":")  # Table 5: propulsion:<targets>
        if not found and count is not None and base in OUR_METHODS:
            # The head depends on the task: count with the row's first paper task (SQuAD for DeBERTa, XSum for BART).
            with_paper = part[part.paper.notna()]
            task = (with_paper if len(with_paper) else part).task.iloc[0]
            counted = count(model, base, task, (f"method.targets={targets}",) if targets else ())
            ours = f"{counted:,}" if counted is not None else "–"
        counts[(model, method)] = f"{ours} / {theirs.get((model, method)) or '–'}"
    return counts


def fill_commands(frame: pd.DataFrame, table: TableDeclaration) -> list[str]:
    """Commands that would fill the paper's empty cells of the methods we implement."""
    run_task = {c.header: c.run_task for c in table.columns}
    wanted: dict[tuple[str, str, str, str], list[str]] = {}
    for (model, method), part in frame[frame.task != "average"].groupby(["model", "method"], sort=True):
        base, _, targets = method.partition(":")
        if base not in OUR_METHODS:
            continue
        missing = ",".join(sorted({run_task[c] for c in part[part.ours_mean.isna() & part.paper.notna()].column}))
        if missing:
            extra = " ".join(f"method.{k}={v}"
                             for k, v in sorted(table.protocol.method_settings.get(base, {}).items()))
            if table.fill_sweep:  # the table's sweep sets them for every method
                extra = ""
            wanted.setdefault((model, missing, base if targets else "", extra), []).append(targets or base)
    commands = []
    experiment = table.fill_sweep
    for (model, tasks, base, extra), choices in sorted(wanted.items()):
        sweep = f"method={base} method.targets={','.join(choices)}" if base else f"method={','.join(choices)}"
        if experiment:  # the table's own sweep: its settings and seeds, narrowed to the missing cells
            commands.append(f"python -m propulsion.run --config-dir experiments --config-name {experiment} "
                            f"model={model} {sweep} task={tasks}")
            continue
        command = f"python -m propulsion.run -m model={model} {sweep} task={tasks} seed=0,1,2"
        commands.append(f"{command} {extra}".rstrip())
    return commands


def write(table: TableDeclaration, frame: pd.DataFrame, wide_table: pd.DataFrame, notes: list[str], commands: list[str],
          out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = table.name
    numbers = ["ours_mean", "ours_std", "paper", "diff"]
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in numbers})
    frame.sort_values(["model", "method", "column"]).to_csv(out / f"{name}.csv", index=False, float_format="%.4f",
                                                            lineterminator="\n")
    lines = [f"# {table.title}", "",
             "Each cell: ours (mean ± sample std over seeds, n) / paper [ours − paper]; – = no number.", ""]
    lines.append("| " + " | ".join(wide_table.columns) + " |")
    lines.append("|" + "---|" * len(wide_table.columns))
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide_table.itertuples(index=False)]
    lines += [""] + [f"- {note}" for note in notes]
    if commands:
        lines += ["", "Commands that fill the empty cells of the methods we implement:", "", "```"] + commands + ["```"]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.tex").write_text(wide_table.to_latex(index=False, escape=True))


def make_table(table: TableDeclaration, runs: list[dict[str, Any]], paper_dir: Path, out: Path,
               count: Counter | None) -> bool:
    """One table's .csv/.md/.tex; False when neither the paper nor a record has a row for it."""
    paper_file = paper_dir / table.paper_file
    paper = pd.read_csv(paper_file) if paper_file.exists() else pd.DataFrame()
    frame, notes, by_row = build_table(table, runs, paper)
    if frame.empty:
        return False
    headers = [c.header for c in columns_of(table, runs)]
    if table.average:
        frame = add_average(frame, paper)
        headers += ["Avg.", "Avg. 2nd"]
    counts = parameter_counts(frame, by_row, paper, count) if table.counts else {}
    write(table, frame, wide(frame, headers, counts), notes, fill_commands(frame, table), out)
    return True
