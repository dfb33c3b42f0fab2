"""scripts/serial_sweep.py: the small-scale sweep's job list, in the order that makes a partial sweep useful."""

from __future__ import annotations

import importlib.util
import json

import pytest

from propulsion.compose import compose_spec
from propulsion.specs import UserError
from tests.suite.helpers import REPO

spec = importlib.util.spec_from_file_location("serial_sweep", REPO / "scripts" / "serial_sweep.py")
serial_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serial_sweep)

TASKS = {"rte", "mrpc", "stsb", "cola"}
METHODS = {"propulsion", "propulsion_attn", "lora", "bitfit", "full_ft", "propulsion_head"}


def as_dict(job: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in job)


def test_small_scale_runs_every_cell_at_seed_0_before_any_seed_1():
    jobs = [as_dict(job) for job in serial_sweep.jobs("small_scale", [])]
    assert len(jobs) == 3 * 4 * 6
    for seed in range(3):
        block = jobs[24 * seed: 24 * (seed + 1)]
        assert {job["seed"] for job in block} == {str(seed)}
        assert {(job["task"], job["method"]) for job in block} == {(t, m) for t in TASKS for m in METHODS}
    assert {job["model"] for job in jobs} == {"all-minilm-l6-v2"}


def test_overrides_replace_swept_values_and_pass_the_rest():
    jobs = serial_sweep.jobs("small_scale", ["seed=5", "task=cola", "model.name_or_path=/m"])
    assert [as_dict(job)["method"] for job in jobs] == ["propulsion", "propulsion_attn", "lora", "bitfit", "full_ft",
                                                        "propulsion_head"]
    assert all(job[-1] == "model.name_or_path=/m" and "seed=5" in job and "task=cola" in job for job in jobs)


def test_the_lr_search_inherits_the_sweep_and_adds_its_grid():
    jobs = [as_dict(job) for job in serial_sweep.jobs("small_scale_lr_search", [])]
    assert len(jobs) == 36  # 2 tasks x 6 methods x 3 rates, seed 0 only
    assert {(job["seed"], job["task"]) for job in jobs} == {("0", "cola"), ("0", "stsb")}
    assert [job["task"] for job in jobs[::18]] == ["cola", "stsb"]  # task slowest: CoLA's 18 jobs first
    assert [job["vars.point"] for job in jobs[:3]] == ["low", "high", "beyond"]


def test_the_further_point_runs_only_the_method_still_at_an_edge():
    # The Makefile's small-scale target runs `method=propulsion_head vars.point=further` after the grid: that job pair
    # composes at the rate past Propulsion + head's chosen edge, and another method at that point is one line.
    overrides = ["method=propulsion_head", "vars.point=further"]
    jobs = serial_sweep.jobs("small_scale_lr_search", overrides)
    assert [as_dict(job)["task"] for job in jobs] == ["cola", "stsb"]
    experiments = REPO / "experiments"
    for job in jobs:
        spec, _ = compose_spec(job, config_name="small_scale_lr_search", config_dir=experiments)
        assert spec.trainer.lr == 8e-5 and spec.method.name == "propulsion_head"
    with pytest.raises(UserError, match=r"vars\.grid\.further\.lora.*valid choices: propulsion_head$"):
        compose_spec(["method=lora", "vars.point=further", "task=cola"], config_name="small_scale_lr_search",
                     config_dir=experiments)
    assert "method=propulsion_head vars.point=further" in (REPO / "Makefile").read_text()


def test_an_unknown_experiment_is_one_line_and_exit_2(capsys):
    assert serial_sweep.main(["small_scale_typo", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown experiment 'small_scale_typo'; valid choices:") and err.count("\n") == 1
    assert "small_scale_lr_search" in err


def test_experiment_vars_feed_interpolations_and_stay_out_of_the_record():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from propulsion.compose import CONF_DIR, to_spec

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny-roberta", "method=lora"])
    # what experiments/small_scale.yaml adds: a per-method lr table read through a nested interpolation
    OmegaConf.set_struct(cfg, False)  # an experiment file adds keys the primary config lacks
    cfg = OmegaConf.merge(cfg, {"vars": {"lr": {"lora": 0.0005, "propulsion": 0.01}},
                                "trainer": {"lr": "${vars.lr.${method.name}}"}})
    spec, config = to_spec(cfg)
    assert spec.trainer.lr == 0.0005 and config["trainer"]["lr"] == 0.0005
    assert "vars" not in config  # the resolved lr is recorded; the table it came from is not part of the run


INPUTS = ["model.name_or_path=/work/models/all-MiniLM-L6-v2", "task.data_dir=/work/shared/data/glue/${task.name}"]


def test_a_committed_record_is_found_without_starting_its_process(tmp_path):
    # The run ids in the committed records were computed by the entrypoint in each job's own process; finding them
    # here shows that this process composes each job into the same identity (paths are strings: nothing is read).
    job = next(j for j in serial_sweep.jobs("small_scale", ["seed=0", "task=rte", *INPUTS])
               if as_dict(j)["method"] == "lora")
    found = serial_sweep.already_completed("small_scale", job)
    assert found is not None and found.parent == REPO / "results/small_scale/runs"
    assert found.name.startswith("all-minilm-l6-v2-rte-lora-s0-")
    # another configuration of the same cell is another run: not found
    assert serial_sweep.already_completed("small_scale", [*job, "trainer.lr=0.123"]) is None
    # a job that does not compose is left to its own process, which says why (not a traceback here)
    assert serial_sweep.already_completed("small_scale", [*job, "method=no_such_method"]) is None
    assert serial_sweep.already_completed("small_scale", [*job, "method=ia3"]) is None  # no vars.lr.ia3
    # a record that did not complete does not count
    moved = [*job, f"output_root={tmp_path}"]
    assert serial_sweep.already_completed("small_scale", moved) is None
    copy = tmp_path / found.name / "record.json"
    copy.parent.mkdir()
    record = json.loads((found / "record.json").read_text())
    copy.write_text(json.dumps(record | {"status": "running"}))
    assert serial_sweep.already_completed("small_scale", moved) is None
    copy.write_text(json.dumps(record))
    assert serial_sweep.already_completed("small_scale", moved) == tmp_path / found.name


def test_a_finished_sweep_relaunches_without_running_anything(tmp_path, capsys):
    # Every job here is complete (a copy of the committed seed-0 RTE LoRA record): main starts no process, which
    # would fail (no such model directory on a test machine), and says it skipped.
    job = [j for j in serial_sweep.jobs("small_scale", ["seed=0", "task=rte", "method=lora", *INPUTS])]
    (found,) = [serial_sweep.already_completed("small_scale", j) for j in job]
    (tmp_path / found.name).mkdir()
    (tmp_path / found.name / "record.json").write_text((found / "record.json").read_text())
    argv = ["small_scale", "seed=0", "task=rte", "method=lora", *INPUTS, f"output_root={tmp_path}"]
    assert serial_sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert f"skip: {tmp_path / found.name} already completed" in out and "1 jobs, 0 failed" in out


def test_a_method_the_experiments_lr_table_lacks_is_one_line_with_the_valid_choices():
    with pytest.raises(UserError) as caught:
        compose_spec(["seed=0", "task=rte", "method=ia3"], config_name="small_scale",
                     config_dir=serial_sweep.EXPERIMENTS)
    assert str(caught.value) == ("trainer.lr reads vars.lr.ia3, which the config does not set; valid choices: "
                                 "propulsion, propulsion_attn, lora, bitfit, full_ft, propulsion_head")


def test_a_derived_experiment_sets_its_own_slowest_key():
    # study_glue_minilm_lr inherits seed, task and method from study_glue_minilm (task slower than method there), and
    # lists method first: a partial search then holds whole methods, both tasks at each lr, not all of MRPC first.
    jobs = [as_dict(job) for job in serial_sweep.jobs("study_glue_minilm_lr", [])]
    assert len(jobs) == 5 * 3 * 2
    assert [(j["method"], j["vars.point"], j["task"]) for j in jobs[:4]] == [
        ("lora", "mid", "mrpc"), ("lora", "mid", "stsb"), ("lora", "low", "mrpc"), ("lora", "low", "stsb")]
    assert {j["method"] for j in jobs[:6]} == {"lora"}
