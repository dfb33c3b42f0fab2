"""The LLM-Adapters files: pinned to one commit, downloaded once into a cache, checked, hashed into the records.
A file:// mirror stands in for GitHub (urllib reads both the same way); the pinned table is held to the task
configs and to git's own hash rule."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from propulsion.compose import compose_spec
from propulsion.specs import UserError
from propulsion.tasks import llm_adapters_files as files
from tests.suite.helpers import records_under, run_cli
from tests.test_reasoning import AQUA_TEST, FAST, GREEDY, MATH_TRAIN, write_layout


def test_git_blob_hash_is_gits():
    # `printf 'hello\n' | git hash-object --stdin` and `git hash-object /dev/null`
    assert files.git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert files.git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_the_pinned_files_are_every_file_the_reasoning_tasks_name():
    named = set()
    for task in ("commonsense", "arithmetic"):
        spec, _ = compose_spec([f"task={task}", "model=tiny-llama"])
        named |= {spec.task.train_split, *spec.task.eval_splits.values()}
        assert spec.task.options["base_url"] == files.PINNED_URL  # the default reads the pinned commit
    assert named == set(files.PINNED)
    assert all(len(blob) == 40 for blob, _ in files.PINNED.values())
    assert files.PINNED["gsm8k"][1] == 1319 and files.PINNED["hellaswag"][1] == 10042


def _mirror(root: Path) -> tuple[str, dict[str, tuple[str, int]]]:
    """A file:// mirror in LLM-Adapters' layout, and the blob hashes and row counts its files pin."""
    write_layout(root, "math_10k", MATH_TRAIN, {"AQuA": AQUA_TEST}, n_test=3)
    pinned = {name: (files.git_blob_sha1((root / files.relative_path(name)).read_bytes()), rows)
              for name, rows in (("math_10k", 8), ("AQuA", 3))}
    return root.as_uri(), pinned


def test_a_file_is_downloaded_once_checked_and_read_from_the_cache_after(tmp_path):
    url, pinned = _mirror(tmp_path / "mirror")
    cache = tmp_path / "cache"
    first = files.cached("AQuA", url, str(cache), pinned=pinned)
    assert first == cache / "dataset" / "AQuA" / "test.json" and len(json.loads(first.read_text())) == 3
    shutil.rmtree(tmp_path / "mirror")  # no source any more: the cache answers
    assert files.cached("AQuA", url, str(cache), pinned=pinned) == first
    assert not list(cache.rglob("*.part"))


@pytest.mark.parametrize(("change", "message"), [
    ("blob", "is not AQuA at AGI-Edgerunners/LLM-Adapters@816657208a: git blob"),
    ("rows", "holds 3 rows; AQuA at 816657208a has 4"),
    ("field", "row 0 lacks one of ['instruction', 'answer']"),
])
def test_a_download_that_is_not_the_pinned_file_is_one_line_and_caches_nothing(tmp_path, change, message):
    url, pinned = _mirror(tmp_path / "mirror")
    blob, rows = pinned["AQuA"]
    if change == "blob":
        pinned["AQuA"] = ("0" * 40, rows)
    elif change == "rows":
        pinned["AQuA"] = (blob, 4)
    else:
        (tmp_path / "mirror" / "dataset" / "AQuA" / "test.json").write_text(json.dumps([{"instruction": "x"}]))
        pinned = {}
    with pytest.raises(UserError) as error:
        files.cached("AQuA", url, str(tmp_path / "cache"), pinned=pinned)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


def test_an_unreachable_source_names_the_offline_route(tmp_path):
    with pytest.raises(UserError, match="scripts/fetch_llm_adapters.py --out DIR"):
        files.cached("gsm8k", (tmp_path / "nowhere").as_uri(), str(tmp_path / "cache"))


def test_a_run_from_the_source_records_the_cached_files_checksums(tmp_path):
    # Through the entrypoint: task.source=hub reads options.base_url (here the mirror) into options.cache_dir.
    url, _ = _mirror(tmp_path / "mirror")
    cache = tmp_path / "cache"
    result = run_cli("model=tiny-llama", "task=arithmetic", "task.source=hub", f"task.options.base_url={url}",
                     f"task.options.cache_dir={cache}", "task.options.test_sets=[AQuA]", *FAST, *GREEDY,
                     "save_adapter=false", f"output_root={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["status"] == "completed", record.get("error")
    provenance = record["data"]["files"]
    assert set(provenance) == {"math_10k", "AQuA"}
    for name, entry in provenance.items():
        cached = cache / files.relative_path(name)
        assert entry["path"] == str(cached.resolve())
        assert entry["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
