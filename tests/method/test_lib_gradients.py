"""Gradients: gradcheck through wrapped layers, and a few optimizer steps that lower the loss."""

from __future__ import annotations

import torch
from torch import nn

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import PropulsionLayer
from tests.method.tiny_models import batch, roberta_classifier


def layer_function(layer: PropulsionLayer):
    """The layer as a function of (input, z) in float64: z is float32 by design, so it is fed in as an input."""
    def apply(inputs, z):
        with torch.no_grad():
            layer.propulsion.data = z.detach().float()
        base = layer.base_layer(inputs)
        scale = z.pow(layer.degree)[0]
        return base * scale

    return apply


def test_gradcheck_linear_and_embedding_in_float64():
    torch.manual_seed(0)
    config = PropulsionConfig(degree=3)
    linear = PropulsionLayer(nn.Linear(4, 3).double(), config)
    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    z = (1 + 0.3 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(layer_function(linear), (x, z))
    # The layer's own forward equals the float64 function (same math, z held in float32).
    with torch.no_grad():
        linear.propulsion.copy_(z.float())
    assert torch.allclose(linear(x), layer_function(linear)(x, z.detach().float().double()), atol=1e-6)

    embedding = PropulsionLayer(nn.Embedding(6, 3).double(), config)
    ids = torch.tensor([[0, 5, 2]])
    z = (1 + 0.3 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: layer_function(embedding)(ids, z), (z,))


def test_z_gradient_is_k_times_the_degree_one_gradient_at_init():
    # d(z^k)/dz at z = 1 is k: the degree acts as a learning-rate multiplier (reference.md).
    grads = {}
    for degree in (1, 7):
        torch.manual_seed(0)
        layer = PropulsionLayer(nn.Linear(4, 3), PropulsionConfig(degree=degree))
        layer(torch.ones(2, 4)).sum().backward()
        grads[degree] = layer.propulsion.grad
    assert torch.allclose(grads[7], 7 * grads[1])


def test_a_few_adam_steps_lower_the_loss():
    torch.manual_seed(0)
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15))
    model.train()
    inputs = batch(size=16)
    labels = (inputs["input_ids"][:, 1] > 50).long()  # a label the first token decides
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_bf16_training_at_degree_200_stays_finite():
    torch.manual_seed(0)
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=200))
    model.to(torch.bfloat16).train()
    layers = [m for m in model.modules() if isinstance(m, PropulsionLayer)]
    assert all(layer.propulsion.dtype == torch.float32 for layer in layers)
    inputs, labels = batch(size=8), torch.tensor([0, 1] * 4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(3):
        out = model(**inputs, labels=labels)
        assert torch.isfinite(out.loss) and torch.isfinite(out.logits.float()).all()
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert all(layer.propulsion.dtype == torch.float32 and torch.isfinite(layer.propulsion).all() for layer in layers)
