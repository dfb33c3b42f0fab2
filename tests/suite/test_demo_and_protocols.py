"""The README's demo learns; the held-out protocol splits as documented; the record says which protocol."""

from __future__ import annotations

from tests.suite.helpers import QUICK, records_under, run_cli, write_glue


def test_demo_trains_propulsion_and_prints_the_result_table(tmp_path):
    # The exact overrides of `make demo` (Makefile), with the output redirected.
    result = run_cli("model=tiny-roberta", "task=sst2", "task.source=sample", "trainer=quick", "logger=none",
                     f"output_root={tmp_path}", "skip_completed=false", "resume=false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| accuracy |" in result.stdout and "| trainable params | 578 of" in result.stdout
    (record,) = records_under(tmp_path)
    losses = [entry["loss"] for entry in record["train_loss"]]
    assert losses[-1] < losses[0] * 0.8, losses  # the loss drops
    assert record["metrics"]["accuracy"] >= 0.8  # the sample task is learnable; chance is 0.5


def test_bf16_mixed_precision_trains_and_is_recorded(tmp_path):
    # trainer.precision=bf16 (the LLM experiments' setting): accelerate's autocast, on CPU here, on GPUs there.
    result = run_cli("model=tiny-roberta", "task=sst2", "task.source=sample", "trainer=quick", "logger=none",
                     "trainer.precision=bf16", "save_adapter=false", f"output_root={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path)
    assert record["train"]["mixed_precision"] == "bf16" and record["train"]["device"] == "cpu"
    assert record["adapter"] is None and not list(tmp_path.rglob("adapter"))  # save_adapter=false: nothing saved
    assert record["metrics"]["accuracy"] >= 0.8  # learns as in float32 (make demo: 0.906); chance is 0.5


def test_heldout_protocol_small_task_splits_validation(tmp_path):
    # Local files named one by one, as CSV: task.data_files={train: ..., validation: ...}.
    import pandas as pd

    data = write_glue(tmp_path / "data", "rte", n_train=32, n_eval=40)
    for split in ("train", "validation"):
        pd.read_json(data / f"{split}.jsonl", lines=True).to_csv(data / f"{split}.csv", index=False)
    files = f"task.data_files={{train:{data}/train.csv,validation:{data}/validation.csv}}"
    result = run_cli(*QUICK, "task=rte", files, "protocol=heldout", "trainer.max_steps=2",
                     f"output_root={tmp_path}/runs")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["protocol"] == "heldout"
    assert record["data"]["sizes"] == {"train": 32, "dev/validation": 20, "test/validation": 20}
    assert record["data"]["report"] == "other validation half"


def test_heldout_protocol_large_task_holds_out_train_rows(tmp_path):
    data = write_glue(tmp_path / "data", "mnli", n_train=64, n_eval=16)
    result = run_cli(*QUICK, "task=mnli", f"task.data_dir={data}", "protocol=heldout", "trainer.max_steps=2",
                     f"output_root={tmp_path}/runs")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    # min(1,000, half of train) rows held out as dev; both MNLI validation sets are the reported test sets.
    assert record["data"]["sizes"] == {"train": 32, "dev/dev": 32, "test/matched": 16, "test/mismatched": 16}
    assert set(record["metrics"]) == {"matched/accuracy", "mismatched/accuracy"}
