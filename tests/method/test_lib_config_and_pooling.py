"""Multi-Propulsion pooling, initialisation, and one clear ValueError per bad config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import PropulsionConfig as Config
from propulsion.method import PropulsionLayer
from tests.method.tiny_models import batch, outputs, roberta_classifier


def linear_layer(**config) -> PropulsionLayer:
    torch.manual_seed(0)
    return PropulsionLayer(nn.Linear(3, 2), PropulsionConfig(**config))


@pytest.mark.parametrize("pooling", ["mean", "max", "min", "l2", "prod"])
def test_one_vector_is_the_plain_method_bit_for_bit(pooling):
    plain, pooled = linear_layer(degree=3), linear_layer(degree=3, pooling=pooling)
    with torch.no_grad():
        plain.propulsion.fill_(1.1)
        pooled.propulsion.fill_(1.1)
    x = torch.randn(4, 3)
    assert torch.equal(plain(x), pooled(x))


@pytest.mark.parametrize(("pooling", "scale"), [
    # z rows (1, 2), (2, 1), (3, 0.5) at degree 2 give scales (1, 4), (4, 1), (9, 0.25) per output feature
    ("mean", [14 / 3, 5.25 / 3]), ("max", [9, 4]), ("min", [1, 0.25]), ("prod", [36, 1]),
    ("l2", [((1 + 16 + 81) / 3) ** 0.5, ((16 + 1 + 0.0625) / 3) ** 0.5]),
])
def test_three_vectors_pool_their_scales(pooling, scale):
    layer = linear_layer(degree=2, num_vectors=3, pooling=pooling)
    with torch.no_grad():
        layer.propulsion.copy_(torch.tensor([[1.0, 2.0], [2.0, 1.0], [3.0, 0.5]]))
    x = torch.randn(5, 3)
    assert torch.allclose(layer(x), layer.base_layer(x) * torch.tensor(scale), rtol=1e-6)
    expected = layer(x)
    weight, bias = layer.base_layer.weight.detach().clone(), layer.base_layer.bias.detach().clone()
    layer.merge()
    assert torch.allclose(layer.base_layer.weight, weight * torch.tensor(scale)[:, None], rtol=1e-6)
    assert torch.allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    layer.unmerge()
    assert torch.allclose(layer.base_layer.weight, weight, atol=1e-6)
    assert torch.allclose(layer.base_layer.bias, bias, atol=1e-6)


def test_multi_propulsion_counts_p_vectors_and_is_identity_at_init():
    plain = roberta_classifier()
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(num_vectors=3))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 3 * (2 * (4 * 32 + 64 + 32) + 96 + 34)
    assert torch.equal(outputs(plain, batch()), outputs(model, batch()))


def test_initialisations():
    torch.manual_seed(0)
    assert torch.equal(linear_layer().propulsion, torch.ones(1, 2))
    assert torch.equal(linear_layer(num_vectors=3).propulsion, torch.ones(3, 2))
    assert torch.equal(linear_layer(init="zeros").propulsion, torch.zeros(1, 2))
    big = PropulsionLayer(nn.Linear(3, 4000), PropulsionConfig(init="normal", init_scale=0.1)).propulsion
    assert abs(big.mean().item() - 1) < 0.01 and abs(big.std().item() - 0.1) < 0.01
    uniform = PropulsionLayer(nn.Linear(3, 4000), PropulsionConfig(init="uniform", init_scale=0.1)).propulsion
    assert uniform.min() >= 0.9 and uniform.max() <= 1.1 and abs(uniform.mean().item() - 1) < 0.01
    zero = linear_layer(init="zeros")
    assert torch.equal(zero(torch.randn(2, 3)), torch.zeros(2, 2))
    zero.merge()  # a zero scale merges (the weights become 0) but cannot be undone
    assert torch.equal(zero(torch.randn(2, 3)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="cannot unmerge: a Propulsion scale is exactly 0"):
        zero.unmerge()


@pytest.mark.parametrize(("fields", "message"), [
    ({"degree": 0}, "degree must be an integer >= 1, got 0"),
    ({"degree": -1}, "got -1"),
    ({"degree": 1.5}, "got 1.5"),
    ({"degree": True}, "got True"),
    ({"degree": "15"}, "got '15'"),
    ({"targets": "attention"}, "unknown targets preset 'attention'; valid presets: all, attn"),
    ({"num_vectors": 0}, "num_vectors must be an integer >= 1, got 0"),
    ({"pooling": "avg"}, "unknown pooling 'avg'; valid choices: mean, max, min, l2, prod"),
    ({"init": "foo"}, "unknown init 'foo'"),
    ({"head": "frozen"}, "unknown head 'frozen'"),
    ({"bias": "some"}, "unknown bias 'some'; valid choices: none, all"),
    ({"num_vectors": True}, "num_vectors must be an integer >= 1, got True"),
    ({"num_vectors": 2.5}, "got 2.5"),
    ({"init_scale": 0}, "init_scale must be a number > 0, got 0"),
    ({"init_scale": "x"}, "init_scale must be a number > 0, got 'x'"),
    ({"targets": []}, "targets must be a preset or a non-empty list of patterns, got []"),
    ({"targets": ["query", r"layer\.[0"]}, r"target pattern 'layer\\.[0' is not a valid regular expression"),
])
def test_bad_configs_name_the_value(fields, message):
    with pytest.raises(ValueError) as error:
        PropulsionConfig(**fields)
    assert message in str(error.value)


def test_integral_numbers_are_accepted_as_python_ints():
    import numpy as np

    for value in (15.0, np.int64(15), 15):
        config = PropulsionConfig(degree=value, num_vectors=value)
        assert type(config.degree) is int and config.degree == 15 and type(config.num_vectors) is int


def test_config_json_round_trip_and_unknown_fields():
    config = Config(degree=20, targets=["query", "value"], num_vectors=2, pooling="l2")
    assert Config.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown PropulsionConfig field\(s\) \['rank'\]"):
        Config.from_dict({"degree": 3, "rank": 8})
