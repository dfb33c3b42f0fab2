"""Sweeps that survive failures, reruns that skip, killed runs that resume, and one-line user errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.suite.helpers import QUICK, REPO, records_under, run_cli, write_glue


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_glue(tmp_path_factory.mktemp("data"), "sst2", n_train=256)


def test_completed_run_is_skipped_on_rerun(tmp_path, data):
    args = [*QUICK, "task=sst2", f"task.data_dir={data}", "trainer.max_steps=2", f"output_root={tmp_path}"]
    assert run_cli(*args).returncode == 0
    (first,) = records_under(tmp_path)
    # How often it checkpoints or how many loader workers it uses does not change what a run computes.
    again = run_cli(*args, "trainer.checkpoint_every=7", "trainer.num_workers=0", "save_adapter=false")
    assert again.returncode == 0 and "skip:" in again.stdout
    (second,) = records_under(tmp_path)
    assert second["finished_at"] == first["finished_at"] and second["run_id"] == first["run_id"]
    # Changing the seed is another run, not a skip.
    assert "skip:" not in run_cli(*args, "seed=1").stdout
    assert len(records_under(tmp_path)) == 2


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path, data):
    # lr=1e30 drives z^k to inf: the loss becomes non-finite and that job fails; the other job completes.
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", "trainer.max_steps=4", "trainer.lr=1e30,1e-3",
                     f"output_root={tmp_path}", multirun=True)
    assert result.returncode == 1, result.stderr[-2000:]  # a failed job fails the sweep's exit status
    statuses = sorted((r["config"]["trainer"]["lr"], r["status"]) for r in records_under(tmp_path))
    assert statuses == [(1e-3, "completed"), (1e30, "failed")]
    failed = next(r for r in records_under(tmp_path) if r["status"] == "failed")
    assert "FloatingPointError" in failed["error"]
    # The end-of-sweep summary: counts, then the failed job's folder and its first error line.
    summary = result.stderr[result.stderr.index("sweep: 2 jobs"):].splitlines()
    assert summary[0] == "sweep: 2 jobs: 1 completed, 1 failed, 0 skipped (already completed)"
    assert summary[1].startswith(f"  failed: {failed['run_dir']}: FloatingPointError: ")
    assert summary[2] == "exit status 1: a job failed (--allow-failures keeps 0)"


def test_a_refused_sweep_job_is_counted_and_allow_failures_keeps_exit_0(tmp_path, data):
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", "degree=-1", f"output_root={tmp_path}",
                     "--allow-failures", multirun=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = result.stderr[result.stderr.index("sweep: 1 jobs"):].splitlines()
    assert summary[0] == "sweep: 1 jobs: 0 completed, 1 failed, 0 skipped (already completed)"
    assert summary[1].startswith("  failed: (no run folder: refused before it started): error: ")
    assert "degree" in summary[1] and len(summary) == 2
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_sweep_over_precision_runs_every_job(tmp_path, data):
    # Jobs run one after another in one process; accelerate's per-process state must not carry over.
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", "trainer.max_steps=2", "trainer.precision=no,bf16",
                     "trainer.gradient_accumulation_steps=1,2", f"output_root={tmp_path}", multirun=True)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = sorted((r["train"]["mixed_precision"], r["config"]["trainer"]["gradient_accumulation_steps"], r["status"])
                  for r in records_under(tmp_path))
    assert runs == [("bf16", 1, "completed"), ("bf16", 2, "completed"), ("no", 1, "completed"),
                    ("no", 2, "completed")]


def test_a_tracker_that_cannot_start_fails_the_run_in_its_record(tmp_path, data):
    # W&B refuses an unknown mode; the record says failed (it used to stay "running" forever).
    result = subprocess.run(
        [sys.executable, "-m", "propulsion.run", "model=tiny-roberta", "trainer=quick", "logger=wandb",
         f"logger.dir={tmp_path}/wb", "task=sst2", f"task.data_dir={data}", "trainer.max_steps=2",
         f"output_root={tmp_path}/runs"],
        cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "bogus"}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode != 0
    (record,) = records_under(tmp_path / "runs")
    assert record["status"] == "failed" and record["finished_at"] and "bogus" in record["error"]


def test_killed_run_resumes_from_its_checkpoint(tmp_path, data):
    args = [*QUICK, "task=sst2", f"task.data_dir={data}", "trainer.max_steps=60", "trainer.checkpoint_every=5",
            "trainer.eval_every=30", "trainer.batch_size=4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "propulsion.run", *args, f"output_root={killed}"], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed.rglob("checkpoint/state.pt")):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(killed.rglob("checkpoint/state.pt")), "no checkpoint appeared before the kill"
    (interrupted,) = records_under(killed)
    assert interrupted["status"] == "running"  # a complete file that says the run did not finish

    resumed = run_cli(*args, f"output_root={killed}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (record,) = records_under(killed)
    assert record["status"] == "completed" and record["train"]["resumed_from_step"] >= 5
    assert not list(killed.rglob("checkpoint"))  # removed once the run completed

    straight = tmp_path / "straight"
    assert run_cli(*args, f"output_root={straight}").returncode == 0
    (reference,) = records_under(straight)
    # Same data order, RNG and optimizer state: the resumed run ends where the uninterrupted one does.
    assert record["metrics"] == pytest.approx(reference["metrics"], abs=1e-6)
    assert record["train_loss"][-1]["loss"] == pytest.approx(reference["train_loss"][-1]["loss"], rel=1e-4)


@pytest.mark.parametrize("checkpoint_every", [20, 35])
def test_adalora_resumes_as_if_never_interrupted(tmp_path, data, checkpoint_every):
    # 40 steps: tinit 4, tfinal 8, so the budget is final at step 32. Resuming at 20 needs the rank allocator's
    # averages, at 35 the rank pattern (PEFT keeps both outside the weights; the latter used to crash).
    args = [*QUICK, "task=sst2", f"task.data_dir={data}", "method=adalora", "trainer.max_steps=40",
            "trainer.eval_every=10", f"trainer.checkpoint_every={checkpoint_every}", "trainer.keep_checkpoint=true",
            f"output_root={tmp_path}"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    (straight,) = records_under(tmp_path)
    # The saved adapter is the reported model (the best dev checkpoint), not cut to the final rank pattern.
    from safetensors.torch import load_file

    run_dir = Path(straight["run_dir"])
    best = {k.replace(".default", ""): v for k, v in load_file(str(run_dir / "checkpoint/best.safetensors")).items()}
    saved = load_file(str(run_dir / "adapter/adapter_model.safetensors"))
    lora = {k: v for k, v in saved.items() if "lora_" in k}
    assert len(lora) == 4 * 3 and all(best[k].equal(v) for k, v in lora.items())  # E, A, B of 4 modules, rank 12
    again = run_cli(*args, "skip_completed=false")  # the kept checkpoint: resumes from it
    assert again.returncode == 0, again.stderr[-2000:]
    (resumed,) = records_under(tmp_path)
    assert resumed["train"]["resumed_from_step"] == checkpoint_every and resumed["status"] == "completed"
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    assert resumed["train_loss"][-1]["loss"] == pytest.approx(straight["train_loss"][-1]["loss"], rel=1e-5)
    # The final budget, recorded: target_r 8 on 2 layers x (query, value).
    ranks = resumed["method_details"]["final_ranks"]
    assert len(ranks) == 4 and resumed["method_details"]["final_rank_total"] == 8 * 4
    assert ranks == straight["method_details"]["final_ranks"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=roberta-bass", "unknown model 'roberta-bass'; valid choices:"),
        ("task=sst3", "unknown task 'sst3'; valid choices:"),
        ("method=lorra", "unknown method 'lorra'; valid choices: adalora, adapter_s, bitfit,"),
        ("degree=0", "degree"),
        ("degree=1.5", "1.5"),
        ("protocol=test", "unknown protocol 'test'; valid choices: paper, heldout"),
        ("trainer.scheduler=cosin", "unknown trainer.scheduler 'cosin'; valid choices: linear, cosine,"),
        ("trainer.lr=-1", "trainer.lr must be > 0, got -1"),
        ("trainer.batch_size=0", "trainer.batch_size must be >= 1, got 0"),
        ("trainer.max_steps=-5", "trainer.max_steps must be >= 0, got -5"),
        ("trainer.epochs=0", "trainer.epochs must be > 0, got 0"),
        ("trainer.lr=abc", "trainer.lr must be a number, got 'abc'"),
        ("task.evaluation.during=generate",
         "task.evaluation.during='generate' is not available for sst2 (glue family); valid choices: full, loss"),
        ("seed=abc", "seed must be an integer in [0, 4294967295], got 'abc'"),
        ("task.label_field=labl", "has no column 'labl' (task.label_field); its columns: sentence, label, idx"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, data, override, expected):
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", f"output_root={tmp_path}", override)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_offline_paper_command_is_one_line_in_seconds_and_writes_nothing(tmp_path):
    # The paper's own command with no hub: HF_HUB_OFFLINE unset, the endpoint refusing connections. The model and
    # the data are both reported at once, with the local options, before a run folder or a W&B run exists.
    start = time.monotonic()
    result = run_cli("task=sst2", "method=propulsion", "degree=15", "logger=wandb", f"logger.dir={tmp_path}/wb",
                     f"output_root={tmp_path}/runs", drop_env=("HF_HUB_OFFLINE",),
                     env_extra={"HF_ENDPOINT": "http://127.0.0.1:9"})
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: model 'FacebookAI/roberta-base' is not in the local cache and the hub cannot "
                               "be used (127.0.0.1 unreachable:")
    assert "model.name_or_path=" in lines[0] and "; and dataset 'nyu-mll/glue' (sst2)" in lines[0]
    assert "task.data_dir=" in lines[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "wb").exists()
    assert elapsed < 120  # interpreter start and imports only: the hub libraries' retries took about a minute


def test_a_script_dataset_gets_the_converted_copy_named(tmp_path):
    # datasets >= 4 runs no loading scripts; some hub datasets the paper used may still be one.
    script = tmp_path / "scripted"
    script.mkdir()
    (script / "scripted.py").write_text("import datasets\n")
    result = run_cli(*QUICK, "task=cnn_dailymail", f"task.dataset={script}", "task.dataset_revision=main",
                     f"output_root={tmp_path}/runs")  # every task takes the revision the message suggests
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "is a loading script" in last and "task.dataset_revision=refs/convert/parquet" in last


def test_unreachable_dataset_names_the_dataset_and_the_fix(tmp_path):
    result = run_cli(*QUICK, "task=rte", f"output_root={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]  # a UserError, not a crash
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: dataset 'nyu-mll/glue' (rte) is not in the local cache and the hub cannot be used (HF_HUB_OFFLINE=1); "
        "use local files: task.data_dir="), result.stderr[-2000:]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written: no failed folder for the tables
