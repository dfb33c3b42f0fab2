"""Records name the exact data files and model weights a number came from (sha256)."""

from __future__ import annotations

import hashlib
import json

from propulsion import backbones
from propulsion.specs import ModelSpec, TaskSpec
from propulsion.tasks import data

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 example: "abc"


def test_sha256_file_matches_the_published_vector(tmp_path):
    (tmp_path / "abc.txt").write_bytes(b"abc")
    assert data.sha256_file(tmp_path / "abc.txt") == ABC_SHA256


def test_local_task_files_are_hashed_per_split(tmp_path):
    train = b'{"sentence": "a", "label": 1, "idx": 0}\n'
    validation = b'{"sentence": "b", "label": 0, "idx": 0}\n{"sentence": "c", "label": 1, "idx": 1}\n'
    (tmp_path / "train.jsonl").write_bytes(train)
    (tmp_path / "validation.jsonl").write_bytes(validation)
    task = TaskSpec(name="cola", family="glue", data_dir=str(tmp_path), text_fields=["sentence"])
    provenance = data.file_provenance(task)
    assert provenance == {
        "train": {"path": str((tmp_path / "train.jsonl").resolve()), "bytes": len(train),
                  "sha256": hashlib.sha256(train).hexdigest()},
        "validation": {"path": str((tmp_path / "validation.jsonl").resolve()), "bytes": len(validation),
                       "sha256": hashlib.sha256(validation).hexdigest()},
    }
    json.dumps(provenance)  # goes into the record as is


def test_hub_and_sample_data_have_no_file_hashes():
    assert data.file_provenance(TaskSpec(name="rte", family="glue", dataset="nyu-mll/glue")) is None
    assert data.file_provenance(TaskSpec(name="rte", family="glue", source="sample")) is None


def test_a_local_model_directory_is_hashed_file_by_file(tmp_path):
    (tmp_path / "config.json").write_bytes(b"abc")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "README.md").write_text("not part of the numbers")
    found = backbones.provenance(ModelSpec(name="m", name_or_path=str(tmp_path)))
    assert found == {"source": "local", "name_or_path": str(tmp_path), "path": str(tmp_path.resolve()),
                     "sha256": {"config.json": ABC_SHA256,
                                "model.safetensors": hashlib.sha256(b"weights").hexdigest()}}


def test_hub_and_tiny_models_name_their_source():
    assert backbones.provenance(ModelSpec(name="m", name_or_path="org/model", revision="v1")) == {
        "source": "hub", "name_or_path": "org/model", "revision": "v1"}
    assert backbones.provenance(ModelSpec(name="t", tiny="roberta")) == {"source": "tiny", "family": "roberta"}
