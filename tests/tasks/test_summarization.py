"""Summarization (XSum, CNN/DailyMail): hub-schema samples, labels, the generation settings, the evaluation
loop with an oracle generator, the real entrypoint end to end, and Table 2's parameter counts."""

from __future__ import annotations

import re

import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset
from torch.utils.data import DataLoader

from propulsion import tiny
from propulsion.compose import compose_spec
from propulsion.specs import MethodSpec, TaskSpec
from propulsion.tasks import samples, summarization
from tests.suite.helpers import records_under, run_cli

ROUGE_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum"}


def make_task(name: str, target_length: int = 16, **generation) -> TaskSpec:
    source, target = ("document", "summary") if name == "xsum" else ("article", "highlights")
    return TaskSpec(name=name, family="summarization", source="sample", text_fields=[source], label_field=target,
                    max_length=64, options={"max_target_length": target_length, "generation": generation})


def test_sample_rows_have_the_hub_schema():
    xsum = summarization.sample_splits(make_task("xsum"))
    cnn = summarization.sample_splits(make_task("cnn_dailymail"))
    for rows in xsum.values():
        for row in rows:
            assert set(row) == {"document", "summary", "id"} and row["id"].isdigit()
            assert "\n" not in row["summary"]  # one sentence
    for rows in cnn.values():
        for row in rows:
            assert set(row) == {"article", "highlights", "id"} and re.fullmatch(r"[0-9a-f]{40}", row["id"])
            assert len(row["highlights"].split("\n")) == 3  # highlight sentences on separate lines
    assert (len(xsum["train"]), len(xsum["validation"])) == (64, 16)


def test_the_task_configs_hold_the_reference_generation_settings():
    for task, beams, source, target, degree in (("xsum", 8, 768, 64, 35), ("cnn_dailymail", 4, 1024, 160, 25)):
        spec, _ = compose_spec([f"task={task}", "model=bart-large"])
        options = spec.task.options
        assert (spec.task.max_length, options["max_target_length"], spec.task.degree) == (source, target, degree)
        assert spec.task.options["generation"] == {"num_beams": beams, "no_repeat_ngram_size": 3,
                                                   "early_stopping": True, "length_penalty": 1.0, "min_length": 0,
                                                   "max_new_tokens": target}
        assert spec.task.main_metric == "rouge2"
    # The generation length follows the target length.
    spec, _ = compose_spec(["task=xsum", "task.options.max_target_length=20"])
    assert spec.task.options["generation"]["max_new_tokens"] == 20


@pytest.fixture(scope="module")
def tokenizer():
    return tiny.build_tokenizer()


def test_labels_are_truncated_and_padded_out_of_the_loss(tokenizer):
    task = make_task("cnn_dailymail", target_length=10)
    rows = summarization.sample_splits(task)["validation"][:4]
    features = summarization.tokenize(task, Dataset.from_list(rows), tokenizer, train=False)
    assert all(len(f["labels"]) <= 10 and len(f["input_ids"]) <= 64 for f in features)
    assert features[0]["reference"] == rows[0]["highlights"] and features[0]["example_id"] == rows[0]["id"]
    batch = summarization.collator(tokenizer)(list(features))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    lengths = [len(f["labels"]) for f in features]
    assert batch["labels"].shape == (4, max(lengths))
    for row, length in enumerate(lengths):
        assert (batch["labels"][row, length:] == -100).all() and (batch["labels"][row, :length] >= 0).all()
    train = summarization.tokenize(task, Dataset.from_list(rows), tokenizer, train=True)
    assert set(train.column_names) == {"input_ids", "attention_mask", "labels"}


class OracleGenerator(torch.nn.Module):
    """A stand-in for the seq2seq model: generates each document's tokenised reference, lengths differing
    across a batch, and keeps the keyword arguments it was given."""

    def __init__(self, references: dict[tuple[int, ...], list[int]], pad_id: int):
        super().__init__()
        self.references, self.pad_id, self.calls = references, pad_id, []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls.append(kwargs)
        outputs = [self.references[tuple(ids[mask.bool()].tolist())] for ids, mask in zip(input_ids, attention_mask,
                                                                                            strict=True)]
        width = max(len(o) for o in outputs)
        return torch.tensor([o + [self.pad_id] * (width - len(o)) for o in outputs])


def test_evaluate_scores_oracle_generations_in_order(tokenizer, tmp_path):
    task = make_task("xsum", num_beams=8, no_repeat_ngram_size=3, early_stopping=True, max_new_tokens=16)
    rows = summarization.sample_splits(task)["validation"]
    features = summarization.tokenize(task, Dataset.from_list(rows), tokenizer, train=False)
    oracle = OracleGenerator({tuple(f["input_ids"]): f["labels"] for f in features}, tokenizer.pad_token_id)
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(DataLoader(features, batch_size=5, collate_fn=summarization.collator(tokenizer)))
    scores = summarization.evaluate(oracle, loader, task, tokenizer, accelerator, output_dir=tmp_path)
    assert set(scores) == ROUGE_KEYS and all(v == pytest.approx(100.0) for v in scores.values())
    assert len(oracle.calls) == 4  # 16 rows in batches of 5
    assert oracle.calls[0] == {"num_beams": 8, "no_repeat_ngram_size": 3, "early_stopping": True, "max_new_tokens": 16}
    written = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(written) == 16 and rows[0]["id"] in written[0]


def test_tiny_bart_generation_respects_the_length(tokenizer):
    from transformers import AutoModelForSeq2SeqLM

    task = make_task("xsum", num_beams=2, no_repeat_ngram_size=3, early_stopping=True, max_new_tokens=6)
    features = summarization.tokenize(task, Dataset.from_list(summarization.sample_splits(task)["validation"][:3]),
                                      tokenizer, train=False)
    model = tiny.build_tiny_model("bart", AutoModelForSeq2SeqLM)
    loader = DataLoader(features, batch_size=3, collate_fn=summarization.collator(tokenizer))
    texts = summarization.generate_summaries(model, loader, tokenizer, Accelerator(cpu=True),
                                             task.options["generation"])
    assert len(texts) == 3 and all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) <= 6 for t in texts)


# --------------------------------------------------------------------------------------------------------
# The real entrypoint: both datasets in one sweep on tiny BART
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summarization_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("summarization")
    samples.write_splits({"train": summarization.summarization_rows(24, 5, "document", "summary", 1),
                          "validation": summarization.summarization_rows(8, 6, "document", "summary", 1)},
                         root / "data" / "xsum")
    samples.write_splits({"train": summarization.summarization_rows(24, 7, "article", "highlights", 3),
                          "validation": summarization.summarization_rows(8, 8, "article", "highlights", 3)},
                         root / "data" / "cnn_dailymail")
    # "++": a sweep is first composed with the default task (sst2), which has no options to override.
    result = run_cli(
        "model=tiny-bart", "task=xsum,cnn_dailymail", f"task.data_dir={root}/data/${{task.name}}",
        "++task.options.max_target_length=16", "task.max_eval_samples=6", "trainer=quick", "trainer.max_steps=4",
        "trainer.eval_every=2", "logger=none", f"output_root={root}/runs", multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["task"]: record for record in records_under(root / "runs")}


def test_both_datasets_complete_with_rouge(summarization_sweep):
    assert set(summarization_sweep) == {"xsum", "cnn_dailymail"}
    for record in summarization_sweep.values():
        assert record["status"] == "completed", record.get("error")
        assert set(record["metrics"]) == ROUGE_KEYS and record["main_metric"] == "rouge2"
        assert all(0.0 <= v <= 100.0 for v in record["metrics"].values())
        assert [e["step"] for e in record["evaluations"]] == [2, 4]
        assert record["data"]["sizes"] == {"train": 24, "dev/validation": 6}  # max_eval_samples recorded
        assert record["config"]["task"]["options"]["generation"]["max_new_tokens"] == 16
    assert summarization_sweep["xsum"]["degree"] == 35 and summarization_sweep["cnn_dailymail"]["degree"] == 25


# --------------------------------------------------------------------------------------------------------
# Paper Table 2 counts on the full-size BART-large (meta device)
# --------------------------------------------------------------------------------------------------------

# facebook/bart-large's config sizes, written out (no download).
BART_LARGE = dict(vocab_size=50265, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                  decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024)
ENCODER_LAYER = 4 * 1024 + 4096 + 1024  # self-attention q, k, v, out + fc1 + fc2
DECODER_LAYER = 8 * 1024 + 4096 + 1024  # self- and cross-attention q, k, v, out + fc1 + fc2


@pytest.mark.parametrize(("targets", "expected"), [
    # 12 encoder + 12 decoder layers, the encoder's and decoder's embed_tokens (tied weights, separate modules
    # in transformers 5; model.shared is never called, so not wrapped), two learned position embeddings, and
    # lm_head (one z per vocabulary entry). Paper: 0.330M; this is 324,697.
    ("all", 12 * ENCODER_LAYER + 12 * DECODER_LAYER + 2 * 1024 + 2 * 1024 + 50265),
    # q, k, v of every attention block: encoder self, decoder self and cross. Paper: 0.110M (exact).
    ("attn", 12 * 3 * 1024 + 12 * 6 * 1024),
])
def test_bart_large_propulsion_counts(targets, expected):
    from transformers import BartConfig

    from propulsion.adapt import count_parameters_on_meta
    from propulsion.compose import parameter_count

    spec = MethodSpec(name="propulsion", kind="propulsion", degree=35, targets=targets)
    counted = count_parameters_on_meta(BartConfig(**BART_LARGE), spec, summarization.MODEL_KIND)
    assert counted["trainable"] == expected
    method = "propulsion" if targets == "all" else "propulsion_attn"
    assert parameter_count("bart-large", method, "xsum")["trainable"] == expected


def test_generation_rows_are_grouped_longest_first_and_the_subset_is_fixed():
    from propulsion.specs import EvaluationSpec
    from propulsion.training import evaluation_schedule

    rows = Dataset.from_dict({"input_ids": [[1] * n for n in (3, 9, 1, 9, 5)], "example_id": list("abcde")})
    assert evaluation_schedule.by_length(rows)["example_id"] == ["b", "d", "e", "a", "c"]  # ties keep their order
    schedule = EvaluationSpec(during="generate", rows=3, subset_seed=1)
    first, again = evaluation_schedule.subset(rows, schedule), evaluation_schedule.subset(rows, schedule)
    assert len(first) == 3 and first["example_id"] == again["example_id"]
    assert evaluation_schedule.subset(rows, EvaluationSpec(rows=10))["example_id"] == list("abcde")  # fewer rows: all
    assert evaluation_schedule.rows_during({"validation": 11332}, EvaluationSpec(rows=500)) == {"validation": 500}


def test_a_bad_schedule_is_one_clear_line():
    # (the entrypoint turns a UserError into that line and exit 2: tests/suite/test_robustness.py)
    from propulsion.specs import EvaluationSpec, UserError

    expected = r"^unknown task.evaluation.during 'beams'; valid choices: full, loss, generate$"
    with pytest.raises(UserError, match=expected):
        EvaluationSpec(during="beams")
    with pytest.raises(UserError, match=r"^task.evaluation.rows must be an integer >= 1 or null, got 0$"):
        EvaluationSpec(rows=0)
    with pytest.raises(UserError, match="bad task.evaluation"):
        TaskSpec(name="x", family="summarization", evaluation={"beams": 2})
