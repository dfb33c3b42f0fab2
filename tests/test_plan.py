"""`make plan`: a sweep's cost before launch. Steps and evaluation passes must equal what a real run performs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from propulsion.specs import UserError
from propulsion.studies import plan
from tests.suite.helpers import REPO, records_under, run_cli, write_glue

TINY_TRAINER = ["trainer=quick", "trainer.epochs=3", "trainer.batch_size=8", "trainer.eval_every=7", "logger=none"]


def _only(jobs_and_broken):
    jobs, broken = jobs_and_broken
    assert not broken and len(jobs) == 1
    return jobs[0]


@pytest.mark.parametrize("protocol", ["paper", "heldout"])
def test_plan_counts_equal_a_real_glue_run(tmp_path, protocol):
    # 50 train rows, batch 8: 7 steps an epoch, 21 a round; evaluations at 7, 14 and 21; the held-out run restarts
    # once from its best model (a second round: 42 steps, 6 evaluations).
    data = write_glue(tmp_path / "data", "rte", n_train=50, n_eval=20)
    rounds = 2 if protocol == "heldout" else 1
    overrides = ["model=tiny-roberta", "task=rte", f"task.data_dir={data}", f"protocol={protocol}", *TINY_TRAINER,
                 f"trainer.restarts={rounds - 1}"]
    planned = _only(plan.plan(overrides))
    result = run_cli(*overrides, f"output_root={tmp_path / 'runs'}", "save_adapter=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    assert planned.train_rows == record["data"]["sizes"]["train"] == 50
    assert planned.steps == record["train"]["steps"] == 21 * rounds
    assert planned.evaluation_passes == len(record["evaluations"]) == 3 * rounds
    dev = sum(v for k, v in record["data"]["sizes"].items() if k.startswith("dev/"))
    test = sum(v for k, v in record["data"]["sizes"].items() if k.startswith("test/"))
    assert (planned.eval_rows, planned.report_rows) == (dev, test) == ((10, 10) if protocol == "heldout" else (20, 0))


@pytest.mark.parametrize("during", ["generate", "loss"])
def test_plan_counts_equal_a_real_generation_run(tmp_path, during):
    # tiny-bart on the XSum sample (16 validation rows). XSum's schedule: greedy ROUGE on a fixed dev subset (5 rows
    # here) at every evaluation, or the dev loss; then the selected model's one full 8-beam evaluation on all 16.
    overrides = ["model=tiny-bart", "task=xsum", "task.source=sample", "trainer=quick", "trainer.max_steps=6",
                 "trainer.eval_every=4", "logger=none", f"task.evaluation.during={during}", "task.evaluation.rows=5"]
    planned = _only(plan.plan(overrides))
    result = run_cli(*overrides, f"output_root={tmp_path / 'runs'}", "save_adapter=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    assert planned.steps == record["train"]["steps"] == 6
    assert planned.evaluation_passes == len(record["evaluations"]) == 2  # steps 4 and 6 (the last)
    schedule = record["evaluation"]
    assert (planned.eval_rows, planned.report_rows) == (schedule["dev_rows"]["validation"],
                                                         schedule["final"]["rows"]["validation"]) == (5, 16)
    assert schedule["final"]["split"] == "dev" and schedule["final"]["generation"]["num_beams"] == 8
    full = 16 * plan.MEAN_TARGET_TOKENS["xsum"] * 8
    if during == "generate":  # 2 greedy passes over 5 rows, then 8 beams over 16
        assert schedule["generation_during"]["num_beams"] == 1 and schedule["selected_on"] == "metric"
        assert planned.generated_tokens == 2 * 5 * plan.MEAN_TARGET_TOKENS["xsum"] + full
    else:  # the loss selects; nothing is generated before the end
        assert schedule["generation_during"] is None and schedule["selected_on"] == "loss"
        assert all(e["metrics"] == {} and e["loss"] > 0 for e in record["evaluations"])
        assert planned.generated_tokens == full
    # The reported numbers are the full evaluation's, with its predictions for every dev row beside the record.
    assert set(record["metrics"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    predictions = (tmp_path / "runs" / record["run_dir"].split("/")[-1] / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 16


def test_hub_sizes_give_the_papers_step_counts():
    # RTE: 2,490 rows, batch 32 -> 78 batches an epoch, 30 epochs (the authors' notebook) = 2,340 steps; evaluated
    # every 100 steps and at the last: 24 passes over the 277 validation rows. No data or weights are touched.
    job = _only(plan.plan(["model=roberta-base", "task=rte", "method=propulsion"]))
    assert (job.train_rows, job.steps, job.evaluation_passes, job.eval_rows) == (2490, 2340, 24, 277)
    assert (job.trainable, job.total) == (86_018, 124_733_188)
    assert job.fits


def test_restarts_are_rounds_of_the_same_length():
    # CoLA under trainer=authors (cola.ipynb): 8,551 rows, batch 32 -> 268 steps an epoch, 7 epochs = 1,876 steps a
    # round, evaluated every 100 steps and at the round's end (19 passes), trained twice (restarts=1).
    job = _only(plan.plan(["model=roberta-base", "task=cola", "method=propulsion", "trainer=authors"]))
    assert (job.steps, job.evaluation_passes) == (2 * 1876, 2 * 19)


def test_a_sweep_expands_like_hydra_and_counts_once_per_configuration():
    jobs, broken = plan.plan(["model=roberta-base", "task=rte,mrpc", "method=propulsion", "seed=0,1,2"])
    assert not broken
    assert [(j.task, j.seed) for j in jobs] == [("rte", 0), ("rte", 1), ("rte", 2), ("mrpc", 0), ("mrpc", 1),
                                                ("mrpc", 2)]
    assert jobs[3].train_rows == 3668 and jobs[3].steps == 115 * 10  # MRPC: ceil(3668 / 32) × 10 epochs


def test_evaluation_passes_rule():
    assert plan.evaluation_passes(250, 100, True) == 3  # 100, 200 and the last (250)
    assert plan.evaluation_passes(200, 100, True) == 2  # the last step is an evaluation step already
    assert plan.evaluation_passes(250, 100, False) == 0  # no dev set (reasoning)


def test_a_job_that_does_not_fit_one_gpu_gets_a_sharded_launch():
    memory = {"weights": 52.0, "optimizer+grads": 0.1, "activations": 40.0, "total": 92.1}
    fits, launch = plan.placement(memory, capacity=80.0)
    assert not fits and "--num_processes 2" in launch and "scripts/accelerate/fsdp.yaml" in launch
    assert plan.placement({**memory, "activations": 10.0, "total": 62.1}, capacity=80.0)[0]


def test_unknown_gpu_and_unknown_sizes_are_one_line():
    with pytest.raises(UserError, match="valid choices: a100-80gb, h100-80gb, h200"):
        plan.plan(["model=roberta-base"], gpu="v100")
    command = [sys.executable, "-m", "propulsion.studies.plan", "--gpu", "v100", "model=roberta-base"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1",
                                                                                     "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "unknown --gpu 'v100'" in result.stderr


@pytest.mark.parametrize("overrides, config_name, message", [
    ([], "nope", r"unknown config 'nope' in .*experiments; valid choices: fig10_vectors"),
    (["method=nope"], "config", r"unknown method 'nope'; valid choices: adalora, adapter_s"),
    (["task.nokey=3"], "config", r"Could not override 'task.nokey'"),
])
def test_a_bad_experiment_name_group_or_key_is_one_line(overrides, config_name, message):
    config_dir = str(REPO / "experiments") if config_name != "config" else None
    with pytest.raises(UserError, match=message) as caught:
        plan.plan(overrides, config_name, config_dir)
    assert "\n" not in str(caught.value)
