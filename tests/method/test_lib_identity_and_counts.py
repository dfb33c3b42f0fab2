"""Identity at init, the paper's exact trainable counts (Table 1) on full-size meta configs, and what trains."""

from __future__ import annotations

import pytest
import torch
from transformers import RobertaConfig, RobertaForSequenceClassification

from propulsion import PropulsionConfig, count_parameters, get_propulsion_model
from propulsion.method import propulsion_layers
from tests.method.tiny_models import batch, outputs, roberta_classifier


@pytest.mark.parametrize("targets", ["all", "attn", "mlp", "embedding"])
def test_outputs_are_bitwise_identical_at_init(targets):
    plain, wrapped = roberta_classifier(), roberta_classifier()
    model = get_propulsion_model(wrapped, PropulsionConfig(degree=15, targets=targets))
    assert propulsion_layers(model.base_model)  # something is wrapped, so the comparison means something
    assert torch.equal(outputs(plain, batch()), outputs(model, batch()))
    # with autograd recording too (the training path; a custom backward must not change the forward value)
    assert torch.equal(plain(**batch()).logits, model(**batch()).logits)


DIMS = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}  # hidden, layers, heads, intermediate


def meta_roberta(size: str) -> torch.nn.Module:
    hidden, layers, heads, intermediate = DIMS[size]
    config = RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=514,
                           type_vocab_size=1, num_labels=2)
    with torch.device("meta"):
        return RobertaForSequenceClassification(config)


def test_meta_models_are_the_full_size_ones_without_memory():
    model = meta_roberta("base")
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.roberta.embeddings.word_embeddings.weight.shape == (50265, 768)


@pytest.mark.parametrize(("size", "targets", "expected"), [
    ("base", "all", 86_018), ("base", "attn", 27_648), ("large", "all", 225_282), ("large", "attn", 73_728),
])
def test_paper_table_1_counts(size, targets, expected):
    hidden, layers, _, intermediate = DIMS[size]
    # By hand: per layer q, k, v, attention-output (h each), intermediate (i), output (h); word, position and
    # token-type embeddings (h each); the head's dense (h) and out_proj (2 labels). Attn: q, k, v only.
    by_hand = (layers * (4 * hidden + intermediate + hidden) + 3 * hidden + hidden + 2 if targets == "all"
               else layers * 3 * hidden)
    assert by_hand == expected
    model = get_propulsion_model(meta_roberta(size), PropulsionConfig(targets=targets))
    assert count_parameters(model).trainable == expected
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def roberta_total_by_hand(hidden: int, layers: int, intermediate: int, vocab=50265, positions=514, types=1) -> int:
    embeddings = (vocab + positions + types) * hidden + 2 * hidden  # three tables + LayerNorm
    layer = 4 * (hidden * hidden + hidden) + (hidden * intermediate + intermediate) \
        + (intermediate * hidden + hidden) + 2 * 2 * hidden  # q, k, v, o; FFN in/out; two LayerNorms
    head = (hidden * hidden + hidden) + (hidden * 2 + 2)  # classifier.dense, classifier.out_proj
    return embeddings + layers * layer + head


@pytest.mark.parametrize(("size", "reference"), [("base", 124_646_402), ("large", 355_360_770)])
def test_counts_of_the_untouched_model(size, reference):
    hidden, layers, _, intermediate = DIMS[size]
    total = count_parameters(meta_roberta(size)).total
    assert total == roberta_total_by_hand(hidden, layers, intermediate)
    assert total == {"base": 124_647_170, "large": 355_361_794}[size]
    # reference.md's full fine-tuning counts are exactly one hidden-size row lower than the module count
    # (RoBERTa's single token-type row, or a 50,264-row vocabulary, left out). The paper prints 124.6M / 355.3M,
    # which both round to; what the modules hold is the number above.
    assert total - reference == hidden


def test_print_trainable_parameters_format(capsys):
    get_propulsion_model(meta_roberta("base"), PropulsionConfig()).print_trainable_parameters()
    # 86,018 / (124,647,170 + 86,018) = 0.06896 %
    assert capsys.readouterr().out == (
        "trainable params: 86,018 || all params: 124,733,188 || trainable%: 0.0690\n")


# Tiny RoBERTa (h 32, i 64, 2 layers, 2 labels): what trains under each head / bias policy, counted by hand.
Z_BACKBONE = 2 * (4 * 32 + 64 + 32) + 3 * 32  # z of the 12 layer Linears and the 3 embeddings: 544
Z_HEAD = 32 + 2  # z of classifier.dense and classifier.out_proj
HEAD_FULL = (32 * 32 + 32) + (32 * 2 + 2)  # every classifier weight and bias: 1,122
BACKBONE_BIASES = 2 * (4 * 32 + 32 + 64 + 32 + 32) + 32  # q, k, v, o, LN, FFN in, FFN out, LN; embeddings LN: 608
HEAD_BIASES = 32 + 2


@pytest.mark.parametrize(("head", "bias", "expected"), [
    ("propulsion", "none", Z_BACKBONE + Z_HEAD),  # 578
    ("full", "none", Z_BACKBONE + HEAD_FULL),  # 1,666
    ("propulsion", "all", Z_BACKBONE + Z_HEAD + BACKBONE_BIASES + HEAD_BIASES),  # 1,220
    ("full", "all", Z_BACKBONE + HEAD_FULL + BACKBONE_BIASES),  # 2,274
])
def test_only_the_policy_parameters_train(head, bias, expected):
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(head=head, bias=bias))
    trainable = {n: p for n, p in model.base_model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == expected == count_parameters(model).trainable
    wrapped = set(propulsion_layers(model.base_model))
    assert {n for n in trainable if n.endswith(".propulsion")} == {f"{w}.propulsion" for w in wrapped}
    assert ("classifier.dense" in wrapped) == (head == "propulsion")
    head_tensors = {f"classifier.{m}.{k}" for m in ("dense", "out_proj") for k in ("weight", "bias")}
    assert head_tensors <= set(trainable) if head == "full" else not (head_tensors & set(trainable))
    others = set(trainable) - {n for n in trainable if n.endswith(".propulsion")} - (
        head_tensors if head == "full" else set())
    assert all(n.endswith(".bias") for n in others)
    assert bool(others) == (bias == "all")
    if bias == "all":
        assert "roberta.encoder.layer.0.attention.self.query.base_layer.bias" in others
        assert "roberta.embeddings.LayerNorm.bias" in others
