"""Every new method through the entrypoint on tiny-roberta (offline), and the full-size configs compose."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from propulsion.compose import compose_spec
from tests.suite.helpers import QUICK, records_under, run_cli, write_glue

from .helpers import NEW_METHODS

# tiny-roberta: hidden 32, 2 layers, intermediate 64, 2 labels; the head is classifier.dense + out_proj.
H, LAYERS, FFN = 32, 2, 64
HEAD = (H * H + H) + (H * 2 + 2)
EXPECTED = {
    "adapter_s": 2 * LAYERS * (2 * H * 200 + 200 + H) + LAYERS * 2 * H  # adapters + attention-adapter LNs
    + (2 * LAYERS + 1) * 2 * H + HEAD,  # backbone LayerNorms + head
    "parallel": LAYERS * (2 * H * 512 + 512 + H) + HEAD,
    "mam": (30 * H + H * 800 + 800 + 800 * 2 * LAYERS * H + 2 * LAYERS * H) + LAYERS * (2 * H * 512 + 512 + H)
    + HEAD,
    "propetl_adapter": (2 * H * 2 + 2 + H) + LAYERS * 2 * H * 2 + HEAD,  # bottleneck 32 // 12 = 2
    "propetl_lora": 2 * 2 * 32 * H + LAYERS * 2 * 2 * 32 * H + HEAD,
    "propetl_prefix": (64 * H + H * 512 + 512 + 512 * 2 * H + 2 * H) + LAYERS * 64 * 2 * H + HEAD,
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    data = write_glue(root / "data", "sst2")
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", f"method={','.join(NEW_METHODS)}",
                     "trainer.max_steps=4", "trainer.eval_every=2", f"output_root={root}/runs", multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["method"]: (record, root) for record in records_under(root / "runs")}


def test_every_new_method_trains_records_and_saves(sweep):
    assert set(sweep) == set(NEW_METHODS)
    for method, (record, _) in sweep.items():
        assert record["status"] == "completed", (method, record.get("error"))
        assert record["params"]["trainable"] == EXPECTED[method], method
        details = record["method_details"]
        assert details["baseline"]["method"] == method
        assert details["head_parameters"] == HEAD
        assert record["adapter"]["files"] == ["adapter_model.safetensors", "baseline_config.json"]


def test_propetl_records_both_counts_and_saves_bits(sweep):
    record, _ = sweep["propetl_lora"]
    details = record["method_details"]
    assert details["prototype_parameters"] == 2 * 2 * 32 * H
    assert details["mask_entries"] == LAYERS * 2 * 2 * 32 * H
    saved = load_file(f"{record['run_dir']}/adapter/adapter_model.safetensors")
    assert sum(key.endswith(".bits") for key in saved) == LAYERS * 2 * 2  # A and B masks of query, value, per layer


@pytest.mark.parametrize("method", NEW_METHODS)
def test_full_size_configs_compose(method):
    spec, _ = compose_spec(["model=roberta-base", f"method={method}"])
    assert spec.method.kind == "baseline" and spec.method.baseline["method"] == method


def test_llama_parallel_commonsense_composes_with_llm_adapters_settings():
    spec, _ = compose_spec(["model=llama-7b", "method=parallel", "task=commonsense"])
    assert spec.model.name == "llama-7b" and spec.task.name == "commonsense"
    assert spec.method.baseline["causal_lm"]["bottleneck"] == 256
