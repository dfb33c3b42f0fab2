"""docs/contributing.md, "Add a task": the WNLI YAML as the doc writes it runs through the real entrypoint."""

from __future__ import annotations

from pathlib import Path

from propulsion.tasks import samples
from tests.reports.test_contributing_table import blocks, section
from tests.suite.helpers import QUICK, records_under, run_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


def test_the_add_a_task_yaml_runs_from_local_files(tmp_path):
    (task_yaml,) = blocks(section(DOC.read_text(), "Add a task"), "yaml")
    (tmp_path / "mytasks" / "task").mkdir(parents=True)
    (tmp_path / "mytasks" / "task" / "wnli.yaml").write_text(task_yaml)
    splits = samples.glue_splits("wnli", ["sentence1", "sentence2"], 2, ["validation"], n_train=24, n_eval=12, seed=3)
    samples.write_splits(splits, tmp_path / "data" / "wnli")
    result = run_cli("--config-dir", str(tmp_path / "mytasks"), *QUICK, "task=wnli", "method=propulsion",
                     f"task.data_dir={tmp_path / 'data' / 'wnli'}", "trainer.max_steps=2", "trainer.eval_every=2",
                     f"output_root={tmp_path / 'runs'}", "save_adapter=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["task"] == "wnli" and record["degree"] == 15 and record["status"] == "completed"
    assert set(record["metrics"]) == {"accuracy"} and record["data"]["sizes"]["train"] == 24
    assert record["config"]["task"]["paper"]["epochs"] == 30 and record["config"]["task"]["dataset_config"] == "wnli"
