"""Which evaluation's model is reported: the best by the task's metric; or the best by dev loss (lower is better),
as the Hugging Face Trainer's ``load_best_model_at_end`` does when no metric is named (the authors' GLUE
notebooks); or the last one (``final``: the authors' SST-2 notebook saves no checkpoint before the end, so nothing
is selected)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from propulsion.records import metric_value
from propulsion.specs import SELECT_ON


@dataclass(frozen=True)
class Selection:
    on: str                      # "metric" | "loss" | "final"
    main_metric: str
    greater_is_better: bool = True  # for the metric; a loss is always lower-is-better

    def __post_init__(self) -> None:
        if self.on not in SELECT_ON:
            raise ValueError(f"unknown trainer.select_on {self.on!r}; valid choices: {', '.join(SELECT_ON)}")

    @property
    def label(self) -> str:
        """What the progress bar shows the value as."""
        return "dev_loss" if self.on == "loss" else self.main_metric

    def value(self, metrics: dict[str, float], loss: float | None) -> float:
        """The number an evaluation is judged by."""
        if self.on == "loss":
            return math.nan if loss is None else loss
        value = metric_value(metrics, self.main_metric)
        return math.nan if value is None else value

    def is_better(self, value: float, best: dict[str, Any] | None) -> bool:
        if self.on == "final":  # each evaluation replaces the one before: the last is reported
            return True
        # A non-finite score (STS-B's Pearson of constant predictions is NaN) never becomes the best; a NaN best
        # would stay best forever, since nothing compares greater than NaN.
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        higher = self.greater_is_better and self.on == "metric"
        return value > best["value"] if higher else value < best["value"]
