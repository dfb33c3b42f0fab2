"""When and how a run evaluates while it trains, and what it evaluates once at the end (``task.evaluation``).

A classification task evaluates its whole dev split at every evaluation (``during: full``) and reports the
selected evaluation itself (protocol=paper) or the selected model on the test split (protocol=heldout). A
generation task cannot afford that: XSum's 11,332 validation articles decoded with 8 beams every 100 steps would
spend most of a run's GPU time evaluating. It selects its checkpoint on a cheap signal instead, the dev loss
(``loss``) or its own evaluation with cheaper generation settings (greedy) on a fixed subset of dev rows
(``generate``), and runs its full evaluation (the paper's beams and lengths) once, on the selected model, at the
end: on the test split(s) under protocol=heldout, on the whole dev split under protocol=paper (whose dev split is
the reported one, as in the paper). The plan (:mod:`propulsion.studies.plan`) counts with these same rules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from propulsion.specs import EvaluationSpec, TaskSpec, TrainerSpec, UserError


def check(task: TaskSpec, family) -> None:
    """One line for a schedule the task's family cannot run (before a run folder exists)."""
    supported = getattr(family, "EVALUATE_DURING", ("full",))
    during = task.evaluation.during
    if during not in supported:
        raise UserError(f"task.evaluation.during={during!r} is not available for {task.name} ({task.family} family); "
                        f"valid choices: {', '.join(supported)}")


def trainer_for(trainer: TrainerSpec, schedule: EvaluationSpec) -> TrainerSpec:
    """A loss-only schedule has no metric to select on: the trainer's `metric` choice becomes the dev loss
    (``final``, no selection, stays)."""
    if schedule.during == "loss" and trainer.select_on == "metric":
        return dataclasses.replace(trainer, select_on="loss")
    return trainer


def computes_metrics(schedule: EvaluationSpec) -> bool:
    """Whether a mid-training evaluation runs the family's evaluation (else it measures the dev loss only)."""
    return schedule.during != "loss"


def rows_during(dev_rows: dict[str, int], schedule: EvaluationSpec) -> dict[str, int]:
    """Rows of each dev split that a mid-training evaluation reads."""
    return {alias: min(n, schedule.rows) if schedule.rows else n for alias, n in dev_rows.items()}


def final_split(has_test: bool, schedule: EvaluationSpec) -> str | None:
    """What is evaluated once, in full, on the reported model at the end: the test split(s) where the protocol
    has them; else the whole dev split when training evaluated something cheaper; else nothing (the selected
    evaluation is the result)."""
    if has_test:
        return "test"
    return None if schedule.during == "full" and not schedule.rows else "dev"


def subset(dataset, schedule: EvaluationSpec):
    """The fixed dev rows a mid-training evaluation reads: the first ``rows`` after a shuffle seeded by
    ``subset_seed`` (the same rows for every seed of a sweep), or the whole split."""
    if not schedule.rows or schedule.rows >= len(dataset):
        return dataset
    return dataset.shuffle(seed=schedule.subset_seed).select(range(schedule.rows))


def by_length(dataset, column: str = "input_ids"):
    """Rows ordered longest input first, so a generation batch holds inputs of similar length (padding does not
    dominate) and an out-of-memory batch shows at once. Scores are order-free; predictions keep their ids."""
    lengths = [len(ids) for ids in dataset[column]]
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return dataset.select(order)


def describe(schedule: EvaluationSpec, trainer: TrainerSpec, during_rows: dict[str, int], final: str | None,
             final_rows: dict[str, int], generation: dict[str, Any] | None, grouped: bool) -> dict[str, Any]:
    """The record's account of what was evaluated when."""
    return {
        "during": schedule.during,
        "every": trainer.eval_every,
        "dev_rows": during_rows,
        "subset_seed": schedule.subset_seed if schedule.rows else None,
        "generation_during": (dict(generation or {}) | dict(schedule.generation)) if schedule.during == "generate"
        else None,
        "selected_on": trainer.select_on,
        "final": {"split": final, "rows": final_rows, "generation": dict(generation) if generation else None}
        if final else None,
        "grouped_by_length": grouped,
    }
