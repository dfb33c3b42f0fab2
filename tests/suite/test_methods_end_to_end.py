"""Every method builds, trains 2 steps through the entrypoint, and records the right parameter count."""

from __future__ import annotations

import json

import pytest

from tests.suite.helpers import QUICK, records_under, run_cli, write_glue

METHODS = ["propulsion", "propulsion_attn", "full_ft", "lora", "adalora", "ia3", "bitfit", "prefix", "prompt",
           "lokr", "loha"]

# tiny-roberta (hidden 32, 2 layers, intermediate 64, 1347-word vocab, 520 positions), 2 labels.
H, LAYERS, FFN, LABELS = 32, 2, 64, 2
HEAD = (H * H + H) + (H * LABELS + LABELS)  # classifier.dense + classifier.out_proj, trained in full
EXPECTED = {
    "propulsion": LAYERS * (4 * H + FFN + H) + 3 * H + H + LABELS,
    "propulsion_attn": LAYERS * 3 * H,
    "lora": LAYERS * 2 * 8 * (H + H) + HEAD,  # r=8 A and B on query and value
    "adalora": LAYERS * 2 * (12 * H + H * 12 + 12) + HEAD,  # init_r=12: A, B and the rank vector E
    "ia3": LAYERS * (H + H + H + FFN) + HEAD,  # key, value, attention.output.dense (in 32), output.dense (in 64)
    "prefix": 20 * LAYERS * 2 * H + HEAD,  # 20 virtual tokens, a key and a value per layer
    "prompt": 20 * H + HEAD,
    "lokr": None,  # checked to be > 0 and < full (its factorisation is PEFT's business)
    "loha": LAYERS * 2 * 2 * 8 * (H + H) + HEAD,  # r=8: two Hadamard factors, each an (A, B) pair
    "bitfit": None,  # all biases + head: computed from the model below
    "full_ft": None,
}


@pytest.fixture(scope="module")
def method_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    data = write_glue(root / "data", "sst2")
    result = run_cli(*QUICK, "task=sst2", f"task.data_dir={data}", f"method={','.join(METHODS)}",
                     "trainer.max_steps=2", "trainer.eval_every=2", f"output_root={root}/runs", multirun=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {record["method"]: record for record in records_under(root / "runs")}


def test_every_method_trains_and_records(method_sweep):
    assert set(method_sweep) == set(METHODS)
    for method, record in method_sweep.items():
        assert record["status"] == "completed", (method, record.get("error"))
        assert record["train"]["steps"] == 2
        assert 0 <= record["metrics"]["accuracy"] <= 1


@pytest.mark.parametrize("method", [m for m, n in EXPECTED.items() if n is not None])
def test_parameter_counts(method_sweep, method):
    assert method_sweep[method]["params"]["trainable"] == EXPECTED[method]


def test_full_bitfit_and_lokr_counts(method_sweep):
    from transformers import AutoModelForSequenceClassification

    from propulsion.tiny import build_tiny_model

    model = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2)
    total = sum(p.numel() for p in model.parameters())
    named = model.named_parameters()
    biases = sum(p.numel() for n, p in named if n.endswith("bias") and not n.startswith("classifier"))
    assert method_sweep["full_ft"]["params"]["trainable"] == total
    assert method_sweep["full_ft"]["params"]["total"] == total
    assert method_sweep["bitfit"]["params"]["trainable"] == biases + HEAD
    assert HEAD < method_sweep["lokr"]["params"]["trainable"] < total
    # By hand (vocab 1347, 520 positions, 1 token type): embeddings (1347 + 520 + 1) x 32 + LayerNorm 2 x 32;
    # a layer: q, k, v, attention out 4 x (32x32 + 32), FFN 32x64 + 64 + 64x32 + 32, two LayerNorms 4 x 32.
    embeddings = (1347 + 520 + 1) * H + 2 * H
    layer = 4 * (H * H + H) + (H * FFN + FFN) + (FFN * H + H) + 4 * H
    assert total == embeddings + LAYERS * layer + HEAD == 78050
    # Biases: embedding LayerNorm 32; a layer: q, k, v, attention out 4 x 32, FFN 64 + 32, two LayerNorms 2 x 32.
    assert biases == H + LAYERS * (4 * H + FFN + H + 2 * H) == 608


def test_each_run_saves_its_trained_parameters_as_safetensors(method_sweep):
    # Propulsion: its adapter format; PEFT methods: PEFT's; BitFit and full FT: the trainable tensors.
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from propulsion.method import PropulsionModel
    from propulsion.tiny import build_tiny_model

    formats = {"propulsion": ["README.md", "adapter_model.safetensors", "propulsion_config.json"],  # + our card
               "lora": ["README.md", "adapter_config.json", "adapter_model.safetensors"],  # README: PEFT's card
               "bitfit": ["trainable.safetensors"], "full_ft": ["trainable.safetensors"]}
    for method, record in method_sweep.items():
        files = record["adapter"]["files"]
        assert files == formats.get(method, files) and any(f.endswith(".safetensors") for f in files), method
    record = method_sweep["propulsion"]
    folder = Path(record["run_dir"]) / record["adapter"]["dir"]
    fresh = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2)
    loaded = PropulsionModel.from_pretrained(fresh, folder)  # onto a fresh base, as a user would
    card = (folder / "README.md").read_text()  # the run's reported metrics in the model card
    assert all(f"| {name} | {value:.4f} |" in card for name, value in record["metrics"].items()
               if isinstance(value, float))
    saved = load_file(str(folder / "adapter_model.safetensors"))
    assert sum(v.numel() for k, v in saved.items() if k.endswith(".propulsion")) == EXPECTED["propulsion"]
    # the frozen head (new in any base) is saved too, counted apart: 32 x 32 + 32 + 2 x 32 + 2
    frozen = json.loads((folder / "propulsion_config.json").read_text())["frozen_saved"]
    assert frozen["parameters"] == 1122
    assert set(frozen["tensors"]) == {k for k in saved if not k.endswith(".propulsion")}
    params = dict(loaded.base_model.named_parameters())
    assert all(params[name].equal(value) for name, value in saved.items())
    assert any(not value.eq(1).all() for value in saved.values())  # trained: z moved off its init
