"""`make plan`: a sweep's cost before launch. Steps and evaluation passes must equal what a real run performs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from propulsion.specs import UserError
from propulsion.studies import calibrate, cost, plan, plan_validation
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


def test_gradient_accumulation_counts_every_micro_batch_of_a_step():
    # RTE, batch 8: 312 steps an epoch alone, 78 when 4 micro-batches are accumulated into each step. The rows (and
    # FLOPs) a run trains on are the same; the padded length is a micro-batch's either way.
    base = ["model=roberta-base", "task=rte", "method=propulsion", "trainer.batch_size=8", "trainer.epochs=1"]
    alone = _only(plan.plan(base))
    accumulated = _only(plan.plan([*base, "trainer.gradient_accumulation_steps=4"]))
    assert (alone.steps, accumulated.steps) == (312, 78)
    assert accumulated.train_tokens == pytest.approx(alone.train_tokens * (78 * 32) / (312 * 8))
    assert accumulated.work["train_flops"] == pytest.approx(alone.work["train_flops"] * (78 * 32) / (312 * 8))


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


# --- the cost model (propulsion/studies/cost.py): each term on a hand-computed case ---------------------------------

UNIT = cost.Device("unit", "gpu", {"fp32": 1e12, "tf32": 4e12, "bf16": 8e12}, step_overhead_s=0.05,
                   eval_batch_overhead_s=0.01, eval_pass_overhead_s=2.0, run_overhead_s=30.0,
                   optimizer_s_per_param=1e-9)
SHAPE = cost.Shape(non_embedding=1_000_000, layers=2, hidden=10, full=False)


def test_expected_batch_max_of_a_uniform_length_is_b_over_b_plus_1():
    # Lengths uniform on [0, 100]: E[max of b] = 100·b/(b+1); one row: the mean; a cap truncates each length.
    probs, values = (0.0, 1.0), (0.0, 100.0)
    assert cost.expected_batch_max(probs, values, 1) == pytest.approx(50.0, rel=1e-6)
    assert cost.expected_batch_max(probs, values, 3) == pytest.approx(75.0, rel=1e-6)
    assert cost.expected_batch_max(probs, values, 32) == pytest.approx(100 * 32 / 33, rel=1e-5)
    # capped at 50: E[min(max, 50)] = 50 - ∫₀⁵⁰ P(max ≤ x) dx = 50 - 50/(b+1); b=1: 37.5
    assert cost.expected_batch_max(probs, values, 1, cap=50) == pytest.approx(37.5, rel=1e-5)


def test_dynamic_padding_grows_with_the_batch_and_static_padding_is_max_length():
    # Batch 1: the mean of the piecewise-linear quantile function, segment by segment.
    probs, values = cost.QUANTILE_PROBS, cost.LENGTH_QUANTILES["rte"]
    one = cost.padded_length("rte", 70, 1, 512)
    assert one == pytest.approx(sum((values[i] + values[i + 1]) / 2 * (probs[i + 1] - probs[i])
                                    for i in range(len(probs) - 1)), rel=1e-4)
    assert one < cost.padded_length("rte", 70, 32, 512) < 289  # RTE's longest training pair: 289 tokens
    assert cost.padded_length("rte", 70, 32, 128) <= 128
    assert cost.padded_length("rte", 70, 32, 512, padding="static") == 512.0


def test_a_lognormal_length_has_the_tasks_mean():
    probs, values = cost.lognormal_quantiles(40.0, 0.4)
    assert cost.expected_batch_max(probs, values, 1) == pytest.approx(40.0, rel=0.02)  # tail cut at 0.9999


def test_flops_per_token_carry_the_s_squared_attention_term():
    # 2N + 4·layers·s·h = 2,000,000 + 4·2·100·10 = 2,008,000 at s=100; the attention part grows with s.
    assert cost.forward_flops_per_token(SHAPE, 100) == 2_008_000
    assert cost.forward_flops_per_token(SHAPE, 200) - cost.forward_flops_per_token(SHAPE, 100) == 8_000
    assert cost.training_multiplier(SHAPE) == 2
    assert cost.training_multiplier(cost.Shape(1, 1, 1, full=True)) == 3


def test_a_step_is_its_overhead_plus_flops_over_throughput_plus_the_optimizer():
    # 10 steps, batch 4, length 100: 10·4·100·2·2,008,000 = 1.6064e10 FLOPs at 1e12 FLOP/s = 0.016064 s;
    # overhead 10·0.05 = 0.5 s; AdamW 10 steps × 1,000 parameters × 1e-9 s = 1e-5 s.
    work = cost.training_work(SHAPE, 10, 4, 100, trainable=1000)
    assert work == {"steps": 10, "train_flops": 1.6064e10, "optimizer_updates": 10_000}
    assert cost.price(work, UNIT, "fp32")["train"] == pytest.approx(0.5 + 0.016064 + 1e-5)


def test_evaluation_passes_cost_their_batches_and_a_pass_overhead():
    # 3 passes over 10 rows in batches of 4 (3 batches each, the last one of 2 rows), length 100:
    # 3·2 s + 9·0.01 s + 3·10·100·2,008,000 FLOPs / 1e12 = 6 + 0.09 + 0.006024.
    work = cost.evaluation_work(SHAPE, 3, 10, 4, 100)
    assert work == {"eval_passes": 3, "eval_batches": 9, "eval_flops": 3 * 10 * 100 * 2_008_000}
    assert cost.price(work, UNIT, "fp32")["evaluate"] == pytest.approx(6.09 + 0.006024)
    assert cost.evaluation_work(SHAPE, 3, 0, 4, 100)["eval_batches"] == 0  # no dev set


def test_generation_is_one_forward_per_new_token_and_batch():
    # 10 rows in batches of 4 (3 batches), 2 beams, 5 new tokens after a context of 20: 15 forwards;
    # FLOPs 10·2·5·(2,000,000 + 4·2·22.5·10) = 100·2,001,800.
    work = cost.generation_work(SHAPE, 10, 4, 2, 5, 20)
    assert work == {"decode_forwards": 15, "decode_flops": 100 * 2_001_800}
    assert cost.price(work, UNIT, "fp32", generate_ratio=0.5)["generate"] == pytest.approx(
        15 * 0.01 + 100 * 2_001_800 / 1e12 / 0.5)


def test_precision_picks_the_throughput():
    assert cost.precision_of("no", "float32") == "fp32"
    assert cost.precision_of("bf16", "float32") == cost.precision_of("no", "bfloat16") == "bf16"
    work = {"train_flops": 8e12}
    assert cost.price(work, UNIT, "fp32")["train"] == 8.0
    assert cost.price(work, UNIT, "bf16")["train"] == 1.0  # 8x the fp32 throughput
    assert cost.price(work, UNIT, "tf32")["train"] == 2.0


def test_cpu_and_gpu_defaults_differ_as_their_cores_and_peaks_say():
    one, two = cost.default_device("cpu", 1), cost.default_device("cpu", 2)
    assert (one.name, two.name, one.kind) == ("cpu-1", "cpu-2", "cpu")
    assert two.throughput["fp32"] == pytest.approx(one.throughput["fp32"] * 2 * cost.CPU_PARALLEL_EFFICIENCY)
    h100 = cost.default_device("h100-80gb")
    assert h100.throughput["bf16"] / h100.throughput["fp32"] == pytest.approx(989 / 67)
    assert h100.throughput["fp32"] > 10 * two.throughput["fp32"]
    assert cost.price({"steps": 1}, h100, "fp32")["setup"] == h100.run_overhead_s


def test_a_measured_calibration_replaces_the_defaults_and_the_plan_names_it(tmp_path):
    path = tmp_path / "calibration-cpu-2.json"
    path.write_text('{"device": "cpu-2", "measured_at": "2026-12-07T00:00:00Z", "entries": {"tiny-roberta/'
                    'propulsion": {"throughput": {"fp32": 5e9}, "step_overhead_s": 0.25}}}')
    overrides = ["model=tiny-roberta", "task=rte", "task.source=sample", *TINY_TRAINER]
    measured = _only(plan.plan(overrides, gpu="cpu", cores=2, calibration=path))
    default = _only(plan.plan(overrides, gpu="cpu", cores=2, use_calibration=False))
    assert measured.steps == default.steps  # counts do not depend on the device
    assert measured.seconds["train"] - default.seconds["train"] == pytest.approx(
        measured.steps * (0.25 - cost.CPU_STEP_OVERHEAD_S)
        + measured.work["train_flops"] * (1 / 5e9 - 1 / default_throughput(2)), rel=1e-6)
    text = plan.report([measured], plan.resolve_device("cpu", 2), plan.load_calibration(path, "cpu-2"))
    assert "hours (cpu-2)" in text and str(path) in text and "tiny-roberta/propulsion" in text
    with pytest.raises(UserError, match="measured on 'cpu-2', not 'h100-80gb'"):
        plan.plan(overrides, gpu="h100-80gb", calibration=path)


def default_throughput(cores: int) -> float:
    return cost.default_device("cpu", cores).throughput["fp32"]


def test_calibrate_times_real_steps_of_a_tiny_model(tmp_path):
    # The real model and method, a few real AdamW steps: positive constants, written where the plan reads them.
    name, path = calibrate.calibrate_sweep(["model=tiny-roberta", "task=rte", "method=propulsion,lora",
                                            "task.source=sample", *TINY_TRAINER], path=tmp_path / "c.json", cores=1)
    data = json.loads(path.read_text())
    assert name == data["device"] and set(data["entries"]) == {"tiny-roberta/propulsion", "tiny-roberta/lora"}
    entry = data["entries"]["tiny-roberta/propulsion"]
    assert entry["throughput"]["fp32"] > 0 and entry["step_overhead_s"] >= 0
    assert [s["length"] for s in entry["measured"]["steps"]] == [8, 48, 128]


def test_the_fit_recovers_known_constants():
    # Points made from overhead 0.1 s and 2e9 FLOP/s come back exactly.
    points = [(f, 0.1 + f / 2e9) for f in (1e8, 5e8, 2e9)]
    overhead, throughput = calibrate.fit_overhead_and_throughput(points)
    assert (overhead, throughput) == (pytest.approx(0.1), pytest.approx(2e9))


def test_the_validation_document_is_what_the_script_writes():
    assert plan_validation.render() == plan_validation.DOCUMENT.read_text()


def test_cpu_share_tells_a_shared_machine_from_an_idle_one():
    # 100 s of wall on 2 threads: 190 CPU-seconds is 95% (alone), 100 is 50% (a neighbour as busy as itself).
    alone = {"wall_time_s": 100.0, "cpu_time_s": 190.0, "cpu_threads": 2}
    shared = {"wall_time_s": 100.0, "cpu_time_s": 100.0, "cpu_threads": 2}
    assert plan_validation.cpu_share(alone) == pytest.approx(0.95)
    assert plan_validation.cpu_share(shared) == pytest.approx(0.5)


def test_a_notebook_slower_than_its_own_logged_flops_is_named():
    # Logged FLOPs / seconds: 6, 5, 7 and 1 TFLOP/s. The median (upper) is 6; only the 1 TFLOP/s run is below 6/2.
    rows = [plan_validation.Row(f"nb{i}", 100.0, seconds, logged_flops=flops * 1e12)
            for i, (seconds, flops) in enumerate([(10, 60), (10, 50), (10, 70), (100, 100)])]
    assert [plan_validation.logged_throughput(r) for r in rows] == pytest.approx([6.0, 5.0, 7.0, 1.0])
    assert [(row.label, median) for row, median in plan_validation.throughput_outliers(rows)] == [("nb3", 6.0)]
