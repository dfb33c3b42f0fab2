"""Every architecture preset wraps exactly the modules it names, and one optimizer step changes the output."""

from __future__ import annotations

import pytest
import torch

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import head_module_names, propulsion_layers
from tests.method.tiny_models import batch, family_model, outputs

# Per family: the layer stacks (each of 2 layers), then per preset the modules inside a layer and the modules
# outside any layer. Written from the architectures, not read back from the library.
ATTENTION = {
    "bert_like": ["attention.self.query", "attention.self.key", "attention.self.value"],
    "deberta": ["attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"],
    "llama": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    "gptj": ["attn.q_proj", "attn.k_proj", "attn.v_proj"],
    "fused": ["self_attention.query_key_value"],
}
BERT_MLP = ["intermediate.dense", "output.dense"]  # the FFN's output.dense, not attention.output.dense


def bert_like(prefix: str, head: list[str], extra_embeddings=("position", "token_type")) -> dict:
    embeddings = [f"{prefix}.embeddings.{kind}_embeddings" for kind in ("word", *extra_embeddings)]
    return {
        "stacks": [f"{prefix}.encoder.layer"],
        "attn": (ATTENTION["bert_like"], []), "mlp": (BERT_MLP, []), "embedding": ([], embeddings),
        "all": (ATTENTION["bert_like"] + ["attention.output.dense"] + BERT_MLP, embeddings + head),
    }


def decoder_only(prefix: str, attention: list[str], out: str, mlp: list[str], embedding: str) -> dict:
    return {"stacks": [prefix], "attn": (attention, []), "mlp": (mlp, []), "embedding": ([], [embedding]),
            "all": (attention + [out] + mlp, [embedding, "lm_head"])}


LLAMA_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
FUSED_MLP = ["mlp.dense_h_to_4h", "mlp.dense_4h_to_h"]
BART_ATTENTION = [f"{block}.{p}_proj" for block in ("self_attn", "encoder_attn") for p in "qkv"]
BART_EMBEDDINGS = [f"model.{side}.{kind}" for side in ("encoder", "decoder") for kind in ("embed_tokens",
                                                                                          "embed_positions")]
DEBERTA = bert_like("deberta", ["pooler.dense", "classifier"], extra_embeddings=())
DEBERTA.update(attn=(ATTENTION["deberta"], []), all=(
    ATTENTION["deberta"] + ["attention.self.pos_key_proj", "attention.self.pos_query_proj",
                            "attention.output.dense"] + BERT_MLP,
    ["deberta.embeddings.word_embeddings", "pooler.dense", "classifier"]))  # not encoder.rel_embeddings
EXPECTED = {
    "roberta": bert_like("roberta", ["classifier.dense", "classifier.out_proj"]),
    "bert": bert_like("bert", ["bert.pooler.dense", "classifier"]),
    "deberta-v2": DEBERTA,
    "bart": {  # encoder layers have no encoder_attn (filtered below); model.shared is never called
        "stacks": ["model.encoder.layers", "model.decoder.layers"],
        "attn": (BART_ATTENTION, []), "mlp": (["fc1", "fc2"], []), "embedding": ([], BART_EMBEDDINGS),
        "all": (BART_ATTENTION + ["self_attn.out_proj", "encoder_attn.out_proj", "fc1", "fc2"],
                BART_EMBEDDINGS + ["lm_head"]),
    },
    "llama": decoder_only("model.layers", ATTENTION["llama"], "self_attn.o_proj", LLAMA_MLP, "model.embed_tokens"),
    "mistral": decoder_only("model.layers", ATTENTION["llama"], "self_attn.o_proj", LLAMA_MLP, "model.embed_tokens"),
    "phi": decoder_only("model.layers", ATTENTION["llama"], "self_attn.dense", ["mlp.fc1", "mlp.fc2"],
                        "model.embed_tokens"),
    "gptj": decoder_only("transformer.h", ATTENTION["gptj"], "attn.out_proj", ["mlp.fc_in", "mlp.fc_out"],
                         "transformer.wte"),
    "bloom": decoder_only("transformer.h", ATTENTION["fused"], "self_attention.dense", FUSED_MLP,
                          "transformer.word_embeddings"),
    "falcon": decoder_only("transformer.h", ATTENTION["fused"], "self_attention.dense", FUSED_MLP,
                           "transformer.word_embeddings"),
}


def expected_names(family: str, preset: str) -> set[str]:
    spec = EXPECTED[family]
    inner, outer = spec[preset]
    names = set(outer)
    for stack in spec["stacks"]:
        for layer in range(2):
            names |= {f"{stack}.{layer}.{suffix}" for suffix in inner
                      if not (stack.startswith("model.encoder") and suffix.startswith("encoder_attn"))}
    return names


def family_inputs(family: str) -> dict[str, torch.Tensor]:
    inputs = batch()
    if family == "bart":
        inputs["decoder_input_ids"] = inputs["input_ids"][:, :4]
    return inputs


@pytest.mark.parametrize("family", sorted(EXPECTED))
@pytest.mark.parametrize("preset", ["all", "attn", "mlp", "embedding"])
def test_preset_wraps_exactly_its_modules_and_trains(family, preset):
    base = family_model(family)
    inputs = family_inputs(family)
    untouched = outputs(base, inputs)
    model = get_propulsion_model(base, PropulsionConfig(degree=5, targets=preset))
    assert set(propulsion_layers(model.base_model)) == expected_names(family, preset)
    assert torch.equal(outputs(model, inputs), untouched)  # identity at init, every architecture
    model.train()
    loss = model(**inputs).logits.float().pow(2).mean()
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)  # no dead z
    torch.optim.SGD(trainable, lr=10.0).step()
    model.eval()
    changed = outputs(model, inputs)
    assert torch.isfinite(changed).all() and not torch.equal(untouched, changed)


@pytest.mark.parametrize("family", sorted(set(EXPECTED) - {"bloom", "falcon"}))
def test_single_projection_presets(family):
    attention = EXPECTED[family]["attn"][0]
    for index, preset in enumerate(["query", "key", "value"]):
        model = get_propulsion_model(family_model(family), PropulsionConfig(targets=preset))
        wrapped = set(propulsion_layers(model.base_model))
        suffixes = [s for i, s in enumerate(attention) if i % 3 == index]  # BART: self_attn and encoder_attn
        assert wrapped and all(any(n.endswith("." + s) for s in suffixes) for n in wrapped)
        assert len(wrapped) == len([n for n in expected_names(family, "attn") if any(n.endswith("." + s)
                                                                                    for s in suffixes)])
    qkv = get_propulsion_model(family_model(family), PropulsionConfig(targets="qkv"))
    assert set(propulsion_layers(qkv.base_model)) == expected_names(family, "attn")


@pytest.mark.parametrize("family", ["bloom", "falcon"])
@pytest.mark.parametrize("preset", ["query", "key", "value"])
def test_fused_attention_cannot_select_one_projection(family, preset):
    with pytest.raises(ValueError, match=rf"{family} computes query, key and value in one fused module "
                                         rf"\(query_key_value\): preset '{preset}' cannot select one"):
        get_propulsion_model(family_model(family), PropulsionConfig(targets=preset))


def test_unknown_architecture_with_a_preset_says_to_pass_patterns():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"no target presets for model_type None .*pass targets='all' or a list of "
                                         r"module-name patterns"):
        get_propulsion_model(model, PropulsionConfig(targets="attn"))
    assert all(p.requires_grad for p in model.parameters())  # a refused injection leaves the model as it was
    # `all` and explicit patterns need no preset table.
    assert set(propulsion_layers(get_propulsion_model(model, PropulsionConfig(targets=["2"])))) == {"base_model.2"}
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert set(propulsion_layers(get_propulsion_model(fresh, PropulsionConfig()).base_model)) == {"0", "2"}


def test_patterns_that_match_nothing_are_named():
    with pytest.raises(ValueError, match=r"target pattern\(s\) \['no_such_module', 'lm_head'\] match no"):
        get_propulsion_model(family_model("roberta"), PropulsionConfig(targets=["query", "no_such_module",
                                                                                 "lm_head"]))


def test_a_pattern_for_a_fully_trained_head_says_so():
    with pytest.raises(ValueError, match=r"\['classifier\.dense'\] match no Linear/Embedding module outside the "
                                         r"head, which head='full' trains in full"):
        get_propulsion_model(family_model("roberta"), PropulsionConfig(targets=["classifier.dense"], head="full"))


def test_patterns_are_suffixes_or_full_regexes():
    model = get_propulsion_model(family_model("llama"), PropulsionConfig(targets=["q_proj", r".*layers\.1\.mlp\..*"]))
    assert set(propulsion_layers(model.base_model)) == {
        "model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.gate_proj",
        "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"}
    with pytest.raises(ValueError, match="already holds Propulsion layers"):
        get_propulsion_model(model.base_model, PropulsionConfig())


def test_lm_head_is_not_a_task_head_but_a_classifier_is():
    assert head_module_names(family_model("roberta")) == ["classifier"]
    # BERT keeps its head's first layer (dense + tanh over [CLS]) in the backbone as bert.pooler: RoBERTa's
    # classifier.dense. It is head; the top-level dropout holds no parameters and is no head module.
    assert head_module_names(family_model("bert")) == ["classifier", "bert.pooler"]
    import transformers as tf

    qa = tf.BertForQuestionAnswering(tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                   intermediate_size=64, vocab_size=100))
    assert head_module_names(qa) == ["qa_outputs"]  # built without a pooler: nothing to add
    assert head_module_names(family_model("deberta-v2")) == ["pooler", "classifier"]  # ContextPooler is new
    assert head_module_names(family_model("llama")) == []
    assert head_module_names(family_model("bart")) == []


def test_bitfit_and_peft_train_the_bert_pooler_as_head():
    from propulsion import adapt
    from propulsion.specs import MethodSpec

    spec = MethodSpec(name="bitfit", kind="bitfit", head="full")
    bitfit = adapt.apply_method(family_model("bert"), spec, "sequence-classification")
    trained = {name for name, p in bitfit.model.named_parameters() if p.requires_grad}
    assert {"bert.pooler.dense.weight", "classifier.weight"} <= trained
    assert "bert.encoder.layer.0.attention.self.query.weight" not in trained  # weights outside the head stay frozen
    lora = adapt.apply_method(family_model("bert"), MethodSpec(name="lora", kind="peft", peft_type="LORA", head="full",
                                                              peft_config={"r": 2, "target_modules": ["query"]}),
                              "sequence-classification")
    assert any("pooler" in name and p.requires_grad for name, p in lora.model.named_parameters())
