"""The memory-lean scaling is exact: the forward is V * s bit for bit, gradients equal the plain V * s, and it
keeps no more than the plain version — exactly one small vector more than the unwrapped model where the next
operation keeps the scaled output anyway."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.method import PropulsionLayer, scaling
from propulsion.method.scaling import _LeanScale, apply_scale, recoverable, scaled_embedding, scaled_linear
from propulsion.studies.bench import saved_activation_bytes
from tests.method.tiny_models import batch, family_model, roberta_classifier


def test_gradcheck_lean_scale_in_float64():
    torch.manual_seed(0)
    output = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    scale = (1 + 0.3 * torch.randn(3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(_LeanScale.apply, (output, scale))
    # Entries where V'/s would lose V (0, below sqrt(tiny)): the function keeps V instead.
    for bad in (0.0, 1e-160):
        scale = torch.tensor([1.2, bad, 0.7], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(_LeanScale.apply, (output, scale))


@pytest.mark.parametrize("bad", [None, 0.0, 1e-160])
def test_gradcheck_scaled_frozen_linear_in_float64(bad):
    torch.manual_seed(0)
    weight, bias = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    scale = 1 + 0.3 * torch.randn(3, dtype=torch.float64)
    if bad is not None:
        scale[1] = bad
    scale.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, s: scaled_linear(x, weight, bias, s), (x, scale))
    assert torch.autograd.gradcheck(lambda x, s: scaled_linear(x, weight, None, s), (x, scale))


def test_recoverable_guards_zero_tiny_and_non_finite_scales():
    assert recoverable(torch.tensor([1.0, -2.0, 1e-18]), torch.float32)  # 2 sqrt(float32 tiny) = 2.2e-19
    for bad in (0.0, 1e-20, float("inf"), float("nan")):
        assert not recoverable(torch.tensor([1.0, bad]), torch.float32)
    assert recoverable(torch.tensor([1e-18]), torch.bfloat16)
    assert not recoverable(torch.tensor([1e-3]), torch.float16)  # fp16's normal range ends at 6e-5


def test_gradcheck_scaled_frozen_embedding_in_float64():
    torch.manual_seed(0)
    weight = torch.randn(7, 3, dtype=torch.float64)
    ids = torch.tensor([[0, 6, 2, 2]])
    scale = (1 + 0.3 * torch.randn(3, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: scaled_embedding(ids, weight, s), (scale,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_is_exactly_v_times_s(dtype):
    torch.manual_seed(0)
    linear = nn.Linear(4, 5).to(dtype).requires_grad_(False)
    table = nn.Embedding(9, 5).to(dtype).requires_grad_(False)
    x, ids = torch.randn(3, 4, 4, dtype=dtype, requires_grad=True), torch.tensor([[1, 8, 8, 0]])
    scale = (1 + 0.1 * torch.randn(5)).requires_grad_()
    ones = torch.ones(5, requires_grad=True)
    for s in (scale, ones):
        assert torch.equal(scaled_linear(x, linear.weight, linear.bias, s), linear(x) * s.to(dtype))
        assert torch.equal(scaled_embedding(ids, table.weight, s), table(ids) * s.to(dtype))
        assert torch.equal(apply_scale(linear(x), s), linear(x) * s.to(dtype))
        with torch.no_grad():  # inference scales the fresh output in place: same values
            assert torch.equal(scaled_linear(x, linear.weight, linear.bias, s), linear(x) * s.to(dtype))
    assert torch.equal(scaled_linear(x, linear.weight, linear.bias, ones), linear(x))  # identity at init
    assert torch.equal(scaled_embedding(ids, table.weight, ones), table(ids))


def test_bf16_gradient_of_z_is_float32_and_accurate():
    torch.manual_seed(0)
    values = torch.randn(4, 64, 8, dtype=torch.float64)
    weights = torch.randn(4, 64, 8, dtype=torch.float64)
    z = (1 + 0.05 * torch.randn(8)).requires_grad_()
    output = values.to(torch.bfloat16).requires_grad_()
    scaled = apply_scale(output, z)
    assert scaled.dtype == torch.bfloat16
    scaled.backward(weights.to(torch.bfloat16))
    terms = weights.to(torch.bfloat16).double() * output.detach().double()  # d/ds of Σ w ⊙ V ⊙ s, per token
    assert z.grad.dtype == torch.float32
    # Only V' = V ⊙ s is rounded to bf16 (then divided by s): each term is off by at most ~2^-8 relative, and the
    # sum over 256 tokens runs in float32.
    error = (z.grad.double() - terms.sum((0, 1))).abs()
    assert (error <= 2**-8 * terms.abs().sum((0, 1))).all()


def train(model, steps: int = 4):
    model.train()
    torch.manual_seed(0)  # same dropout masks for both implementations
    inputs, labels = batch(size=8), torch.tensor([0, 1] * 4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses, grads = [], []
    for _ in range(steps):
        loss = model(**inputs, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        optimizer.step()
        losses.append(loss.item())
    return losses, grads


def assert_lean_trains_like_simple(base) -> list[dict[str, torch.Tensor]]:
    """Train copies of ``base`` with both implementations: same losses, same finite gradients at every step;
    returns the lean run's gradients."""
    lean_losses, lean_grads = train(copy.deepcopy(base))
    with scaling.implementation("simple"):
        simple_losses, simple_grads = train(copy.deepcopy(base))
    assert lean_losses == pytest.approx(simple_losses, rel=1e-5)
    for lean_step, simple_step in zip(lean_grads, simple_grads, strict=True):
        for name, grad in lean_step.items():
            assert torch.isfinite(grad).all() and torch.allclose(grad, simple_step[name], rtol=1e-4, atol=1e-6), name
    return lean_grads


@pytest.mark.parametrize("num_vectors", [1, 2])
def test_lean_training_equals_the_simple_implementation(num_vectors):
    assert_lean_trains_like_simple(
        get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15, num_vectors=num_vectors)))


def test_linear_then_gelu_keeps_only_the_scale_beyond_the_unwrapped_model():
    # GELU keeps its input; the lean layer keeps that same tensor (V'), so the wrapped pair costs the unwrapped
    # pair plus the scale vector (4 bytes a feature). The plain V * s also keeps V.
    torch.manual_seed(0)
    linear = nn.Linear(16, 24).requires_grad_(False)
    x = torch.randn(5, 16, requires_grad=True)
    plain, _ = saved_activation_bytes(lambda: nn.functional.gelu(linear(x)), list(linear.parameters()))
    layer = PropulsionLayer(linear, PropulsionConfig(degree=3))
    excluded = list(layer.parameters())
    lean_bytes, _ = saved_activation_bytes(lambda: nn.functional.gelu(layer(x)), excluded)
    with scaling.implementation("simple"):
        simple_bytes, _ = saved_activation_bytes(lambda: nn.functional.gelu(layer(x)), excluded)
    assert plain == 5 * 24 * 4
    assert lean_bytes == plain + 24 * 4
    assert simple_bytes == plain + 5 * 24 * 4 + 24 * 4


def test_under_bf16_autocast_a_frozen_linear_keeps_no_cast_copy_of_its_weight():
    # Autocast casts a frozen weight to bf16 at every call (only weights that require grad are cached) and the
    # plain matmul keeps that copy for the input gradient. The lean node keeps the float32 parameter (not an
    # activation) and casts again in backward. Linear 16 -> 24, 5 tokens, bf16 = 2 bytes.
    torch.manual_seed(0)
    linear = nn.Linear(16, 24).requires_grad_(False)
    x = torch.randn(5, 16, requires_grad=True)
    layer = PropulsionLayer(linear, PropulsionConfig(degree=3))
    excluded = list(layer.parameters())
    saved = {}
    for name in ("lean", "simple"):
        with scaling.implementation(name), torch.autocast("cpu", dtype=torch.bfloat16):
            saved[name], output = saved_activation_bytes(lambda: nn.functional.gelu(layer(x)), excluded)
        assert output.dtype == torch.bfloat16
    weight_copy, activation, scale = 24 * 16 * 2, 5 * 24 * 2, 24 * 2
    assert saved["lean"] == activation + scale  # V' (kept by GELU too) and s in bf16
    assert saved["simple"] == weight_copy + 2 * activation + scale  # + the weight copy, and V for s


def test_lean_keeps_fewer_activation_bytes_on_a_model():
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15)).train()
    params = list(model.parameters())
    lean_bytes, _ = saved_activation_bytes(lambda: model(**batch()), params)
    with scaling.implementation("simple"):
        simple_bytes, _ = saved_activation_bytes(lambda: model(**batch()), params)
    # At least each FFN intermediate output (kept by GELU, so shared) and the three embedding outputs (ids kept
    # instead) are no longer kept: 40 tokens, 2 layers x 64 features, 3 embeddings x 32 features (less the ids).
    assert simple_bytes - lean_bytes >= 0.95 * 40 * 4 * (2 * 64 + 3 * 32)


def test_hooked_or_subclassed_layers_run_their_own_forward():
    torch.manual_seed(0)
    linear = nn.Linear(4, 3).requires_grad_(False)
    weight = linear.weight.clone()
    layer = PropulsionLayer(linear, PropulsionConfig(degree=2))
    with torch.no_grad():
        layer.propulsion.mul_(2.0)
    x = torch.randn(2, 4, requires_grad=True)
    fused = layer(x)
    seen = []
    linear.register_forward_hook(lambda module, args, output: seen.append(output))
    hooked = layer(x)
    assert len(seen) == 1 and torch.equal(seen[0], nn.functional.linear(x, linear.weight, linear.bias))  # unscaled
    assert torch.equal(hooked, fused) and torch.equal(fused, seen[0] * 4.0)
    assert torch.equal(linear.weight, weight)  # nothing scaled in place but the layer's own fresh output
    # Conv1D (GPT-2) goes through its own forward and the general lean function; gradients still flow.
    conv = PropulsionLayer(Conv1D(3, 4).requires_grad_(False), PropulsionConfig(degree=2))
    conv(x).sum().backward()
    assert conv.propulsion.grad is not None and x.grad is not None


def test_inference_scales_exactly_and_leaves_the_weights_alone():
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=3)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("propulsion"):
                parameter.add_(0.01)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    with torch.no_grad():
        first = model(**batch()).logits
    with scaling.implementation("simple"), torch.no_grad():
        simple = model(**batch()).logits
    assert torch.equal(first, simple)
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name


def test_implementation_switch_rejects_unknown_names():
    with pytest.raises(ValueError, match="valid choices: lean, simple"):
        with scaling.implementation("fused"):
            pass
    assert scaling.IMPLEMENTATION == "lean"


def test_falcon_outputs_edited_in_place_use_the_plain_scale():
    model = get_propulsion_model(family_model("falcon"), PropulsionConfig(targets="mlp"))
    layers = {name: layer.lean for name, layer in model.named_modules() if hasattr(layer, "lean")}
    assert layers["base_model.transformer.h.0.mlp.dense_4h_to_h"] is False
    assert layers["base_model.transformer.h.0.mlp.dense_h_to_4h"] is True
    # ...and training through it works (a kept V' that the model edited would fail autograd's version check).
    model.train()
    model(**batch(), labels=batch()["input_ids"]).loss.backward()


def assert_bf16_gradients_match_float32_as_well_as_the_plain_version_does(device: str) -> None:
    """Under bf16 autocast on ``device`` the frozen Linears run in bf16, z stays float32 and gets float32
    gradients, as close to float32 training's as the plain V * s gets (also run on CUDA: tests/test_cuda.py)."""
    base = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15)).to(device).train()
    inputs = {key: value.to(device) for key, value in batch(size=8).items()}
    labels = torch.tensor([0, 1] * 4, device=device)
    grads = {}
    for name, precision in (("lean", torch.bfloat16), ("simple", torch.bfloat16), ("lean", None)):
        model = copy.deepcopy(base)
        torch.manual_seed(0)  # the same dropout masks in every run
        autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision is not None)
        with scaling.implementation(name), autocast:
            loss = model(**inputs, labels=labels).loss
        loss.backward()
        grads[name if precision else "float32"] = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for name, reference in grads["float32"].items():
        assert grads["lean"][name].dtype == torch.float32, name
        errors = {key: ((grads[key][name] - reference).norm() / reference.norm()).item() for key in ("lean", "simple")}
        # bf16 activations cost about 1% either way; the lean recovery V = V'/s adds nothing that matters.
        assert errors["lean"] < 3e-2 and errors["lean"] < 1.5 * errors["simple"] + 2e-3, (name, errors)


def test_autocast_bf16_gradients_match_float32_as_well_as_the_plain_version_does():
    # What mixed precision does on a GPU (accelerate's bf16), here with CPU autocast.
    assert_bf16_gradients_match_float32_as_well_as_the_plain_version_does("cpu")


def test_torch_func_transforms_take_the_plain_path_with_the_same_jacobian():
    # jacrev/vmap (the NTK command, functional users) cannot run the lean autograd functions; the layer falls back to
    # V * s there, and the Jacobian w.r.t. z equals the one ordinary autograd gives through the lean path.
    torch.manual_seed(0)
    layers = {"linear": PropulsionLayer(nn.Linear(4, 3).requires_grad_(False), PropulsionConfig(degree=3)),
              "embedding": PropulsionLayer(nn.Embedding(7, 3).requires_grad_(False), PropulsionConfig(degree=3))}
    inputs = {"linear": torch.randn(2, 5, 4), "embedding": torch.tensor([[0, 6, 2]])}
    for name, layer in layers.items():
        with torch.no_grad():
            layer.propulsion.add_(0.1 * torch.randn_like(layer.propulsion))
        z = layer.propulsion.detach()
        def summed(z, layer=layer, x=inputs[name]):
            return torch.func.functional_call(layer, {"propulsion": z}, (x,)).sum(-2)

        jacobian = torch.func.jacrev(summed)(z)
        rows = [torch.autograd.grad(layer(inputs[name]).sum(-2)[i, j], layer.propulsion)[0]
                for i in range(jacobian.shape[0]) for j in range(jacobian.shape[1])]
        assert torch.allclose(jacobian.reshape(len(rows), *z.shape), torch.stack(rows), atol=1e-6), name


def test_range_check_from_known_ranges_keeps_margins_for_the_cast():
    from propulsion.method.scaling import range_recoverable, scale_ranges

    (first, second) = scale_ranges([torch.tensor([1.0, -3.0, 0.5]), torch.tensor([2.0, float("nan")])])
    assert first == (0.5, 3.0) and all(value != value for value in second)  # NaN propagates
    assert range_recoverable((1e-18, 1.0), torch.float32)  # 2 sqrt(tiny) = 2.2e-19
    # 1.5e-19 is above sqrt(tiny) = 1.08e-19 but inside the margin: refused, V is kept (still exact).
    assert not range_recoverable((1.5e-19, 1.0), torch.float32)
    for bad in ((0.0, 1.0), (1.0, float("inf")), second):
        assert not range_recoverable(bad, torch.float32)
    assert not range_recoverable((1e-2, 1.0), torch.float16) and range_recoverable((2e-2, 1.0), torch.float16)
    assert not range_recoverable((1.0, 40000.0), torch.float16)  # fp16 overflows at 65504: margin 2
    assert range_recoverable((1e-18, 1e30), torch.bfloat16)


def test_ranges_from_z_and_the_degree_equal_those_of_s_itself():
    from propulsion.method.scaling import scale_ranges

    torch.manual_seed(0)
    z = torch.empty(50).uniform_(0.5, 1.5) * torch.randn(50).sign()
    (from_z,), (from_s,) = scale_ranges([z], [15]), scale_ranges([z**15])
    assert from_z == pytest.approx(from_s, rel=1e-6)  # the power on the host (float64) vs in float32
    # A zero gives 0 (1/0 = inf inside), an inf gives inf, a power past float64's range gives inf, NaN stays NaN.
    zero, infinite, huge, nan = scale_ranges([torch.tensor([0.0, 2.0]), torch.tensor([1.0, float("inf")]),
                                              torch.tensor([1e30]), torch.tensor([1.0, float("nan")])], [3, 3, 15, 3])
    assert zero == (0.0, 8.0) and infinite == (1.0, float("inf")) and huge == (float("inf"), float("inf"))
    assert all(value != value for value in nan)


def test_reading_ranges_costs_the_same_few_operations_for_3_layers_or_30():
    # Multi-tensor kernels: on a GPU the range check launches a handful of kernels, not a few per layer.
    from torch.utils._python_dispatch import TorchDispatchMode

    from propulsion.method.scaling import scale_ranges

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    counts = []
    for layers in (3, 30):
        bases = [torch.rand(16) + 0.5 for _ in range(layers)]
        with Count() as counter:
            scale_ranges(bases, [15] * layers)
        counts.append(counter.calls - layers)  # less one detach per tensor (a view: no kernel)
    assert counts[0] == counts[1] == 5, counts  # max |b|, 1/b, max |1/b|, sum |b| (NaN), one stack; one read


def test_a_model_forward_checks_every_scale_with_one_host_read(monkeypatch):
    # On a GPU each read of a scale's range waits for the queued kernels: the model reads all of them once per
    # forward (a pre-hook), not once per wrapped layer.
    from propulsion.method.layer import check_scales, forget_scales
    from propulsion.method.model import propulsion_layers

    calls = {"recoverable": 0, "scale_ranges": 0}
    recoverable_, scale_ranges_ = scaling.recoverable, scaling.scale_ranges

    def counting_recoverable(scale, dtype):
        calls["recoverable"] += 1
        return recoverable_(scale, dtype)

    def counting_ranges(bases, powers=None):
        calls["scale_ranges"] += 1
        return scale_ranges_(bases, powers)

    monkeypatch.setattr(scaling, "recoverable", counting_recoverable)
    monkeypatch.setattr(scaling, "scale_ranges", counting_ranges)
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=15)).train()
    model(**batch(size=4), labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    assert calls == {"recoverable": 0, "scale_ranges": 1}
    layers = propulsion_layers(model.base_model)
    assert all(layer.scale_range is None for layer in layers.values())  # held for that forward only
    with torch.no_grad():
        model(**batch(size=4))
    assert calls["scale_ranges"] == 1  # no gradient, no lean node, nothing to check
    query = layers["roberta.encoder.layer.0.attention.self.query"]
    query(torch.randn(2, 3, 32, requires_grad=True)).sum().backward()  # a layer alone reads its own range
    assert calls == {"recoverable": 0, "scale_ranges": 2}
    plain = model.merge_and_unload()
    assert check_scales not in plain._forward_pre_hooks.values()
    assert forget_scales not in plain._forward_hooks.values() and not plain._forward_hooks_always_called


def test_one_range_check_falls_back_where_v_cannot_be_recovered():
    # Degree 1: z's gradient is Σ g ⊙ V itself. An exact 0 (or a scale far below the normal range) in s makes
    # V'/s useless; the model-wide check must see it and keep V for that layer, as the simple version does.
    base = get_propulsion_model(roberta_classifier(), PropulsionConfig(degree=1))
    layers = {name.removeprefix("roberta.encoder.layer.0."): layer
              for name, layer in base.base_model.named_modules() if hasattr(layer, "scale_range")}
    with torch.no_grad():
        layers["attention.self.query"].propulsion[0, 3] = 0.0
        layers["intermediate.dense"].propulsion[0, 5] = 1e-30
    lean_grads = assert_lean_trains_like_simple(base)
    query_grad = lean_grads[0]["base_model.roberta.encoder.layer.0.attention.self.query.propulsion"]
    assert query_grad[0, 3] != 0  # the zero entry still learns


def test_checkpointing_recomputation_decides_as_the_forward_did():
    # Gradient checkpointing re-runs each layer on its own in backward (no model-wide check then): it must make
    # the forward's keep-V' / keep-V choice again, or a V' would be read as V. A scale inside the margin band
    # (above sqrt(tiny), below 2 sqrt(tiny)) is where two different rules would disagree.
    from propulsion.method.model import propulsion_layers

    def z_gradients(checkpointing: bool, implementation: str) -> dict[str, torch.Tensor]:
        model = get_propulsion_model(family_model("roberta"), PropulsionConfig(degree=1))
        with torch.no_grad():
            query = propulsion_layers(model.base_model)["roberta.encoder.layer.0.attention.self.query"]
            query.propulsion[0, 3] = 1.5e-19
        if checkpointing:
            model.base_model.gradient_checkpointing_enable()
        model.train()
        torch.manual_seed(0)
        with scaling.implementation(implementation):
            model(**batch()).logits.pow(2).mean().backward()
        return {name: p.grad for name, p in model.named_parameters() if p.requires_grad}

    reference = z_gradients(False, "simple")
    for checkpointing in (False, True):
        lean = z_gradients(checkpointing, "lean")
        for name, grad in reference.items():  # the tiny model's z gradients are ~1e-9: a relative floor
            assert torch.allclose(lean[name], grad, rtol=1e-4, atol=1e-5 * grad.abs().max()), (checkpointing, name)
