"""The paper's figures from run records (matplotlib, Agg): PNG + PDF with fixed metadata, so reruns are identical.

A figure with no matching records is skipped (and named in the aggregate's summary), never an error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from propulsion import records  # noqa: E402


def main_value(record: dict[str, Any]) -> float | None:
    metrics, key = record.get("metrics") or {}, record.get("main_metric")
    value = metrics.get(key, metrics.get(str(key).split("/")[-1]))
    if value is None:
        return None
    return 100.0 * value if record.get("family") == "glue" else float(value)


def _save(fig, folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=120, metadata={"Software": None})
    fig.savefig(folder / f"{name}.pdf", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    plt.close(fig)
    return name


def _sweep(runs, folder: Path, name: str, x_of, tasks, xlabel: str, title: str, categorical: bool = False):
    """Main metric (mean over seeds) against one config value, a line per task."""
    points: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in runs:
        x, y = x_of(record), main_value(record)
        if record.get("task") in tasks and x is not None and y is not None:
            points[record["task"]][x].append(y)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    order = sorted({x for by_x in points.values() for x in by_x}, key=str if categorical else float)
    for task in sorted(points):
        xs = [x for x in order if x in points[task]]
        ys = [sum(points[task][x]) / len(points[task][x]) for x in xs]
        ax.plot([order.index(x) for x in xs] if categorical else xs, ys, marker="o", label=task)
    if categorical:
        ax.set_xticks(range(len(order)), [str(x) for x in order])
    ax.set(xlabel=xlabel, ylabel="main metric (%)", title=title)
    ax.legend()
    return _save(fig, folder, name)


def _method(record, key):
    return ((record.get("config") or {}).get("method") or {}).get(key) if record.get("method") == "propulsion" else None


def _curves(runs, folder: Path, name: str, label_of, title: str):
    """Dev main metric against training step, a line per label (degree, method)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    drawn = 0
    for record in sorted(runs, key=lambda r: (str(label_of(r)), r.get("seed", 0), r.get("_path", ""))):
        label = label_of(record)
        if label is None or not record.get("evaluations"):
            continue
        scale = 100.0 if record.get("family") == "glue" else 1.0
        key = record.get("main_metric")
        steps = [e["step"] for e in record["evaluations"]]
        values = [scale * e["metrics"].get(key, e["metrics"].get(str(key).split("/")[-1], float("nan")))
                  for e in record["evaluations"]]
        ax.plot(steps, values, label=f"{label} (seed {record.get('seed')})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="training step", ylabel="dev main metric (%)", title=title)
    ax.legend(fontsize=7)
    return _save(fig, folder, name)


def _bars(folder: Path, name: str, labels: list[str], values: list[float], ylabel: str, title: str):
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(range(len(labels)), values)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set(ylabel=ylabel, title=title)
    return _save(fig, folder, name)


def load_bench(root: str | Path) -> list[dict[str, Any]]:
    """Rows of the newest benchmark record under root (``make bench``), if any."""
    found = []
    for path in records.find_records(root):
        try:
            record = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("family") == "bench" and record.get("status") == "completed":
            found.append((record.get("finished_at") or "", record.get("bench") or []))
    return max(found, key=lambda item: item[0])[1] if found else []


def make_all(runs: list[dict[str, Any]], folder: Path, bench: list[dict[str, Any]] | None = None) -> list[str]:
    sst2 = [r for r in runs if r.get("task") == "sst2"]
    made = [
        _sweep([r for r in runs if r.get("method") == "propulsion"], folder, "fig5_degree", lambda r: r.get("degree"),
               ("sst2", "qnli", "mrpc"), "degree k", "Figure 5 (left): metric vs degree"),
        _curves([r for r in sst2 if r.get("method") == "propulsion"], folder, "fig5_steps",
                lambda r: f"k={r.get('degree')}", "Figure 5 (right): SST-2 by degree"),
        _curves(sst2, folder, "fig3_convergence", lambda r: r.get("method"), "Figure 3: convergence on SST-2"),
        _sweep(runs, folder, "fig8_init", lambda r: _method(r, "init"), ("sst2",), "initialisation",
               "Figure 8: initialisation", categorical=True),
        _sweep(runs, folder, "fig10_vectors", lambda r: _method(r, "num_vectors"),
               ("sst2", "qnli", "mrpc", "mnli", "rte"), "Propulsion vectors per layer", "Figure 10"),
        _sweep([r for r in runs if (_method(r, "num_vectors") or 1) > 1], folder, "fig11_pooling",
               lambda r: _method(r, "pooling"), ("sst2", "mrpc", "mnli", "qnli", "rte"), "pooling", "Figure 11",
               categorical=True),
    ]
    by_method = {}
    for record in sorted(sst2, key=lambda r: r.get("_path", "")):
        by_method.setdefault(record.get("method"), record)
    labels = sorted(by_method)
    made.append(_bars(folder, "fig3_params", labels, [by_method[m]["params"]["percent"] for m in labels],
                      "trainable parameters (%)", "Figure 3 (right): parameters"))
    steps = [max(1, (by_method[m].get("train") or {}).get("steps", 1)) for m in labels]
    made.append(_bars(folder, "fig3_time_per_step", labels,
                      [by_method[m]["wall_time_s"] / s for m, s in zip(labels, steps, strict=True)], "seconds per step",
                      "Figure 3 (right): time per iteration"))
    if bench:
        rows = sorted(bench, key=lambda row: str(row.get("method")))
        made.append(_bars(folder, "fig4_memory", [str(r["method"]) for r in rows],
                          [r.get("peak_memory_bytes", 0) / 2**30 for r in rows], "peak memory (GiB)",
                          "Figure 4: memory per method (make bench)"))
    return [name for name in made if name]
