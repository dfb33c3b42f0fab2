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
    assert set(adapt.registered_kinds()) == {"propulsion", "peft", "bitfit", "full", "baseline"}
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
