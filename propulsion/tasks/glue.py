"""GLUE: sequence classification (and STS-B regression) on nyu-mll/glue or local files."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from propulsion import metrics
from propulsion.specs import TaskSpec
from propulsion.tasks import samples

MODEL_KIND = "sequence-classification"


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
    """Predictions over the whole split (gathered across processes), then the official GLUE metric."""
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
    return metrics.glue_metrics(task.name, np.concatenate(predictions), np.concatenate(references))
