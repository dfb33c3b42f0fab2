"""merge/unmerge, merge_and_unload, save/load round trips, tied weights, passthrough."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from propulsion import PropulsionConfig, PropulsionModel, get_propulsion_model
from propulsion.method import PropulsionLayer, propulsion_layers
from tests.method.tiny_models import batch, family_model, outputs, roberta_classifier


def perturbed(model: PropulsionModel, seed: int = 1, scale: float = 0.05) -> PropulsionModel:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in propulsion_layers(model.base_model).values():
            layer.propulsion.add_(scale * torch.randn(layer.propulsion.shape, generator=generator))
    return model


def test_merge_unmerge_and_unload():
    model = perturbed(get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=5)))
    weight = model.base_model.roberta.encoder.layer[0].attention.self.query.base_layer.weight.clone()
    expected = outputs(model, batch())
    model.merge()
    assert torch.allclose(outputs(model, batch()), expected, atol=1e-5)
    model.unmerge()
    restored = model.base_model.roberta.encoder.layer[0].attention.self.query.base_layer.weight
    assert torch.allclose(restored, weight, atol=1e-6)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, PropulsionLayer) for m in plain.modules())
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


def test_tied_weights_merge_correctly():
    base = family_model("llama")
    base.config.tie_word_embeddings = True
    base.lm_head.weight = base.model.embed_tokens.weight
    model = perturbed(get_propulsion_model(base, PropulsionConfig(degree=3)))
    assert {"lm_head", "model.embed_tokens"} <= set(propulsion_layers(model.base_model))
    expected = outputs(model, batch())
    plain = model.merge_and_unload()
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = perturbed(get_propulsion_model(roberta_classifier(seed=0), PropulsionConfig(degree=15)))
    expected = outputs(model, batch())
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert set(tensors) == {n for n, p in model.base_model.named_parameters() if p.requires_grad}
    assert all(name.endswith(".propulsion") for name in tensors)
    assert json.loads((tmp_path / "propulsion_config.json").read_text())["propulsion_config"]["degree"] == 15
    loaded = PropulsionModel.from_pretrained(roberta_classifier(seed=0), tmp_path)
    assert torch.equal(outputs(loaded, batch()), expected)


def test_loading_onto_another_model_size_names_the_key_and_shapes(tmp_path):
    get_propulsion_model(roberta_classifier(hidden=32), PropulsionConfig()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"shape \(1, 32\) but the model's is \(1, 48\)"):
        PropulsionModel.from_pretrained(roberta_classifier(hidden=48), tmp_path)
    with pytest.raises(ValueError, match="propulsion_config.json is missing"):
        PropulsionModel.from_pretrained(roberta_classifier(), tmp_path / "nothing")


def test_passthrough_of_config_forward_and_generate():
    model = get_propulsion_model(family_model("llama"), PropulsionConfig(degree=15))
    assert model.config.model_type == "llama"
    inputs = batch(size=2, length=5)
    assert model(**inputs, labels=inputs["input_ids"]).loss.ndim == 0
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.shape == (2, 8)


def test_merging_a_tied_lm_head_leaves_the_input_embeddings_alone():
    base = family_model("llama")
    base.config.tie_word_embeddings = True
    base.lm_head.weight = base.model.embed_tokens.weight
    table = base.model.embed_tokens.weight.detach().clone()
    model = perturbed(get_propulsion_model(base, PropulsionConfig(degree=3, targets=["lm_head"])), scale=0.2)
    expected = outputs(model, batch())
    plain = model.merge_and_unload()
    assert torch.equal(plain.model.embed_tokens.weight, table)  # a new lm_head weight, not an in-place edit
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


def test_conv1d_merges_per_output_column():
    import transformers as tf

    torch.manual_seed(0)
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, n_positions=64,
                                            bos_token_id=0, eos_token_id=0)).eval()
    plain = outputs(gpt2, batch())
    model = get_propulsion_model(gpt2, PropulsionConfig(degree=3))
    assert "transformer.h.0.attn.c_attn" in propulsion_layers(model.base_model)
    assert torch.equal(outputs(model, batch()), plain)
    expected = outputs(perturbed(model), batch())
    assert torch.allclose(outputs(model.merge_and_unload(), batch()), expected, atol=1e-5)


def test_casting_to_bf16_keeps_trained_z_exact():
    model = perturbed(get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15)), scale=0.003)
    before = {name: layer.propulsion.detach().clone() for name, layer in propulsion_layers(model.base_model).items()}
    model.to(torch.bfloat16)
    for name, layer in propulsion_layers(model.base_model).items():
        assert layer.propulsion.dtype == torch.float32
        assert torch.equal(layer.propulsion, before[name])  # not rounded through bf16 and back
    assert model.base_model.classifier.dense.base_layer.weight.dtype == torch.bfloat16


def test_state_of_an_injected_plain_model_round_trips(tmp_path):
    from safetensors.torch import save_file

    from propulsion.method import inject_propulsion, load_propulsion_state, save_propulsion_state

    trained = roberta_classifier(seed=0)
    names = inject_propulsion(trained, PropulsionConfig(degree=7, targets="attn"))
    assert len(names) == 6 and type(trained).__name__ == "RobertaForSequenceClassification"
    with torch.no_grad():
        for layer in propulsion_layers(trained).values():
            layer.propulsion.mul_(1.02)
    state = save_propulsion_state(trained)
    assert set(state) == {f"{n}.propulsion" for n in names}
    save_file(state, str(tmp_path / "z.safetensors"))
    fresh = roberta_classifier(seed=0)
    inject_propulsion(fresh, PropulsionConfig(degree=7, targets="attn"))
    load_propulsion_state(fresh, load_file(str(tmp_path / "z.safetensors")))
    assert torch.equal(outputs(fresh, batch()), outputs(trained, batch()))
    # a state that lacks a tensor the model trains is refused, naming it
    partial = dict(list(state.items())[1:])
    with pytest.raises(ValueError, match=r"lacks 1 tensor\(s\).*" + names[0].replace(".", r"\.")):
        load_propulsion_state(fresh, partial)
    # a tensor with no place in the model too
    with pytest.raises(ValueError, match=r"'no\.such\.propulsion' \(shape \(1, 32\)\) has no place"):
        load_propulsion_state(fresh, {**state, "no.such.propulsion": torch.ones(1, 32)})
