"""Identity at init where the method has one, Houlsby's near-identity, and exact counts on the meta device."""

from __future__ import annotations

import pytest
import torch

from propulsion.baselines import apply_baseline
from propulsion.baselines.layers import AdapterLayer
from propulsion.compose import parameter_count

from .helpers import batch, config, llama, logits, roberta

KIND = "sequence-classification"


@pytest.mark.parametrize("method", ["parallel", "propetl_lora"])
def test_zero_up_projection_is_exact_identity(method):
    # parallel: He et al.'s lora init (up = 0); ProPETL LoRA: B = 0. The outputs equal the base model's exactly.
    inputs = batch()
    base = logits(roberta(), inputs)
    model, _ = apply_baseline(roberta(), config(method), KIND)
    assert torch.equal(logits(model, inputs), base)


def test_parallel_on_llama_takes_llm_adapters_init_which_is_not_identity():
    # LLM-Adapters' "bert" init draws both projections from N(0, 0.02): the output moves at init.
    inputs = batch()
    base = logits(llama(), inputs)
    model, details = apply_baseline(llama(), config("parallel"), "causal-lm")
    assert not torch.equal(logits(model, inputs), base)
    # up_proj (32 -> 64) and down_proj (64 -> 32), bottleneck 256, no biases, 2 layers:
    assert details["method_parameters"] == 2 * ((32 * 256 + 256 * 64) + (64 * 256 + 256 * 32))


@pytest.mark.parametrize(("init", "std"), [("bert", 0.02), ("houlsby", 1e-3)])
def test_houlsby_adapters_start_near_identity(init, std):
    # Each sequential adapter adds up(relu(down(x))) to h, x = h or LayerNorm(h). With weights of std s, a d-wide
    # x and bottleneck b, the addition's RMS is about s² · sqrt(d · b / 2) times x's: 0.02 -> ~0.023, 1e-3 -> ~6e-5.
    model, _ = apply_baseline(roberta(), config("adapter_s", init=init, init_std=std), KIND)
    ratios = []

    def record(module, args, output):
        h = module.base_layer(args[0])
        x = module.adapter.layer_norm(h) if module.adapter.layer_norm is not None else h
        ratios.append(float((output - h).pow(2).mean().sqrt() / x.pow(2).mean().sqrt()))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, AdapterLayer)]
    logits(model, batch())
    for hook in hooks:
        hook.remove()
    assert len(ratios) == 4  # attention and FFN adapters of 2 layers
    scale = std**2 * (32 * 200 / 2) ** 0.5
    assert all(0 < r < 3 * scale for r in ratios), (ratios, scale)


HEAD_BASE = 768 * 768 + 768 + 768 * 2 + 2  # RobertaClassificationHead: dense + out_proj (592,130)
HEAD_LARGE = 1024 * 1024 + 1024 + 1024 * 2 + 2  # 1,051,650


def adapter(d: int, b: int) -> int:
    return d * b + b + b * d + d  # down + up, with biases


COUNTS = {
    # Houlsby (He et al.'s config, bn 200): 2 adapters per layer, an input LayerNorm on the attention one; + the
    # backbone's LayerNorms (2 per layer + embeddings) + head. Adapter part = the paper's 7.41M / 19.77M.
    ("roberta-base", "adapter_s"): 24 * adapter(768, 200) + 12 * 2 * 768 + 25 * 2 * 768 + HEAD_BASE,
    ("roberta-large", "adapter_s"): 48 * adapter(1024, 200) + 24 * 2 * 1024 + 49 * 2 * 1024 + HEAD_LARGE,
    # He et al.'s FFN parallel adapter, bn 512, one per layer.
    ("roberta-base", "parallel"): 12 * adapter(768, 512) + HEAD_BASE,
    ("roberta-large", "parallel"): 24 * adapter(1024, 512) + HEAD_LARGE,
    # MAM: prefix (30 tokens, embedding -> 800 -> 2·L·d) + the parallel adapter.
    ("roberta-base", "mam"): (30 * 768 + 768 * 800 + 800 + 800 * 2 * 12 * 768 + 2 * 12 * 768)
    + 12 * adapter(768, 512) + HEAD_BASE,
    ("roberta-large", "mam"): (30 * 1024 + 1024 * 800 + 800 + 800 * 2 * 24 * 1024 + 2 * 24 * 1024)
    + 24 * adapter(1024, 512) + HEAD_LARGE,
    # ProPETL adapter: one prototype (bn = d // 12) + per-layer float mask scores over both weight matrices.
    ("roberta-base", "propetl_adapter"): adapter(768, 64) + 12 * 2 * 768 * 64 + HEAD_BASE,  # paper: 1.87M
    ("roberta-large", "propetl_adapter"): adapter(1024, 85) + 24 * 2 * 1024 * 85 + HEAD_LARGE,  # paper: 5.40M
    # ProPETL LoRA r=32 on query and value: two prototypes + per-layer masks over A and B.
    ("roberta-base", "propetl_lora"): 2 * 2 * 32 * 768 + 12 * 2 * 2 * 32 * 768 + HEAD_BASE,
    ("roberta-large", "propetl_lora"): 2 * 2 * 32 * 1024 + 24 * 2 * 2 * 32 * 1024 + HEAD_LARGE,
    # ProPETL prefix: one prefix (64 tokens, embedding -> 512 -> 2·d) + per-layer masks (64 x 2·d).
    ("roberta-base", "propetl_prefix"): (64 * 768 + 768 * 512 + 512 + 512 * 2 * 768 + 2 * 768)
    + 12 * 64 * 2 * 768 + HEAD_BASE,
    ("roberta-large", "propetl_prefix"): (64 * 1024 + 1024 * 512 + 512 + 512 * 2 * 1024 + 2 * 1024)
    + 24 * 64 * 2 * 1024 + HEAD_LARGE,
}


@pytest.mark.parametrize(("model", "method"), sorted(COUNTS))
def test_exact_counts_on_the_meta_device(model, method):
    assert parameter_count(model, method, "sst2")["trainable"] == COUNTS[(model, method)]


def test_the_paper_counts_we_reproduce():
    assert 24 * adapter(768, 200) + 12 * 2 * 768 == 7_414_464  # Adapterˢ 7.41M: adapters only
    assert 48 * adapter(1024, 200) + 24 * 2 * 1024 == 19_768_704  # 19.77M
    assert COUNTS[("roberta-base", "propetl_adapter")] == 1_870_914  # 1.87M
    assert COUNTS[("roberta-large", "propetl_adapter")] == 5_404_759  # 5.40M


def test_propetl_details_split_prototype_masks_and_head():
    with torch.device("meta"):
        import transformers as tf

        model = tf.RobertaForSequenceClassification(tf.RobertaConfig())  # roberta-base sizes
        _, details = apply_baseline(model, config("propetl_adapter"), KIND)
    assert details["prototype_parameters"] == adapter(768, 64)
    assert details["mask_entries"] == 12 * 2 * 768 * 64
    assert details["head_parameters"] == HEAD_BASE
    assert details["stored_equivalent"] == adapter(768, 64) + HEAD_BASE + 12 * 2 * 768 * 64 // 32
