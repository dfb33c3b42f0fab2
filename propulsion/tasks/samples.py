"""Small synthetic datasets in the hub's exact schemas: the offline demo and the tests.

Each generator returns {split: list of rows} with the same columns and label conventions as the hub
dataset (e.g. ``nyu-mll/glue`` sst2: sentence, label, idx). Labels depend on the text through a few
marker words, so a model can learn them and a drop in loss means something.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

FILLER = ("the movie story plot actor scene music book day night city house car dog cat tree water sun "
          "sky old new long short first last next other people world time year place").split()
# Marker words per class; a row of class c contains markers of class c.
MARKERS = [["good", "great", "love", "best"], ["bad", "awful", "hate", "worst"], ["neutral", "same", "similar"]]


def _sentence(rng: random.Random, label: int | None, length: int = 8) -> str:
    words = [rng.choice(FILLER) for _ in range(length)]
    if label is not None:
        for _ in range(2):
            words.insert(rng.randrange(len(words) + 1), rng.choice(MARKERS[label % len(MARKERS)]))
    return " ".join(words)


def glue_rows(task_name: str, text_fields: list[str], num_labels: int, n: int, seed: int,
              idx_start: int = 0, unlabeled: bool = False) -> list[dict[str, Any]]:
    """Rows shaped like nyu-mll/glue for the task (text columns, ``label``, ``idx``)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if num_labels == 1:  # STS-B: float similarity in [0, 5], more shared markers = more similar
            label = round(rng.uniform(0, 5), 2)
            cls = 0 if label >= 2.5 else 1
        else:
            cls = rng.randrange(num_labels)
            label = cls
        row: dict[str, Any] = {}
        for position, name in enumerate(text_fields):
            # The signal sits in the first text field; later fields are context.
            row[name] = _sentence(rng, cls if position == 0 else None)
        row["label"] = -1 if unlabeled else label
        row["idx"] = idx_start + i
        rows.append(row)
    return rows


def glue_splits(task_name: str, text_fields: list[str], num_labels: int, eval_splits: list[str],
                n_train: int = 256, n_eval: int = 64, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    splits = {"train": glue_rows(task_name, text_fields, num_labels, n_train, seed)}
    for offset, split in enumerate(eval_splits, start=1):
        splits[split] = glue_rows(task_name, text_fields, num_labels, n_eval, seed + 1000 * offset)
    return splits


def write_jsonl(rows: list[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def write_splits(splits: dict[str, list[dict[str, Any]]], folder: str | Path) -> dict[str, str]:
    """Write each split as JSON lines; returns the ``task.data_files`` mapping for them."""
    return {split: str(write_jsonl(rows, Path(folder) / f"{split}.jsonl")) for split, rows in splits.items()}
