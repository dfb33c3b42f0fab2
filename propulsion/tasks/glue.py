"""GLUE: sequence classification (and STS-B regression) on nyu-mll/glue or local files.

Every GLUE task is data: conf/_glue_task.yaml holds what they share, conf/task/<name>.yaml what differs, the
metrics it reports (task.metrics) included. Nothing here depends on the task's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from propulsion import records
from propulsion.specs import TaskSpec, UserError
from propulsion.tasks import data, metrics, samples

# Mid-training evaluations a task may ask for (task.evaluation.during): dev rows carry labels, so loss works.
EVALUATE_DURING = ("full", "loss")
MODEL_KIND = "sequence-classification"


def validate(task: TaskSpec, read_data: bool = True) -> None:
    """The task's metrics exist and fit its labels, and local data files have the task's columns and label type;
    raised before anything is loaded or written (``read_data=False``: the configs only)."""
    if not task.metrics:
        raise UserError(f"task {task.name!r} lists no metrics; set task.metrics to some of: "
                        f"{', '.join(metrics.CLASSIFICATION_METRICS)}")
    unknown = [name for name in task.metrics if name not in metrics.CLASSIFICATION_METRICS]
    if unknown:
        raise UserError(f"unknown task.metrics {unknown}; valid choices: {', '.join(metrics.CLASSIFICATION_METRICS)}")
    # Correlations read regression scores, the others class ids; binary F1 needs exactly two classes.
    fitting = [name for name in metrics.CLASSIFICATION_METRICS
               if (name in metrics.REGRESSION_METRICS) == task.is_regression and (name != "f1" or task.num_labels == 2)]
    wrong = [name for name in task.metrics if name not in fitting]
    if wrong:
        kind = "a regression task (num_labels 1)" if task.is_regression else f"{task.num_labels} classes"
        raise UserError(f"task.metrics {wrong} do not fit {kind}; valid choices: {', '.join(fitting)}")
    if read_data:  # local files: each split's text and label columns, labels of the task's kind
        columns = {name: "task.text_fields" for name in task.text_fields} | {task.label_field: "task.label_field"}
        data.check_files(task, columns, label="number" if task.is_regression else "class")


def model_overrides(task: TaskSpec) -> dict[str, Any]:
    overrides: dict[str, Any] = {"num_labels": task.num_labels}
    if task.is_regression:
        overrides["problem_type"] = "regression"  # MSE loss on one output (STS-B)
    return overrides


def sample_splits(task: TaskSpec, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    return samples.glue_splits(task.name, task.text_fields, task.num_labels,
                               [task.train_split, *task.eval_splits.values()][1:], seed=seed)


def tokenize(task: TaskSpec, dataset, tokenizer, train: bool = True):
    """input_ids / attention_mask / labels; the text columns and idx are dropped (same for every split)."""
    fields = task.text_fields

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[name] for name in fields]
        encoded = tokenizer(*texts, truncation=True, max_length=task.max_length)
        labels = batch[task.label_field]
        encoded["labels"] = [float(x) for x in labels] if task.is_regression else [int(x) for x in labels]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {task.name}")


def collator(tokenizer):
    return DataCollatorWithPadding(tokenizer)


@torch.no_grad()
def evaluate(model, dataloader, task: TaskSpec, tokenizer, accelerator, output_dir=None) -> dict[str, float]:
    """Predictions over the whole split (gathered across processes), then the task's metrics (task.metrics)."""
    model.eval()
    predictions, references = [], []
    for batch in dataloader:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        if task.is_regression:
            predictions.append(logits.squeeze(-1).float().cpu().numpy())
        else:
            predictions.append(logits.argmax(-1).cpu().numpy())
        references.append(labels.cpu().numpy())
    predicted, gold = np.concatenate(predictions), np.concatenate(references)
    if output_dir is not None:  # the final evaluation: per-example predictions beside the record (paired statistics)
        # the set's fingerprint (datasets hashes its data and transforms) keys its block: a rerun replaces it
        key = str(getattr(dataloader.dataset, "_fingerprint", "eval"))
        _write_predictions(Path(output_dir) / PREDICTIONS, key, predicted, gold, task.is_regression)
    return metrics.score_predictions(task.metrics, predicted, gold)


PREDICTIONS = records.PREDICTIONS_NAME


def _write_predictions(path: Path, key: str, predicted: np.ndarray, gold: np.ndarray, regression: bool) -> None:
    """One line per example of the evaluated set, in its order: set, index, prediction, label. Several evaluation
    sets (MNLI matched / mismatched) keep a block each; a set evaluated again (a resumed run) replaces its block."""
    cast = float if regression else int
    kept = [line for line in (path.read_text().splitlines() if path.exists() else [])
            if line and json.loads(line)["set"] != key]
    lines = [json.dumps({"set": key, "index": i, "prediction": cast(p), "label": cast(g)})
             for i, (p, g) in enumerate(zip(predicted, gold, strict=True))]
    path.write_text("".join(f"{line}\n" for line in kept + lines))
