"""experiments/: each file is a sweep over valid choices, and runs through the entrypoint as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from propulsion.compose import CHECKED_GROUPS, compose_spec, group_choices
from propulsion.method.config import INITS, POOLINGS, PRESETS
from tests.suite.helpers import REPO, records_under, run_cli

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
VALID = {"method.targets": PRESETS, "method.pooling": POOLINGS, "method.init": INITS}
TINY = ["model=tiny-roberta", "task.source=sample", "trainer=quick", "trainer.max_steps=2", "logger=none"]


def test_experiment_files_exist_for_the_paper():
    names = {path.stem for path in EXPERIMENTS}
    assert {"table1_roberta_base", "table1_roberta_large", "table5_layers", "fig5_degree", "fig5_steps",
            "fig3_convergence", "fig8_init", "fig10_vectors", "fig11_pooling", "hparams_optuna"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_sweep_values_are_valid_choices(path: Path):
    # OmegaConf, as Hydra reads it: a key given twice is an error there (yaml.safe_load keeps the last one).
    config = OmegaConf.to_container(OmegaConf.load(path))
    # the suite's config, directly or through a base experiment (small_scale_lr_search builds on small_scale)
    assert "config" in config["defaults"] or any(f"{d}.yaml" in {p.name for p in EXPERIMENTS}
                                                 for d in config["defaults"] if isinstance(d, str))
    params = config["hydra"]["sweeper"]["params"]
    for key, values in params.items():
        if not isinstance(values, str) or "(" in values:  # optuna distributions
            continue
        for value in values.split(","):
            if key in ("model", "task", "method"):
                assert value in group_choices(key), (path.stem, key, value)
            elif key in VALID:
                assert value in VALID[key], (path.stem, key, value)
    # Every swept key names a group or a key of the composed config: a misspelt key (method.num_vector) would
    # otherwise be appended by Hydra or skipped by the checks above.
    default = OmegaConf.create(compose_spec([])[1])
    absent = object()
    own = set(config) - {"defaults", "hydra"}  # keys the experiment file declares itself (small_scale's vars)
    unknown = [key for key in params if key not in CHECKED_GROUPS and key.split(".")[0] not in own
               and OmegaConf.select(default, key, default=absent) is absent]
    assert not unknown, (path.stem, unknown)


def test_an_experiment_runs_as_written(tmp_path):
    # fig11_pooling with the tiny model on one task: one job per pooling, 3 vectors each.
    result = run_cli("--config-dir", "experiments", "--config-name", "fig11_pooling", *TINY, "task=sst2",
                     f"output_root={tmp_path}", f"hydra.sweep.dir={tmp_path}/sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    records = records_under(tmp_path)
    assert sorted(r["config"]["method"]["pooling"] for r in records) == ["l2", "max", "mean", "min"]
    assert {r["params"]["trainable"] for r in records} == {3 * 578}


def test_optuna_search_returns_the_metric(tmp_path):
    result = run_cli("--config-dir", "experiments", "--config-name", "hparams_optuna", *TINY, "task=sst2",
                     "hydra.sweeper.n_trials=2", f"output_root={tmp_path}", f"hydra.sweep.dir={tmp_path}/sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Best value" in result.stdout + result.stderr
    assert len(records_under(tmp_path)) == 2


def test_table3_applies_the_papers_llm_settings_to_every_model():
    # Table 3's sweep composes, for a model it does not name itself, the paper's dropout, L2 and Propulsion vectors.
    result = run_cli("--config-dir", "experiments", "--config-name", "table3_reasoning", "hydra.mode=RUN",
                     "model=gpt-j-6b", "task=arithmetic", "method=propulsion", "--cfg", "job", "--resolve")
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    assert config["model"]["dropout"] == 0.1 and config["method"]["num_vectors"] == 5
    assert config["trainer"]["weight_decay"] == 0.01 and config["trainer"]["precision"] == "bf16"
    assert config["trainer"]["warmup_steps"] == 100 and config["trainer"]["scheduler"] == "linear"
    assert config["degree"] == 15


def test_submitit_launcher_runs_each_job_as_its_own_process(tmp_path):
    # The `slurm` extra's plugin: submitit_local runs the jobs through the same launcher code as submitit_slurm
    # (only the executor differs), each job in its own process, records in the usual place.
    result = run_cli("--config-dir", "experiments", "--config-name", "fig5_degree", "hydra/launcher=submitit_local",
                     *TINY, "task=sst2", "degree=1,15", f"output_root={tmp_path}/runs",
                     f"hydra.sweep.dir={tmp_path}/sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    records = records_under(tmp_path / "runs")
    assert sorted(r["degree"] for r in records) == [1, 15]
    assert {r["status"] for r in records} == {"completed"}
    jobs = [path for path in (tmp_path / "sweep" / ".submitit").iterdir() if path.name.isdigit()]
    assert len(jobs) == 2 and all(list(job.glob("*_result.pkl")) for job in jobs)  # one submitted process each
