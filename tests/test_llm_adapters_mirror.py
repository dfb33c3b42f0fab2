"""A local mirror of the pinned LLM-Adapters tree (task.data_dir + task.options.pinned): files read in place, each
refused unless its git blob is the commit's; the union of several train splits; seeded test subsets; the
untrained model through the entrypoint (trainer.max_steps=0, the zero-shot row)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import pytest

from propulsion.specs import TaskSpec, TrainerSpec, UserError
from propulsion.tasks import data as task_data
from propulsion.tasks import llm_adapters_files as files
from propulsion.tasks import reasoning
from propulsion.training.loop import total_steps
from tests.suite.helpers import records_under, run_cli
from tests.test_reasoning import BOOLQ, FAST, GREEDY, MATH_TEST, MATH_TRAIN

GSM8K = "dataset/gsm8k/test.json"


def _write(root: Path, relative: str, rows: list[dict]) -> bytes:
    body = json.dumps(rows).encode()
    (root / relative).parent.mkdir(parents=True, exist_ok=True)
    (root / relative).write_bytes(body)
    return body


def _pin(monkeypatch, relative: str, body: bytes, rows: int) -> None:
    """Pins a file the test wrote, as the suite pins the commit's (the table is data, the check is the code)."""
    monkeypatch.setitem(files.PINNED_FILES, relative, (files.git_blob_sha1(body), rows))


def test_the_mirror_refuses_a_file_whose_hash_differs_in_one_line_naming_it_and_both_hashes(tmp_path):
    body = _write(tmp_path, GSM8K, [MATH_TEST])
    with pytest.raises(UserError) as caught:
        files.mirrored(GSM8K, tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / GSM8K} has git blob {files.git_blob_sha1(body)}, expected "
                              f"{files.PINNED['gsm8k'][0]} (dataset/gsm8k/test.json at AGI-Edgerunners/LLM-Adapters@")
    assert "task.options.pinned=false" in message


def test_the_mirror_reads_a_pinned_file_in_place_and_refuses_names_it_does_not_pin(tmp_path, monkeypatch):
    body = _write(tmp_path, "dataset/toy/train.json", [MATH_TRAIN])
    _pin(monkeypatch, "dataset/toy/train.json", body, 1)
    assert files.mirrored("dataset/toy/train.json", tmp_path) == tmp_path / "dataset/toy/train.json"
    with pytest.raises(UserError, match=r"^dataset/other/train.json is not a file of .* whose hash the suite pins"):
        files.mirrored("dataset/other/train.json", tmp_path)
    with pytest.raises(UserError, match=r"the mirror .* has no dataset/gsm8k/test.json"):
        files.mirrored(GSM8K, tmp_path)


def test_the_offline_copys_extra_files_are_pinned_with_their_row_counts():
    # the prefixes and row counts /work/shared/data/llm-adapters/README.md lists for the commit's files
    assert {path: (blob[:12], rows) for path, (blob, rows) in files.PINNED_FILES.items()} == {
        "ft-training_set/math_data.json": ("22a588e69121", 3260),
        "dataset/boolq/train.json": ("87a7beee26b4", 9427),
        "dataset/ARC-Easy/train.json": ("488a8e5e5bbb", 2251),
        "dataset/ARC-Challenge/train.json": ("d7e080b04bff", 1119),
        "dataset/openbookqa/train.json": ("75bcd5eb9f5e", 4957)}
    assert files.pinned_paths()[GSM8K] == files.PINNED["gsm8k"]


def _task(root: Path, **options) -> TaskSpec:
    return TaskSpec(name="commonsense", family="reasoning", source="files", data_dir=str(root),
                    train_split="toy_union", eval_splits={"boolq": "boolq"}, max_eval_samples=None,
                    options={"pinned": True, "cache_dir": str(root / "cache"), "val_set_size": 0} | options)


def test_a_run_validated_through_the_mirror_refuses_a_changed_test_file(tmp_path, monkeypatch):
    body = _write(tmp_path, "dataset/a/train.json", [BOOLQ])
    _pin(monkeypatch, "dataset/a/train.json", body, 1)
    _write(tmp_path, "dataset/boolq/test.json", [BOOLQ])  # not the commit's boolq test split
    with pytest.raises(UserError, match=r"boolq/test.json has git blob [0-9a-f]{40}, expected "
                                        + files.PINNED["boolq"][0]):
        reasoning.validate(_task(tmp_path, train_sets=["a"]))


def test_train_sets_unite_the_pinned_train_splits_in_order_and_record_each_part(tmp_path, monkeypatch):
    first = {**BOOLQ, "output": "the correct answer is false", "answer": "false"}
    for name, rows in (("a", [BOOLQ, BOOLQ]), ("b", [first])):
        _pin(monkeypatch, f"dataset/{name}/train.json", _write(tmp_path, f"dataset/{name}/train.json", rows), len(rows))
    task = _task(tmp_path, train_sets=["a", "b"], test_sets=None)
    location = reasoning.split_files(task, ["toy_union"])["toy_union"]
    assert json.loads(Path(location).read_text()) == [BOOLQ, BOOLQ, first]
    assert Path(location).parent == tmp_path / "cache" / "unions"
    assert reasoning.split_files(task, ["toy_union"])["toy_union"] == location  # written once, found again
    # what `make plan` counts: the family's own layout (tasks.data.task_files asks it)
    assert task_data.task_files(task, ["toy_union"]) == {"toy_union": location}
    monkeypatch.setitem(files.PINNED_FILES, "dataset/boolq/test.json",
                        (files.git_blob_sha1(_write(tmp_path, "dataset/boolq/test.json", [BOOLQ])), 1))
    provenance = reasoning.file_provenance(task)
    assert list(provenance) == ["toy_union", "a/train", "b/train", "boolq"]
    assert provenance["toy_union"]["path"] == str(Path(location).resolve())
    with pytest.raises(UserError, match=r"task.options.train_sets must be a non-empty list .* got 'a'"):
        reasoning.validate(_task(tmp_path, train_sets="a"))


def test_a_seeded_test_subset_is_the_same_rows_for_every_run_seed_in_file_order():
    task = TaskSpec(name="arithmetic", family="reasoning", source="sample", train_split="math_10k",
                    eval_splits={"gsm8k": "gsm8k"}, max_eval_samples=10,
                    options={"val_set_size": 0, "test_subset_seed": 3})
    raw = datasets.DatasetDict({"math_10k": datasets.Dataset.from_dict({"idx": list(range(40))}),
                                "gsm8k": datasets.Dataset.from_dict({"idx": list(range(50))})})
    chosen = [reasoning.apply_protocol(task, raw, "heldout", seed).test["gsm8k"]["idx"] for seed in (0, 1)]
    assert chosen[0] == chosen[1] == sorted(random.Random(3).sample(range(50), 10))
    assert chosen[0] != list(range(10))  # not the first rows
    first = TaskSpec(**{**task.__dict__, "options": {"val_set_size": 0}})
    assert reasoning.apply_protocol(first, raw, "heldout", 0).test["gsm8k"]["idx"] == list(range(10))


def test_max_steps_zero_is_no_optimizer_step():
    assert total_steps(100, TrainerSpec(batch_size=4, epochs=3, max_steps=0)) == 0
    assert total_steps(100, TrainerSpec(batch_size=4, epochs=3)) == 75
    with pytest.raises(UserError, match="trainer.max_steps must be >= 0, got -1"):
        TrainerSpec(max_steps=-1)


def test_the_untrained_model_runs_through_the_entrypoint_as_a_zero_shot_row(tmp_path):
    data = tmp_path / "data"
    _write(data, "ft-training_set/commonsense_170k.json", [BOOLQ] * 8)
    _write(data, "dataset/boolq/test.json", [BOOLQ] * 3)
    common = ["model=tiny-llama", "task=commonsense", f"task.data_dir={data}", "task.options.test_sets=[boolq]",
              "method=propulsion", *FAST, *GREEDY, "save_adapter=false"]
    zero = run_cli(*common, "trainer.max_steps=0", f"output_root={tmp_path / 'zero'}")
    assert zero.returncode == 0, zero.stderr[-3000:]
    (record,) = records_under(tmp_path / "zero")
    assert record["status"] == "completed", record.get("error")
    assert record["train_loss"] == [] and record["evaluations"] == []
    assert record["metrics"]["boolq/n"] == 3.0
    lines = (Path(record["run_dir"]) / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 3
