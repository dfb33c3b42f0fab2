"""Identity at init and the paper's exact trainable counts (Table 1), on full-size configs built on meta."""

from __future__ import annotations

import pytest
import torch
from transformers import RobertaConfig, RobertaForSequenceClassification

from propulsion import PropulsionConfig, count_parameters, get_propulsion_model
from tests.method.tiny_models import batch, outputs, roberta_classifier


@pytest.mark.parametrize("targets", ["all", "attn", "mlp", "embedding"])
def test_outputs_are_bitwise_identical_at_init(targets):
    plain, wrapped = roberta_classifier(), roberta_classifier()
    model = get_propulsion_model(wrapped, PropulsionConfig(degree=15, targets=targets))
    assert torch.equal(outputs(plain, batch()), outputs(model, batch()))
    # with autograd recording too (the training path; a custom backward must not change the forward value)
    assert torch.equal(plain(**batch()).logits, model(**batch()).logits)


def meta_roberta(size: str) -> torch.nn.Module:
    dims = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}[size]
    config = RobertaConfig(vocab_size=50265, hidden_size=dims[0], num_hidden_layers=dims[1],
                           num_attention_heads=dims[2], intermediate_size=dims[3], max_position_embeddings=514,
                           type_vocab_size=1, num_labels=2)
    with torch.device("meta"):
        return RobertaForSequenceClassification(config)


@pytest.mark.parametrize(("size", "targets", "expected"), [
    ("base", "all", 86_018), ("base", "attn", 27_648), ("large", "all", 225_282), ("large", "attn", 73_728),
])
def test_paper_table_1_counts(size, targets, expected):
    model = get_propulsion_model(meta_roberta(size), PropulsionConfig(targets=targets))
    assert count_parameters(model).trainable == expected


def test_counts_of_the_untouched_model_and_the_print(capsys):
    base = meta_roberta("base")
    # reference.md says 124,646,402; the module count is one 768-wide row more (RoBERTa's single token-type
    # row, or a 50,264-row vocabulary in their count). The paper prints 124.6M, which both round to.
    assert count_parameters(base).total == 124_646_402 + 768
    get_propulsion_model(base, PropulsionConfig()).print_trainable_parameters()
    assert capsys.readouterr().out.strip() == (
        "trainable params: 86,018 || all params: 124,733,188 || trainable%: 0.0690")


def test_only_the_policy_parameters_train():
    def trainable(**policy):
        model = get_propulsion_model(roberta_classifier(), PropulsionConfig(**policy))
        return {n for n, p in model.base_model.named_parameters() if p.requires_grad}

    assert all(n.endswith(".propulsion") for n in trainable())
    full_head = trainable(head="full")
    assert {"classifier.dense.weight", "classifier.out_proj.bias"} <= full_head
    assert not any(n.startswith("classifier") and n.endswith("propulsion") for n in full_head)
    with_bias = trainable(bias="all")
    assert "roberta.encoder.layer.0.attention.self.query.base_layer.bias" in with_bias
    assert not any(n.endswith("weight") for n in with_bias)
