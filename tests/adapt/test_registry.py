"""The method registry: every kind saves what it trained and loads it back onto a fresh base with the same outputs;
the registry answers for a kind it does not know with one line."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from propulsion import adapt
from propulsion.specs import MethodSpec, UserError
from propulsion.tiny import build_tiny_model

KIND = "sequence-classification"
# One spec per kind (and per PEFT tuner family that saves differently), as the YAMLs in conf/method/ set them.
SPECS = {
    "propulsion": MethodSpec(name="propulsion", kind="propulsion", degree=3),
    "propulsion_head_both": MethodSpec(name="propulsion", kind="propulsion", degree=3, head="both", bias="all"),
    "lora": MethodSpec(name="lora", kind="peft", peft_type="LORA", targets=["query", "value"], head="full",
                       peft_config={"r": 4, "lora_alpha": 8}),
    "adalora": MethodSpec(name="adalora", kind="peft", peft_type="ADALORA", targets=["query", "value"], head="full",
                          peft_config={"init_r": 6, "target_r": 4}),
    "prefix": MethodSpec(name="prefix", kind="peft", peft_type="PREFIX_TUNING", head="full",
                         peft_config={"num_virtual_tokens": 5}),
    "bitfit": MethodSpec(name="bitfit", kind="bitfit", head="full"),
    "head_only": MethodSpec(name="head_only", kind="head_only", head="full"),
    "full": MethodSpec(name="full_ft", kind="full"),
    "adapter_s": MethodSpec(name="adapter_s", kind="baseline", baseline={"bottleneck": 8}),
    "mam": MethodSpec(name="mam", kind="baseline", baseline={"prefix_length": 4, "bottleneck": 8}),
}


def base():
    return build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2).eval()


def logits(model) -> torch.Tensor:
    ids = torch.tensor([[0, 12, 40, 7, 99, 2], [0, 5, 6, 2, 1, 1]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 1).long()).logits


@pytest.mark.parametrize("name", list(SPECS))
def test_save_then_load_onto_a_fresh_base_gives_the_same_outputs(tmp_path, name):
    spec = SPECS[name]
    adapt.validate(spec)
    prepared = adapt.apply_method(base(), spec, KIND, total_steps=100)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "trained": every trainable tensor moved, so the loaded model cannot pass by being at init
        for parameter in prepared.model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    trained = logits(prepared.model.eval())
    assert not torch.allclose(trained, logits(base()))
    files = adapt.save_trained(prepared.model, tmp_path / "adapter")
    assert files and all(not f.endswith((".bin", ".pt")) for f in files)  # safetensors only
    loaded = adapt.load_trained(base(), tmp_path / "adapter", spec, KIND).eval()
    torch.testing.assert_close(logits(loaded), trained, rtol=0, atol=1e-6)


def test_each_kind_states_its_plain_facts():
    assert set(adapt.registered_kinds()) == {"propulsion", "peft", "bitfit", "full", "head_only", "baseline"}
    assert [k for k in adapt.registered_kinds() if adapt.method_entry(k).trains_whole_model] == ["full"]
    assert [k for k in adapt.registered_kinds() if adapt.method_entry(k).takes_degree] == ["propulsion"]
    assert {k for k in adapt.registered_kinds() if adapt.method_entry(k).checks_targets} == {"propulsion", "peft"}


def test_an_unknown_kind_is_one_line_naming_the_registered_ones():
    with pytest.raises(UserError, match=r"unknown method.kind 'lorra'; valid choices: .*propulsion"):
        adapt.validate(MethodSpec(name="x", kind="lorra"))


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        adapt.register_method(adapt.method_entry("bitfit"))


def test_the_registry_loads_no_torch_at_import():
    import subprocess
    import sys

    code = "import sys, propulsion.adapt, propulsion.specs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# Head-frozen variants too: a frozen head keeps its random initialisation, which a fresh base draws anew.
OTHER_HEAD = {**SPECS,
              "bitfit_frozen_head": MethodSpec(name="bitfit", kind="bitfit", head="frozen"),
              "lora_frozen_head": MethodSpec(name="lora", kind="peft", peft_type="LORA", targets=["query", "value"],
                                             head="frozen", peft_config={"r": 4, "lora_alpha": 8}),
              "adapter_s_frozen_head": MethodSpec(name="adapter_s", kind="baseline",
                                                  baseline={"bottleneck": 8, "head": "frozen"}),
              # each of our other adapter baselines, small, head frozen (the harder case: the head is not saved as
              # a trained tensor)
              "parallel": MethodSpec(name="parallel", kind="baseline",
                                     baseline={"placement": "ffn", "bottleneck": 8, "head": "frozen"}),
              "propetl_adapter": MethodSpec(name="propetl_adapter", kind="baseline",
                                            baseline={"reduction_factor": 4, "head": "frozen"}),
              "propetl_lora": MethodSpec(name="propetl_lora", kind="baseline",
                                         baseline={"rank": 4, "alpha": 8, "head": "frozen"}),
              "propetl_prefix": MethodSpec(name="propetl_prefix", kind="baseline",
                                           baseline={"prefix_length": 4, "prefix_hidden": 16, "head": "frozen"})}


def base_with_another_head():
    """The same backbone with its task head drawn from another seed: a checkpoint loaded with a new head."""
    from propulsion.backbones import reinitialise
    from propulsion.method import head_module_names

    model = base()
    torch.manual_seed(1234)
    return reinitialise(model, head_module_names(model)).eval()


@pytest.mark.parametrize("name", list(OTHER_HEAD))
def test_a_saved_method_reproduces_its_outputs_on_a_base_whose_head_was_drawn_otherwise(tmp_path, name):
    spec = OTHER_HEAD[name]
    other = base_with_another_head()
    assert not torch.allclose(logits(other), logits(base()))  # the heads differ
    prepared = adapt.apply_method(base(), spec, KIND, total_steps=100)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in prepared.model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    trained = logits(prepared.model.eval())
    adapt.save_trained(prepared.model, tmp_path / "adapter")
    loaded = adapt.load_trained(other, tmp_path / "adapter", spec, KIND).eval()
    torch.testing.assert_close(logits(loaded), trained, rtol=0, atol=1e-6)


def test_the_frozen_head_saved_with_an_adapter_is_counted_apart_from_the_trainable_parameters(tmp_path):
    # tiny RoBERTa's head: classifier.dense 32x32 + 32, out_proj 32x2 + 2. BitFit trains the biases (34 here), so
    # the frozen head it must carry is the two weight matrices: 1,024 + 64.
    prepared = adapt.apply_method(base(), OTHER_HEAD["bitfit_frozen_head"], KIND)
    assert adapt.new_frozen_count(prepared.model) == 1088
    files = adapt.save_trained(prepared.model, tmp_path / "adapter")
    assert adapt.NEW_FROZEN in files
    full_head = adapt.apply_method(base(), SPECS["bitfit"], KIND)  # head trained: nothing frozen to carry
    assert adapt.new_frozen_count(full_head.model) == 0
    for name in ("lora", "mam", "adapter_s"):  # PEFT's trained head copy is saved by PEFT; the frozen original unused
        assert adapt.new_frozen_count(adapt.apply_method(base(), SPECS[name], KIND, total_steps=100).model) == 0
    assert adapt.NEW_FROZEN not in adapt.save_trained(full_head.model, tmp_path / "full-head")


# Tiny BERT (hidden 32, 2 layers, intermediate 64), two labels: the pooler (32 x 32 + 32) and the classifier
# (32 x 2 + 2) are its head, as BERT's pooler + classifier are all-MiniLM-L6-v2's (issue 25's head-only row).
POOLER, CLASSIFIER = 32 * 32 + 32, 32 * 2 + 2


def tiny_bert():
    return build_tiny_model("bert", AutoModelForSequenceClassification, num_labels=2).eval()


def test_head_only_trains_the_pooler_and_classifier_and_nothing_else():
    prepared = adapt.apply_method(tiny_bert(), SPECS["head_only"], KIND)
    counted = adapt.count(prepared.model)
    assert counted["trainable"] == counted["head"] == POOLER + CLASSIFIER == 1122
    assert prepared.details == {"head_modules": ["classifier", "bert.pooler"]}
    assert adapt.method_entry("head_only").trains_whole_model is False


def test_counts_split_the_head_from_the_rest_by_hand():
    # LoRA r=4 on query and value, 2 layers: 2 x 2 x (32 x 4 + 4 x 32) = 1,024 outside the head; head trained.
    lora = adapt.count(adapt.apply_method(tiny_bert(), SPECS["lora"], KIND).model)
    assert (lora["trainable"] - lora["head"], lora["head"]) == (1024, POOLER + CLASSIFIER)
    # Propulsion, head frozen: the z on the head's two Linears (32 + 2) lie in the head; the rest outside it.
    propulsion = adapt.count(adapt.apply_method(tiny_bert(), SPECS["propulsion"], KIND).model)
    assert propulsion["head"] == 32 + 2 and propulsion["trainable"] > propulsion["head"]
    full = adapt.count(adapt.apply_method(tiny_bert(), SPECS["full"], KIND).model)
    assert full["head"] == POOLER + CLASSIFIER
