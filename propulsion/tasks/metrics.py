"""Metric functions of the suite, exact to the official definitions, computed offline.

`evaluate.load(...)` fetches metric scripts from the Hugging Face hub at run time, which is unreachable on
many clusters, so every metric here is a plain function (numpy / scipy / scikit-learn / rouge-score) that
returns the same values as the official script. Every public scoring function returns ``dict[str, float]``.

Units (as each official script reports them):

- GLUE (`score_predictions`): fractions in [0, 1] and correlation units in [-1, 1], exactly as `evaluate`'s
  "glue" metric returns them.
- SQuAD v1.1 / v2.0 exact match and F1 (`squad_metrics`, `squad_v2_metrics`): percentages (x100), as the
  official evaluation scripts print them. Counts (``total``, ``*_total``) are plain counts.
- ROUGE (`rouge_metrics`): F-measure x100.
- Reasoning accuracy (`reasoning_accuracy`): percentage (x100), as LLM-Adapters prints it.

Sources: GLUE = `evaluate`'s glue metric (sklearn MCC / F1, scipy Pearson / Spearman); SQuAD v1.1 =
official ``evaluate-v1.1.py``; SQuAD v2.0 = official ``evaluate-v2.0.py`` (no-answer threshold and
best-threshold search included); ROUGE = Google's ``rouge-score`` package with the Porter stemmer;
reasoning = LLM-Adapters' ``commonsense_evaluate.py`` / ``evaluate.py`` answer extraction.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

# --------------------------------------------------------------------------------------------------------
# GLUE
# --------------------------------------------------------------------------------------------------------


def _accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    """Fraction of positions where prediction equals reference."""
    return float((predictions == references).mean())


def _pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(pearsonr(predictions.astype(float), references.astype(float))[0])


def _spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(spearmanr(predictions.astype(float), references.astype(float))[0])


# Metric name (the key it is reported under, as `evaluate`'s "glue" metric names it) -> function of
# (predictions, references). A task lists the ones it reports in its YAML (`task.metrics`).
CLASSIFICATION_METRICS = {
    "accuracy": _accuracy,
    "f1": lambda p, r: float(f1_score(y_true=r, y_pred=p)),  # GLUE's: binary F1 of the positive class (label 1)
    # The mean of both classes' F1 (sklearn average="macro"): what the authors' notebooks computed and, by its
    # values (MRPC F1 85.99 below accuracy 89.34), the paper's F1 column.
    "f1_macro": lambda p, r: float(f1_score(y_true=r, y_pred=p, average="macro")),
    "matthews_correlation": lambda p, r: float(matthews_corrcoef(r, p)),
    "pearson": _pearson,  # regression: float scores
    "spearmanr": _spearman,
}
REGRESSION_METRICS = ("pearson", "spearmanr")  # the ones that read scores, not class ids


def score_predictions(names: Sequence[str], predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """The named metrics of class ids (or regression scores); same keys and values as `evaluate`'s "glue" metric.

    GLUE reports: cola [matthews_correlation]; sst2, mnli, qnli, rte [accuracy]; mrpc, qqp [accuracy, f1] (we add
    f1_macro, the authors' F1);
    stsb [pearson, spearmanr] (each task's YAML lists its own).
    """
    unknown = [name for name in names if name not in CLASSIFICATION_METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or list(names)}; valid choices: "
                         f"{', '.join(CLASSIFICATION_METRICS)}")
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 1 or len(preds) == 0:
        raise ValueError(
            f"predictions and references must be non-empty 1-D and of equal length, got shapes "
            f"{preds.shape} and {refs.shape}"
        )
    return {name: CLASSIFICATION_METRICS[name](preds, refs) for name in names}


# --------------------------------------------------------------------------------------------------------
# SQuAD v1.1 / v2.0
# --------------------------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lower-case, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)  # whole-word a/an/the only; "theatre" keeps its "the"
    return " ".join(text.split())


def squad_exact(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def squad_f1(prediction: str, ground_truth: str, *, empty_match: bool = True) -> float:
    """Token-level F1 between normalised prediction and gold answer (a fraction, not x100).

    ``empty_match=True`` is the v2.0 rule: if either side has no tokens, F1 is 1.0 when both are empty and
    0.0 otherwise. ``empty_match=False`` is the v1.1 script, where no shared token always gives 0.0.
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if empty_match and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """SQuAD v1.1 official score: {"exact_match", "f1"} x100, max over the gold answers of each question.

    As in the official script, a question without a prediction scores 0 and still counts in the total;
    predictions for ids not in ``references`` are ignored.
    """
    if not references:
        raise ValueError("references is empty: nothing to score")
    exact = f1 = 0.0
    for qid, golds in references.items():
        if qid not in predictions:
            continue  # official v1.1: "Unanswered question ... will receive score 0."
        pred = predictions[qid]
        exact += max(squad_exact(pred, gold) for gold in golds)
        f1 += max(squad_f1(pred, gold, empty_match=False) for gold in golds)
    return {"exact_match": 100.0 * exact / len(references), "f1": 100.0 * f1 / len(references)}


def _v2_raw_scores(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact / F1 before any no-answer threshold (official ``get_raw_scores``)."""
    exact, f1 = {}, {}
    for qid, golds in references.items():
        # Gold answers that normalise to nothing are dropped; none left means "no answer" = "".
        gold_answers = [g for g in golds if normalize_answer(g)] or [""]
        pred = predictions[qid]
        exact[qid] = max(squad_exact(pred, g) for g in gold_answers)
        f1[qid] = max(squad_f1(pred, g) for g in gold_answers)
    return exact, f1


def _apply_no_answer_threshold(
    scores: dict[str, float], na_probs: Mapping[str, float], has_ans: dict[str, bool], thresh: float
) -> dict[str, float]:
    """A question whose no-answer probability exceeds ``thresh`` is predicted unanswerable."""
    return {
        qid: (float(not has_ans[qid]) if na_probs[qid] > thresh else score) for qid, score in scores.items()
    }


def _summary(exact: dict[str, float], f1: dict[str, float], qids: list[str]) -> dict[str, float]:
    """Official ``make_eval_dict``: mean exact / F1 (x100) over ``qids`` and their count."""
    total = len(qids)
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / total,
        "f1": 100.0 * sum(f1[q] for q in qids) / total,
        "total": float(total),
    }


def _best_threshold(
    predictions: Mapping[str, str],
    scores: dict[str, float],
    na_probs: Mapping[str, float],
    has_ans: dict[str, bool],
) -> tuple[float, float]:
    """Official ``find_best_thresh``: sweep thresholds over the sorted no-answer probabilities.

    Start from "every question predicted unanswerable" (score = number of NoAns questions), then admit
    questions in increasing probability: an answerable one adds its score, an unanswerable one with a
    non-empty prediction loses its point. Returns (best score x100, the probability where it was reached).
    """
    current = best = float(sum(1 for q in has_ans if not has_ans[q]))
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):  # stable sort: ties keep dict order
        if qid not in scores:
            continue
        if has_ans[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), float(best_thresh)


def squad_v2_metrics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    no_answer_probs: Mapping[str, float] | None = None,
    na_threshold: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 official score (``evaluate-v2.0.py``); an empty gold list marks an unanswerable question.

    Keys: exact, f1, total; HasAns_exact/f1/total and NoAns_exact/f1/total (each group only when it has
    questions, as in the official script); with ``no_answer_probs`` also best_exact, best_exact_thresh,
    best_f1, best_f1_thresh. Without ``no_answer_probs`` every probability is 0.0 (official default), so
    the threshold changes nothing. Every reference id needs a prediction ("" = no answer).
    """
    if not references:
        raise ValueError("references is empty: nothing to score")
    missing = [q for q in references if q not in predictions]
    if missing:
        raise ValueError(
            f"{len(missing)} questions have no prediction (use '' for no answer), e.g. {missing[:5]}"
        )
    na_probs = dict(no_answer_probs) if no_answer_probs is not None else {q: 0.0 for q in predictions}
    missing = [q for q in references if q not in na_probs]
    if missing:
        raise ValueError(f"no_answer_probs lacks {len(missing)} questions, e.g. {missing[:5]}")
    has_ans = {qid: bool(golds) for qid, golds in references.items()}
    exact_raw, f1_raw = _v2_raw_scores(predictions, references)
    exact = _apply_no_answer_threshold(exact_raw, na_probs, has_ans, na_threshold)
    f1 = _apply_no_answer_threshold(f1_raw, na_probs, has_ans, na_threshold)
    out = _summary(exact, f1, list(references))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in references if has_ans[q] == wanted]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, qids).items()})
    if no_answer_probs is not None:
        # The official search runs on the raw (un-thresholded) scores.
        out["best_exact"], out["best_exact_thresh"] = _best_threshold(
            predictions, exact_raw, na_probs, has_ans
        )
        out["best_f1"], out["best_f1_thresh"] = _best_threshold(predictions, f1_raw, na_probs, has_ans)
    return out


# --------------------------------------------------------------------------------------------------------
# ROUGE
# --------------------------------------------------------------------------------------------------------

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# Sentence splitter for rougeLsum (each sentence on its own line). nltk's punkt data cannot be downloaded
# offline, so the only splitter is this deterministic regex: break after ".", "!" or "?" followed by
# whitespace, and at existing line breaks; results never depend on what happens to be installed.
SENTENCE_SPLIT_PATTERN = r"(?<=[.!?])\s+|\n+"
_SENTENCE_SPLIT = re.compile(SENTENCE_SPLIT_PATTERN)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences with `SENTENCE_SPLIT_PATTERN`, dropping empty pieces."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text.strip()) if s.strip()]


def rouge_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F-measure x100 with rouge-score's Porter stemmer.

    rougeL scores the text as one sequence; rougeLsum first puts each sentence on its own line
    (`split_sentences`) and computes the summary-level union LCS.
    """
    from rouge_score import rouge_scorer  # local import: rouge-score pulls in nltk, slow at import time

    if len(predictions) != len(references) or not predictions:
        raise ValueError(
            f"predictions and references must be non-empty and of equal length, got {len(predictions)} "
            f"and {len(references)}"
        )
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        # rougeLsum reads sentences from newlines; the other types ignore them.
        scores = scorer.score("\n".join(split_sentences(ref)), "\n".join(split_sentences(pred)))
        for key in ROUGE_TYPES:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * total / len(predictions) for key, total in totals.items()}


# --------------------------------------------------------------------------------------------------------
# Commonsense and arithmetic reasoning (LLM-Adapters conventions)
# --------------------------------------------------------------------------------------------------------

# Label words per commonsense dataset; the answer is their first (case-sensitive) match in the generation.
_COMMONSENSE_LABELS: dict[str, tuple[str, ...]] = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "social_i_qa": tuple(f"answer{i}" for i in range(1, 6)),
    "hellaswag": tuple(f"ending{i}" for i in range(1, 5)),
    "winogrande": ("option1", "option2"),
    "ARC-Easy": tuple(f"answer{i}" for i in range(1, 6)),
    "ARC-Challenge": tuple(f"answer{i}" for i in range(1, 6)),
    "openbookqa": tuple(f"answer{i}" for i in range(1, 6)),
}
COMMONSENSE_DATASETS: tuple[str, ...] = tuple(_COMMONSENSE_LABELS)
MATH_DATASETS: tuple[str, ...] = ("MultiArith", "gsm8k", "AddSub", "SingleEq", "SVAMP", "AQuA", "mawps")
REASONING_DATASETS: tuple[str, ...] = COMMONSENSE_DATASETS + MATH_DATASETS
_CANONICAL = {name.lower(): name for name in REASONING_DATASETS}

_NUMBER = re.compile(r"-?\d+\.?\d*")
MATH_TOLERANCE = 0.001  # LLM-Adapters: correct if |pred - gold| <= 0.001

# AQuA, reference rule (LLM-Adapters): the first capital A-E anywhere. Over-matches ("As ..." -> "A").
AQUA_REFERENCE_PATTERN = r"A|B|C|D|E"
# AQuA, strict rule (ours): 1) the last letter introduced by "answer"/"option"/"choice" (any case), with
# optional "is", ":" and "(", e.g. "the answer is (C)", "Answer: C", "option C"; the letter must end at a
# word boundary. 2) Failing that, the last standalone option letter: not preceded by a letter or digit,
# optionally opened by "(", and closed by ")" or by "." + whitespace/end or by the end of the text, e.g.
# "(C)", "C)", "C.", a final "C". A sentence-initial article ("A train ...") matches neither form.
AQUA_STRICT_PHRASE_PATTERN = r"(?i:answer|option|choice)(?:\s+is)?\s*:?\s*\(?([A-E])\b"
AQUA_STRICT_LETTER_PATTERN = r"(?<![A-Za-z0-9])\(?([A-E])(?=\)|\.(?:\s|$)|\s*$)"
_AQUA_REFERENCE = re.compile(AQUA_REFERENCE_PATTERN)
_AQUA_PHRASE = re.compile(AQUA_STRICT_PHRASE_PATTERN)
_AQUA_LETTER = re.compile(AQUA_STRICT_LETTER_PATTERN)


def _canonical_dataset(dataset: str) -> str:
    """Map a dataset name (any case) to its canonical spelling, or raise listing the valid ones."""
    name = _CANONICAL.get(dataset.lower())
    if name is None:
        raise ValueError(f"unknown reasoning dataset {dataset!r}; valid: {', '.join(REASONING_DATASETS)}")
    return name


def extract_commonsense_answer(dataset: str, generation: str) -> str | None:
    """First occurrence of one of the dataset's label words in ``generation`` (case-sensitive), or None."""
    name = _canonical_dataset(dataset)
    if name not in _COMMONSENSE_LABELS:
        raise ValueError(
            f"{dataset!r} is not a commonsense dataset; valid: {', '.join(COMMONSENSE_DATASETS)}"
        )
    match = re.search("|".join(_COMMONSENSE_LABELS[name]), generation.strip())
    return match.group(0) if match else None


def extract_number(generation: str) -> float | None:
    """Last number in ``generation`` after dropping commas ("1,234.5" -> 1234.5), or None if there is none."""
    numbers = _NUMBER.findall(generation.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def extract_aqua_choice(generation: str, strict: bool = False) -> str | None:
    """AQuA option letter: reference rule (first capital A-E anywhere) or the strict rule documented above."""
    text = generation.strip()
    if not strict:
        match = _AQUA_REFERENCE.search(text)
        return match.group(0) if match else None
    for pattern in (_AQUA_PHRASE, _AQUA_LETTER):
        letters = pattern.findall(text)
        if letters:
            return letters[-1]
    return None


def is_math_correct(pred: float | None, gold: float | str) -> bool:
    """True when ``pred`` is within `MATH_TOLERANCE` of ``gold``; a missing prediction is wrong."""
    if pred is None:
        return False
    # LLM-Adapters calls float() on string golds; commas are dropped so "1,000" parses too.
    gold_value = float(gold.replace(",", "")) if isinstance(gold, str) else float(gold)
    return abs(pred - gold_value) <= MATH_TOLERANCE


def extract_answer(dataset: str, generation: str, aqua_strict: bool = False) -> str | float | None:
    """Extract the answer ``dataset`` expects: a label word, an AQuA letter or a number (None if absent)."""
    name = _canonical_dataset(dataset)
    if name in _COMMONSENSE_LABELS:
        return extract_commonsense_answer(name, generation)
    if name == "AQuA":
        return extract_aqua_choice(generation, strict=aqua_strict)
    return extract_number(generation)


def _is_correct(name: str, pred: str | float | None, gold: Any) -> bool:
    """Exact label match for commonsense and AQuA, numeric tolerance for the other math datasets."""
    if pred is None:
        return False
    if name in _COMMONSENSE_LABELS or name == "AQuA":
        return pred == gold
    return is_math_correct(pred, gold)


def reasoning_accuracy(
    dataset: str, generations: Sequence[str], golds: Sequence[Any], aqua_strict: bool = False
) -> dict[str, float]:
    """Accuracy x100 of the extracted answers against the golds, and the number of examples ``n``."""
    name = _canonical_dataset(dataset)
    if len(generations) != len(golds) or not generations:
        raise ValueError(
            f"generations and golds must be non-empty and of equal length, got {len(generations)} and "
            f"{len(golds)}"
        )
    correct = sum(
        _is_correct(name, extract_answer(name, gen, aqua_strict), gold)
        for gen, gold in zip(generations, golds, strict=True)
    )
    return {"accuracy": 100.0 * correct / len(generations), "n": float(len(generations))}
