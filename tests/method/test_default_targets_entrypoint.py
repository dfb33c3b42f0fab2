"""Issue 27's done-when: `method=lora` and `method=propulsion` run with no explicit targets on MPNet and Qwen2,
through the entrypoint (tiny models built from config, offline)."""

from __future__ import annotations

import pytest

from tests.suite.helpers import records_under, run_cli, write_glue

# conf/method/lora.yaml's default targets [query, value], resolved from module roles on each architecture.
LORA_TARGETS = {
    "tiny-mpnet": [f"mpnet.encoder.layer.{i}.attention.attn.{p}" for i in range(2) for p in "qv"],
    "tiny-qwen2": [f"model.layers.{i}.self_attn.{p}_proj" for i in range(2) for p in "qv"],
}


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("default-targets")
    data = write_glue(root / "data", "sst2", n_train=16, n_eval=8)
    result = run_cli("model=tiny-mpnet,tiny-qwen2", "method=lora,propulsion", "task=sst2", f"task.data_dir={data}",
                     "trainer=quick", "logger=none", "trainer.max_steps=2", "trainer.eval_every=2",
                     f"output_root={root}/runs", multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {(record["model"], record["method"]): record for record in records_under(root / "runs")}


def test_lora_and_propulsion_run_without_targets_on_mpnet_and_qwen2(records):
    assert set(records) == {(model, method) for model in LORA_TARGETS for method in ("lora", "propulsion")}
    for (model, method), record in records.items():
        assert record["status"] == "completed", (model, method, record.get("error"))
        if method == "lora":
            assert sorted(record["method_details"]["target_modules"]) == LORA_TARGETS[model]
        else:
            assert record["method_details"]["wrapped_modules"] > 0
