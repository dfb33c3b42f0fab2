"""docs/contributing.md, "Add a method": its example runs as written and registers a method that trains the head
only, with the count worked out by hand, the base model's outputs at init, and a save -> load round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification

from propulsion import adapt
from propulsion.specs import MethodSpec
from propulsion.tiny import build_tiny_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"
H, LABELS = 32, 2  # tiny-roberta's hidden size; two labels


def section() -> str:
    text = DOC.read_text().split("\n## Add a method\n", 1)[1]
    return text.split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), re.S)


@pytest.fixture
def head_only():
    """The example registers the suite's own head_only entry (propulsion/adapt/head_only_kind.py) as written in the
    doc: the shipped entry steps aside while it runs and is put back after."""
    code = "\n".join(blocks("python"))
    assert code, "the section has no python example"
    shipped = adapt.method_entry("head_only")
    adapt.unregister_method("head_only")
    try:
        exec(compile(code, str(DOC), "exec"), {})
        yield yaml.safe_load(blocks("yaml")[0])
    finally:
        if "head_only" in adapt.registered_kinds():
            adapt.unregister_method("head_only")
        adapt.register_method(shipped)


def test_the_example_is_the_shipped_entry(head_only):
    # the doc's entry and the shipped one train the same tensors of a model
    from propulsion.adapt.head_only_kind import HEAD_ONLY

    spec = MethodSpec(**head_only)

    def trained(apply):
        model = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=LABELS)
        return sorted(n for n, p in apply(model, spec, "sequence-classification").model.named_parameters()
                      if p.requires_grad)

    assert trained(adapt.method_entry("head_only").apply) == trained(HEAD_ONLY.apply)
    assert head_only == yaml.safe_load((DOC.parents[1] / "conf" / "method" / "head_only.yaml").read_text())


def test_the_example_registers_a_method_that_trains_the_head_only(head_only, tmp_path):
    spec = MethodSpec(**head_only)
    assert spec.kind == "head_only" and "head_only" in adapt.registered_kinds()
    adapt.validate(spec)
    base = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=LABELS).eval()
    ids = torch.tensor([[0, 12, 40, 7, 99, 2]])
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
    prepared = adapt.apply_method(base, spec, "sequence-classification")
    # classifier.dense (32 x 32 + 32) and classifier.out_proj (32 x 2 + 2); nothing else trains
    assert adapt.count(prepared.model)["trainable"] == (H * H + H) + (H * LABELS + LABELS) == 1122
    assert prepared.details == {"head_modules": ["classifier"]}
    with torch.no_grad():
        assert torch.equal(prepared.model(input_ids=ids).logits, before)  # nothing attached: the base model's outputs
        prepared.model.classifier.out_proj.bias.add_(1.0)
        trained = prepared.model(input_ids=ids).logits
    assert adapt.save_trained(prepared.model, tmp_path) == ["trainable.safetensors"]
    fresh = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=LABELS).eval()
    loaded = adapt.load_trained(fresh, tmp_path, spec, "sequence-classification")
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, trained)
