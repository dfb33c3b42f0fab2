"""Run the real entrypoint in a subprocess, and write GLUE-schema data the way the hub has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from propulsion.tasks import samples

REPO = Path(__file__).resolve().parents[2]
GLUE = {  # task -> (text fields, num_labels, eval split names), as nyu-mll/glue has them
    "cola": (["sentence"], 2, ["validation"]),
    "sst2": (["sentence"], 2, ["validation"]),
    "mrpc": (["sentence1", "sentence2"], 2, ["validation"]),
    "stsb": (["sentence1", "sentence2"], 1, ["validation"]),
    "qqp": (["question1", "question2"], 2, ["validation"]),
    "mnli": (["premise", "hypothesis"], 3, ["validation_matched", "validation_mismatched"]),
    "qnli": (["question", "sentence"], 2, ["validation"]),
    "rte": (["sentence1", "sentence2"], 2, ["validation"]),
}
QUICK = ["model=tiny-roberta", "trainer=quick", "logger=none"]


def write_glue(folder: Path, task: str, n_train: int = 64, n_eval: int = 32) -> Path:
    fields, num_labels, evals = GLUE[task]
    splits = samples.glue_splits(task, fields, num_labels, evals, n_train=n_train, n_eval=n_eval, seed=7)
    samples.write_splits(splits, folder / task)
    return folder / task


def run_cli(*overrides: str, multirun: bool = False, timeout: int = 600, drop_env: tuple[str, ...] = (),
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false",
           **(env_extra or {})}
    for name in drop_env:
        env.pop(name, None)
    sweep = [f"hydra.sweep.dir={tempfile.mkdtemp(prefix='sweep-')}"] if multirun else []  # not in the repo
    command = [sys.executable, "-m", "propulsion.run", *(["-m"] if multirun else []), *overrides, *sweep]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def records_under(root: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(root.rglob("record.json"))]
