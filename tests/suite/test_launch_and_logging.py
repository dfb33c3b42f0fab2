"""Several processes write one run folder; W&B logs offline when no key is configured."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.suite.helpers import QUICK, REPO, records_under, run_cli


def test_two_processes_write_one_record(tmp_path):
    # torchrun is what `accelerate launch` starts; ACCELERATE_USE_CPU makes it gloo on this GPU-less machine.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "propulsion.run",
               *QUICK, "task=sst2", "task.source=sample", "trainer.max_steps=4", "trainer.eval_every=2",
               "trainer.checkpoint_every=2", "trainer.keep_checkpoint=true", f"output_root={tmp_path}"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| field | value |") == 1  # the result table once, not once per process
    (record,) = records_under(tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    assert record["train"]["num_processes"] == 2 and record["status"] == "completed"
    assert record["train"]["mixed_precision"] == "no" and record["train"]["device"] == "cpu"
    assert record["train"]["distributed_type"] == "MULTI_CPU"  # gloo here; MULTI_GPU, FSDP or DEEPSPEED on GPUs
    # 256 sample rows over 2 processes x 16 per batch: 8 steps per epoch; every dev row evaluated once.
    assert record["train"]["steps_per_epoch"] == 8 and record["data"]["sizes"]["dev/validation"] == 64
    # The schedule as one process runs it (quick: lr 1e-2, linear, warm-up min(5, 4) steps), though accelerate
    # steps a prepared scheduler once per process: half-way through warm-up at step 2, 0 at the last step.
    assert [(e["step"], e["lr"]) for e in record["train_loss"]] == [(2, 0.005), (4, 0.0)]
    # The checkpoint at step 2 holds each process's own generator state, in process order.
    import torch

    (state,) = tmp_path.rglob("checkpoint/state.pt")
    rng = torch.load(state, weights_only=True)["rng"]
    assert len(rng) == 2 and all(torch.is_tensor(r["cpu"]) for r in rng)


def test_wandb_logs_offline_without_a_key(tmp_path):
    result = run_cli("model=tiny-roberta", "trainer=quick", "logger=wandb", f"logger.dir={tmp_path}/wb",
                     "task=sst2", "task.source=sample", "trainer.max_steps=2", f"output_root={tmp_path}/runs",
                     drop_env=("WANDB_MODE", "WANDB_API_KEY"))
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    # The docs' `wandb sync` glob, with their logger.dir (results) replaced by this run's, finds the run.
    doc = (REPO / "docs" / "results-and-tracking.md").read_text()
    (pattern,) = re.findall(r"^wandb sync (results/\S+)", doc, flags=re.M)
    assert list(tmp_path.glob("wb" + pattern.removeprefix("results"))) == runs


def test_wandb_mode_follows_the_configuration(monkeypatch, tmp_path):
    from propulsion.specs import LoggerSpec
    from propulsion.training.tracking import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    spec = LoggerSpec(name="wandb")
    assert wandb_mode(spec) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    assert wandb_mode(spec) == "online"
    assert wandb_mode(LoggerSpec(name="wandb", mode="disabled")) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(spec) == "offline"
