"""The paper's figures from run records (matplotlib, Agg): PNG + PDF with fixed metadata, so reruns are identical.

Each figure is a ``declarations.FigureDeclaration`` (``declarations.FIGURES``); ``make_all`` draws every one.

Which records a figure uses:
- Sweeps (fig5_degree, fig8_init, fig10_vectors, fig11_pooling): Propulsion records whose method settings equal
  the preset (conf/method/propulsion.yaml) except the swept one(s), at the task's paper degree unless the degree
  is swept. Each point is one group of seeds, chosen by ``selection.pick`` (the tables' rule: the paper's
  protocol first) when several configs give the same point (never averaged across configs).
- Curves (fig5_steps, fig3_convergence): per line the group with the most evaluation points among those the
  tables' rule ranks first (method settings, protocol), mean over seeds at each step; fig3 uses every method's
  preset run on SST-2.
- Bars (fig3_efficiency, fig4_memory): the fig3 groups (params %, wall time, wall time / train.steps, peak
  memory), and the newest benchmark record (``make bench``: step time, saved activations, peak memory) if any,
  taken from the same records ``records.load_records`` read (``newest_bench``).
- The paper states some of its figures' numbers in the text (results/paper/figures.csv): drawn as grey crosses
  (a point) or dashes (a range of x), where the x axis has that value.
- Every figure says what it shows: the model, task and protocol (``selection.protocol_label``; runs off the paper's
  protocol say so and how) of every line or bar, in the title when all share them, else in the legend or tick
  label. The title names the paper's figure as the setting ("as paper Figure 3 (left)"), never claims to be it.
A figure with no matching records is skipped with a note, never an error.
"""

from __future__ import annotations

import csv
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from propulsion import records  # noqa: E402
from propulsion.reports import selection  # noqa: E402
from propulsion.reports.declarations import FIGURES, TABLE1, FigureDeclaration  # noqa: E402

# Figures are GLUE runs: Table 1's protocol (trainer presets authors and paper) is theirs.
PROTOCOL = TABLE1.protocol
PNG_METADATA = {"Software": None}  # no matplotlib version in the file
PDF_METADATA = {"CreationDate": None, "Creator": None, "Producer": None}  # no time stamp, no versions


def main_value(record: dict[str, Any], metrics: dict[str, Any] | None = None) -> float | None:
    """The record's main metric in percent (from ``metrics`` if given, e.g. one evaluation), None if absent."""
    metrics = record.get("metrics") if metrics is None else metrics
    key = str(record.get("main_metric"))
    value = records.metric_value(metrics, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return 100.0 * value if record.get("family") in selection.FRACTION_FAMILIES else float(value)


def _save(fig, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=120, metadata=PNG_METADATA)
    fig.savefig(folder / f"{name}.pdf", metadata=PDF_METADATA)
    plt.close(fig)
    return name


def _setting(record: dict[str, Any], key: str) -> Any:
    if key == "degree":
        return record.get("degree")
    return ((record.get("config") or {}).get("method") or {}).get(key)


def _ablation(runs: list[dict], swept: tuple[str, ...]) -> list[dict]:
    """Propulsion records at the preset's settings except the swept ones (and the degree unless swept)."""
    return [r for r in runs if r.get("method") == "propulsion"
            and not selection.deviations(r.get("config") or {}, ignore=swept)
            and ("degree" in swept or selection.at_paper_degree(r.get("config") or {}))]


def _chosen_groups(runs: list[dict], key_of, swept: tuple[str, ...] = (), prefer=None) -> dict[Any, list[dict]]:
    """For every key (e.g. (model, task, x)) the one group of seeds that stands for it."""
    groups: dict[Any, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in runs:
        key = key_of(record)
        if key is not None:
            groups[key][selection.group_key(record.get("config") or {})].append(record)
    return {key: selection.pick(dict(by), PROTOCOL, ignore=swept, prefer=prefer).runs
            for key, by in groups.items()}


def _describe(groups: dict[Any, list[dict]], name_of=None) -> tuple[str, dict[Any, str]]:
    """What every line or bar shows: model, task and protocol of its records (and ``name_of(key)``, e.g. the method,
    first). Fields all share go into the returned title line, the others into each label; a label left empty
    (one line, nothing varies) is the task."""
    fields = {key: {"model": str(group[0].get("model")), "task": str(group[0].get("task")),
                    "protocol": selection.protocol_label(group[0].get("config") or {}, PROTOCOL)}
              for key, group in groups.items()}
    common = [f for f in ("model", "task", "protocol") if len({v[f] for v in fields.values()}) == 1]
    labels = {}
    for key, v in fields.items():
        parts = ([str(name_of(key))] if name_of else []) + [v[f] for f in ("model", "task", "protocol")
                                                             if f not in common]
        labels[key] = textwrap.fill(" · ".join(parts), 60) or v["task"]  # a long protocol wraps in the legend
    first = next(iter(fields.values()), {})
    return " · ".join(first[f] for f in common), labels


def _title(ax, paper_figure: str, what: str, common: str) -> None:
    """The paper figure whose setting this is, what is drawn, and what all lines share (model, task, protocol)."""
    ax.set_title(f"as paper {paper_figure}: {what}\n{textwrap.fill(common, 80)}", fontsize=8)


def _sort_key(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def _paper_refs(paper_dir: Path | None, figure: str) -> list[dict[str, str]]:
    path = (paper_dir or selection.PAPER_DIR) / "figures.csv"
    if not path.exists():
        return []
    with open(path) as handle:
        return [row for row in csv.DictReader(handle) if row["table"] == figure and row["metric"] == "accuracy"]


def _draw_refs(ax, refs: list[dict[str, str]], tasks: set[str], key: str, position) -> None:
    """The paper's stated numbers: a cross at x, a dashed segment over a range 'a-b' (x through ``position``)."""
    labelled = False
    for row in refs:
        name, _, x = row["setting"].partition("=")
        if row["task"] not in tasks or name != key:
            continue
        ends = [position(v) for v in x.split("-")]
        if any(e is None for e in ends):
            continue
        label = None if labelled else "paper (text)"
        if len(ends) == 1:
            ax.plot(ends, [float(row["value"])], "x", color="grey", markersize=8, label=label)
        else:
            ax.plot(ends, [float(row["value"])] * 2, "--", color="grey", label=label)
        ax.annotate(row["task"], (ends[-1], float(row["value"])), fontsize=7, color="grey")
        labelled = True


def sweep(runs: list[dict], folder: Path, name: str, key: str, tasks: tuple[str, ...], title: str,
          swept: tuple[str, ...] | None = None, paper_dir: Path | None = None) -> str | None:
    """Main metric (mean over the chosen group's seeds) against one setting, a line per (model, task, protocol)."""
    swept = swept or (key,)
    data = [r for r in _ablation(runs, swept) if r.get("task") in tasks and main_value(r) is not None]
    chosen = _chosen_groups(data, lambda r: (r.get("model"), r.get("task"), _setting(r, key))
                            if _setting(r, key) is not None else None, swept)
    if not chosen:
        return None
    xs = sorted({x for (_m, _t, x) in chosen}, key=_sort_key)
    categorical = any(not isinstance(x, int | float) for x in xs)
    position = (lambda v: xs.index(v) if v in xs else None) if categorical else (lambda v: float(v))
    lines: dict[tuple[str, str, str], list[tuple[Any, list[dict]]]] = defaultdict(list)
    for x in xs:  # points of one (model, task) chosen under different protocols are different lines
        for (model, task, x_), group in sorted(chosen.items(), key=lambda item: str(item[0][:2])):
            if x_ == x:
                protocol = selection.protocol_label(group[0].get("config") or {}, PROTOCOL)
                lines[(str(model), str(task), protocol)].append((x, group))
    common, labels = _describe({line: points[0][1] for line, points in lines.items()})
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for line in sorted(lines):
        points = lines[line]
        ys = [sum(main_value(r) for r in group) / len(group) for _x, group in points]
        ax.plot([position(x) for x, _g in points], ys, marker="o", label=labels[line])
    if categorical:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    _draw_refs(ax, _paper_refs(paper_dir, name), {t for (_m, t, _x) in chosen}, key,
               (lambda v: xs.index(v) if v in xs else None) if categorical else (lambda v: float(v)))
    ax.set(xlabel=key, ylabel="main metric (%)")
    _title(ax, title, f"metric vs {key}", common)
    ax.legend(fontsize=7)
    return _save(fig, folder, name)


def _most_evaluations(runs: list[dict]) -> int:
    return -min(len(r.get("evaluations") or []) for r in runs)


def _mean_curve(group: list[dict]) -> tuple[list[int], list[float]]:
    """Mean over seeds of the main metric at each evaluated step (steps every seed reached)."""
    per_step: dict[int, list[float]] = defaultdict(list)
    for record in group:
        for evaluation in record.get("evaluations") or []:
            value = main_value(record, evaluation.get("metrics") or {})
            if value is not None:
                per_step[int(evaluation["step"])].append(value)
    steps = sorted(s for s, v in per_step.items() if len(v) == len(group))
    return steps, [sum(per_step[s]) / len(per_step[s]) for s in steps]


def curves(chosen: dict[tuple[str, Any], list[dict]], folder: Path, name: str, paper_figure: str,
           what: str) -> str | None:
    """Dev main metric against training step, a line per chosen (model, label) group."""
    lines = {key: _mean_curve(group) for key, group in chosen.items()}
    lines = {key: line for key, line in lines.items() if line[0]}
    if not lines:
        return None
    common, labels = _describe({key: chosen[key] for key in lines}, name_of=lambda key: key[1])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, (steps, values) in sorted(lines.items(), key=lambda item: (item[0][0], _sort_key(item[0][1]))):
        ax.plot(steps, values, marker=".", label=f"{labels[key]} (n={len(chosen[key])})")
    ax.set(xlabel="training step", ylabel="dev main metric (%)")
    _title(ax, paper_figure, what, common)
    ax.legend(fontsize=7)
    return _save(fig, folder, name)


def _bars(ax, labels: list[str], values: list[float], ylabel: str, title: str) -> None:
    ax.bar(range(len(labels)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
    ax.set(ylabel=ylabel, title=title)


def _panels(folder: Path, name: str, title: str, panels: list[tuple[list[str], list[float], str, str]]) -> str | None:
    """Bar panels side by side, the empty ones left out; None when all are empty."""
    panels = [p for p in panels if p[0]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), squeeze=False)
    fig.suptitle(title, fontsize=9)
    for ax, (labels, values, ylabel, title) in zip(axes[0], panels, strict=True):
        _bars(ax, labels, values, ylabel, title)
    return _save(fig, folder, name)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def efficiency_panels(chosen: dict[tuple[str, str], list[dict]], bench: list[dict]) -> tuple[list, list, str]:
    """(fig3 panels, fig4 panels, what the runs' bars share): per method params %, wall time, time per step, peak
    memory of the chosen runs; the benchmark's rows (named as such: their own model, random init, no task)."""
    common, labels = _describe(chosen, name_of=lambda key: key[1])
    keys = sorted(chosen)

    def column(get):
        pairs = [(labels[k], [v for v in (get(r) for r in chosen[k]) if v is not None]) for k in keys]
        pairs = [(label, values) for label, values in pairs if values]
        return [p[0] for p in pairs], [_mean(p[1]) for p in pairs]

    params = column(lambda r: (r.get("params") or {}).get("percent"))
    wall = column(lambda r: r.get("wall_time_s") / 3600 if r.get("wall_time_s") is not None else None)
    per_step = column(lambda r: r["wall_time_s"] / max(1, int((r.get("train") or {}).get("steps") or 1))
                      if r.get("wall_time_s") is not None else None)
    memory = column(lambda r: r.get("peak_memory_bytes") / 2**30 if r.get("peak_memory_bytes") else None)
    kinds = sorted({str(r.get("peak_memory_kind")) for k in keys for r in chosen[k] if r.get("peak_memory_bytes")})
    fig3 = [(*params, "trainable parameters (%)", "parameters"), (*wall, "hours", "training time"),
            (*per_step, "seconds", "wall time / step")]
    fig4 = [(*memory, "GiB", f"peak memory ({', '.join(kinds)})")]
    rows = sorted(bench, key=lambda row: str(row.get("method")))
    source = f"make bench ({', '.join(sorted({str(r.get('bench_model')) for r in rows}))}, random init)"

    def bench_column(field, scale):
        kept = [r for r in rows if isinstance(r.get(field), int | float)]
        return [str(r.get("method")) for r in kept], [r[field] * scale for r in kept]

    fig3.append((*bench_column("step_time_s", 1.0), "seconds", f"{source}: step time"))
    # On CPU the bench estimates the peak (weights, optimizer state, gradients, saved activations): say so.
    estimated = any(str(r.get("peak_memory_kind", "")).startswith("estimate") for r in rows)
    peak_title = f"{source}: peak memory" + (" (estimate)" if estimated else "")
    fig4.append((*bench_column("peak_memory_bytes", 2**-30), "GiB", peak_title))
    fig4.append((*bench_column("saved_activation_bytes", 2**-30), "GiB", f"{source}: saved activations"))
    return fig3, fig4, common


def newest_bench(loaded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the newest completed benchmark record (``make bench``) among records ``records.load_records`` read
    (by finish time as written, then path), if any."""
    found = [(str(record.get("finished_at") or ""), str(record.get("_path")),
              [{**row, "bench_model": record.get("model")} for row in record.get("bench") or []])
             for record in loaded if record.get("family") == "bench" and record.get("status") == "completed"]
    return max(found)[2] if found else []


def make_all(runs: list[dict[str, Any]], folder: Path, bench: list[dict[str, Any]] | None = None,
             paper_dir: Path | None = None) -> tuple[list[str], list[str]]:
    """Every figure that has data; returns (names drawn, notes on those skipped)."""
    sst2 = [r for r in runs if r.get("task") == "sst2"]
    steps = _chosen_groups([r for r in _ablation(sst2, ("degree",)) if r.get("evaluations")],
                           lambda r: (r.get("model"), r.get("degree")), ("degree",), _most_evaluations)
    presets = [r for r in sst2 if r.get("evaluations") and TABLE1.rows(r)
               and not selection.deviations(r.get("config") or {}) and selection.at_paper_degree(r["config"])]
    methods = _chosen_groups(presets, lambda r: (r.get("model"), r.get("method")), prefer=_most_evaluations)
    fig3, fig4, common = efficiency_panels(methods, bench or [])
    shared = textwrap.fill(common, 120)  # model · task · protocol of the runs' bars

    def draw(figure: FigureDeclaration) -> str | None:
        if figure.draw == "sweep":
            chosen = [r for r in runs if all(_setting(r, k) == v for k, v in figure.only.items())]
            return sweep(chosen, folder, figure.name, figure.key, figure.tasks, figure.paper_figure,
                         swept=figure.swept or None, paper_dir=paper_dir)
        if figure.draw == "steps":
            return curves({(m, f"k={k}"): g for (m, k), g in steps.items()}, folder, figure.name,
                          figure.paper_figure, figure.what)
        if figure.draw == "convergence":
            return curves(methods, folder, figure.name, figure.paper_figure, figure.what)
        panels = {"efficiency": fig3, "memory": fig4}[figure.draw]
        return _panels(folder, figure.name, f"as paper {figure.paper_figure}: {figure.what}\n{shared}", panels)

    made = {figure.name: draw(figure) for figure in FIGURES}
    drawn = [name for name, result in made.items() if result]
    notes = [f"{name}: skipped, no matching records" for name, result in made.items() if not result]
    return drawn, notes
