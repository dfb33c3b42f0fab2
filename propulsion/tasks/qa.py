"""Extractive question answering: SQuAD v1.1 and v2.0 (rajpurkar/squad, rajpurkar/squad_v2) or local files.

Rows have the hub schema: id, title, context, question, answers {text: [...], answer_start: [...]}
(v2.0 marks an unanswerable question with empty lists). One example becomes one or more *features*:
windows of ``task.max_length`` tokens, question first, the context cut with ``only_second`` truncation
and consecutive windows overlapping by ``options.doc_stride`` tokens (the fast tokenizer's overflow).

Training features carry start/end token labels (the CLS index when the answer is missing or not wholly
inside the window). Evaluation features keep what post-processing needs (example id, character offsets
of the context tokens, the CLS index, the context and the gold texts); the collator drops those columns
and :func:`evaluate` reads them back from ``dataloader.dataset``, whose row order the gathered logits keep.

Post-processing (:func:`postprocess`) scores every window of an example: the ``n_best`` highest start
and end logits are paired, spans outside the context, reversed, or longer than ``max_answer_length``
tokens are dropped, and the span with the highest start + end logit over all windows wins. With
``version_2_with_negative`` the null score is start + end logit at CLS, its minimum over the windows;
the prediction is "" when null score - best span score > ``null_score_diff_threshold``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding

from propulsion import records
from propulsion.specs import TaskSpec, UserError
from propulsion.tasks import data, metrics

# Evaluation features carry no answer positions, so there is no dev loss: every evaluation is the whole one.
EVALUATE_DURING = ("full",)
MODEL_KIND = "question-answering"
# Columns of evaluation features that are not model inputs: read by post-processing, dropped by the collator.
EVAL_COLUMNS = ("example_id", "offset_mapping", "cls_index", "context", "gold_answers")
PAD_LOGIT = -1e4  # pads logits across processes; never the best span, never the CLS null score


@dataclass(frozen=True)
class QAOptions:
    """The family's settings (``task.options``); defaults are the reference setup (reference.md)."""

    doc_stride: int = 128  # tokens shared by consecutive windows of a long context
    n_best: int = 20  # start and end candidates per window
    max_answer_length: int = 30  # longest answer span, in tokens
    version_2_with_negative: bool = False  # SQuAD v2.0: unanswerable questions, null answers
    null_score_diff_threshold: float = 0.0  # v2.0: predict "" when null - best span score exceeds it

    @classmethod
    def from_task(cls, task: TaskSpec) -> QAOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(task.options) - known)
        if unknown:
            raise UserError(f"unknown task.options {unknown} for question answering; valid: {', '.join(sorted(known))}")
        options = cls(**task.options)
        for name in ("doc_stride", "n_best", "max_answer_length"):
            if int(getattr(options, name)) < 1:
                raise UserError(f"task.options.{name} must be >= 1, got {getattr(options, name)!r}")
        return options


def _columns(task: TaskSpec) -> tuple[str, str, str]:
    """(question, context, answers) column names: text_fields = [question, context], label_field = answers."""
    if len(task.text_fields) != 2:
        raise UserError(f"task.text_fields must name the question and context columns, got {task.text_fields!r}")
    return task.text_fields[0], task.text_fields[1], task.label_field


def validate(task: TaskSpec, read_data: bool = True) -> None:
    """The task's columns, in each local split's first rows, before a run folder exists."""
    question, context, answers = _columns(task)
    if read_data:
        data.check_files(task, {question: "task.text_fields", context: "task.text_fields", answers: "task.label_field"})


def model_overrides(task: TaskSpec) -> dict[str, Any]:
    return {}  # the QA head (start, end logits) needs no configuration


# --------------------------------------------------------------------------------------------------------
# Sample data in the hub schema
# --------------------------------------------------------------------------------------------------------

_OBJECTS = "apple ball book pen car dog cat house tree coin".split()
_PLACES = "paris london france england school market river mountain city country".split()
_FILLER = ("the sun is hot", "the sky is blue", "people said it was a good day", "the team played a game",
           "the river is long", "the old man walked to the market", "many students read books")


def _hex_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(24))  # SQuAD ids: 24 hex digits


def squad_rows(n_contexts: int, seed: int, with_unanswerable: bool, annotators: int) -> list[dict[str, Any]]:
    """Rows shaped like rajpurkar/squad(_v2): several questions per context, ``annotators`` answers each
    (train 1, validation 3, with a shorter variant among them); v2.0 adds questions about objects the
    context never mentions, with empty answer lists."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n_contexts):
        present = rng.sample(_OBJECTS, 4)
        title = rng.choice(_PLACES).capitalize()
        context, facts = "", []
        for obj in present:
            context += rng.choice(_FILLER) + " . "
            if rng.random() < 0.5:
                number = rng.randrange(2, 100)
                sentence = f"the price of the {obj} is {number} dollars"
                answer, short = f"{number} dollars", str(number)
                question = f"what is the price of the {obj} ?"
            else:
                place = rng.choice(_PLACES)
                sentence = f"the {obj} is in {place}"
                answer, short = place, f"in {place}"
                question = f"where is the {obj} ?"
            start = len(context) + sentence.index(answer)
            short_start = len(context) + sentence.index(short)
            context += sentence + " . "
            facts.append((question, [(answer, start), (short, short_start), (answer, start)][:annotators]))
        context = context.strip()
        if with_unanswerable:
            absent = rng.choice([o for o in _OBJECTS if o not in present])
            facts.append((f"what is the price of the {absent} ?", []))
        for question, answers in facts:
            rows.append({"id": _hex_id(rng), "title": title, "context": context, "question": question,
                         "answers": {"text": [a for a, _ in answers], "answer_start": [s for _, s in answers]}})
    return rows


def sample_splits(task: TaskSpec, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    v2 = QAOptions.from_task(task).version_2_with_negative
    splits = {task.train_split: squad_rows(24, seed, v2, annotators=1)}
    for offset, split in enumerate(task.eval_splits.values(), start=1):
        splits[split] = squad_rows(8, seed + 1000 * offset, v2, annotators=3)
    return splits


# --------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------


def _check_window_room(tokenizer, questions: list[str], max_length: int, stride: int) -> None:
    """The fast tokenizer panics when a window has no room beyond the stride: say so in one line instead."""
    longest = max((len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]), default=0)
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= stride:
        raise UserError(
            f"task.options.doc_stride={stride} leaves no room: task.max_length={max_length} minus the longest "
            f"question ({longest} tokens) and the special tokens gives {room} context tokens per window; "
            f"raise task.max_length or lower task.options.doc_stride"
        )


def _span_labels(offsets, sequence_ids, cls_index: int, answers: Mapping[str, Sequence]) -> tuple[int, int]:
    """Token start/end of the first gold answer inside this window, or (cls, cls) when it is not wholly in."""
    if not answers["text"]:
        return cls_index, cls_index
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def tokenize(task: TaskSpec, dataset, tokenizer, train: bool = True):
    """Windows of each example; training features get start/end positions, evaluation features the
    columns of EVAL_COLUMNS (offsets of non-context tokens set to None)."""
    options = QAOptions.from_task(task)
    question_col, context_col, answers_col = _columns(task)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        questions = [q.lstrip() for q in batch[question_col]]  # some SQuAD questions start with spaces
        _check_window_room(tokenizer, questions, task.max_length, options.doc_stride)
        encoded = tokenizer(
            questions, batch[context_col], truncation="only_second", max_length=task.max_length,
            stride=options.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        )
        owners = encoded.pop("overflow_to_sample_mapping")
        offsets = encoded.pop("offset_mapping")
        added = ("start_positions", "end_positions") if train else EVAL_COLUMNS
        extra: dict[str, list] = {name: [] for name in added}
        for i, owner in enumerate(owners):
            ids = encoded["input_ids"][i]
            cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            sequence_ids = encoded.sequence_ids(i)
            if train:
                start, end = _span_labels(offsets[i], sequence_ids, cls_index, batch[answers_col][owner])
                extra["start_positions"].append(start)
                extra["end_positions"].append(end)
            else:
                extra["example_id"].append(batch["id"][owner])
                extra["offset_mapping"].append(
                    [list(o) if s == 1 else None for o, s in zip(offsets[i], sequence_ids, strict=True)])
                extra["cls_index"].append(cls_index)
                extra["context"].append(batch[context_col][owner])
                extra["gold_answers"].append(list(batch[answers_col][owner]["text"]))
        return {**encoded, **extra}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {task.name}")


class _Collator:
    """Pads model inputs; drops the post-processing columns of evaluation features. A class: picklable."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.pad([{k: v for k, v in f.items() if k not in EVAL_COLUMNS} for f in features])


def collator(tokenizer):
    return _Collator(tokenizer)


# --------------------------------------------------------------------------------------------------------
# Post-processing and scoring
# --------------------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    text: str  # the answer reported ("" = no answer under v2.0)
    best_span: str  # the best non-null span ("" when no valid span exists)
    best_score: float  # its start + end logit (-inf when none)
    null_score: float  # min over windows of start + end logit at CLS
    null_diff: float  # null_score - best_score: the v2.0 no-answer score


def postprocess(features: Sequence[Mapping[str, Any]], start_logits: Sequence[np.ndarray],
                end_logits: Sequence[np.ndarray], options: QAOptions) -> dict[str, Prediction]:
    """One prediction per example id (first-seen order), from the logits of all its features.

    ``features[i]`` has example_id, offset_mapping (per token [start, end] characters, None outside the
    context), cls_index and context; ``start_logits[i]`` / ``end_logits[i]`` may be longer than its
    offsets (padding), the extra positions are never candidates.
    """
    grouped: dict[str, list[int]] = {}
    for i, feature in enumerate(features):
        grouped.setdefault(feature["example_id"], []).append(i)
    predictions = {}
    for example_id, indices in grouped.items():
        best_score, best_span, null_score = -math.inf, "", math.inf
        for i in indices:
            offsets, context = features[i]["offset_mapping"], features[i]["context"]
            starts, ends = np.asarray(start_logits[i]), np.asarray(end_logits[i])
            cls = features[i]["cls_index"]
            null_score = min(null_score, float(starts[cls] + ends[cls]))
            top_starts = np.argsort(starts)[::-1][: options.n_best]
            top_ends = np.argsort(ends)[::-1][: options.n_best]
            for s in top_starts:
                for e in top_ends:
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue  # padding, question or special token
                    if e < s or e - s + 1 > options.max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        # strip: some sentencepiece tokenizers' offsets include the space before a word
                        best_score, best_span = score, context[offsets[s][0]: offsets[e][1]].strip()
        null_diff = null_score - best_score  # +inf when no valid span: the null answer
        text = best_span
        if options.version_2_with_negative and null_diff > options.null_score_diff_threshold:
            text = ""
        predictions[example_id] = Prediction(text, best_span, best_score, null_score, null_diff)
    return predictions


def score(predictions: Mapping[str, Prediction], references: Mapping[str, Sequence[str]],
          options: QAOptions) -> dict[str, float]:
    """Official SQuAD scores: exact_match and f1 (x100); v2.0 adds HasAns_*/NoAns_* and best_* (the
    official threshold search over null_diff, with the best non-null span as the answer: its thresholds
    are in logit units)."""
    final = {qid: p.text for qid, p in predictions.items()}
    if not options.version_2_with_negative:
        return metrics.squad_metrics(final, references)
    scores = metrics.squad_v2_metrics(final, references)
    scores["exact_match"] = scores.pop("exact")
    search = metrics.squad_v2_metrics(
        {qid: p.best_span for qid, p in predictions.items()}, references,
        no_answer_probs={qid: p.null_diff for qid, p in predictions.items()},
        na_threshold=options.null_score_diff_threshold,
    )
    scores.update({k: v for k, v in search.items() if k.startswith("best_")})
    return scores


@torch.no_grad()
def evaluate(model, dataloader, task: TaskSpec, tokenizer, accelerator, output_dir=None) -> dict[str, float]:
    """Start/end logits of every feature (gathered across processes, in dataset order), post-processed
    into one answer per question, scored with the official SQuAD metric."""
    options = QAOptions.from_task(task)
    model.eval()
    start_logits: list[np.ndarray] = []
    end_logits: list[np.ndarray] = []
    for batch in tqdm(dataloader, desc="evaluate", disable=not accelerator.is_local_main_process, leave=False):
        outputs = model(**batch)
        # Batches differ in length across processes: pad to one length before gathering.
        starts = accelerator.pad_across_processes(outputs.start_logits, dim=1, pad_index=PAD_LOGIT)
        ends = accelerator.pad_across_processes(outputs.end_logits, dim=1, pad_index=PAD_LOGIT)
        starts, ends = accelerator.gather_for_metrics((starts, ends))
        start_logits.extend(starts.float().cpu().numpy())
        end_logits.extend(ends.float().cpu().numpy())
    features = dataloader.dataset.select_columns(list(EVAL_COLUMNS)).to_list()
    if len(features) != len(start_logits):
        raise RuntimeError(f"{len(start_logits)} logit rows for {len(features)} features: order lost in gathering")
    predictions = postprocess(features, start_logits, end_logits, options)
    references = {f["example_id"]: f["gold_answers"] for f in features}
    if output_dir is not None:
        _write_predictions(Path(output_dir) / records.PREDICTIONS_NAME, predictions, references)
    return score(predictions, references, options)


def _write_predictions(path: Path, predictions: Mapping[str, Prediction], references) -> None:
    with open(path, "w") as handle:
        for qid, p in predictions.items():
            handle.write(json.dumps({"id": qid, "prediction": p.text, "best_span": p.best_span,
                                     "null_diff": p.null_diff if math.isfinite(p.null_diff) else None,
                                     "answers": list(references[qid])}) + "\n")
