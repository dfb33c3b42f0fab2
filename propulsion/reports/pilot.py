"""A study's pilot (``declarations.PilotDeclaration``; issue 25's GLUE pilot): one Propulsion method over a grid of
degree × k·lr cells, each run once per task, some cells also with BERT's pooler re-drawn at random.

- A record's cell is read from the record itself (vars do not reach records): its degree, ``config.trainer.lr`` and
  ``config.model.reinit`` (pooler re-drawn or not); the grid's names come from the sweep YAML's ``vars.cells``.
- Per task and cell (and seed): the held-out score (record metrics: the report half, at the selected checkpoint),
  the select-half best (``best.value``) and the step it was selected at (``best.step``) of the run's steps, and the
  last select-half evaluation (a curve still rising at its end has not plateaued). ×100. The newest record counts.
- Cells the YAML expects and no completed record fills are listed; records that did not complete are listed.
- Figures: the select-half learning curves (one line per cell, one panel per task) and "degree as lr multiplier"
  (select-half best against k·lr and against lr, one line per degree): if the degree only multiplies the lr, the
  degrees' lines meet on the k·lr axis.
Deterministic: sorted rows, fixed formats, no times, no software version in the PNGs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import yaml  # noqa: E402

from propulsion import records  # noqa: E402
from propulsion.reports import selection, study_figures  # noqa: E402
from propulsion.reports.declarations import PilotDeclaration  # noqa: E402

POOLERS = ("pretrained", "random")


def grid(pilot: PilotDeclaration, experiments: Path = selection.EXPERIMENTS_DIR
         ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The sweep YAML's cells ({name: {degree, lr}}) and swept tasks."""
    data = yaml.safe_load((Path(experiments) / f"{pilot.sweep}.yaml").read_text())
    cells = {name: {"degree": int(cell["degree"]), "lr": float(cell["lr"])}
             for name, cell in ((data.get("vars") or {}).get("cells") or {}).items()}
    params = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    tasks = [t.strip() for t in str(params.get("task", "")).split(",") if t.strip()]
    return cells, tasks


def describe(record: dict[str, Any], cells: dict[str, dict[str, float]]) -> dict[str, Any]:
    """What the table needs of one run: task, cell, pooler, degree, lr, k·lr, seed, scores."""
    config = record.get("config") or {}
    degree = record.get("degree") or (config.get("method") or {}).get("degree")
    lr = float((config.get("trainer") or {}).get("lr"))
    name = next((n for n, c in sorted(cells.items()) if c["degree"] == degree and math.isclose(c["lr"], lr,
                                                                                              rel_tol=1e-6)),
                f"k{degree} lr {lr:g}")
    reinit = (config.get("model") or {}).get("reinit")
    best = record.get("best") or {}
    points = study_figures.curve(record)
    return {"task": str(record.get("task")), "cell": name, "pooler": POOLERS[1] if reinit else POOLERS[0],
            "degree": int(degree), "lr": lr, "klr": degree * lr, "seed": record.get("seed"),
            "metric": str(record.get("main_metric")),
            "heldout": _x100(records.metric_value(record.get("metrics"), record.get("main_metric") or "")),
            "best": _x100(best.get("value")), "step": best.get("step"),
            "steps": (record.get("train") or {}).get("steps"), "last": points[-1][1] if points else None,
            "record": record}


def _x100(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return 100.0 * float(value)


def _shown(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def rows(runs: list[dict[str, Any]], cells: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per task × cell × pooler × seed (the newest record), sorted by task, pooler, degree, k·lr, seed."""
    newest: dict[tuple, dict[str, Any]] = {}
    for record in sorted(runs, key=lambda r: (selection.finish_time(r), str(r.get("_path")))):
        row = describe(record, cells)
        newest[(row["task"], row["cell"], row["pooler"], str(row["seed"]))] = row
    return sorted(newest.values(), key=lambda r: (r["task"], POOLERS.index(r["pooler"]), r["degree"], r["klr"],
                                                  str(r["seed"])))


def missing(pilot: PilotDeclaration, found: list[dict[str, Any]], cells: dict[str, dict[str, float]],
            tasks: list[str]) -> list[str]:
    have = {(r["task"], r["cell"], r["pooler"]) for r in found}
    expected = [(task, cell, POOLERS[0]) for task in tasks for cell in cells]
    expected += [(task, cell, POOLERS[1]) for task in tasks for cell in pilot.random_pooler_cells]
    return [f"{task} × {cell} (pooler {pooler})" for task, cell, pooler in expected
            if (task, cell, pooler) not in have]


def table(pilot: PilotDeclaration, runs: list[dict[str, Any]], skipped: list[str],
          experiments: Path = selection.EXPERIMENTS_DIR) -> tuple[str, list[dict[str, Any]]]:
    cells, tasks = grid(pilot, experiments)
    found = rows(runs, cells)
    headers = ["Task", "Metric", "Pooler", "Cell", "Degree", "lr", "k·lr", "Seed", "Held-out", "Select-half best",
               "Selected at step", "Steps", "Last select-half"]
    lines = [f"# {pilot.title}", "",
             "Held-out: the report half of GLUE dev (never used for selection) at the checkpoint the select half "
             "chose; select-half best: that checkpoint's select-half value, at its step of the run's steps; last "
             "select-half: the run's final evaluation (a best at the last step, or a last value close to it, has not "
             "plateaued). ×100. One run per cell; k·lr = degree × lr. Generated from the records by:", "",
             f"    {pilot.command}", "",
             "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in found:
        lines.append("| " + " | ".join([r["task"], r["metric"], r["pooler"], r["cell"], str(r["degree"]),
                                        f"{r['lr']:.4g}", f"{r['klr']:.2g}", str(r["seed"]), _shown(r["heldout"]),
                                        _shown(r["best"]),
                                        str(r["step"]) if r["step"] is not None else "–",
                                        str(r["steps"]) if r["steps"] is not None else "–", _shown(r["last"])]) + " |")
    if not found:
        lines.append("| (no completed records yet) |" + " |" * (len(headers) - 1))
    absent = missing(pilot, found, cells, tasks)
    lines += ["", f"{len(runs)} completed records."]
    if absent:
        lines += ["", f"Missing ({len(absent)}: no completed record yet):", *[f"- {line}" for line in absent]]
    if skipped:
        lines += ["", f"Skipped ({len(skipped)}):", *[f"- {line}" for line in skipped]]
    return "\n".join(lines) + "\n", found


def _label(row: dict[str, Any]) -> str:
    return f"k={row['degree']}, k·lr {row['klr']:.2g}" + (", pooler random" if row["pooler"] == POOLERS[1] else "")


def degree_figure(found: list[dict[str, Any]], path: Path) -> bool:
    """Select-half best against k·lr (top) and lr (bottom), log x, one line per degree (pretrained pooler); a
    re-drawn pooler's runs as crosses. One column per task. False when no run has a select-half best."""
    usable = [r for r in found if r["best"] is not None]
    tasks = sorted({r["task"] for r in usable})
    if not tasks:
        return False
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.6 * len(tasks), 6.4), squeeze=False)
    for column, task in enumerate(tasks):
        for row_index, (key, xlabel) in enumerate((("klr", "k·lr (degree × lr)"), ("lr", "lr"))):
            ax = axes[row_index][column]
            by_degree: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
            for r in usable:
                if r["task"] == task:
                    by_degree[(r["degree"], r["pooler"])].append((r[key], r["best"]))
            for index, ((degree, pooler), points) in enumerate(sorted(by_degree.items(),
                                                                      key=lambda kv: (POOLERS.index(kv[0][1]),
                                                                                      kv[0][0]))):
                points.sort()
                style = {"marker": "o", "linestyle": "-"} if pooler == POOLERS[0] else {"marker": "x",
                                                                                        "linestyle": "none"}
                ax.plot([x for x, _ in points], [y for _, y in points], color=f"C{index}",
                        label=f"k={degree}" + (", pooler random" if pooler == POOLERS[1] else ""), **style)
            ax.set_xscale("log")
            if key == "klr":  # the grid's own k·lr values as ticks (its lrs nearly coincide across degrees)
                ticks = sorted({x for points in by_degree.values() for x, _ in points})
                ax.set_xticks(ticks, [f"{x:.2g}" for x in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
            ax.set_xlabel(xlabel)
            ax.set_title(task)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, frameon=False)
        axes[0][column].set_ylabel("select-half best (×100)")
        axes[1][column].set_ylabel("select-half best (×100)")
    fig.tight_layout()
    study_figures.save(fig, path)
    return True


def render(pilot: PilotDeclaration, runs_dir: str | Path | None = None, out: str | Path | None = None) -> None:
    """table.md, learning_curves.png and degree_as_lr.png into the pilot's folder (figures only with records)."""
    runs_dir, out = Path(runs_dir or pilot.runs), Path(out or pilot.out)
    loaded, skipped = records.load_records(runs_dir) if runs_dir.is_dir() else ([], [])
    from propulsion.reports.study import skip_line  # the study's own short form of a skipped record

    runs = [r for r in loaded if r.get("family") not in records.STUDY_FAMILIES]
    text, found = table(pilot, runs, [skip_line(s) for s in skipped])
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    panels = {task: {_label(r): [r["record"]] for r in found if r["task"] == task}
              for task in sorted({r["task"] for r in found})}
    curves = study_figures.learning_curves(panels, out / "learning_curves.png", "select-half dev metric (×100)")
    degree = degree_figure(found, out / "degree_as_lr.png")
    print(f"pilot: {len(runs)} completed records, {len(skipped)} skipped: {out / 'table.md'}"
          + ("" if curves or degree else " (no figures: no records)"))
