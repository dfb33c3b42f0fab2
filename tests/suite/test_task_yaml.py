"""Tasks are data: a GLUE-like task is one short YAML on top of conf/_glue_task.yaml, and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from propulsion.compose import CONF_DIR, check_choices, group_choices, to_spec
from propulsion.specs import UserError
from propulsion.tasks import samples
from propulsion.training import one_run
from tests.suite.helpers import QUICK, REPO, records_under, run_cli

# A task the suite does not ship: two text columns, two classes, its own metrics, main metric and degree.
NEW_TASK = """\
# A made-up paraphrase-like task: the whole definition of a new GLUE-like task.
defaults:
  - /_glue_task@_here_
  - _self_

name: pairs
dataset_config: pairs
text_fields: [left, right]
eval_splits:
  validation: validation
size: small
metrics: [accuracy, matthews_correlation]
main_metric: matthews_correlation
degree: 7
paper:
  epochs: 1
"""


@pytest.fixture(scope="module")
def user_conf(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conf")
    (folder / "task").mkdir()
    (folder / "task" / "pairs.yaml").write_text(NEW_TASK)
    return folder


def _compose(user_conf: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config",
                       overrides=["task=pairs", f"hydra.searchpath=[file://{user_conf}]", *overrides])


def test_the_shared_base_is_not_a_task_choice():
    glue = {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"}
    others = {"squad", "squad_v2", "xsum", "cnn_dailymail", "arithmetic", "commonsense"}
    assert glue | others <= set(group_choices("task"))
    assert not [name for name in group_choices("task") if "glue_task" in name]
    assert check_choices(["task=_glue_task"]).startswith("error: unknown task '_glue_task'; valid choices: ")
    help_text = subprocess.run([sys.executable, "-m", "propulsion.run", "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=120).stdout
    task_line = next(line for line in help_text.splitlines() if line.startswith("task:"))
    assert "sst2" in task_line and "glue_task" not in help_text
    # Only the groups a user chooses; the presets' specializing groups and the accelerate configs are not offered.
    listed = help_text.split("== Config groups")[1].split("== Examples")[0].splitlines()[1:]
    groups = [line.split(":")[0] for line in listed if ": " in line and not line.startswith("(")]
    assert groups == ["model", "task", "method", "trainer", "logger"]
    assert "trainer_task:" not in help_text and "fsdp" not in help_text


def test_a_user_config_dir_adds_task_choices(user_conf):
    assert "pairs" not in group_choices("task")
    assert check_choices(["task=pairs"]) is not None
    assert check_choices(["--config-dir", str(user_conf), "task=pairs"]) is None
    assert check_choices([f"--config-dir={user_conf}", "task=sst2,pairs"]) is None


def test_the_new_task_composes_from_the_base(user_conf):
    spec, config = to_spec(_compose(user_conf))
    task = spec.task
    # From the YAML above.
    assert (task.name, task.text_fields, task.size, task.metrics, task.main_metric, task.degree, spec.degree) == (
        "pairs", ["left", "right"], "small", ["accuracy", "matthews_correlation"], "matthews_correlation", 7, 7)
    # From the base: GLUE's family, hub id, label column, two labels, the authors' lr / batch / weight decay.
    assert (task.family, task.dataset, task.label_field, task.num_labels, task.max_length) == (
        "glue", "nyu-mll/glue", "label", 2, 512)
    assert task.paper == {"lr": 0.0001, "batch_size": 32, "epochs": 1, "weight_decay": 0.0}
    assert one_run.validate(spec, load=False).__name__ == "propulsion.tasks.glue"
    # Offline (the tests run with HF_HUB_OFFLINE=1), the hub model and the new task's hub data are one line.
    with pytest.raises(UserError, match=r"and dataset 'nyu-mll/glue' \(pairs\) is not in the local cache"):
        one_run.validate(spec)


@pytest.mark.parametrize("overrides, message", [
    (["task.degree=???"], "task.degree must be set"),  # a key the base leaves to the task
    (["task.main_metric=f1"], "task.main_metric 'f1' is not one of task.metrics; valid choices: accuracy, "
                              "matthews_correlation"),
])
def test_spec_rejections(user_conf, overrides, message):
    with pytest.raises(UserError, match=message):
        to_spec(_compose(user_conf, *overrides))


@pytest.mark.parametrize("overrides, message", [
    (["task.metrics=[acc]", "task.main_metric=acc"], r"unknown task.metrics \['acc'\]; valid choices: accuracy, "),
    (["task.metrics=[]"], "task 'pairs' lists no metrics"),
    (["task.num_labels=3", "task.metrics=[accuracy,f1]", "task.main_metric=accuracy"],
     r"task.metrics \['f1'\] do not fit 3 classes; valid choices: accuracy, f1_macro, matthews_correlation$"),
    (["task.num_labels=1", "task.metrics=[pearson,accuracy]", "task.main_metric=pearson"],
     r"task.metrics \['accuracy'\] do not fit a regression task \(num_labels 1\); valid choices: pearson, spearmanr"),
])
def test_family_rejections_before_anything_loads(user_conf, overrides, message):
    spec, _ = to_spec(_compose(user_conf, *overrides))
    with pytest.raises(UserError, match=message):
        one_run.validate(spec)


def test_the_new_task_runs_end_to_end(user_conf, tmp_path):
    splits = samples.glue_splits("pairs", ["left", "right"], 2, ["validation"], n_train=48, n_eval=24, seed=3)
    samples.write_splits(splits, tmp_path / "data")
    result = run_cli("--config-dir", str(user_conf), *QUICK, "task=pairs", f"task.data_dir={tmp_path}/data",
                     "trainer.max_steps=2", "trainer.eval_every=2", f"output_root={tmp_path}/runs")
    assert result.returncode == 0, result.stderr[-3000:]
    [record] = records_under(tmp_path / "runs")
    assert record["status"] == "completed", record.get("error")
    assert (record["task"], record["degree"], record["main_metric"]) == ("pairs", 7, "matthews_correlation")
    assert set(record["metrics"]) == {"accuracy", "matthews_correlation"}
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0 and -1.0 <= record["metrics"]["matthews_correlation"] <= 1.0
    assert record["data"]["sizes"] == {"train": 48, "dev/validation": 24}
    # tiny-roberta Propulsion(All): 576 z entries in the encoder and head dense (see test_glue_end_to_end) + 2 labels.
    assert record["params"]["trainable"] == 578
