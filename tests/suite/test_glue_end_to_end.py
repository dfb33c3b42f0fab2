"""Every GLUE task through the real entrypoint: one sweep, tiny model, data written in the hub schema."""

from __future__ import annotations

import pytest

from tests.suite.helpers import GLUE, QUICK, records_under, run_cli, write_glue

# Metric keys each task must report (the official GLUE metrics of each task).
EXPECTED_KEYS = {
    "cola": {"matthews_correlation"},
    "sst2": {"accuracy"},
    "mrpc": {"accuracy", "f1", "f1_macro"},  # f1: GLUE's binary F1; f1_macro: the authors' (sklearn macro)
    "stsb": {"pearson", "spearmanr"},
    "qqp": {"accuracy", "f1", "f1_macro"},
    "mnli": {"matched/accuracy", "mismatched/accuracy"},
    "qnli": {"accuracy"},
    "rte": {"accuracy"},
}


@pytest.fixture(scope="module")
def glue_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    for task in GLUE:
        write_glue(root / "data", task)
    result = run_cli(
        *QUICK, f"task={','.join(GLUE)}", f"task.data_dir={root}/data/${{task.name}}",
        "trainer.max_steps=3", "trainer.eval_every=3", f"output_root={root}/runs", multirun=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["task"]: record for record in records_under(root / "runs")}


def test_every_task_completes_with_its_official_metrics(glue_sweep):
    assert set(glue_sweep) == set(GLUE)
    for task, record in glue_sweep.items():
        assert record["status"] == "completed", (task, record.get("error"))
        assert set(record["metrics"]) == EXPECTED_KEYS[task], task
        assert record["train"]["steps"] == 3


def test_paper_degrees_are_the_default(glue_sweep):
    degrees = {task: record["degree"] for task, record in glue_sweep.items()}
    assert degrees == {"sst2": 15, "qqp": 15, "rte": 15, "stsb": 15, "qnli": 55, "mrpc": 55, "cola": 20, "mnli": 20}


def test_counts_follow_the_number_of_labels(glue_sweep):
    # tiny-roberta Propulsion(All): 2 layers x (4x32 attention + 64 + 32) + 3x32 embeddings + 32 head dense
    # = 576, plus one z entry per output label of the head's out_proj.
    for task, record in glue_sweep.items():
        labels = GLUE[task][1]
        assert record["params"]["trainable"] == 576 + labels, task


def test_mnli_reports_matched_and_mismatched(glue_sweep):
    record = glue_sweep["mnli"]
    assert record["data"]["sizes"] == {"train": 64, "dev/matched": 32, "dev/mismatched": 32}


def test_record_provenance(glue_sweep):
    record = glue_sweep["sst2"]
    assert record["versions"]["torch"] and record["versions"]["transformers"]
    assert record["config"]["task"]["name"] == "sst2" and record["seed"] == 0 and record["protocol"] == "paper"
    assert record["wall_time_s"] > 0 and record["peak_memory_bytes"] > 0
    # CPU time is the process's own (all threads), so at least some was spent and none before the run began
    assert 0 < record["cpu_time_s"] <= record["wall_time_s"] * record["cpu_threads"] + 1.0
    assert record["evaluations"][-1]["step"] == 3


def test_records_name_the_data_files_by_checksum(glue_sweep):
    import hashlib
    from pathlib import Path

    record = glue_sweep["rte"]
    files = record["data"]["files"]
    assert set(files) == {"train", "validation"}
    for split, entry in files.items():
        path = Path(entry["path"])
        assert path.name == f"{split}.jsonl" and path.parent.name == "rte"
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["bytes"] == path.stat().st_size
    assert record["model_files"] == {"source": "tiny", "family": "roberta"}


def test_a_dev_subset_schedule_reports_the_full_dev_evaluation_of_the_selected_model(tmp_path):
    # RTE, paper protocol, dev loss on a fixed 8 of the 33 dev rows: the loss selects; the selected model is then
    # evaluated once on all 33 rows, and that is what is reported.
    data = write_glue(tmp_path / "data", "rte", n_train=40, n_eval=33)
    result = run_cli(*QUICK, "task=rte", f"task.data_dir={data}", "trainer.max_steps=6", "trainer.eval_every=3",
                     "task.evaluation.during=loss", "task.evaluation.rows=8", f"output_root={tmp_path / 'runs'}",
                     "save_adapter=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    schedule = record["evaluation"]
    assert schedule["dev_rows"] == {"validation": 8} and schedule["selected_on"] == "loss"
    assert schedule["final"] == {"split": "dev", "rows": {"validation": 33}, "generation": None}
    assert [e["step"] for e in record["evaluations"]] == [3, 6]
    assert all(e["metrics"] == {} for e in record["evaluations"])
    losses = [e["loss"] for e in record["evaluations"]]
    assert record["best"]["value"] == min(losses)
    accuracy = record["metrics"]["accuracy"]  # k/33: no accuracy on 8 rows (j/8) is one, but 0 and 1
    assert set(record["metrics"]) == {"accuracy"} and 0 < accuracy < 1
    assert abs(accuracy * 33 - round(accuracy * 33)) < 1e-9
