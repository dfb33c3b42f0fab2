"""Task families. One module per family; tasks of a family differ by data (their YAML), not by code.

A family module provides:
    MODEL_KIND: str                                    key of models.AUTO_CLASSES
    PADDING_SIDE: str (optional, default "right")      decoder-only generation pads on the left
    EVALUATE_DURING: tuple[str, ...]                   the task.evaluation.during values it supports (full: its
                                                       evaluate on every dev row; loss: dev loss; generate: evaluate
                                                       with cheaper generation settings on a dev subset)
    GENERATES: bool (optional, default False)          evaluate generates (rows are then batched by length)
    model_overrides(task) -> dict                      config overrides for the backbone (e.g. num_labels)
    sample_splits(task, seed) -> {split: rows}         small synthetic data in the hub schema
    tokenize(task, dataset, tokenizer, train) -> dataset   model inputs for a raw split
    collator(tokenizer) -> callable                    batches for DataLoader
    evaluate(model, dataloader, task, tokenizer, accelerator, output_dir=None[, generation=None]) -> {metric: value}
                                                       output_dir: the run folder on the final test evaluation
                                                       (per-example predictions may go there), else None;
                                                       generation (GENERATES families): settings over
                                                       task.options.generation (mid-training evaluations)
    apply_protocol(task, raw, protocol, seed) -> data.Splits   (optional; default: data.apply_protocol)
    load_raw(task, sample_splits) -> DatasetDict       (optional; default: data.load_raw)
    validate(task) -> None                             (optional) raise UserError for bad options/data before a
                                                       run folder exists (reasoning: test sets, files, golds)
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILIES = {
    "glue": "propulsion.tasks.glue",
    "qa": "propulsion.tasks.qa",
    "summarization": "propulsion.tasks.summarization",
    "reasoning": "propulsion.tasks.reasoning",
}


def get_family(name: str) -> ModuleType:
    from propulsion.specs import UserError

    if name not in FAMILIES:
        raise UserError(f"unknown task family {name!r}; valid choices: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])
