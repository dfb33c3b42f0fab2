"""Adapters on the Hugging Face Hub (issue 14, item 2), offline.

Resolution runs through huggingface_hub's own hf_hub_download against a cache laid out exactly as
huggingface_hub lays it out (blobs/, snapshots/<commit>/ links, refs/<branch or tag>), with offline mode on.
Upload: the folder that would be uploaded and the calls made on an HfApi; the real endpoint is unreachable
here, so that the bytes reach huggingface.co is NOT tested (only that the real HfApi is called and refuses
offline).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import OfflineModeIsEnabled
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from propulsion import PropulsionConfig, PropulsionModel, __version__, get_propulsion_model
from propulsion.tiny import build_tiny_model
from tests.method.test_lib_merge_save import perturbed
from tests.method.tiny_models import batch, outputs

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
BASE_COMMIT = "c" * 40


def cache_snapshot(cache: Path, repo_id: str, commit: str, folder: Path, refs: tuple[str, ...] = ("main",)) -> None:
    """Put ``folder``'s files into the hub cache as huggingface_hub does: content in blobs/<sha256>, the
    snapshot's files relative links to them, refs/<name> holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """HF_HUB_CACHE / HF_HUB_OFFLINE as huggingface_hub read them at import (constants), set for this test."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def hub_base(hub_cache: Path, tmp_path: Path):
    """The tiny classifier published as org/tiny-base and loaded back by transformers from the hub cache, so its
    config carries the hub id and commit as it would for any hub model."""
    folder = tmp_path / "base-files"
    build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2).save_pretrained(folder)
    cache_snapshot(hub_cache, "org/tiny-base", BASE_COMMIT, folder)
    return lambda: AutoModelForSequenceClassification.from_pretrained("org/tiny-base").eval()


def test_adapter_config_records_base_id_revision_and_version(hub_cache, tmp_path):
    load_base = hub_base(hub_cache, tmp_path)
    model = get_propulsion_model(load_base(), PropulsionConfig(degree=7, targets="attn"), revision=BASE_COMMIT)
    model.save_pretrained(tmp_path / "adapter", metrics={"accuracy": 0.875, "epoch": 3})
    payload = json.loads((tmp_path / "adapter" / "propulsion_config.json").read_text())
    assert payload["base_model_name_or_path"] == "org/tiny-base"
    assert payload["base_model_revision"] == BASE_COMMIT
    assert payload["propulsion_version"] == __version__ and payload["base_model_type"] == "roberta"
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: propulsion\n") and "base_model: org/tiny-base\n" in card
    # attn on 2 layers: query, key, value of 32 features each = 2 x 3 x 32 = 192 trainable entries
    assert "| Trainable parameters | 192 of " in card and "| Degree k | 7 |" in card
    assert "| Targets | preset `attn`: 6 modules wrapped |" in card
    assert f"`org/tiny-base` at revision `{BASE_COMMIT}`" in card
    assert "| accuracy | 0.8750 |" in card and "| epoch | 3 |" in card


def test_from_pretrained_resolves_hub_ids_and_revisions_from_the_cache(hub_cache, tmp_path):
    load_base = hub_base(hub_cache, tmp_path)
    first = perturbed(get_propulsion_model(load_base(), PropulsionConfig(degree=3)), seed=1)
    second = perturbed(get_propulsion_model(load_base(), PropulsionConfig(degree=3)), seed=2)
    first.save_pretrained(tmp_path / "a")
    second.save_pretrained(tmp_path / "b")
    cache_snapshot(hub_cache, "org/adapter", COMMIT_A, tmp_path / "a", refs=("v1",))  # tag v1
    cache_snapshot(hub_cache, "org/adapter", COMMIT_B, tmp_path / "b")  # main
    inputs = batch()
    expected_a, expected_b = outputs(first, inputs), outputs(second, inputs)
    assert not torch.equal(expected_a, expected_b)
    assert torch.equal(outputs(PropulsionModel.from_pretrained(load_base(), "org/adapter"), inputs), expected_b)
    for revision in ("v1", COMMIT_A):
        loaded = PropulsionModel.from_pretrained(load_base(), "org/adapter", revision=revision)
        assert torch.equal(outputs(loaded, inputs), expected_a)
    with pytest.raises(ValueError, match=r"no Propulsion adapter found in hub repo 'org/missing' at revision main"):
        PropulsionModel.from_pretrained(load_base(), "org/missing")
    with pytest.raises(ValueError, match=r"hub repo 'org/adapter' at revision v2"):
        PropulsionModel.from_pretrained(load_base(), "org/adapter", revision="v2")
    with pytest.raises(ValueError, match=r"not a hub repo id"):
        PropulsionModel.from_pretrained(load_base(), "org/a/b")


class RecordingApi(HfApi):
    """An HfApi whose two network calls record what they were given (and the folder's files at that moment)."""

    def __init__(self):
        super().__init__(token=False)
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return "commit-info"


def test_push_to_hub_uploads_the_saved_folder(tmp_path):
    model = perturbed(get_propulsion_model(build_tiny_model("roberta", AutoModelForSequenceClassification),
                                           PropulsionConfig(degree=5, targets="attn")))
    api = RecordingApi()
    assert model.push_to_hub("org/sst2-adapter", metrics={"accuracy": 0.5}, private=True, api=api) == "commit-info"
    (create, created), (upload, uploaded) = api.calls
    assert create == "create_repo" and created == {"repo_id": "org/sst2-adapter", "private": True, "exist_ok": True,
                                                   "repo_type": "model"}
    assert upload == "upload_folder" and uploaded["repo_id"] == "org/sst2-adapter"
    assert uploaded["commit_message"] == "Upload Propulsion adapter" and uploaded["create_pr"] is False
    assert sorted(uploaded["files"]) == ["README.md", "adapter_model.safetensors", "propulsion_config.json"]
    card = uploaded["files"]["README.md"].decode()
    assert "PropulsionModel.from_pretrained(base, 'org/sst2-adapter')" in card and "| accuracy | 0.5000 |" in card
    # what was uploaded is what save_pretrained writes
    model.save_pretrained(tmp_path / "local")
    assert uploaded["files"]["adapter_model.safetensors"] == (tmp_path / "local" / "adapter_model.safetensors"
                                                              ).read_bytes()
    # save_pretrained(push_to_hub=True): the folder kept, repo named after it unless given
    api = RecordingApi()
    model.save_pretrained(tmp_path / "my-adapter", push_to_hub=True, api=api)
    assert api.calls[0][1]["repo_id"] == "my-adapter" and api.calls[1][1]["folder_path"] == str(tmp_path / "my-adapter")
    assert (tmp_path / "my-adapter" / "propulsion_config.json").exists()
    with pytest.raises(ValueError, match=r"repo_id 'org/a b' is not a hub repo id"):
        model.push_to_hub("org/a b", api=RecordingApi())


def test_push_goes_through_huggingface_hub_which_refuses_offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = get_propulsion_model(build_tiny_model("roberta", AutoModelForSequenceClassification), PropulsionConfig())
    with pytest.raises(OfflineModeIsEnabled):
        model.push_to_hub("org/name", token="hf_not_a_real_token")
    assert huggingface_hub.__version__


def test_many_adapters_save_in_subfolders_and_load_back(tmp_path):
    model = perturbed(get_propulsion_model(build_tiny_model("roberta", AutoModelForSequenceClassification).eval(),
                                           PropulsionConfig(degree=3, targets="attn")))
    model.add_adapter("rte", PropulsionConfig(degree=9, targets="attn", init="normal"))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").exists() and (tmp_path / "rte" / "propulsion_config.json").exists()
    saved = load_file(str(tmp_path / "rte" / "adapter_model.safetensors"))
    layer = model.base_model.roberta.encoder.layer[0].attention.self.query
    assert torch.equal(saved["roberta.encoder.layer.0.attention.self.query.propulsion"], layer.vectors("rte").detach())
    loaded = PropulsionModel.from_pretrained(build_tiny_model("roberta", AutoModelForSequenceClassification).eval(),
                                             tmp_path / "rte", adapter_name="rte")
    model.set_adapter("rte")
    assert loaded.active_adapter == "rte" and torch.equal(outputs(loaded, batch()), outputs(model, batch()))
