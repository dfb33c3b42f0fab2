"""Abstractive summarization: XSum (EdinburghNLP/xsum) and CNN/DailyMail (abisee/cnn_dailymail 3.0.0).

A sequence-to-sequence model reads ``text_fields[0]`` (document / article, truncated to ``task.max_length``
tokens) and is trained on ``label_field`` (summary / highlights, truncated to
``options.max_target_length``). Evaluation generates with ``options.generation`` (beams, n-gram blocking,
early stopping, length: passed verbatim to ``generate``), in batches of ``trainer.eval_batch_size`` with a
progress bar on the main process, and scores ROUGE-1/2/L/Lsum F-measure x100 (propulsion.tasks.metrics).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq

from propulsion import records
from propulsion.specs import TaskSpec, UserError
from propulsion.tasks import data, metrics

MODEL_KIND = "seq2seq"
GENERATES = True  # evaluation generates: its rows are batched by length (task.evaluation.group_by_length)
EVALUATE_DURING = ("full", "loss", "generate")
# Columns of evaluation rows that are not model inputs: read by evaluate, dropped by the collator.
EVAL_COLUMNS = ("example_id", "reference")
OPTION_KEYS = ("max_target_length", "generation")


def _options(task: TaskSpec) -> dict[str, Any]:
    unknown = sorted(set(task.options) - set(OPTION_KEYS))
    if unknown:
        raise UserError(f"unknown task.options {unknown} for summarization; valid: {', '.join(OPTION_KEYS)}")
    if "max_target_length" not in task.options:
        raise UserError("summarization needs task.options.max_target_length (summary tokens)")
    return {"generation": {}, **task.options}


def _columns(task: TaskSpec) -> tuple[str, str]:
    """(source, target) columns: text_fields = [document column], label_field = summary column."""
    if len(task.text_fields) != 1:
        raise UserError(f"task.text_fields must name the one document column, got {task.text_fields!r}")
    return task.text_fields[0], task.label_field


def validate(task: TaskSpec, read_data: bool = True) -> None:
    """The task's columns, in each local split's first rows, before a run folder exists."""
    source, target = _columns(task)
    if read_data:
        data.check_files(task, {source: "task.text_fields", target: "task.label_field"})


def model_overrides(task: TaskSpec) -> dict[str, Any]:
    return {}  # generation settings go to generate(), not into the model config


# --------------------------------------------------------------------------------------------------------
# Sample data in the hub schema
# --------------------------------------------------------------------------------------------------------

_SUBJECTS = "police officials government minister president company team people".split()
_FACTS = ("the price of the {obj} is {n} dollars", "the {obj} is in {place}", "{n} people saw the {obj}",
          "the {obj} was sold for {n} dollars")
_OBJECTS = "apple car house book ball dog cat tree".split()
_PLACES = "paris london france england school market city country".split()
_FILLER = ("the sun is hot", "the sky is blue", "people said it was a good day", "the team played a game",
           "the old man walked to the market", "many students read books", "it was a long night")


def _fact(rng: random.Random) -> str:
    return rng.choice(_FACTS).format(obj=rng.choice(_OBJECTS), place=rng.choice(_PLACES), n=rng.randrange(2, 100))


def summarization_rows(n: int, seed: int, source: str, target: str, highlights: int) -> list[dict[str, Any]]:
    """Rows shaped like EdinburghNLP/xsum (document, summary, id: digits) when ``highlights`` == 1, or like
    abisee/cnn_dailymail (article, highlights joined by newlines, id: 40 hex digits) otherwise. The summary
    restates the document's reported facts, so a model can learn to copy them."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        facts = [_fact(rng) for _ in range(highlights)]
        sentences = [rng.choice(_FILLER) for _ in range(rng.randrange(3, 7))]
        for fact in facts:
            sentences.insert(rng.randrange(len(sentences) + 1), f"{rng.choice(_SUBJECTS)} said {fact}")
        if highlights == 1:
            row_id = str(rng.randrange(10_000_000, 40_000_000))  # XSum ids are BBC article numbers
        else:
            row_id = "".join(rng.choice("0123456789abcdef") for _ in range(40))  # CNN/DM: SHA-1 of the URL
        rows.append({source: " . ".join(sentences) + " .", target: "\n".join(f"{f} ." for f in facts), "id": row_id})
    return rows


def sample_splits(task: TaskSpec, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    source, target = _columns(task)
    highlights = 1 if target == "summary" else 3  # XSum: one sentence; CNN/DM: several highlights
    splits = {task.train_split: summarization_rows(64, seed, source, target, highlights)}
    for offset, split in enumerate(task.eval_splits.values(), start=1):
        splits[split] = summarization_rows(16, seed + 1000 * offset, source, target, highlights)
    return splits


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------


def tokenize(task: TaskSpec, dataset, tokenizer, train: bool = True):
    """input_ids / attention_mask / labels; evaluation rows also keep the id and the reference summary."""
    options = _options(task)
    source, target = _columns(task)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch[source], max_length=task.max_length, truncation=True)
        encoded["labels"] = tokenizer(text_target=batch[target], max_length=options["max_target_length"],
                                      truncation=True)["input_ids"]
        if not train:
            encoded["example_id"] = [str(x) for x in batch["id"]]
            encoded["reference"] = list(batch[target])
        return encoded

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {task.name}")


class _Collator:
    """Pads inputs with the pad id and labels with -100 (ignored by the loss); drops EVAL_COLUMNS."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.pad([{k: v for k, v in f.items() if k not in EVAL_COLUMNS} for f in features])


def collator(tokenizer):
    return _Collator(tokenizer)


# --------------------------------------------------------------------------------------------------------
# Generation and scoring
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_summaries(model, dataloader, tokenizer, accelerator, generation: dict[str, Any]) -> list[str]:
    """Decoded generations for every row of the loader, in dataset order (gathered across processes)."""
    generator = accelerator.unwrap_model(model)  # a PeftModel / plain model: both have .generate
    generator.eval()
    texts: list[str] = []
    for batch in tqdm(dataloader, desc="generate", disable=not accelerator.is_local_main_process, leave=False):
        output = generator.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    **generation)
        # Generations differ in length across processes: pad to one length before gathering.
        output = accelerator.pad_across_processes(output, dim=1, pad_index=tokenizer.pad_token_id)
        output = accelerator.gather_for_metrics(output)
        texts.extend(text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True))
    return texts


def evaluate(model, dataloader, task: TaskSpec, tokenizer, accelerator, output_dir=None,
             generation: dict[str, Any] | None = None) -> dict[str, float]:
    """Generate a summary per row and score ROUGE-1/2/L/Lsum (x100) against the reference summaries.
    ``generation`` replaces some of ``options.generation`` (mid-training evaluations: task.evaluation.generation)."""
    options = _options(task)
    settings = dict(options["generation"]) | dict(generation or {})
    predictions = generate_summaries(model, dataloader, tokenizer, accelerator, settings)
    rows = dataloader.dataset.select_columns(list(EVAL_COLUMNS)).to_list()
    if len(rows) != len(predictions):
        raise RuntimeError(f"{len(predictions)} generations for {len(rows)} rows: order lost in gathering")
    references = [row["reference"] for row in rows]
    if output_dir is not None:
        with open(Path(output_dir) / records.PREDICTIONS_NAME, "w") as handle:
            for row, prediction in zip(rows, predictions, strict=True):
                handle.write(json.dumps({"id": row["example_id"], "prediction": prediction,
                                         "reference": row["reference"]}) + "\n")
    return metrics.rouge_metrics(predictions, references)
