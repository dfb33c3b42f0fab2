"""Every architecture preset wraps the modules it names, and one optimizer step changes the output."""

from __future__ import annotations

import pytest
import torch

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import propulsion_layers
from tests.method.tiny_models import batch, family_model, outputs

# A name each preset must wrap in layer 0 (and, for all, the head or the output layer).
EXPECTED = {
    "roberta": {"attn": "roberta.encoder.layer.0.attention.self.key",
                "mlp": "roberta.encoder.layer.0.output.dense", "embedding": "roberta.embeddings.word_embeddings"},
    "bert": {"attn": "bert.encoder.layer.0.attention.self.value", "mlp": "bert.encoder.layer.0.intermediate.dense",
             "embedding": "bert.embeddings.token_type_embeddings"},
    "deberta-v2": {"attn": "deberta.encoder.layer.0.attention.self.query_proj",
                   "mlp": "deberta.encoder.layer.0.output.dense", "embedding": "deberta.embeddings.word_embeddings"},
    "bart": {"attn": "model.decoder.layers.0.encoder_attn.k_proj", "mlp": "model.encoder.layers.0.fc1",
             "embedding": "model.encoder.embed_tokens"},
    "llama": {"attn": "model.layers.0.self_attn.v_proj", "mlp": "model.layers.0.mlp.gate_proj",
              "embedding": "model.embed_tokens"},
    "mistral": {"attn": "model.layers.0.self_attn.q_proj", "mlp": "model.layers.0.mlp.down_proj",
                "embedding": "model.embed_tokens"},
    "bloom": {"attn": "transformer.h.0.self_attention.query_key_value", "mlp": "transformer.h.0.mlp.dense_h_to_4h",
              "embedding": "transformer.word_embeddings"},
    "gptj": {"attn": "transformer.h.0.attn.q_proj", "mlp": "transformer.h.0.mlp.fc_in",
             "embedding": "transformer.wte"},
    "falcon": {"attn": "transformer.h.0.self_attention.query_key_value",
               "mlp": "transformer.h.0.mlp.dense_4h_to_h", "embedding": "transformer.word_embeddings"},
    "phi": {"attn": "model.layers.0.self_attn.k_proj", "mlp": "model.layers.0.mlp.fc2",
            "embedding": "model.embed_tokens"},
}
NOT_IN = {"roberta": {"mlp": "roberta.encoder.layer.0.attention.output.dense"}}


@pytest.mark.parametrize("family", sorted(EXPECTED))
@pytest.mark.parametrize("preset", ["all", "attn", "mlp", "embedding"])
def test_preset_wraps_and_trains(family, preset):
    model = get_propulsion_model(family_model(family), PropulsionConfig(degree=5, targets=preset))
    wrapped = set(propulsion_layers(model.base_model))
    if preset != "all":
        assert EXPECTED[family][preset] in wrapped
        assert NOT_IN.get(family, {}).get(preset) not in wrapped
    else:
        assert {name for names in EXPECTED[family].values() for name in [names]} <= wrapped
    inputs = batch()
    if family == "bart":
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :4]
    before = outputs(model, inputs)
    model.train()
    loss = model(**inputs).logits.float().pow(2).mean()
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)  # no dead z vectors
    torch.optim.SGD(trainable, lr=10.0).step()
    model.eval()
    assert not torch.equal(before, outputs(model, inputs))


def test_fused_attention_cannot_select_query_alone():
    with pytest.raises(ValueError, match="fused"):
        get_propulsion_model(family_model("bloom"), PropulsionConfig(targets="query"))


def test_unknown_architecture_with_a_preset_says_to_pass_patterns():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="module-name patterns"):
        get_propulsion_model(model, PropulsionConfig(targets="attn"))
    # `all` and explicit patterns need no preset table.
    assert len(propulsion_layers(get_propulsion_model(torch.nn.Sequential(torch.nn.Linear(4, 4)),
                                                      PropulsionConfig(targets=["0"])))) == 1


def test_patterns_that_match_nothing_are_named():
    with pytest.raises(ValueError, match=r"\['no_such_module'\]"):
        get_propulsion_model(family_model("roberta"), PropulsionConfig(targets=["query", "no_such_module"]))


def test_lm_head_is_not_a_task_head_but_a_classifier_is():
    from propulsion.method import head_module_names

    assert head_module_names(family_model("roberta")) == ["classifier"]
    assert head_module_names(family_model("llama")) == []
