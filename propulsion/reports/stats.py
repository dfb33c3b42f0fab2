"""Paired statistics for a study's comparisons of a method against a baseline (issue 25, "Statistics a referee
accepts"): plain numbers in, rows of ``stats.csv`` out. numpy and scipy only.

For one (task, metric, method vs baseline), in the tables' units (GLUE metrics ×100):
- Paired per-seed differences, method − baseline, seeds matched by seed number; a seed only one side has is dropped
  and counted (``paired_differences``).
- Their mean and 95% Student-t interval, n − 1 degrees of freedom (``t_interval``); one seed gives no interval.
- A hierarchical bootstrap of the mean difference (``hierarchical_bootstrap``): seeds resampled with replacement,
  then the held-out examples with replacement within each resampled seed (the same examples for method and
  baseline: they were scored on the same set), the metric recomputed from the resampled examples' predictions
  (accuracy, Pearson: never an average of per-example values), percentile interval. A fixed
  ``numpy.random.Generator`` seed makes it byte-identical from run to run.
- Equivalence: two one-sided t-tests (TOST) on the paired differences against the margin ±δ (``tost``), with the
  Holm–Bonferroni step-down across the family of one study's tests (``holm``).
- A verdict (``verdict``): ``equivalent`` when the Holm-corrected TOST p < alpha; else ``better`` / ``worse`` when the
  t-interval excludes 0 above / below (every metric here is higher-is-better); else ``inconclusive``.

The margins, alpha and the bootstrap's settings are data (``Equivalence``), fixed before the runs and carried by the
study's declaration; no function here holds a margin of its own.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from propulsion import records
from propulsion.reports import selection
from propulsion.specs import UserError

VERDICTS = ("equivalent", "better", "worse", "inconclusive")
COLUMNS = ("task", "metric", "method", "baseline", "seeds", "mean_diff", "ci_low", "ci_high", "verdict")
EXTRA_COLUMNS = ("seeds_dropped", "margin", "boot_low", "boot_high", "p_tost", "p_holm", "note")
VALUE_DIGITS = 2  # differences and intervals, in the tables' ×100 units: as the tables print
P_DIGITS = 4


# --------------------------------------------------------------------------------------------------------
# The study's settings
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalence:
    """What a study fixes before its runs: the equivalence margins and the tests' settings.

    ``margins``: (task, metric, δ) with δ in the tables' units (×100). Issue 25's defaults: MRPC accuracy ±2.0 and
    STS-B Pearson ±1.5. ``alpha``: the TOST level after Holm's correction (0.05). ``confidence``: the t- and
    bootstrap intervals' level (0.95). ``resamples`` and ``bootstrap_seed``: the hierarchical bootstrap's number of
    resamples and its ``numpy.random.default_rng`` seed. A study YAML carries the same as
    ``equivalence: {margins: {mrpc: {accuracy: 2.0}, stsb: {pearson: 1.5}}, alpha: 0.05}`` (``from_mapping``).
    """
    margins: tuple[tuple[str, str, float], ...] = (("mrpc", "accuracy", 2.0), ("stsb", "pearson", 1.5))
    alpha: float = 0.05
    confidence: float = 0.95
    resamples: int = 2000
    bootstrap_seed: int = 0

    def margin(self, task: str, metric: str) -> float:
        """δ for (task, metric); a pair the study fixed no margin for is a mistake in its declaration."""
        for name, key, delta in self.margins:
            if (name, key) == (task, metric):
                return float(delta)
        known = ", ".join(f"{name}/{key}" for name, key, _ in self.margins) or "none"
        raise UserError(f"no equivalence margin for {task}/{metric}; margins are fixed for: {known}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Equivalence:
        """The settings from a study YAML's ``equivalence`` block (module docstring); keys left out keep the
        defaults. A bad key or value is one clear line (``UserError``)."""
        data = dict(data or {})
        valid = ("margins", "alpha", "confidence", "resamples", "bootstrap_seed")
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise UserError(f"unknown equivalence setting(s) {', '.join(map(str, unknown))}; "
                            f"valid choices: {', '.join(valid)}")
        settings: dict[str, Any] = {}
        if "margins" in data:
            margins = data["margins"]
            if not isinstance(margins, Mapping) or not all(isinstance(v, Mapping) for v in margins.values()):
                raise UserError(f"equivalence.margins must map task -> {{metric: margin}}; got {margins!r}")
            settings["margins"] = tuple((str(task), str(metric), _positive(f"equivalence.margins.{task}.{metric}",
                                                                           delta))
                                        for task, by_metric in sorted(margins.items())
                                        for metric, delta in sorted(by_metric.items()))
        for key in ("alpha", "confidence"):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                    raise UserError(f"equivalence.{key} must be a number in (0, 1); got {value!r}")
                settings[key] = float(value)
        for key, least in (("resamples", 1), ("bootstrap_seed", 0)):
            if key in data:
                value = data[key]
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    raise UserError(f"equivalence.{key} must be an integer >= {least}; got {value!r}")
                settings[key] = value
        return cls(**settings)


def _positive(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{what} must be a positive number (the metric's ×100 units); got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------------
# Per-seed differences, t-interval, TOST, Holm, verdict
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """method − baseline per seed both have (sorted by seed), and the seeds only one side has (dropped)."""
    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    dropped: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.differences)


def paired_differences(method: Mapping[int, float], baseline: Mapping[int, float]) -> Paired:
    """Seeds matched by seed number: {seed: score} of the method and of the baseline."""
    common = sorted(set(method) & set(baseline))
    dropped = tuple(sorted(set(method) ^ set(baseline)))
    return Paired(tuple(common), tuple(float(method[s]) - float(baseline[s]) for s in common), dropped)


@dataclass(frozen=True)
class TInterval:
    """Mean of the differences and its Student-t interval; ``low``/``high`` None with a ``note`` when n < 2."""
    n: int
    mean: float
    low: float | None
    high: float | None
    note: str = ""


def t_interval(differences: Sequence[float], confidence: float = 0.95) -> TInterval:
    """mean ± t((1 + confidence) / 2, n − 1) · s / √n, s the sample standard deviation (ddof 1)."""
    values = np.asarray(differences, dtype=float)
    if values.size == 0:
        raise ValueError("no paired seeds: no mean difference")
    mean = float(values.mean())
    if values.size == 1:
        return TInterval(1, mean, None, None, "one seed: no t-interval")
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return TInterval(int(values.size), mean, mean - half, mean + half)


@dataclass(frozen=True)
class Tost:
    """Two one-sided t-tests of H0: mean ≤ −δ (``p_lower``) and H0: mean ≥ +δ (``p_upper``); p = the larger."""
    p_lower: float
    p_upper: float

    @property
    def p(self) -> float:
        return max(self.p_lower, self.p_upper)


def tost(differences: Sequence[float], margin: float) -> Tost | None:
    """TOST on paired differences with margin ±δ (the differences' units); None with fewer than two seeds.
    Differences that do not vary (s = 0) reject each side exactly when the mean lies strictly inside it."""
    values = np.asarray(differences, dtype=float)
    if margin <= 0:
        raise ValueError(f"equivalence margin must be positive; got {margin!r}")
    if values.size < 2:
        return None
    mean, dof = float(values.mean()), values.size - 1
    se = float(values.std(ddof=1)) / math.sqrt(values.size)
    if se == 0:
        return Tost(0.0 if mean > -margin else 1.0, 0.0 if mean < margin else 1.0)
    return Tost(float(scipy_stats.t.sf((mean + margin) / se, dof)), float(scipy_stats.t.cdf((mean - margin) / se, dof)))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the input order: the i-th smallest of m is multiplied by m − i + 1
    (i from 1), made non-decreasing, capped at 1. None (no test) stays None and is not counted in m."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(tested)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * float(p)))
        adjusted[i] = running
    return adjusted


def verdict(p_holm: float | None, low: float | None, high: float | None, alpha: float = 0.05) -> str:
    """``equivalent`` (Holm-corrected TOST p < alpha), else ``better`` / ``worse`` (the t-interval excludes 0 above /
    below), else ``inconclusive`` (also: no test and no interval, one seed)."""
    if p_holm is not None and p_holm < alpha:
        return "equivalent"
    if low is not None and low > 0:
        return "better"
    if high is not None and high < 0:
        return "worse"
    return "inconclusive"


# --------------------------------------------------------------------------------------------------------
# Hierarchical bootstrap from per-example predictions
# --------------------------------------------------------------------------------------------------------


def _rows_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r of each row pair (NaN where a row is constant)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=-1) / denominator


def _rows_accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (predictions == labels).mean(axis=-1)


def _rows_spearman(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rank = scipy_stats.rankdata  # average ranks for ties, as scipy.stats.spearmanr
    return _rows_pearson(rank(predictions, axis=-1), rank(labels, axis=-1))


# metric -> f(predictions, labels) over the last axis, in [0, 1] (×100 for the tables), as tasks/metrics.py scores
ROW_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _rows_accuracy, "pearson": _rows_pearson, "spearmanr": _rows_spearman}


def row_metric(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if metric not in ROW_METRICS:
        raise UserError(f"no bootstrap for metric {metric!r}; valid choices: {', '.join(ROW_METRICS)}")
    return ROW_METRICS[metric]


@dataclass(frozen=True)
class Predictions:
    """One run's per-example predictions on one evaluated set, in index order."""
    set: str
    predictions: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Bootstrap:
    """The mean difference on the full sets, its percentile interval, and resamples whose metric was undefined
    (a constant resample's Pearson), left out of the interval."""
    point: float
    low: float | None
    high: float | None
    resamples: int
    undefined: int = 0


def hierarchical_bootstrap(method: Mapping[int, Predictions], baseline: Mapping[int, Predictions], metric: str,
                           resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                           scale: float = 100.0) -> Bootstrap:
    """The mean over seeds of metric(method) − metric(baseline), ×``scale``, resampled hierarchically: seeds with
    replacement from those both have, then each resampled seed's examples with replacement (one draw of indices
    shared by method and baseline, which were scored on the same examples). Deterministic for a given ``seed``."""
    score = row_metric(metric)
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        raise ValueError("no seed has predictions for both method and baseline")
    for s in seeds:
        a, b = method[s], baseline[s]
        if a.labels.shape != b.labels.shape or not np.array_equal(a.labels, b.labels):
            raise ValueError(f"seed {s}: method and baseline were not scored on the same examples "
                             f"(sets {a.set} and {b.set}, {a.labels.size} and {b.labels.size} labels)")

    def difference(s: int, index: np.ndarray | None) -> np.ndarray:
        a, b = method[s], baseline[s]
        if index is None:
            return score(a.predictions, a.labels) - score(b.predictions, b.labels)
        return (score(a.predictions[index], a.labels[index]) - score(b.predictions[index], b.labels[index]))

    point = scale * float(np.mean([difference(s, None) for s in seeds]))
    rng = np.random.default_rng(seed)
    k = len(seeds)
    picked = rng.integers(0, k, size=(resamples, k))  # level 1: seeds
    per_slot = np.empty((resamples, k))
    for slot in range(k):  # level 2: examples within each resampled seed; draws in a fixed order
        for position, s in enumerate(seeds):
            rows = np.flatnonzero(picked[:, slot] == position)
            if rows.size:
                n = method[s].labels.size
                per_slot[rows, slot] = difference(s, rng.integers(0, n, size=(rows.size, n)))
    means = scale * per_slot.mean(axis=1)
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return Bootstrap(point, None, None, resamples, resamples)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Bootstrap(point, float(low), float(high), resamples, int(resamples - finite.size))


def load_predictions(record: dict[str, Any], set_key: str | None = None) -> Predictions:
    """A run's ``predictions.jsonl`` beside its record (the folder of ``record["_path"]``, as
    ``records.load_records`` sets it). ``set_key``: which evaluated set (its fingerprint); None takes the file's
    only set. Classification predictions are class ids, regression ones floats (tasks/glue.py writes them)."""
    path = Path(record["_path"]).parent / records.PREDICTIONS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-example predictions beside the record")
    by_set: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_set.setdefault(str(row["set"]), []).append(row)
    if set_key is None:
        if len(by_set) != 1:
            raise ValueError(f"{path}: {len(by_set)} evaluated sets ({', '.join(sorted(by_set)) or 'none'}); "
                             f"name one")
        set_key = next(iter(by_set))
    if set_key not in by_set:
        raise ValueError(f"{path}: no set {set_key!r}; valid choices: {', '.join(sorted(by_set))}")
    rows = sorted(by_set[set_key], key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"{path}: set {set_key!r} does not hold indices 0..{len(rows) - 1} once each")
    return Predictions(set_key, np.asarray([r["prediction"] for r in rows]), np.asarray([r["label"] for r in rows]))


# --------------------------------------------------------------------------------------------------------
# From records to stats.csv
# --------------------------------------------------------------------------------------------------------


def scores_by_seed(runs: Sequence[dict[str, Any]], metric: str) -> dict[int, float]:
    """{seed: the record's metric in the tables' units} (GLUE ×100); a run without a finite value is left out.
    ``runs`` is one cell's records, one per seed (``selection.pick``/``study.cells`` choose them)."""
    out = {}
    for run in runs:
        value = records.metric_value(run.get("metrics"), metric)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        out[int(run["seed"])] = (100.0 * value if run.get("family") in selection.FRACTION_FAMILIES
                                 else float(value))
    return out


def predictions_by_seed(runs: Sequence[dict[str, Any]], set_key: str | None = None) -> dict[int, Predictions]:
    """{seed: that run's per-example predictions} for one cell's records (``load_predictions``)."""
    return {int(run["seed"]): load_predictions(run, set_key) for run in runs}


@dataclass(frozen=True)
class Comparison:
    """One (task, metric, method vs baseline): per-seed scores in the tables' units, and optionally per-seed
    predictions for the bootstrap (without them the bootstrap columns stay empty)."""
    task: str
    metric: str
    method: str
    baseline: str
    method_scores: Mapping[int, float]
    baseline_scores: Mapping[int, float]
    method_predictions: Mapping[int, Predictions] = field(default_factory=dict)
    baseline_predictions: Mapping[int, Predictions] = field(default_factory=dict)


def stats_rows(comparisons: Sequence[Comparison], settings: Equivalence = Equivalence()) -> list[dict[str, Any]]:
    """One row per comparison (``COLUMNS`` then ``EXTRA_COLUMNS``), sorted by task, metric, method, baseline. The
    comparisons are one study's family: Holm's correction runs over all of their TOST p-values at once."""
    partial = []
    for c in comparisons:
        paired = paired_differences(c.method_scores, c.baseline_scores)
        interval = t_interval(paired.differences, settings.confidence)
        margin = settings.margin(c.task, c.metric)
        test = tost(paired.differences, margin)
        boot = None
        if c.method_predictions and c.baseline_predictions:
            common = set(paired.seeds)  # the same seeds as the t-interval
            boot = hierarchical_bootstrap({s: p for s, p in c.method_predictions.items() if s in common},
                                          {s: p for s, p in c.baseline_predictions.items() if s in common},
                                          c.metric, settings.resamples, settings.bootstrap_seed, settings.confidence)
        notes = [interval.note] if interval.note else []
        if paired.dropped:
            notes.append(f"seed(s) {', '.join(map(str, paired.dropped))} unpaired, dropped")
        unpredicted = sorted(set(paired.seeds) - (set(c.method_predictions) & set(c.baseline_predictions)))
        if boot is not None and unpredicted:
            notes.append(f"bootstrap without seed(s) {', '.join(map(str, unpredicted))} (no predictions)")
        if boot is not None and boot.undefined:
            notes.append(f"{boot.undefined} bootstrap resample(s) with an undefined {c.metric}, left out")
        partial.append((c, paired, interval, margin, test, boot, "; ".join(notes)))
    adjusted = holm([test.p if test is not None else None for *_, test, _boot, _note in partial])
    rows = []
    for (c, paired, interval, margin, test, boot, note), p_holm in zip(partial, adjusted, strict=True):
        rows.append({"task": c.task, "metric": c.metric, "method": c.method, "baseline": c.baseline,
                     "seeds": paired.n, "mean_diff": interval.mean, "ci_low": interval.low, "ci_high": interval.high,
                     "verdict": verdict(p_holm, interval.low, interval.high, settings.alpha),
                     "seeds_dropped": len(paired.dropped), "margin": margin,
                     "boot_low": boot.low if boot else None, "boot_high": boot.high if boot else None,
                     "p_tost": test.p if test else None, "p_holm": p_holm, "note": note})
    return sorted(rows, key=lambda r: (r["task"], r["metric"], r["method"], r["baseline"]))


def _cell(key: str, value: Any) -> str:
    """Fixed formats: values VALUE_DIGITS decimals, p-values P_DIGITS, no "-0.00", None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.{P_DIGITS if key.startswith('p_') else VALUE_DIGITS}f}"
        return text[1:] if text.startswith("-") and float(text) == 0 else text
    return str(value)


def stats_csv(rows: Sequence[dict[str, Any]]) -> str:
    """``stats.csv``'s text: the header, then the rows sorted by task, metric, method, baseline, fixed formats."""
    columns = COLUMNS + EXTRA_COLUMNS
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in sorted(rows, key=lambda r: (r["task"], r["metric"], r["method"], r["baseline"])):
        writer.writerow([_cell(key, row.get(key)) for key in columns])
    return out.getvalue()


def write_stats_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(stats_csv(rows))
    return path
