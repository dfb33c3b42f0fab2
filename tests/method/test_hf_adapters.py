"""Many named adapters on one base, as PEFT does for LoRA (issue 14, item 3)."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from propulsion import PropulsionConfig, count_parameters, get_propulsion_model
from propulsion.method import propulsion_layers
from propulsion.tiny import build_tiny_model
from tests.method.test_lib_merge_save import perturbed
from tests.method.tiny_models import batch, outputs, roberta_classifier

A = PropulsionConfig(degree=5)
B = PropulsionConfig(degree=3, init="normal", init_scale=0.05)
C = PropulsionConfig(degree=2, num_vectors=2, pooling="max", init="uniform", init_scale=0.1)


def singles(base):
    """Three single-adapter models on copies of ``base`` with distinct z, and one model holding all three."""
    one = {"default": perturbed(get_propulsion_model(copy.deepcopy(base), A), seed=1),
           "b": perturbed(get_propulsion_model(copy.deepcopy(base), B), seed=2),
           "c": perturbed(get_propulsion_model(copy.deepcopy(base), C), seed=3)}
    many = get_propulsion_model(copy.deepcopy(base), A)
    many.add_adapter("b", B)
    many.add_adapter("c", C)
    for name, single in one.items():
        for layer_name, layer in propulsion_layers(many.base_model).items():
            source = propulsion_layers(single.base_model)[layer_name].propulsion
            with torch.no_grad():
                layer.vectors(name).copy_(source)
    return one, many


def test_each_adapter_equals_its_single_adapter_model_and_disable_equals_the_base():
    base = roberta_classifier()
    one, many = singles(base)
    inputs = batch(size=4)
    assert many.active_adapter == "default"
    assert torch.equal(outputs(many, inputs), outputs(one["default"], inputs))
    for name in ("b", "c"):
        many.set_adapter(name)
        assert many.active_adapter == name and many.propulsion_config is (B if name == "b" else C)
        assert torch.equal(outputs(many, inputs), outputs(one[name], inputs))
    with many.disable_adapter():
        assert many.active_adapter is None
        assert torch.equal(outputs(many, inputs), outputs(base, inputs))
    assert many.active_adapter == "c" and torch.equal(outputs(many, inputs), outputs(one["c"], inputs))


def test_only_the_active_adapter_trains_and_delete_removes_it():
    many = get_propulsion_model(roberta_classifier(), PropulsionConfig(targets="attn"))
    many.add_adapter("b", PropulsionConfig(targets="attn", degree=9))
    # attn on 2 layers: 6 Linear of 32 outputs = 192 entries per adapter; total = base + 2 x 192
    base_total = count_parameters(roberta_classifier()).total
    assert count_parameters(many).trainable == 192 and count_parameters(many).total == base_total + 384
    many.set_adapter("b")
    trainable = [n for n, p in many.named_parameters() if p.requires_grad]
    assert len(trainable) == 6 and all(n.endswith(".propulsion_extra.b") for n in trainable)
    # a training step moves b only
    before = {n: p.detach().clone() for n, p in many.named_parameters() if "propulsion" in n}
    many.train()
    outputs_ = many(**batch(), labels=torch.tensor([0, 1, 0, 1]))
    outputs_.loss.backward()
    torch.optim.SGD([p for p in many.parameters() if p.requires_grad], lr=0.5).step()
    moved = {n for n, p in many.named_parameters() if "propulsion" in n and not torch.equal(p, before[n])}
    assert moved == set(trainable)
    with pytest.raises(ValueError, match=r"adapter 'b' is active; set_adapter\(\) another one"):
        many.delete_adapter("b")
    with pytest.raises(ValueError, match=r"adapter 'default' is the model's first"):
        many.delete_adapter("default")
    many.set_adapter("default")
    many.delete_adapter("b")
    assert list(many.propulsion_configs) == ["default"] and not any("propulsion_extra" in k for k in many.state_dict())
    assert count_parameters(many).total == base_total + 192


def test_mixed_batch_equals_per_example_runs():
    base = roberta_classifier()
    one, many = singles(base)
    inputs = batch(size=5)
    names = ["b", "default", "__base__", "c", "b"]
    with torch.no_grad():
        mixed = many(**inputs, adapter_names=names).logits
    expected = {name: outputs(model, inputs) for name, model in one.items()}
    expected["__base__"] = outputs(base, inputs)
    for row, name in enumerate(names):
        assert torch.allclose(mixed[row], expected[name][row], atol=1e-6, rtol=0), (row, name)
    assert many.active_adapter == "default" and torch.equal(outputs(many, inputs), expected["default"])  # unchanged


def test_mixed_batch_generate_equals_each_adapter_alone():
    base = build_tiny_model("llama", AutoModelForCausalLM).eval()
    one, many = singles(base)
    prompts = batch(size=4, length=6)
    settings = dict(max_new_tokens=5, do_sample=False, pad_token_id=1)
    names = ["c", "default", "b", "__base__"]
    with torch.no_grad():
        mixed = many.generate(**prompts, adapter_names=names, **settings)
        expected = {name: model.generate(**prompts, **settings) for name, model in one.items()}
        expected["__base__"] = base.generate(**prompts, **settings)
        beams = many.generate(**prompts, adapter_names=names, num_beams=2, **settings)  # batch of 8 rows inside
        expected_beams = {name: model.generate(**prompts, num_beams=2, **settings) for name, model in one.items()}
    for row, name in enumerate(names):
        assert torch.equal(mixed[row], expected[name][row]), (row, name)
        if name != "__base__":
            assert torch.equal(beams[row], expected_beams[name][row]), (row, name)
    assert len({tuple(mixed[row].tolist()) for row in range(4)}) > 1  # the adapters do steer generation apart


def test_bad_adapter_use_gets_one_clear_line():
    many = get_propulsion_model(roberta_classifier(), PropulsionConfig(targets="attn"))
    many.gradient_checkpointing_enable()
    many.train()
    with pytest.raises(ValueError, match=r"mixed batches \(adapter_names\) cannot train with gradient checkpointing"):
        many(**batch(size=2), adapter_names=["default", "default"])
    many.gradient_checkpointing_disable()
    many.eval()
    with pytest.raises(ValueError, match=r"unknown adapter\(s\) \['x'\] in adapter_names; this model's adapters: "
                                         r"default \(and '__base__' for the base model\)"):
        many(**batch(size=2), adapter_names=["default", "x"])
    with pytest.raises(ValueError, match=r"adapter_names has 3 entries for a batch of 2"):
        many(**batch(size=2), adapter_names=["default"] * 3)
    with pytest.raises(ValueError, match=r"unknown adapter 'x'; this model's adapters: default"):
        many.set_adapter("x")
    with pytest.raises(ValueError, match=r"adapter 'default' exists already"):
        many.add_adapter("default", PropulsionConfig(targets="attn"))
    with pytest.raises(ValueError, match=r"adapter name 'a.b' must be letters, digits"):
        many.add_adapter("a.b", PropulsionConfig(targets="attn"))
    with pytest.raises(ValueError, match=r"adapter 'b' targets other modules than the model's adapters"):
        many.add_adapter("b", PropulsionConfig(targets="mlp"))
    with pytest.raises(ValueError, match=r"adapter 'b' trains base weights \(head='full'"):
        many.add_adapter("b", PropulsionConfig(targets="attn", head="full"))
    many.merge()
    with pytest.raises(ValueError, match=r"cannot run a mixed batch while an adapter is merged"):
        many(**batch(size=2), adapter_names=["default", "default"])
    with pytest.raises(ValueError, match=r"cannot disable the adapter while an adapter is merged"):
        with many.disable_adapter():
            pass


def test_many_adapters_survive_deepcopy_pickle_and_dtype_casts(tmp_path):
    _, many = singles(roberta_classifier())
    many.set_adapter("c")
    expected = outputs(many, batch())
    for clone in (copy.deepcopy(many), pickle.loads(pickle.dumps(many))):
        assert type(clone) is type(many) and clone.active_adapter == "c"
        assert torch.equal(outputs(clone, batch()), expected)
    # a new process never made PropulsionRobertaForSequenceClassification: unpickling makes it again
    torch.save(many, tmp_path / "model.pt")
    path = str(tmp_path / "model.pt")  # a whole pickled model, our own file: weights_only=False is safe here
    code = f"import torch; m = torch.load({path!r}, weights_only=False); print(type(m).__name__, m.active_adapter)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["PropulsionRobertaForSequenceClassification", "c"], out.stderr[-2000:]
    many.to(torch.bfloat16)
    layer = next(iter(propulsion_layers(many.base_model).values()))
    assert all(vectors.dtype == torch.float32 for vectors in layer.all_vectors())  # every adapter's z stays fp32
