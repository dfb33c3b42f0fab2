"""merge/unmerge, merge_and_unload, save/load round trips, tied weights, passthrough."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from propulsion import PropulsionConfig, PropulsionModel, get_propulsion_model
from propulsion.method import PropulsionLayer, propulsion_layers
from tests.method.tiny_models import batch, family_model, outputs, roberta_classifier, tied_llama


def perturbed(model: PropulsionModel, seed: int = 1, scale: float = 0.05) -> PropulsionModel:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in propulsion_layers(model.base_model).values():
            layer.propulsion.add_(scale * torch.randn(layer.propulsion.shape, generator=generator))
    return model


def base_tensors(model: PropulsionModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.base_model.named_parameters() if ".base_layer." in name}


def test_merge_unmerge_and_unload():
    model = perturbed(get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=5)))
    before = base_tensors(model)
    expected = outputs(model, batch())
    model.merge()
    layers = propulsion_layers(model.base_model)
    assert all(layer.merged for layer in layers.values())
    query = layers["roberta.encoder.layer.0.attention.self.query"]
    scale = query.propulsion.detach()[0] ** 5  # the merged weight is diag(z^k) W, the bias b ⊙ z^k
    assert torch.allclose(query.base_layer.weight, before[f"{'roberta.encoder.layer.0.attention.self.query'}"
                                                          ".base_layer.weight"] * scale[:, None], rtol=1e-6)
    merged = outputs(model, batch())
    assert torch.allclose(merged, expected, atol=1e-5) and not torch.equal(merged, outputs(roberta_classifier(),
                                                                                          batch()))
    model.unmerge()
    assert not any(layer.merged for layer in layers.values())
    after = base_tensors(model)
    assert all(torch.allclose(after[name], value, atol=1e-6) for name, value in before.items())  # weights, biases
    assert torch.allclose(outputs(model, batch()), expected, atol=1e-5)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, PropulsionLayer) for m in plain.modules())
    assert not any(".base_layer." in name or "propulsion" in name for name, _ in plain.named_parameters())
    assert type(plain).__name__ == "RobertaForSequenceClassification"
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "deberta-v2", "bart", "mistral", "bloom", "gptj", "falcon", "phi"])
def test_merge_and_unload_keeps_the_outputs_of_every_family(family):
    model = perturbed(get_propulsion_model(family_model(family), PropulsionConfig(degree=3)))
    inputs = batch()
    if family == "bart":
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :4]
    expected = outputs(model, inputs)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, PropulsionLayer) for m in plain.modules())
    assert torch.allclose(outputs(plain, inputs), expected, atol=1e-5)
    # bart, bloom and falcon tie lm_head to the input embeddings: merged apart, the config must say so
    # (transformers re-ties from the config in tie_weights()), and re-tying must not undo the merge
    if family in ("bart", "bloom", "falcon"):
        assert plain.get_output_embeddings().weight is not plain.get_input_embeddings().weight
        assert plain.config.tie_word_embeddings is False
    plain.tie_weights()
    assert torch.allclose(outputs(plain, inputs), expected, atol=1e-5)


def test_tied_weights_merge_correctly_and_survive_save_and_reload(tmp_path):
    base = tied_llama()
    model = perturbed(get_propulsion_model(base, PropulsionConfig(degree=3)))
    layers = propulsion_layers(model.base_model)
    assert layers["lm_head"].base_layer.weight is layers["model.embed_tokens"].base_layer.weight  # still tied
    expected = outputs(model, batch())
    plain = model.merge_and_unload()
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)
    # lm_head now holds diag(s_head) E and embed_tokens E diag(s_emb): two tensors, and the config says so
    assert plain.lm_head.weight is not plain.model.embed_tokens.weight
    assert plain.config.tie_word_embeddings is False
    plain.tie_weights()  # what resize_token_embeddings() and loading do: must not put the tie back
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)
    plain.save_pretrained(tmp_path)
    reloaded = type(plain).from_pretrained(tmp_path).eval()
    assert reloaded.lm_head.weight is not reloaded.model.embed_tokens.weight
    assert torch.allclose(outputs(reloaded, batch()), expected, atol=1e-5)


def test_unmerge_ties_the_weights_again():
    model = perturbed(get_propulsion_model(tied_llama(), PropulsionConfig(degree=3)))
    table = model.base_model.model.embed_tokens.base_layer.weight.detach().clone()
    expected = outputs(model, batch())
    model.merge()
    assert model.base_model.lm_head.base_layer.weight is not model.base_model.model.embed_tokens.base_layer.weight
    assert torch.allclose(outputs(model, batch()), expected, atol=1e-5)
    model.unmerge()
    assert model.base_model.lm_head.base_layer.weight is model.base_model.model.embed_tokens.base_layer.weight
    assert torch.allclose(model.base_model.lm_head.base_layer.weight, table, atol=1e-6)
    assert torch.allclose(outputs(model, batch()), expected, atol=1e-5)
    plain = model.merge_and_unload()  # merge again after an unmerge: still right, still untied in the config
    assert plain.config.tie_word_embeddings is False
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


def test_a_tie_no_merge_touches_stays():
    model = perturbed(get_propulsion_model(tied_llama(), PropulsionConfig(degree=3, targets="attn")))
    expected = outputs(model, batch())
    plain = model.merge_and_unload()
    assert plain.lm_head.weight is plain.model.embed_tokens.weight and plain.config.tie_word_embeddings is True
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    model = perturbed(get_propulsion_model(roberta_classifier(seed=0), PropulsionConfig(degree=15)))
    expected = outputs(model, batch())
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    trained = {n for n, p in model.base_model.named_parameters() if p.requires_grad}
    # the frozen head (classifier.dense, classifier.out_proj) is new in a base model: saved beside the z vectors
    head = {f"classifier.{m}.base_layer.{t}" for m in ("dense", "out_proj") for t in ("weight", "bias")}
    assert set(tensors) == trained | head and all(name.endswith(".propulsion") for name in trained)
    payload = json.loads((tmp_path / "propulsion_config.json").read_text())
    assert payload["propulsion_config"]["degree"] == 15
    # counted apart: 32 x 32 + 32 + 2 x 32 + 2 frozen head parameters; the trainable count stays the z entries
    assert payload["frozen_saved"] == {"tensors": sorted(head), "parameters": 32 * 32 + 32 + 2 * 32 + 2}
    card = (tmp_path / "README.md").read_text()
    assert "| Trainable parameters | 578 of " in card and "| Saved frozen parameters | 1,122 in 4 tensors" in card
    loaded = PropulsionModel.from_pretrained(roberta_classifier(seed=0), tmp_path)
    assert torch.equal(outputs(loaded, batch()), expected)


def test_the_adapter_file_holds_only_the_trainable_tensors(tmp_path):
    model = perturbed(get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=7, targets="attn")))
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "adapter_model.safetensors",
                                                         "propulsion_config.json"]  # README.md: the model card
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))  # a real safetensors file
    head = [f"classifier.{m}.{t}" for m in ("dense", "out_proj") for t in ("bias", "weight")]  # frozen, new
    assert sorted(tensors) == head + [f"roberta.encoder.layer.{i}.attention.self.{p}.propulsion"
                                      for i in (0, 1) for p in ("key", "query", "value")]
    assert all(tensors[name].shape == (1, 32) and tensors[name].dtype == torch.float32 for name in tensors
               if name.endswith(".propulsion"))
    saved = json.loads((tmp_path / "propulsion_config.json").read_text())
    assert saved["base_model_type"] == "roberta" and saved["propulsion_config"]["targets"] == "attn"


def test_round_trip_with_a_full_head_and_biases(tmp_path):
    config = PropulsionConfig(degree=3, targets=["query", "value"], head="full", bias="all")
    model = perturbed(get_propulsion_model(roberta_classifier(seed=0), config))
    with torch.no_grad():  # what training would have changed besides z
        model.base_model.classifier.out_proj.weight.add_(0.5)
        model.base_model.roberta.encoder.layer[1].output.dense.bias.add_(0.5)
    expected = outputs(model, batch())
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert {"classifier.out_proj.weight", "classifier.dense.bias", "roberta.encoder.layer.1.output.dense.bias",
            "roberta.encoder.layer.0.attention.self.value.base_layer.bias"} <= set(tensors)
    assert not any(n.endswith(".weight") and not n.startswith("classifier.") for n in tensors)  # no frozen weight
    loaded = PropulsionModel.from_pretrained(roberta_classifier(seed=0), tmp_path)
    assert loaded.propulsion_config == config
    assert torch.equal(outputs(loaded, batch()), expected)
    loaded.merge()
    with pytest.raises(ValueError, match="unmerge"):  # merged weights are no adapter
        loaded.save_pretrained(tmp_path / "merged")


def test_loading_onto_another_model_size_names_the_key_and_shapes(tmp_path):
    layer_1_query = [r".*layer\.1\.attention\.self\.query"]
    get_propulsion_model(roberta_classifier(hidden=32), PropulsionConfig(targets=layer_1_query)).save_pretrained(
        tmp_path)
    with pytest.raises(ValueError, match=r"adapter tensor 'roberta\.encoder\.layer\.1\.attention\.self\.query\."
                                         r"propulsion' has shape \(1, 32\) but the model's is \(1, 48\)"):
        PropulsionModel.from_pretrained(roberta_classifier(hidden=48), tmp_path)


def test_missing_adapter_files_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"nothing holds no Propulsion adapter: propulsion_config\.json is missing"):
        PropulsionModel.from_pretrained(roberta_classifier(), tmp_path / "nothing")
    get_propulsion_model(roberta_classifier(), PropulsionConfig()).save_pretrained(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors is missing"):
        PropulsionModel.from_pretrained(roberta_classifier(), tmp_path)


def test_passthrough_of_config_forward_and_generate():
    untouched = family_model("llama")
    model = get_propulsion_model(family_model("llama"), PropulsionConfig(degree=15))
    assert model.config is model.base_model.config and model.config.model_type == "llama"
    inputs = batch(size=2, length=5)
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert loss.ndim == 0 and torch.equal(loss, untouched(**inputs, labels=inputs["input_ids"]).loss)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, 9) and torch.equal(generated[:, :5], inputs["input_ids"])
    # greedy decoding through the wrapped layers (with the KV cache) picks the untouched model's tokens at init
    assert torch.equal(generated, untouched.generate(**inputs, max_new_tokens=4, do_sample=False))
    classifier = get_propulsion_model(roberta_classifier(), PropulsionConfig())
    labels = torch.tensor([0, 1, 1, 0])
    out = classifier(**batch(), labels=labels)
    assert out.loss.ndim == 0 and out.logits.shape == (4, 2)
    assert torch.equal(out.loss, roberta_classifier()(**batch(), labels=labels).loss)


def test_merging_a_tied_lm_head_leaves_the_input_embeddings_alone():
    base = tied_llama()
    table = base.model.embed_tokens.weight.detach().clone()
    model = perturbed(get_propulsion_model(base, PropulsionConfig(degree=3, targets=["lm_head"])), scale=0.2)
    expected = outputs(model, batch())
    plain = model.merge_and_unload()
    assert torch.equal(plain.model.embed_tokens.weight, table)  # a new lm_head weight, not an in-place edit
    assert torch.allclose(outputs(plain, batch()), expected, atol=1e-5)
    assert plain.config.tie_word_embeddings is False


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


def reheaded(seed: int):
    """roberta_classifier(seed=0)'s backbone under a head initialised otherwise: a fresh base as a user builds it
    (the base checkpoint holds no classifier, so every from_pretrained draws a new one)."""
    base = roberta_classifier(seed=0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in base.classifier.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return base


@pytest.mark.parametrize("head", ["propulsion", "full", "both"])
def test_an_adapter_reloads_onto_a_base_with_another_head(tmp_path, head):
    model = perturbed(get_propulsion_model(reheaded(1), PropulsionConfig(degree=15, head=head)))
    if head != "propulsion":
        with torch.no_grad():  # what training the head would have changed
            model.base_model.classifier.out_proj.weight.add_(0.3)
    expected = outputs(model, batch())
    model.save_pretrained(tmp_path)
    other = reheaded(2)
    assert not torch.allclose(outputs(other, batch()), outputs(reheaded(1), batch()))  # the heads do differ
    loaded = PropulsionModel.from_pretrained(other, tmp_path)
    assert torch.equal(outputs(loaded, batch()), expected)


def test_unload_gives_the_base_back_and_merge_adapter_is_merge():
    model = perturbed(get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=5)))
    expected = outputs(model, batch())
    model.merge_adapter()
    assert all(layer.merged for layer in propulsion_layers(model.base_model).values())
    assert torch.allclose(outputs(model, batch()), expected, atol=1e-5)
    model.unmerge_adapter()
    assert not any(layer.merged for layer in propulsion_layers(model.base_model).values())
    model.merge_adapter()  # unload() unmerges first: the weights are the base's again
    plain = model.unload()
    assert not any(isinstance(m, PropulsionLayer) for m in plain.modules())
    assert type(plain).__name__ == "RobertaForSequenceClassification"
    assert torch.allclose(outputs(plain, batch()), outputs(roberta_classifier(), batch()), atol=1e-6)


def test_add_weighted_adapter_scales_by_the_weighted_sum_exactly():
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=3, targets="attn"))
    model.add_adapter("b", PropulsionConfig(degree=5, targets="attn", init="normal", init_scale=0.1))
    model.add_adapter("c", PropulsionConfig(degree=2, targets="attn", num_vectors=2, init="uniform", init_scale=0.3))
    perturbed(model)
    model.add_weighted_adapter(["default", "b", "c"], [0.5, -1.5, 2.0], "mix")
    for layer in propulsion_layers(model.base_model).values():
        z_a, z_b, z_c = layer.vectors("default")[0], layer.vectors("b")[0], layer.vectors("c")
        by_hand = 0.5 * z_a.float() ** 3 + -1.5 * z_b.float() ** 5 + 2.0 * (z_c.float() ** 2).mean(0)
        assert torch.equal(layer.scale("mix"), by_hand.detach())  # stored as z = the sum, degree 1
        assert layer.settings["mix"] == (1, "mean") and layer.vectors("mix").shape == (1, 32)
    # the outputs are the ones of scaling each output by that sum: a hand-made adapter of degree 1 with it
    model.set_adapter("mix")
    mixed = outputs(model, batch())
    reference = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=1, targets="attn"))
    with torch.no_grad():
        for name, layer in propulsion_layers(reference.base_model).items():
            layer.propulsion.copy_(propulsion_layers(model.base_model)[name].vectors("mix"))
    assert torch.equal(mixed, outputs(reference, batch()))
    with pytest.raises(ValueError, match="one length"):
        model.add_weighted_adapter(["default"], [1.0, 2.0], "bad")


def test_target_modules_is_an_alias_of_targets():
    config = PropulsionConfig(target_modules=["query", "value"], degree=3)
    assert config.targets == ["query", "value"] and config.target_modules == ["query", "value"]
    assert config == PropulsionConfig(targets=["query", "value"], degree=3)
    assert "target_modules" not in config.to_dict() and PropulsionConfig.from_dict(config.to_dict()) == config
    assert PropulsionConfig().target_modules == "all"
    with pytest.raises(ValueError, match=r"targets='attn' and target_modules=\['query'\] differ"):
        PropulsionConfig(targets="attn", target_modules=["query"])
