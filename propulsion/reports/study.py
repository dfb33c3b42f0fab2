"""A study's table, figure and learning-rate search from its records (``declarations.StudyDeclaration``; the
first is the small-scale Table 1 of docs/small_scale.md). ``make tables`` renders every study (``render``).

Rules, so that a number can be traced:
- Only records ``records.load_records`` returns as completed under the study's runs count; the others are listed
  under the table and skipped.
- A cell is one (task, method) group of seeds, chosen by ``selection.pick`` under the study's protocol
  (``Protocol(paper_first=False)``): runs whose configs differ only by seed (``selection.group_key``). Where a cell
  has several groups (an lr changed mid-sweep), the one with most seeds counts (then the newest), and the others
  are named in a note: configs are never averaged together. One record per seed: the newest (``one_per_seed``).
- Numbers are the held-out split's metrics (protocol=heldout: the reported half of GLUE dev was never used to
  select anything), ×100, mean ± sample std over seeds; n is shown where it is not the row's full seed count.
- "Avg." is the mean over the tasks of each task's first metric (small scale: CoLA MCC, MRPC acc, STS-B Pearson,
  RTE acc), the paper's Table 1 rule restricted to the study's tasks; its ± is the std over seeds of the per-seed
  averages (seeds that finished every task).
- #TPs: the records' params.trainable (a range when the task heads differ); wall time and peak memory: the median
  per run over the row's records (peak memory is the run's own process peak RSS under scripts/serial_sweep.py).
- A paired study (``StudyDeclaration.paired``; issue 25) reads its sweep YAML's ``vars.report`` (the baseline, the
  seeds each method is to have, the equivalence margins, all fixed before the runs): per (task, metric) with a margin,
  every method against the baseline through ``stats.stats_rows`` (paired per-seed differences, t-interval, TOST with
  Holm's correction over the study's tests, hierarchical bootstrap from the predictions beside the records) into
  ``stats.csv`` and a verdict column; runs the YAML expects and no record fills are listed. With ``split_head`` the
  #TPs are split into outside the head / in the head (record ``params.head``), and the figure is the score against
  the count outside the head; ``curves`` adds the learning curves. No "Avg." where ``average`` is empty.
Output is deterministic: the same records give byte-identical files (sorted rows, fixed formats, no times).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from propulsion import records  # noqa: E402
from propulsion.reports import selection, study_figures  # noqa: E402
from propulsion.reports import stats as pstats  # noqa: E402
from propulsion.reports.declarations import StudyDeclaration  # noqa: E402

PNG_METADATA = {"Software": None}  # no matplotlib version in the file: reruns are byte-identical


def skip_line(skip: records.Skipped) -> str:
    """How the study's table lists a record it skipped (its own short form of ``Skipped.reason``)."""
    if skip.status == "unreadable":
        return f"{skip.path}: unreadable ({skip.error})"
    return f"{skip.path}: status {skip.status!r}"


def cells(study: StudyDeclaration, runs: list[dict[str, Any]]
          ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[str]]:
    """(task, method) -> the chosen group's records (one per seed, by seed), and notes on what was left out."""
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in runs:
        groups[(record.get("task"), record.get("method"))][selection.group_key(record.get("config") or {})].append(
            record)
    chosen, notes = {}, []
    for cell in sorted(groups, key=str):
        choice = selection.pick(dict(groups[cell]), study.protocol)
        chosen[cell] = choice.runs
        kept = selection.group_key(choice.runs[0].get("config") or {})
        for group in choice.others:
            seeds = len(selection.one_per_seed(group)[0])
            notes.append(f"{cell[0]} × {cell[1]}: config {selection.group_key(group[0].get('config') or {})} "
                         f"({seeds} seed(s)) left out for {kept} ({len(chosen[cell])} seed(s))")
    return chosen, notes


def value(record: dict[str, Any], metric: str) -> float | None:
    """A GLUE metric ×100; None when absent or not finite (STS-B's Pearson of constant predictions)."""
    number = records.metric_value(record.get("metrics"), metric)
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        return None
    return 100.0 * float(number)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(mean: float | None, std: float | None, n: int, full: int) -> str:
    if mean is None:
        return "–"
    text = f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")
    return text if n == full else f"{text} (n={n})"


def row_stats(study: StudyDeclaration, method: str, chosen: dict[tuple[str, str], list[dict[str, Any]]]
              ) -> dict[str, Any]:
    """Everything one table row and one figure point need."""
    runs = [r for (task, m), group in chosen.items() if m == method for r in group]
    seeds_of = {task: {r.get("seed") for r in group} for (task, m), group in chosen.items() if m == method}
    full = max((len(s) for s in seeds_of.values()), default=0)
    stats: dict[str, Any] = {"runs": len(runs), "full": full, "columns": {}}
    for header, task, metric in study.columns:
        values = [v for r in chosen.get((task, method), []) if (v := value(r, metric)) is not None]
        stats["columns"][header] = (*mean_std(values), len(values))
    # Avg.: per seed that finished all four tasks, the mean of the tasks' first metrics; then over seeds.
    per_seed: dict[Any, dict[str, float]] = defaultdict(dict)
    for task, metric in study.average.items():
        for record in chosen.get((task, method), []):
            if (v := value(record, metric)) is not None:
                per_seed[record.get("seed")][task] = v
    averages = [statistics.fmean(tasks.values()) for _, tasks in sorted(per_seed.items(), key=lambda kv: str(kv[0]))
                if len(tasks) == len(study.average)]
    stats["avg"] = (*mean_std(averages), len(averages))
    trainable = sorted({int(r["params"]["trainable"]) for r in runs if (r.get("params") or {}).get("trainable")})
    stats["trainable"] = trainable
    with_head = [r["params"] for r in runs if isinstance((r.get("params") or {}).get("head"), int)
                 and (r.get("params") or {}).get("trainable")]  # records written before params.head: no split
    stats["head"] = sorted({int(p["head"]) for p in with_head})
    stats["outside"] = sorted({int(p["trainable"]) - int(p["head"]) for p in with_head})
    walls = [float(r["wall_time_s"]) for r in runs if isinstance(r.get("wall_time_s"), int | float)]
    memory = [float(r["peak_memory_bytes"]) for r in runs if isinstance(r.get("peak_memory_bytes"), int | float)]
    stats["wall"] = statistics.median(walls) if walls else None
    stats["memory_mib"] = statistics.median(memory) / 2**20 if memory else None
    return stats


def _tps(trainable: list[int]) -> str:
    if not trainable:
        return "–"
    if trainable[0] == trainable[-1]:
        return f"{trainable[0]:,}"
    return f"{trainable[0]:,}–{trainable[-1]:,}"


def settings(study: StudyDeclaration, runs: list[dict[str, Any]]) -> list[str]:
    """The settings the records share or differ in, read from the records themselves."""
    def distinct(get) -> str:
        found = sorted({v if isinstance(v := get(r), str) else json.dumps(v, sort_keys=True) for r in runs})
        return ", ".join(found)

    if not runs:
        return []

    lrs = defaultdict(set)
    for record in runs:
        lrs[record.get("method")].add((record.get("config") or {}).get("trainer", {}).get("lr"))
    caps = defaultdict(set)
    for record in runs:
        caps[record.get("task")].add((record.get("data") or {}).get("sizes", {}).get("train"))
    return [
        f"- model: {distinct(lambda r: r.get('model'))}; weights sha256 (model.safetensors): "
        f"{distinct(lambda r: ((r.get('model_files') or {}).get('sha256') or {}).get('model.safetensors'))}",
        f"- protocol: {distinct(lambda r: r.get('protocol'))}; seeds: {distinct(lambda r: r.get('seed'))}",
        "- lr per method: " + "; ".join(f"{study.methods.get(m, m)} {', '.join(map(str, sorted(v)))}"
                                        for m, v in sorted(lrs.items(), key=lambda kv: _order(study, kv[0]))),
        "- training rows per task: " + "; ".join(f"{t} {', '.join(map(str, sorted(v)))}"
                                                 for t, v in sorted(caps.items())),
        f"- max_length: {distinct(lambda r: r['config']['task'].get('max_length'))}; epochs: "
        f"{distinct(lambda r: r['config']['trainer'].get('epochs'))}; batch size: "
        f"{distinct(lambda r: r['config']['trainer'].get('batch_size'))}; device: "
        f"{distinct(lambda r: (r.get('train') or {}).get('device'))}",
    ]


def _order(study: StudyDeclaration, method: str) -> tuple[int, str]:
    names = list(study.methods)
    return (names.index(method) if method in names else len(names), str(method))


@dataclass(frozen=True)
class Report:
    """A paired study's comparison, from its sweep YAML's ``vars.report`` (written there before the runs)."""
    baseline: str
    seeds: dict[str, int]  # method -> the seeds it is to have (0 .. n-1)
    equivalence: pstats.Equivalence


def report_settings(study: StudyDeclaration, experiments: Path = selection.EXPERIMENTS_DIR) -> Report | None:
    """The study's ``vars.report`` block (None for a study that is not paired)."""
    if not study.paired:
        return None
    data = yaml.safe_load((Path(experiments) / f"{study.sweep}.yaml").read_text())
    block = (data.get("vars") or {}).get("report") or {}
    return Report(str(block["baseline"]), {str(m): int(n) for m, n in (block.get("seeds") or {}).items()},
                  pstats.Equivalence.from_mapping(block.get("equivalence")))


def _predictions(runs: list[dict[str, Any]]) -> dict[int, pstats.Predictions]:
    """{seed: predictions} for the runs that have a readable predictions file beside their record."""
    found = {}
    for run in runs:
        try:
            found[int(run["seed"])] = pstats.load_predictions(run)
        except (OSError, ValueError, KeyError):
            continue
    return found


def comparisons(study: StudyDeclaration, chosen: dict[tuple[str, str], list[dict[str, Any]]], report: Report
                ) -> list[pstats.Comparison]:
    """Every method against the baseline on each (task, metric) with a margin, where both have a paired seed.
    The bootstrap gets the predictions of the seeds both have, scored on the same examples."""
    out = []
    for task, metric, _ in report.equivalence.margins:
        base_runs = chosen.get((task, report.baseline), [])
        base_scores = pstats.scores_by_seed(base_runs, metric)
        for method in sorted({m for t, m in chosen if t == task and m != report.baseline},
                             key=lambda m: _order(study, m)):
            runs = chosen[(task, method)]
            scores = pstats.scores_by_seed(runs, metric)
            if not set(scores) & set(base_scores):
                continue
            mine, theirs = _predictions(runs), _predictions(base_runs)
            same = [s for s in sorted(set(mine) & set(theirs) & set(scores) & set(base_scores))
                    if np.array_equal(mine[s].labels, theirs[s].labels)]
            out.append(pstats.Comparison(task, metric, method, report.baseline, scores, base_scores,
                                         {s: mine[s] for s in same}, {s: theirs[s] for s in same}))
    return out


def missing_runs(study: StudyDeclaration, chosen: dict[tuple[str, str], list[dict[str, Any]]], report: Report
                 ) -> tuple[list[str], int, int]:
    """Lines naming the (task, method) seeds the YAML expects and no completed record fills; (lines, missing, all)."""
    tasks = list(dict.fromkeys(task for _, task, _ in study.columns))
    lines, lacking, expected = [], 0, 0
    for method in sorted(report.seeds, key=lambda m: _order(study, m)):
        want = set(range(report.seeds[method]))
        for task in tasks:
            have = {r.get("seed") for r in chosen.get((task, method), [])}
            absent = sorted(want - have)
            expected += len(want)
            lacking += len(absent)
            if absent:
                lines.append(f"{task} × {study.methods.get(method, method)}: seed(s) {', '.join(map(str, absent))} "
                             f"of 0–{report.seeds[method] - 1}")
    return lines, lacking, expected


def _signed(value: float) -> str:
    text = f"{value:+.1f}"
    return "+0.0" if text == "-0.0" else text  # no "-0.0" from a mean that is zero up to rounding


def _verdict_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    if row["ci_low"] is None:
        return f"{row['verdict']} {_signed(row['mean_diff'])} (n={row['seeds']})"
    return (f"{row['verdict']} {_signed(row['mean_diff'])} [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}] "
            f"(n={row['seeds']})")


def _header_of(study: StudyDeclaration, task: str, metric: str) -> str:
    return next((h for h, t, m in study.columns if (t, m) == (task, metric)), f"{task} {metric}")


def table(study: StudyDeclaration, runs: list[dict[str, Any]], skipped: list[str]
          ) -> tuple[str, dict[str, dict[str, Any]]]:
    text, stats, _ = paired_table(study, runs, skipped)
    return text, stats


def paired_table(study: StudyDeclaration, runs: list[dict[str, Any]], skipped: list[str],
                 experiments: Path = selection.EXPERIMENTS_DIR
                 ) -> tuple[str, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """table.md's text, the rows' stats (the figure's points) and, for a paired study, stats.csv's rows."""
    chosen, notes = cells(study, runs)
    methods = sorted({m for _, m in chosen}, key=lambda m: _order(study, m))
    stats = {m: row_stats(study, m, chosen) for m in methods}
    report = report_settings(study, experiments)
    compared = pstats.stats_rows(comparisons(study, chosen, report), report.equivalence) if report else []
    by_key = {(r["task"], r["metric"], r["method"]): r for r in compared}
    tested = [(task, metric) for task, metric, _ in report.equivalence.margins] if report else []
    baseline = study.methods.get(report.baseline, report.baseline) if report else ""
    headers = ["Method", *(["#TPs outside head", "#TPs head"] if study.split_head else ["#TPs"]),
               *[h for h, _, _ in study.columns], *(["Avg."] if study.average else []),
               "seeds" if report else "runs", *[f"{_header_of(study, t, m)} vs {baseline}" for t, m in tested],
               "wall s/run", "peak MiB/run"]
    lines = [f"# {study.title}", "",
             "Held-out half of GLUE dev (never used for selection), ×100, mean ± std over seeds "
             "(n where a cell has fewer seeds than its row). Generated from the records by:", "",
             f"    {study.command}", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method in methods:
        s = stats[method]
        cols = [_fmt(*s["columns"][h][:2], s["columns"][h][2], s["full"]) for h, _, _ in study.columns]
        wall = f"{s['wall']:.0f}" if s["wall"] is not None else "–"
        memory = f"{s['memory_mib']:.0f}" if s["memory_mib"] is not None else "–"
        tps = [_tps(s["outside"]), _tps(s["head"])] if study.split_head else [_tps(s["trainable"])]
        average = [_fmt(*s["avg"][:2], s["avg"][2], s["full"])] if study.average else []
        verdicts = ["baseline" if method == report.baseline else _verdict_cell(by_key.get((t, m, method)))
                    for t, m in tested] if report else []
        lines.append("| " + " | ".join([study.methods.get(method, method), *tps, *cols, *average,
                                        str(s["full"] if report else s["runs"]), *verdicts, wall, memory]) + " |")
    if not methods:
        lines.append("| (no completed records yet) |" + " |" * (len(headers) - 1))
    if report:
        margins = ", ".join(f"{_header_of(study, t, m)} ±{d:g}" for t, m, d in report.equivalence.margins)
        lines += ["", f"Verdicts against {baseline}: paired per-seed differences (method − {baseline}, ×100, seeds "
                  f"matched by number), mean [{report.equivalence.confidence:.0%} t-interval] (n seeds). equivalent: "
                  f"both one-sided t-tests reject a difference beyond the margin ({margins}, fixed in "
                  f"experiments/{study.sweep}.yaml before the runs), Holm-corrected over the {len(compared)} "
                  f"tests, p < {report.equivalence.alpha:g}; else better / worse where the interval excludes 0; "
                  f"else inconclusive. stats.csv holds the same rows with the hierarchical bootstrap interval "
                  f"(seeds, then held-out examples) and the p-values."]
    if study.split_head:
        lines += ["", "#TPs head: trainable parameters inside the task head's modules (BERT's pooler and classifier: "
                  "their weights, or z on them); outside head: the rest (records' params.head; – where a record "
                  "predates it). A range where the tasks' heads differ."]
    lines += ["", f"{len(runs)} completed records" + ("; settings read from them:" if runs else "."),
              *settings(study, runs)]
    if report:
        absent, lacking, expected = missing_runs(study, chosen, report)
        if absent:
            lines += ["", f"Missing ({lacking} of {expected} runs have no completed record yet):",
                      *[f"- {line}" for line in absent]]
    if notes:
        lines += ["", "Left out:", *[f"- {note}" for note in notes]]
    if skipped:
        lines += ["", f"Skipped ({len(skipped)}):", *[f"- {line}" for line in skipped]]
    return "\n".join(lines) + "\n", stats, compared


def figure(study: StudyDeclaration, stats: dict[str, dict[str, Any]], path: Path) -> bool:
    """Score against trainable parameters (log x): one point per method, error bar = std over seeds."""
    panels = [("Avg.", "avg")] + [(h, h) for h, task, metric in study.columns if study.average.get(task) == metric]
    points = {m: s for m, s in stats.items() if s["trainable"]}
    if not points:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
    for ax, (title, key) in zip(axes, panels, strict=True):
        for method, s in points.items():
            mean, std, _ = s["avg"] if key == "avg" else s["columns"][key]
            if mean is None:
                continue
            x = statistics.median(s["trainable"])
            ax.errorbar([x], [mean], yerr=[std or 0.0], fmt="o", capsize=3, label=study.methods.get(method, method))
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("trainable parameters")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (×100, held-out dev half)")
    legend: dict[str, Any] = {}  # every method once, from whichever panel has its point (a partial sweep has no Avg.)
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=max(1, len(legend)), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)
    return True


def lr_search_table(study: StudyDeclaration, runs: list[dict[str, Any]]) -> str:
    """The learning-rate search: per method and lr, the dev-half selection value (record best.value) on each task
    searched, their mean over the tasks all of the method's rates share (what chooses), and the choice."""
    scores = lr_scores(runs)
    tasks = sorted({task for by_lr in scores.values() for values in by_lr.values() for task in values})
    if not tasks and study.flag_edges:  # no records yet: the columns the search will fill
        tasks = sorted({task for _, task, _ in study.columns})
    steps = {str(r.get("task")): (r.get("train") or {}).get("steps") for r in runs}
    wall = defaultdict(float)
    for record in runs:
        wall[(record.get("method"), float(record["config"]["trainer"]["lr"]))] += record.get("wall_time_s") or 0.0
    chosen = choose_lrs(runs)
    lines = [f"# Learning-rate search ({study.lr_search_sweep}.yaml): dev half only, seed 0", "",
             "Each value is the run's best dev-half evaluation (×100; what selects its checkpoint), the mean is taken "
             "over the tasks every rate of the method has a run for, and the highest mean is chosen (a tie keeps the "
             "smaller lr). The held-out half plays no part. Steps per run: "
             + ", ".join(f"{task} {steps.get(task, '–')}" for task in tasks) + ".", "",
             "| Method | lr | " + " | ".join(tasks) + " | mean | chosen | wall s |",
             "|---|---|" + "---|" * len(tasks) + "---|---|---|"]
    edges = []
    for method in sorted(scores, key=lambda m: _order(study, m)):
        shared = _shared_tasks(scores[method])
        for lr, values in sorted(scores[method].items()):
            cells = [_shown(values[task]) if task in values else "" for task in tasks]
            mean = statistics.fmean(values[task] for task in shared) if shared else math.nan
            mark = "yes" if chosen.get(method) == lr else ""
            if mark and study.flag_edges and lr in (min(scores[method]), max(scores[method])):
                mark = "yes (edge)"
                edges.append(study.methods.get(method, method))
            lines.append(f"| {study.methods.get(method, method)} | {lr:g} | " + " | ".join(cells)
                         + f" | {_shown(mean)} | {mark} | {wall[(method, lr)]:.0f} |")
    if study.flag_edges:
        if not scores:
            lines.append("| (no completed records yet) |" + " |" * (len(tasks) + 4))
        lines += ["", "A choice at the edge of its method's rates (\"yes (edge)\") is not interior: the optimum may "
                  "lie past it, and the method gets one more rate beyond it before the study. "
                  + (f"Edge choices: {', '.join(edges)}." if edges else "No edge choice." if scores else
                     "No choice yet.")]
    return "\n".join(lines) + "\n"


def _shown(value: float) -> str:
    return f"{100 * value:.1f}" if math.isfinite(value) else "–"


def lr_scores(runs: list[dict[str, Any]]) -> dict[str, dict[float, dict[str, float]]]:
    """method -> lr -> task -> the run's dev-half selection value (record best.value; the mean where seeds
    repeat); a non-finite value (a diverged run) is -inf, the worst."""
    values: dict[tuple[str, float, str], list[float]] = defaultdict(list)
    for record in runs:
        best = (record.get("best") or {}).get("value")
        finite = isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best)
        key = (record.get("method"), float(record["config"]["trainer"]["lr"]), str(record.get("task")))
        values[key].append(float(best) if finite else -math.inf)
    scores: dict[str, dict[float, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (method, lr, task), found in values.items():
        scores[method][lr][task] = statistics.fmean(found)
    return scores


def _shared_tasks(by_lr: dict[float, dict[str, float]]) -> list[str]:
    return sorted(set.intersection(*(set(values) for values in by_lr.values())))


def choose_lrs(runs: list[dict[str, Any]]) -> dict[str, float]:
    """The search's choice per method: the lr with the highest dev-half value (record best.value, the selection
    metric), averaged over the tasks searched; a tie goes to the smaller lr. A method's lrs are compared on the
    tasks every one of them has a record for, so a missing run cannot favour the rate it belongs to; a non-finite
    value (a diverged run) counts as the worst. The held-out half is never read."""
    chosen: dict[str, float] = {}
    for method, by_lr in sorted(lr_scores(runs).items(), key=lambda kv: str(kv[0])):
        shared = _shared_tasks(by_lr)
        if not shared:
            continue
        best_lr, best_score = None, -math.inf
        for lr, values in sorted(by_lr.items()):
            score = statistics.fmean(values[task] for task in shared)
            if best_lr is None or score > best_score:  # strictly better: ties keep the smaller lr
                best_lr, best_score = lr, score
        chosen[method] = best_lr
    return chosen


def readme_block(table_text: str, n_records: int, study: StudyDeclaration) -> str:
    """What README.md shows between its markers: table.md's rows and where the rest is."""
    rows = [line for line in table_text.splitlines() if line.startswith("|")]
    table_md = f"{study.out}/table.md"
    return "\n".join([*rows, "", f"{n_records} completed records; the settings they ran with, and what was left out, "
                       f"are in [{table_md}]({table_md})."])


def write_readme(study: StudyDeclaration, path: Path, block: str) -> None:
    """Replace what lies between the study's README markers in `path` (the rest of the file is untouched)."""
    text = path.read_text()
    start, end = text.find(study.readme_start), text.find(study.readme_end)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no small-scale table block: expected a line {study.readme_start!r} and, after "
                         f"it, {study.readme_end!r}")
    path.write_text(text[:start + len(study.readme_start)] + "\n" + block + "\n" + text[end:])


def lr_overrides(study: StudyDeclaration, lr_search: str | Path | None = None) -> str:
    """The search's choice as ``vars.lr.METHOD=LR`` overrides for the sweep (``make small-scale``)."""
    folder = Path(lr_search or study.lr_search_runs)
    chosen = choose_lrs(_runs_of(folder)) if folder.is_dir() else {}
    return " ".join(f"vars.lr.{method}={lr!r}" for method, lr in sorted(chosen.items()))


def _runs_of(folder: Path) -> list[dict[str, Any]]:
    return [r for r in records.load_records(folder)[0] if r.get("family") not in records.STUDY_FAMILIES]


def render(study: StudyDeclaration, runs_dir: str | Path | None = None, lr_search: str | Path | None = None,
           out: str | Path | None = None, readme: str | Path | None = None) -> int:
    """The study's table.md, figure and lr_search.md (and its README block; a paired study's stats.csv and
    learning curves): 0, or 2 when the README has no markers (then nothing is written). Folders
    default to the declaration's; a folder with no records yet gives tables that say so, and no figures."""
    runs_dir, lr_search = Path(runs_dir or study.runs), Path(lr_search or study.lr_search_runs)
    out = Path(out or study.out)
    loaded, skipped = records.load_records(runs_dir) if runs_dir.is_dir() else ([], [])
    runs = [r for r in loaded if r.get("family") not in records.STUDY_FAMILIES]
    text, stats, compared = paired_table(study, runs, [skip_line(s) for s in skipped])
    if readme and study.readme_start:  # first, so that a README without the markers writes nothing at all
        try:
            write_readme(study, Path(readme), readme_block(text, len(runs), study))
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    if study.split_head:
        firsts: dict[str, str] = {}  # each task's first column: MRPC acc, STS-B P
        for header, task, _ in study.columns:
            firsts.setdefault(task, header)
        panels = [(header, header) for header in firsts.values()]
        drawn = study_figures.score_vs_outside(panels, stats, study.methods, out / f"{study.figure}.png")
    else:
        drawn = figure(study, stats, out / f"{study.figure}.png")
    if study.paired:
        pstats.write_stats_csv(compared, out / "stats.csv")
    if study.curves:
        chosen, _ = cells(study, runs)
        tasks = list(dict.fromkeys(task for _, task, _ in study.columns))
        panels = {task: {study.methods.get(m, m): chosen[(task, m)] for m in sorted(
            {m for t, m in chosen if t == task}, key=lambda m: _order(study, m))} for task in tasks}
        study_figures.learning_curves(panels, out / f"{study.curves}.png",
                                      "select-half dev metric (×100, mean over seeds)")
    if lr_search.is_dir() or study.flag_edges:
        searched = _runs_of(lr_search) if lr_search.is_dir() else []
        (out / "lr_search.md").write_text(lr_search_table(study, searched))
    print(f"{len(runs)} completed records, {len(skipped)} skipped: {out / 'table.md'}"
          + (f", {out / study.figure}.png" if drawn else " (no figure: no records)"))
    return 0
