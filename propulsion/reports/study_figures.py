"""A paired study's figures (issue 25), drawn from the records a study's table chose: score against the trainable
parameters outside the head (log x, head counts shown apart), and learning curves (the select-half dev metric
against the step). Deterministic: fixed sizes and orders, no software version in the PNG (``PNG_METADATA``)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from propulsion import records  # noqa: E402

PNG_METADATA = {"Software": None}  # no matplotlib version in the file: reruns are byte-identical
DEV = "dev"  # the split name of mid-training evaluations (training/loop.py): under protocol=heldout, the select half


def save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(fig)


def curve(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(step, main metric ×100) of the run's dev-half evaluations, in step order; non-finite values left out."""
    key = record.get("main_metric")
    points = {}
    for entry in record.get("evaluations") or []:
        if entry.get("split") != DEV:
            continue
        value = records.metric_value(entry.get("metrics"), key) if key else None
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            points[int(entry["step"])] = 100.0 * float(value)
    return sorted(points.items())


def mean_curve(runs: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """The seeds' mean at each step, over the seeds evaluated at that step."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for record in runs:
        for step, value in curve(record):
            by_step[step].append(value)
    return [(step, statistics.fmean(values)) for step, values in sorted(by_step.items())]


def learning_curves(panels: dict[str, dict[str, list[dict[str, Any]]]], path: Path, ylabel: str) -> bool:
    """One panel per title (a task), one line per label (a method's seeds, averaged; a pilot cell's one run), in
    the dicts' order. False (nothing drawn) when no run has a dev evaluation."""
    lines = {title: {label: points for label, runs in by_label.items() if (points := mean_curve(runs))}
             for title, by_label in panels.items()}
    lines = {title: found for title, found in lines.items() if found}
    if not lines:
        return False
    fig, axes = plt.subplots(1, len(lines), figsize=(4.8 * len(lines), 3.6), squeeze=False)
    for ax, (title, by_label) in zip(axes[0], lines.items(), strict=True):
        for label, points in by_label.items():
            ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False, loc="lower right")  # curves rise: the lower right is free late on
    axes[0][0].set_ylabel(ylabel)
    fig.tight_layout()
    save(fig, path)
    return True


def score_vs_outside(panels: list[tuple[str, str]], stats: dict[str, dict[str, Any]], labels: dict[str, str],
                     path: Path) -> bool:
    """Per (panel title, column header): each method's mean ± std over seeds against its trainable parameters
    outside the head (log x; the head's count in the legend). A method with none outside the head (head only) is a
    dashed horizontal line. False when no method has a count and a score."""
    drawable = {m: s for m, s in stats.items() if s.get("outside")}
    if not drawable or not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    for ax, (title, header) in zip(axes[0], panels, strict=True):
        for index, (method, s) in enumerate(drawable.items()):
            mean, std, _ = s["columns"][header]
            if mean is None:
                continue
            head = statistics.median(s["head"]) if s.get("head") else 0
            label = f"{labels.get(method, method)} (head {head:,.0f})"
            color = f"C{index}"
            outside = statistics.median(s["outside"])
            if outside <= 0:
                ax.axhline(mean, linestyle="--", color=color, label=f"{label}, none outside")
            else:
                ax.errorbar([outside], [mean], yerr=[std or 0.0], fmt="o", capsize=3, color=color, label=label)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("trainable parameters outside the head")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("score (×100, held-out dev half)")
    fig.tight_layout()
    save(fig, path)
    return True
