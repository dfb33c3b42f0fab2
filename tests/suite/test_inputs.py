"""Every user input is checked by training.one_run.validate before a run folder exists (the entrypoint's path is
tests/suite/test_robustness.py: one line, exit 2, no folder; here each case's line, without a subprocess)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from propulsion import hub_access
from propulsion.compose import compose_spec
from propulsion.specs import UserError
from propulsion.training.one_run import validate

BASE = ["model=tiny-roberta", "trainer=quick", "logger=none", "task=sst2"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def refusal(tmp_path: Path, *overrides: str) -> str:
    spec, _ = compose_spec([*BASE, f"output_root={tmp_path}/runs", *overrides])
    with pytest.raises(UserError) as caught:
        validate(spec)
    message = str(caught.value)
    assert "\n" not in message
    assert not (tmp_path / "runs").exists()
    return message


def glue_csv(folder: Path, header: list[str], train: list[list], validation: list[list] | None = None) -> Path:
    write_csv(folder / "train.csv", header, train)
    write_csv(folder / "validation.csv", header, train if validation is None else validation)
    return folder


def test_a_misspelled_label_column_names_the_columns_there_are(tmp_path):
    data = glue_csv(tmp_path / "d", ["sentence", "labl"], [["good film", 1], ["bad film", 0]])
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"split 'train' ({data}/train.csv) has no column 'label' (task.label_field); its columns: sentence, labl")


def test_a_missing_text_column_names_the_key_that_sets_it(tmp_path):
    data = glue_csv(tmp_path / "d", ["text", "label"], [["good film", 1]])
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"split 'train' ({data}/train.csv) has no column 'sentence' (task.text_fields); its columns: text, label")


@pytest.mark.parametrize(("value", "shown"), [("positive", "'positive'"), ("2", "'2'"), ("-1", "'-1'")])
def test_a_label_that_is_no_class_id_is_refused(tmp_path, value, shown):
    data = glue_csv(tmp_path / "d", ["sentence", "label"], [["good film", 1]], [["ok", 0], ["bad film", value]])
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"split 'validation' ({data}/validation.csv) row 2: label {shown} is not a class id; task.num_labels=2 takes "
        f"integers 0..1")


def test_a_regression_label_must_be_a_number(tmp_path):
    data = tmp_path / "d"
    rows = [{"sentence1": "a", "sentence2": "b", "label": 3.2}, {"sentence1": "a", "sentence2": "c", "label": "high"}]
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "validation.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert refusal(tmp_path, "task=stsb", f"task.data_dir={data}") == (
        f"split 'train' ({data}/train.jsonl) row 2: label 'high' is not a number (task.num_labels=1: a regression "
        f"score)")


def test_an_empty_split_is_refused(tmp_path):
    data = glue_csv(tmp_path / "d", ["sentence", "label"], [["good film", 1]], [])
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"split 'validation' has no rows: {data}/validation.csv is empty")


def test_a_missing_data_dir_and_a_missing_split_file(tmp_path):
    assert refusal(tmp_path, "task.data_dir=/tmp/nothere-propulsion") == (
        "task.data_dir=/tmp/nothere-propulsion is not a directory; it should hold <split>.jsonl/.json/.csv/.parquet "
        "for the splits train, validation")
    data = tmp_path / "d"
    write_csv(data / "train.csv", ["sentence", "label"], [["good film", 1]])
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"task.data_dir={data} has no validation file; valid names: "
        f"validation.json, validation.jsonl, validation.csv, validation.parquet")


@pytest.mark.parametrize(("override", "expected"), [
    ("seed=-1", "seed must be an integer in [0, 4294967295], got -1"),
    ("seed=4294967296", "seed must be an integer in [0, 4294967295], got 4294967296"),
    ("seed=1.5", "seed must be an integer in [0, 4294967295], got 1.5"),
    ("task.max_train_samples=0", "task.max_train_samples must be an integer >= 1 or null, got 0"),
    ("task.max_length=abc", "task.max_length must be an integer >= 1, got 'abc'"),
    ("method.num_vectors=0", "method.num_vectors must be an integer >= 1, got 0"),
    ("save_adapter=maybe", "save_adapter must be true or false, got 'maybe'"),
    ("model.name_or_path=/some/dir", "model.name_or_path=/some/dir is given for the built-in tiny model "
                                     "'tiny-roberta', which loads no weights; drop it, or choose a real model"),
])
def test_values_are_checked_with_the_value_named(tmp_path, override, expected):
    with pytest.raises(UserError) as caught:
        compose_spec([*BASE, "task.source=sample", override])
    assert str(caught.value).startswith(expected)


def test_a_local_model_path_that_does_not_exist_says_so(tmp_path):
    assert refusal(tmp_path, "model=roberta-base", "model.name_or_path=/nonexistent/dir", "task.source=sample") == (
        "model.name_or_path=/nonexistent/dir does not exist (a local model directory or .gguf file, or a hub id "
        "such as FacebookAI/roberta-base)")
    (tmp_path / "empty").mkdir()
    assert refusal(tmp_path, "model=roberta-base", f"model.name_or_path={tmp_path}/empty", "task.source=sample") == (
        f"model.name_or_path={tmp_path}/empty has no config.json; point it at the folder that save_pretrained wrote")


def test_offline_model_and_data_are_one_line_with_the_local_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no ../shared/data next to it: the generic hint
    hub_access.offline_reason.cache_clear()
    message = refusal(tmp_path, "model=roberta-base")
    assert message.startswith("model 'FacebookAI/roberta-base' is not in the local cache and the hub cannot be used "
                              "(HF_HUB_OFFLINE=1); pass a local copy: model.name_or_path=/path/to/roberta-base")
    assert message.endswith("; and dataset 'nyu-mll/glue' (sst2) is not in the local cache and the hub cannot be used "
                            "(HF_HUB_OFFLINE=1); use local files: task.data_dir=/path/to/sst2 "
                            "(<split>.jsonl/.json/.csv/.parquet), or task.source=sample to try the suite offline")


def test_the_shared_data_copy_is_named_where_present(tmp_path, monkeypatch):
    (tmp_path / "shared/data/glue/rte").mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    spec, _ = compose_spec([*BASE, "task=rte"])
    assert hub_access.local_data_hint(spec.task) == "task.data_dir=../shared/data/glue/rte (a local copy)"
    spec, _ = compose_spec([*BASE, "task=sst2"])
    assert hub_access.local_data_hint(spec.task).endswith("; ../shared/data holds glue")


@pytest.mark.parametrize(("name", "local"), [("FacebookAI/roberta-base", False), ("gpt2", False),
                                             ("/nonexistent/dir", True), ("./model", True), ("~/m", True),
                                             ("a/b/c", True)])
def test_paths_and_hub_ids_are_told_apart(name, local):
    assert hub_access.looks_local(name) is local


def test_parquet_and_json_array_files_are_read_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "d"
    data.mkdir()
    pq.write_table(pa.table({"sentence": ["good film"], "target": [1]}), data / "train.parquet")
    (data / "validation.json").write_text(json.dumps([{"sentence": "ok", "label": 0}]))
    assert refusal(tmp_path, f"task.data_dir={data}") == (
        f"split 'train' ({data}/train.parquet) has no column 'label' (task.label_field); its columns: sentence, target")
    pq.write_table(pa.table({"sentence": ["good film"], "label": [1]}), data / "train.parquet")
    spec, _ = compose_spec([*BASE, f"task.data_dir={data}"])
    assert validate(spec).__name__ == "propulsion.tasks.glue"  # well-formed files pass
