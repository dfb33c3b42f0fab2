"""scripts/serial_sweep.py: the small-scale sweep's job list, in the order that makes a partial sweep useful."""

from __future__ import annotations

import importlib.util

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


def test_an_unknown_experiment_is_one_line_and_exit_2(capsys):
    assert serial_sweep.main(["small_scale_typo", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown experiment 'small_scale_typo'; valid choices:") and err.count("\n") == 1
    assert "small_scale_lr_search" in err


def test_experiment_vars_feed_interpolations_and_stay_out_of_the_record():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from propulsion.run import CONF_DIR, to_spec

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=tiny-roberta", "method=lora"])
    # what experiments/small_scale.yaml adds: a per-method lr table read through a nested interpolation
    OmegaConf.set_struct(cfg, False)  # an experiment file adds keys the primary config lacks
    cfg = OmegaConf.merge(cfg, {"vars": {"lr": {"lora": 0.0005, "propulsion": 0.01}},
                                "trainer": {"lr": "${vars.lr.${method.name}}"}})
    spec, config = to_spec(cfg)
    assert spec.trainer.lr == 0.0005 and config["trainer"]["lr"] == 0.0005
    assert "vars" not in config  # the resolved lr is recorded; the table it came from is not part of the run
