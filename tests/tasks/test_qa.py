"""Question answering (SQuAD v1.1 / v2.0): windows and labels, post-processing on hand-made logits, the
evaluation loop with an oracle, the real entrypoint end to end, and Table 2's parameter counts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from torch.utils.data import DataLoader

from propulsion import tiny
from propulsion.specs import MethodSpec, TaskSpec, UserError
from propulsion.tasks import qa, samples
from tests.suite.helpers import records_under, run_cli

QA_OPTIONS = {"doc_stride": 16, "n_best": 20, "max_answer_length": 30, "null_score_diff_threshold": 0.0}


def make_task(v2: bool, max_length: int = 48, **options) -> TaskSpec:
    return TaskSpec(name="squad_v2" if v2 else "squad", family="qa", source="sample",
                    text_fields=["question", "context"], label_field="answers", max_length=max_length,
                    options={**QA_OPTIONS, "version_2_with_negative": v2, **options})


# --------------------------------------------------------------------------------------------------------
# Post-processing on hand-made logits
# --------------------------------------------------------------------------------------------------------

CONTEXT = "alpha beta gamma delta kappa sigma omega"
WORDS = [(0, 5), (6, 10), (11, 16), (17, 22), (23, 28), (29, 34), (35, 40)]  # character spans of the words


def feature(example_id: str, words: range, length: int = 8) -> dict:
    """A window: position 0 is CLS, position 1 a question token, then the context words ``words``."""
    offsets = [None, None] + [list(WORDS[w]) for w in words]
    offsets += [None] * (length - len(offsets))
    return {"example_id": example_id, "offset_mapping": offsets, "cls_index": 0, "context": CONTEXT}


def logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    values = np.zeros(length, dtype=np.float32)
    for position, value in peaks.items():
        values[position] = value
    return values


def options(**changes) -> qa.QAOptions:
    return qa.QAOptions(**{"n_best": 20, "max_answer_length": 30, **changes})


def test_best_span_is_chosen_across_two_overlapping_windows():
    # Window A holds words 0-3, window B words 2-5 (they share gamma, delta). A prefers "beta gamma" (3 + 3),
    # B prefers "delta kappa" (4 + 4): the example's answer is B's span, read from the shared context.
    features = [feature("q", range(0, 4)), feature("q", range(2, 6))]
    starts = [logits(8, {3: 3.0}), logits(8, {3: 4.0})]  # A: position 3 = beta; B: position 3 = delta
    ends = [logits(8, {4: 3.0}), logits(8, {4: 4.0})]  # A: position 4 = gamma; B: position 4 = kappa
    (prediction,) = qa.postprocess(features, starts, ends, options()).values()
    assert prediction.text == "delta kappa" and prediction.best_score == pytest.approx(8.0)
    # Swap the scores: window A's span wins.
    (prediction,) = qa.postprocess(features, starts[::-1], ends[::-1], options()).values()
    assert prediction.text == "beta gamma"


def test_max_answer_length_and_invalid_spans_are_skipped():
    features = [feature("q", range(0, 6))]
    # Best pair: start at alpha (2), end at sigma (7) = 6 tokens; then a reversed pair; question/CLS tokens.
    starts = [logits(8, {2: 5.0, 5: 4.0, 1: 9.0})]
    ends = [logits(8, {7: 5.0, 3: 4.5, 0: 9.0})]
    (long,) = qa.postprocess(features, starts, ends, options(max_answer_length=6)).values()
    assert long.text == "alpha beta gamma delta kappa sigma"
    (short,) = qa.postprocess(features, starts, ends, options(max_answer_length=5)).values()
    # alpha..sigma is too long; delta..beta is reversed; the best allowed pair is alpha..beta (5 + 4.5).
    assert short.text == "alpha beta" and short.best_score == pytest.approx(9.5)


def test_padding_positions_beyond_the_offsets_are_never_candidates():
    features = [feature("q", range(0, 2), length=4)]
    starts = [logits(6, {5: 9.0, 2: 1.0})]  # logits padded to 6 positions, offsets cover 4
    ends = [logits(6, {5: 9.0, 3: 1.0})]
    (prediction,) = qa.postprocess(features, starts, ends, options()).values()
    assert prediction.text == "alpha beta"


@pytest.mark.parametrize(("null", "threshold", "expected"), [
    (7.0, 0.0, ""),  # null 7 beats the span's 6 by 1 > 0: no answer
    (7.0, 1.5, "beta"),  # ... but not by more than 1.5
    (5.0, 0.0, "beta"),  # the span wins
])
def test_v2_null_answer_needs_to_win_by_more_than_the_threshold(null, threshold, expected):
    features = [feature("q", range(0, 4)), feature("q", range(2, 6))]
    # Null score = min over windows of CLS start + end: window B's CLS scores 20, so window A's counts.
    starts = [logits(8, {0: null / 2, 3: 3.0}), logits(8, {0: 10.0})]
    ends = [logits(8, {0: null / 2, 3: 3.0}), logits(8, {0: 10.0})]
    v2 = options(version_2_with_negative=True, null_score_diff_threshold=threshold)
    (prediction,) = qa.postprocess(features, starts, ends, v2).values()
    assert prediction.text == expected and prediction.null_score == pytest.approx(null)
    assert prediction.null_diff == pytest.approx(null - 6.0)
    (v1,) = qa.postprocess(features, starts, ends, options()).values()
    assert v1.text == "beta"  # v1.1 never predicts the null answer


# --------------------------------------------------------------------------------------------------------
# Sample data, windows and labels
# --------------------------------------------------------------------------------------------------------


def test_sample_rows_have_the_hub_schema():
    v1, v2 = qa.sample_splits(make_task(False)), qa.sample_splits(make_task(True))
    assert set(v1) == {"train", "validation"}
    for rows in (*v1.values(), *v2.values()):
        for row in rows:
            assert set(row) == {"id", "title", "context", "question", "answers"}
            assert len(row["id"]) == 24 and set(row["answers"]) == {"text", "answer_start"}
            for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"], strict=True):
                assert row["context"][start: start + len(text)] == text
    assert all(len(r["answers"]["text"]) == 1 for r in v1["train"])
    assert all(len(r["answers"]["text"]) == 3 for r in v1["validation"])  # three annotators, as the hub's dev
    assert not any(r["answers"]["text"] == [] for r in v1["validation"])
    unanswerable = [r for r in v2["validation"] if r["answers"] == {"text": [], "answer_start": []}]
    assert 0 < len(unanswerable) < len(v2["validation"])


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def test_training_windows_overlap_and_label_the_answer(tokenizer):
    task = make_task(True)
    rows = qa.sample_splits(task)["train"]
    features = qa.tokenize(task, Dataset.from_list(rows), tokenizer, train=True)
    eval_features = qa.tokenize(task, Dataset.from_list(rows), tokenizer, train=False)
    assert len(features) == len(eval_features) > len(rows)  # long contexts overflow into several windows
    by_id = {r["id"]: r for r in rows}
    labelled = set()
    for train_feature, eval_feature in zip(features, eval_features, strict=True):
        assert len(train_feature["input_ids"]) <= task.max_length
        row = by_id[eval_feature["example_id"]]
        start, end = train_feature["start_positions"], train_feature["end_positions"]
        if start == 0:  # CLS: no answer, or the answer is not wholly inside this window
            assert end == 0
            continue
        labelled.add(row["id"])
        offsets = eval_feature["offset_mapping"]
        assert eval_feature["context"][offsets[start][0]: offsets[end][1]] == row["answers"]["text"][0]
    assert labelled == {r["id"] for r in rows if r["answers"]["text"]}  # every answer is wholly in some window
    # Consecutive windows of one example share doc_stride context tokens.
    first, second = eval_features[0], eval_features[1]
    assert first["example_id"] == second["example_id"]
    spans = [[tuple(o) for o in f["offset_mapping"] if o is not None] for f in (first, second)]
    assert spans[0][-16:] == spans[1][:16]


def test_a_stride_that_leaves_no_room_is_one_clear_error(tokenizer):
    task = make_task(False, max_length=20, doc_stride=12)
    with pytest.raises(UserError, match="doc_stride=12 leaves no room"):
        qa.tokenize(task, Dataset.from_list(qa.sample_splits(task)["train"][:4]), tokenizer)
    with pytest.raises(UserError, match="unknown task.options"):
        qa.QAOptions.from_task(make_task(False, n_bets=3))


class Oracle(torch.nn.Module):
    """A stand-in for the QA model: logits peaked at the gold span of each window (CLS when absent)."""

    def __init__(self, train_features):
        super().__init__()
        self.labels = {tuple(f["input_ids"]): (f["start_positions"], f["end_positions"]) for f in train_features}

    def forward(self, input_ids, attention_mask, **_):
        starts = torch.zeros(input_ids.shape)
        ends = torch.zeros(input_ids.shape)
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            start, end = self.labels[tuple(ids[mask.bool()].tolist())]
            starts[row, start] = ends[row, end] = 5.0
        return SimpleNamespace(start_logits=starts, end_logits=ends)


@pytest.mark.parametrize("v2", [False, True])
def test_evaluate_recovers_the_gold_answers_from_oracle_logits(tokenizer, v2, tmp_path):
    # Labels -> logits -> evaluate (batched, padded, gathered) -> post-processing -> official score: 100.
    task = make_task(v2)
    rows = qa.sample_splits(task)["validation"]
    data = Dataset.from_list(rows)
    oracle = Oracle(qa.tokenize(task, data, tokenizer, train=True))
    accelerator = Accelerator(cpu=True)
    loader = DataLoader(qa.tokenize(task, data, tokenizer, train=False), batch_size=5,
                        collate_fn=qa.collator(tokenizer))
    scores = qa.evaluate(oracle, accelerator.prepare(loader), task, tokenizer, accelerator, output_dir=tmp_path)
    assert scores["exact_match"] == pytest.approx(100.0) and scores["f1"] == pytest.approx(100.0)
    if v2:
        assert scores["total"] == len(rows) and scores["NoAns_total"] == 8  # one unanswerable per context
        assert scores["HasAns_exact"] == scores["NoAns_exact"] == scores["best_f1"] == pytest.approx(100.0)
    else:
        assert set(scores) == {"exact_match", "f1"}
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == len(rows)


# --------------------------------------------------------------------------------------------------------
# The real entrypoint: both SQuAD versions in one sweep on tiny DeBERTa
# --------------------------------------------------------------------------------------------------------

V2_KEYS = {"exact_match", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
           "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}


@pytest.fixture(scope="module")
def squad_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("squad")
    for name, v2 in (("squad", False), ("squad_v2", True)):
        samples.write_splits({"train": qa.squad_rows(12, 3, v2, annotators=1),
                              "validation": qa.squad_rows(4, 4, v2, annotators=3)}, root / "data" / name)
    # "++": a sweep is first composed with the default task (sst2), which has no options to override.
    result = run_cli(
        "model=tiny-deberta", "task=squad,squad_v2", f"task.data_dir={root}/data/${{task.name}}",
        "task.max_length=64", "++task.options.doc_stride=24", "trainer=quick", "trainer.max_steps=4",
        "trainer.eval_every=2", "logger=none", f"output_root={root}/runs", multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["task"]: record for record in records_under(root / "runs")}


def test_both_versions_complete_with_their_metrics(squad_sweep):
    assert set(squad_sweep) == {"squad", "squad_v2"}
    for record in squad_sweep.values():
        assert record["status"] == "completed", record.get("error")
        assert record["degree"] == 35 and record["main_metric"] == "f1"
        assert [e["step"] for e in record["evaluations"]] == [2, 4]
        assert 0.0 <= record["metrics"]["exact_match"] <= record["metrics"]["f1"] <= 100.0
    assert set(squad_sweep["squad"]["metrics"]) == {"exact_match", "f1"}
    assert set(squad_sweep["squad_v2"]["metrics"]) == V2_KEYS
    assert squad_sweep["squad"]["data"]["sizes"] == {"train": 48, "dev/validation": 16}
    assert squad_sweep["squad_v2"]["data"]["sizes"] == {"train": 60, "dev/validation": 20}


def test_record_shows_the_head_policy_and_count(squad_sweep):
    # tiny-deberta Propulsion(All): 2 layers x (q, k, v, attention output: 4 x 32 + intermediate 64 + output 32)
    # + word embeddings (32) + the QA head's 2 outputs. rel_embeddings is not wrapped: DeBERTa reads its weight
    # and never calls it, so a z there would get no gradient. The head (qa_outputs, freshly initialised) stays
    # frozen under head=propulsion: only its 2 z entries train.
    for record in squad_sweep.values():
        assert record["config"]["method"]["head"] == "propulsion"
        assert record["params"]["trainable"] == 2 * (4 * 32 + 64 + 32) + 32 + 2 == 482
        assert record["method_details"]["wrapped_modules"] == 2 * 6 + 2
        assert record["method_details"]["head_modules"] == ["qa_outputs"]


# --------------------------------------------------------------------------------------------------------
# Paper Table 2 counts on the full-size DeBERTaV3-base (meta device)
# --------------------------------------------------------------------------------------------------------

# microsoft/deberta-v3-base's config sizes, written out (no download).
DEBERTA_V3_BASE = dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                       intermediate_size=3072, max_position_embeddings=512, relative_attention=True,
                       position_buckets=256, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                       share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0,
                       position_biased_input=False)


@pytest.mark.parametrize(("targets", "expected"), [
    # 12 x (q, k, v, attention output, output: 5 x 768 + intermediate 3072) + word embeddings (768) +
    # qa_outputs (2); rel_embeddings is read, never called, so not wrapped. Paper: 0.161M, which no natural
    # module set gives (it is also the paper's BitFit count in the same table).
    ("all", 12 * (5 * 768 + 3072) + 768 + 2),
    # 12 x (q, k, v). Paper: 0.055M, exactly twice this (55,296).
    ("attn", 12 * 3 * 768),
])
def test_deberta_v3_base_propulsion_counts(targets, expected):
    from transformers import DebertaV2Config

    from propulsion.adapt import count_parameters_on_meta
    from propulsion.compose import parameter_count

    spec = MethodSpec(name="propulsion", kind="propulsion", degree=35, targets=targets)
    counted = count_parameters_on_meta(DebertaV2Config(**DEBERTA_V3_BASE), spec, qa.MODEL_KIND)
    assert counted["trainable"] == expected
    # The model YAML's architecture block gives the same count through the suite's config path.
    method = "propulsion" if targets == "all" else "propulsion_attn"
    assert parameter_count("deberta-v3-base", method, "squad")["trainable"] == expected
