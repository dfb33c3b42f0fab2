"""Gradients: gradcheck through wrapped layers, and a few optimizer steps that lower the loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from transformers.pytorch_utils import Conv1D

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import PropulsionLayer, propulsion_layers
from propulsion.method.scaling import apply_scale
from tests.method.tiny_models import batch, family_model, roberta_classifier


def test_apply_scale_gradcheck_in_float64():
    # The one function every wrapped layer goes through, whatever its implementation (plain or memory-lean).
    torch.manual_seed(0)
    output = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    scale = (1 + 0.3 * torch.randn(4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(apply_scale, (output, scale))
    # A scale entry of exactly 0 (init="zeros"): V cannot be recovered from V ⊙ s, the gradient must still be right.
    zeroed = torch.tensor([0.0, 1.5, -0.5, 2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(apply_scale, (output, zeroed))


# Three z rows per output feature, well apart (no ties for max/min within gradcheck's step) and away from 1.
Z3 = torch.tensor([[1.3, 0.8, 1.1], [0.9, 1.2, 0.7], [1.05, 1.0, 1.25]], dtype=torch.float64)


def frozen_base(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return {"linear": lambda: nn.Linear(4, 3), "embedding": lambda: nn.Embedding(6, 3),
            "conv1d": lambda: Conv1D(3, 4)}[kind]().double().requires_grad_(False)  # frozen, as injected


@pytest.mark.parametrize("kind", ["linear", "embedding", "conv1d"])
@pytest.mark.parametrize(("vectors", "pooling"), [(1, "mean"), (3, "mean"), (3, "max"), (3, "min"), (3, "l2"),
                                                   (3, "prod")])
def test_gradcheck_through_the_real_layer_wrt_input_and_z(kind, vectors, pooling):
    # z is float32 by design (compute_scale rounds it), so a float64 z is fed in through functional_call and the
    # layer's own forward/backward is checked against finite differences: the step (1e-3) is far above float32's
    # rounding of z (6e-8), and a wrong gradient (a missing k, z^k instead of k z^(k-1), a wrong pooling
    # derivative) is off by O(1), far outside the tolerance.
    layer = PropulsionLayer(frozen_base(kind), PropulsionConfig(degree=3, num_vectors=vectors, pooling=pooling))
    z = Z3[:vectors].clone().requires_grad_()

    def through_layer(inputs, z):
        return functional_call(layer, {"propulsion": z}, (inputs,))

    if kind == "embedding":
        ids = torch.tensor([[0, 5, 2, 5], [1, 1, 3, 0]])
        assert torch.autograd.gradcheck(lambda z: through_layer(ids, z), (z,), eps=1e-3, atol=1e-4, rtol=1e-3)
    else:
        inputs = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(through_layer, (inputs, z), eps=1e-3, atol=1e-4, rtol=1e-3)


def reference_z_gradient(base_output: torch.Tensor, weights: torch.Tensor, z: torch.Tensor, degree: int):
    """d/dz Σ w ⊙ V ⊙ z^k in float64, by autograd on the formula itself."""
    z64 = z.detach().double().requires_grad_()
    (weights * base_output.double() * z64[0] ** degree).sum().backward()
    return z64.grad


@pytest.mark.parametrize("kind", ["linear", "embedding", "conv1d"])
def test_gradients_through_the_real_layer(kind):
    torch.manual_seed(0)
    base = {"linear": lambda: nn.Linear(4, 3), "embedding": lambda: nn.Embedding(6, 3),
            "conv1d": lambda: Conv1D(3, 4)}[kind]().double().requires_grad_(False)  # frozen, as injected
    layer = PropulsionLayer(base, PropulsionConfig(degree=3))
    with torch.no_grad():
        layer.propulsion.mul_(1 + 0.3 * torch.randn(1, 3))  # away from 1, where z^k is not ~linear
    if kind == "embedding":
        inputs = torch.tensor([[0, 5, 2, 5]])
    else:
        inputs = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
        # wrt the input, in float64 through the layer's own forward (z is float32 by design, held fixed here)
        assert torch.autograd.gradcheck(layer, (inputs,))
    weights = torch.randn(*layer(inputs).shape, dtype=torch.float64)
    layer.propulsion.grad = None
    (layer(inputs) * weights).sum().backward()
    expected = reference_z_gradient(layer.base_layer(inputs).detach(), weights, layer.propulsion, 3)
    assert layer.propulsion.grad.dtype == torch.float32
    assert torch.allclose(layer.propulsion.grad.double(), expected, rtol=1e-5, atol=1e-6)


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
    labels = (inputs["input_ids"][:, 1] > 50).long()  # a label the first token decides: separable
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(15):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # observed: 0.693 (chance, ln 2) falling to ~0.15; only z trains (578 numbers), the backbone is random
    assert abs(losses[0] - 0.693) < 0.01 and max(losses[-3:]) < 0.5 * losses[0], losses
    model.eval()
    assert torch.equal(model(**inputs).logits.argmax(-1), labels)  # the batch is now classified right


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
    assert all(layer.propulsion.grad.dtype == torch.float32 for layer in layers)
    assert any(not torch.equal(layer.propulsion, torch.ones_like(layer.propulsion)) for layer in layers)  # it moved


@pytest.mark.parametrize("family", ["llama", "roberta", "bloom"])
def test_gradient_checkpointing_gives_the_same_z_gradients(family):
    # The suite turns on transformers' gradient checkpointing for large models: the recomputed forward must give
    # the scaled outputs and z gradients of the plain run, exactly (same ops, same order).
    def z_gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = get_propulsion_model(family_model(family), PropulsionConfig(degree=5))
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in propulsion_layers(model.base_model).values():
                layer.propulsion.add_(0.05 * torch.randn(layer.propulsion.shape, generator=generator))
        if checkpointing:
            model.base_model.gradient_checkpointing_enable()
        model.train()
        model(**batch()).logits.pow(2).mean().backward()
        return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}

    plain, checkpointed = z_gradients(False), z_gradients(True)
    assert plain.keys() == checkpointed.keys() and all(g.abs().sum() > 0 for g in plain.values())
    assert all(torch.equal(plain[name], checkpointed[name]) for name in plain)
