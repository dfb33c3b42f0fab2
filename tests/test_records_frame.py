"""records.load: every run as one flat DataFrame row (issue 14, item 5)."""

from __future__ import annotations

import contextlib
import io
import math
import re
import subprocess
import sys
from pathlib import Path

from propulsion import records


def write(root, name, **fields):
    record = {"schema_version": records.SCHEMA_VERSION, "status": "completed", "error": None, "model": "roberta-base",
              "task": "sst2", "family": "glue", "method": "propulsion", "degree": 15, "seed": 0, "protocol": "dev",
              "main_metric": "accuracy", "metrics": {"accuracy": 0.9}, "params": {"trainable": 578, "total": 1000,
                                                                                  "percent": 57.8},
              "wall_time_s": 12.5, "peak_memory_bytes": 2048, "peak_memory_kind": "process_peak_rss",
              "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:12Z", "git_commit": "abc",
              "config": {"seed": 0}}
    record.update(fields)
    records.write_json_atomic(root / name / records.RECORD_NAME, record)


def test_load_gives_one_flat_row_per_run(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", task="mnli", seed=1, main_metric="matched/accuracy",
          metrics={"matched/accuracy": 0.8, "mismatched/accuracy": 0.7})
    write(tmp_path, "c", method="lora", degree=None, status="failed", error="CUDA out of memory", metrics=None,
          params=None)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / records.RECORD_NAME).write_text("{not json")
    frame = records.load(tmp_path)
    assert list(frame.columns) == [*records.FRAME_COLUMNS, "metric.accuracy", "metric.matched/accuracy",
                                   "metric.mismatched/accuracy"]
    assert list(frame.path) == [str(tmp_path / n / "record.json") for n in "abcd"]
    a, b, c, d = (frame.iloc[i] for i in range(4))
    assert (a.model, a.task, a.method, a.degree, a.seed, a.protocol) == ("roberta-base", "sst2", "propulsion", 15, 0,
                                                                         "dev")
    assert a.main_value == 0.9 and a["metric.accuracy"] == 0.9 and math.isnan(a["metric.matched/accuracy"])
    assert (a.params_trainable, a.params_total, a.params_percent) == (578, 1000, 57.8)
    assert (a.wall_time_s, a.peak_memory_bytes, a.status) == (12.5, 2048, "completed")
    assert b.main_value == 0.8 and b["metric.mismatched/accuracy"] == 0.7 and b.seed == 1
    assert c.status == "failed" and c.error == "CUDA out of memory" and math.isnan(c.main_value)
    assert c.degree == records.NO_DEGREE  # a method without a degree: a key a group-by keeps
    assert d.status == "unreadable" and "Expecting property name" in d.error
    completed = frame[frame.status == "completed"]
    assert completed.groupby("method")["main_value"].mean().to_dict() == {"propulsion": (0.9 + 0.8) / 2}


def test_an_empty_folder_gives_an_empty_frame_with_the_columns(tmp_path):
    frame = records.load(tmp_path)
    assert frame.empty and list(frame.columns) == list(records.FRAME_COLUMNS)


def test_records_stays_light():
    # importing records (every run does, and the table tools) must not pull in pandas, torch or transformers
    code = ("import sys, propulsion.records; "
            "print(sorted(m for m in ('pandas', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_group_bys_keep_every_method(tmp_path):
    write(tmp_path, "p0")
    write(tmp_path, "p1", seed=1, metrics={"accuracy": 0.8})
    write(tmp_path, "lora", method="lora", degree=None, metrics={"accuracy": 0.7})
    write(tmp_path, "bitfit", method="bitfit", degree=None, metrics={"accuracy": 0.6})
    means = records.load(tmp_path).groupby(["task", "method", "degree"])["main_value"].mean()
    assert means.to_dict() == {("sst2", "bitfit", "-"): 0.6, ("sst2", "lora", "-"): 0.7,
                               ("sst2", "propulsion", 15): (0.9 + 0.8) / 2}


def test_the_docs_examples_run_as_written(tmp_path, monkeypatch):
    # docs/results-and-tracking.md's Python blocks, executed in a folder whose results/runs holds a Propulsion and a
    # LoRA run: the printed group-by has both methods.
    runs = tmp_path / "results" / "runs"
    write(runs, "p0")
    write(runs, "lora", method="lora", degree=None, metrics={"accuracy": 0.7})
    doc = (Path(__file__).resolve().parents[1] / "docs" / "results-and-tracking.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert blocks, "the doc lost its Python example"
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block, "docs/results-and-tracking.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert any(line.split()[:5] == ["sst2", "lora", "-", "0.7", "NaN"] for line in lines), printed.getvalue()
    assert any(line.split()[:3] == ["propulsion", "15", "0.9"] for line in lines), printed.getvalue()
