"""The one place where a Propulsion scale meets an activation: V' = V ⊙ s, s broadcast over the last dim.

Memory. The plain expression ``V * s`` makes autograd keep V (the layer's pre-scale output) for the gradient
of s — an activation-sized tensor per wrapped layer. The gradient of s only needs the per-feature reduction
Σ_tokens g ⊙ V = (Σ_tokens g ⊙ V') / s, so the lean functions keep V' instead: the tensor the next operation
usually keeps anyway (GELU after the FFN's first Linear; q, k, v in fused GPU attention), so the storage is
shared. Where no later operation keeps V' (an output that goes through dropout into a residual sum; q, k, v
under CPU attention, which keeps scaled copies) the layer costs one activation: the least an exact gradient
of s needs without recomputing the layer. A frozen embedding keeps only its ids (E[ids] is recomputed).
Where a scale entry is so small that V'/s could lose V (below 2 sqrt(smallest normal) of the activation
dtype, 0 included), or so large or not finite that the cast could overflow, V is kept instead, as the plain
expression does (``range_recoverable``).

Time. A frozen plain Linear (or Embedding) and its scale are one autograd node: the matmul's fresh output is
scaled in place (no second activation is allocated, and the value is exactly ``F.linear(x, W, b) * s``, so the
identity at init stays bitwise); the Linear keeps nothing of its own (frozen weight and bias: the input
gradient needs only W); the backward computes g ⊙ s and the reduction Σ g ⊙ V' in one reused buffer and
feeds g ⊙ s to the same matmul autograd would. Whether V'/s recovers V is a host decision: a model's forward
reads every layer's |s| range at once (``scale_ranges``: one host sync per device and a few multi-tensor
kernels, from a pre-hook that inject_propulsion installs); a layer called on its own reads its own by the same
computation (one sync each), so both decide alike.
Low precision: z stays float32, s is cast to the activation dtype, and the reduction runs in float32.
The derivation of the backward (what is saved, how the gradient of s is recovered from V', when that is unsafe
and what happens then) is the comment block above ``_backward``. Private torch APIs: ``_torch_compat`` only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from propulsion.method import _torch_compat

IMPLEMENTATIONS = ("lean", "simple")
IMPLEMENTATION = "lean"  # "simple" is the straightforward F.linear(x, W, b) * s, kept for tests and the benchmark


@contextlib.contextmanager
def implementation(name: str):
    """Switch every Propulsion layer to ``lean`` or ``simple`` scaling inside the block (tests, benchmark)."""
    global IMPLEMENTATION
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown scaling implementation {name!r}; valid choices: {', '.join(IMPLEMENTATIONS)}")
    before, IMPLEMENTATION = IMPLEMENTATION, name
    try:
        yield
    finally:
        IMPLEMENTATION = before


def compute_scale(vectors: Tensor, degree: int, pooling: str) -> Tensor:
    """s = pool_i(z_i ** k) in float32, from the (p, d_out) parameter. p = 1 skips pooling (bit for bit)."""
    if vectors.shape[0] == 1:  # a view, not an index: its backward is a reshape, not zeros + copy
        return vectors.view(-1).float() ** degree
    powered = vectors.float() ** degree
    if pooling == "mean":
        return powered.mean(0)
    if pooling == "max":
        return powered.amax(0)
    if pooling == "min":
        return powered.amin(0)
    if pooling == "l2":
        return powered.pow(2).mean(0).sqrt()
    if pooling == "prod":
        return powered.prod(0)
    raise ValueError(f"unknown pooling {pooling!r}")


def scale_ranges(bases: list[Tensor], powers: list[int] | None = None) -> list[tuple[float, float]]:
    """(min |s|, max |s|) for each s = base ** power (power 1 when not given), with one host sync per device and
    a fixed handful of kernels however many layers there are (multi-tensor ops): a model's forward reads all its
    layers' ranges at once (layer.check_scales), where each layer on its own would sync once and launch a few
    kernels (on a GPU every sync waits for the queued kernels). A layer with one vector passes z itself and its
    degree: |z| ** k is monotone in |z|, so no s is built and the power is taken on the host. NaN propagates."""
    powers = powers or [1] * len(bases)
    ranges: list[tuple[float, float]] = [(math.nan, math.nan)] * len(bases)
    by_device: dict[torch.device, list[int]] = {}
    for index, base in enumerate(bases):
        by_device.setdefault(base.device, []).append(index)
    for indices in by_device.values():
        tensors = [bases[i].detach().float() for i in indices]
        largest = _torch_compat.foreach_norm(tensors, ord=math.inf)  # max |b|
        inverse = _torch_compat.foreach_norm(_torch_compat.foreach_reciprocal(tensors), ord=math.inf)  # 1/min |b|
        total = _torch_compat.foreach_norm(tensors, ord=1)  # NaN shows here whatever a max kernel does with it
        values = torch.stack([*largest, *inverse, *total]).tolist()
        count = len(indices)
        for position, index in enumerate(indices):
            high, low_inverse, summed = values[position], values[count + position], values[2 * count + position]
            low = 1.0 / low_inverse if low_inverse != 0 else math.inf
            if math.isnan(summed):
                low = high = math.nan
            ranges[index] = (_power(low, powers[index]), _power(high, powers[index]))
    return ranges


def _power(value: float, power: int) -> float:
    try:
        return value**power
    except OverflowError:  # float64 overflows far beyond any activation dtype's range: fails the rule anyway
        return math.inf


def range_recoverable(scale_range: tuple[float, float], dtype: torch.dtype) -> bool:
    """Whether V = V'/s is safe for every feature when s (float32, |s| in ``scale_range``) is cast to ``dtype``:
    2 sqrt(smallest normal) <= |s| < largest / 2. The margins of 2 cover the cast's rounding (at most 2^-8
    relative in bf16) and a range computed as |z| ** k on the host (float64) rather than in float32; then a
    recovered V is off by a subnormal spacing / sqrt(tiny) at most (about 1e-26 in float32 and bfloat16): nothing.
    NaN fails both tests. The one rule for both paths, so that gradient checkpointing's recomputation (a layer on
    its own) decides exactly as the model's forward did."""
    smallest, largest = scale_range
    info = torch.finfo(dtype)
    return smallest >= 2 * info.tiny**0.5 and largest < info.max / 2


def recoverable(scale: Tensor, dtype: torch.dtype) -> bool:
    """``range_recoverable`` for one scale, read here: one host sync."""
    return range_recoverable(scale_ranges([scale])[0], dtype)


ScaleRange = tuple[float, float] | Callable[[], tuple[float, float]] | None


def _recover(scale: Tensor, dtype: torch.dtype, scale_range: ScaleRange) -> bool:
    """The rule on the known range, on the range a layer reads when asked (a callable: a host sync), or on s."""
    if scale_range is None:
        return recoverable(scale, dtype)
    return range_recoverable(scale_range() if callable(scale_range) else scale_range, dtype)


def _transformed() -> bool:
    """Inside torch.func transforms (jacrev, vmap, functional NTKs): the custom autograd functions (host syncs,
    in-place scaling, no vmap rule) step aside for the plain expression, which has the same values."""
    return _torch_compat.functorch_transforms_active()


def _tracked(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _is_float32_or_64(tensor: Tensor) -> bool:
    return tensor.dtype in (torch.float32, torch.float64)


# ------------------------------------------------------------------------------------------------------------
# The lean backward: derivation
#
# Forward. V is a layer's output, N rows (every token of every sequence) by d features; s = pool(z ** k) is the
# layer's scale (compute_scale, float32) and c = s.to(V.dtype) the value actually multiplied (``cast``):
#     V'[n, j] = V[n, j] * c[j].
# Backward. With g = dL/dV' (N x d):
#     dL/dV[n, j] = g[n, j] * c[j]                    needs c only (d numbers)
#     dL/dc[j]    = sum_n g[n, j] * V[n, j]           needs V: the activation autograd keeps for ``V * s``
# and dL/ds = dL/dc (the cast's backward; reduced in float32 here). z's gradient is not computed here: autograd
# carries dL/ds back through compute_scale, dL/dz_j = dL/ds_j * k z_j ** (k - 1) for one vector (the pooling's
# own rule for several), so these functions never see k.
# Recovery. V' is kept instead of V: it is the output, which the next operation usually keeps anyway (shared
# storage, no second activation). Since c[j] is the same for every row n,
#     sum_n g[n, j] * V[n, j] = (sum_n g[n, j] * V'[n, j]) / c[j]     when c[j] != 0,
# so the reduction runs over V' and there is ONE division per feature, after the sum (not N x d of them), by the
# very c that multiplied V (dividing by float32 s would miss the cast's rounding in bf16 / fp16).
# Saved for backward: V' (or V, see below) and c; _ScaledFrozenLinear also W (a parameter, no new memory) and
# computes dL/dx = (g * c) W; _ScaledFrozenEmbedding keeps only the ids and recomputes E[ids] (exact, no
# recovery needed).
# Exactness. In floating point V' = fl(V * c) = V * c * (1 + e) with |e| <= unit roundoff u, as long as the
# product is a normal number, so V'/c is V to within u (the plain path also rounds g * V: same order). The
# recovery is unsafe where the product leaves the normal range or c carries no information:
#   - c[j] = 0 (z_j = 0 at any k: init "zeros", or a pooled mean that cancels): V' is 0 whatever V was, and
#     0 / 0 would give NaN;
#   - |c[j]| tiny (|z_j| < 1 at a large k: 0.5 ** 150 is below float32's smallest normal): V * c underflows to a
#     subnormal or to 0, losing V's digits (relative error up to 100%);
#   - |c[j]| huge or not finite (|z_j| > 1 at a large k; fp16's max is 65504, so 2 ** 17 already overflows the
#     cast): V * c is inf, and inf / c is not V; NaN in z makes everything NaN.
# Rule (range_recoverable, decided on the host once per layer and forward from min |s| and max |s|):
#     2 sqrt(tiny) <= |s| < max / 2    in the activation dtype (tiny = smallest normal).
# Above 2 sqrt(tiny), an entry of V that still lands in the subnormals is off by at most a subnormal spacing
# (tiny * u) before the division, so by <= tiny * u / (2 sqrt(tiny)) ~ 1e-26 after it: far below anything that
# moves a gradient. The factors 2 absorb the cast's rounding and a range computed on the host as |z| ** k in
# float64. (V so large that V * s overflows although s < max / 2 is an overflow of the forward itself: the plain
# expression's output is inf too.)
# When the rule fails for any entry of s, the layer keeps V itself (ctx.recover = False) and the sum is
# sum_n g * V with no division: exactly the plain expression's gradient and memory, for that layer and that
# forward only. One decision covers the whole vector (a per-entry fallback would need V anyway). ctx.recover is
# fixed in the forward, so gradient checkpointing's recomputation, which reads the same z, decides alike.
# ------------------------------------------------------------------------------------------------------------


def _backward(ctx, grad: Tensor, saved: Tensor, cast: Tensor, want_output: bool, want_scale: bool):
    """(g ⊙ s, Σ_tokens g ⊙ V) over the last dim, from V (or V' when ctx.recover); one buffer for both."""
    features = grad.shape[-1]
    buffer = grad_scale = grad_output = None
    if want_scale:
        if _is_float32_or_64(grad):
            buffer = grad * saved
        else:  # the products and their sum over every token in float32; one float32 buffer
            buffer = grad.float().mul_(saved)
        reduced = buffer.reshape(-1, features).sum(0)
        grad_scale = reduced / cast.to(reduced.dtype) if ctx.recover else reduced
    if want_output:
        if buffer is not None and buffer.dtype == grad.dtype and buffer.shape == grad.shape:
            grad_output = torch.mul(grad, cast, out=buffer)
        else:
            grad_output = grad * cast
    return grad_output, grad_scale


class _LeanScale(torch.autograd.Function):
    """V ⊙ s for any V: keeps V' (or V when s is not recoverable)."""

    @staticmethod
    def forward(ctx, output: Tensor, scale: Tensor, scale_range: ScaleRange = None) -> Tensor:
        cast = scale.to(output.dtype)
        ctx.recover = _recover(scale, output.dtype, scale_range)
        scaled = output * cast
        ctx.save_for_backward(scaled if ctx.recover else output, cast)
        return scaled

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved, cast = ctx.saved_tensors
        return *_backward(ctx, grad, saved, cast, ctx.needs_input_grad[0], ctx.needs_input_grad[1]), None


class _ScaledFrozenLinear(torch.autograd.Function):
    """(x Wᵀ + b) ⊙ s for 2-D x and frozen W, b: keeps V' (or V) and s; W is a parameter, not an activation."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor,
                scale_range: ScaleRange = None) -> Tensor:
        output = F.linear(x, weight, bias)  # a new tensor, nobody else's: scaled in place
        cast = scale.to(output.dtype)
        ctx.recover = _recover(scale, output.dtype, scale_range)
        scaled = output.mul_(cast) if ctx.recover else output * cast
        ctx.save_for_backward(scaled if ctx.recover else output, weight, cast)
        return scaled

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved, weight, cast = ctx.saved_tensors
        grad_scaled, grad_scale = _backward(ctx, grad, saved, cast, ctx.needs_input_grad[0], ctx.needs_input_grad[3])
        # Under autocast the matmul ran in the activation dtype; the input's own dtype is restored by autograd.
        grad_x = grad_scaled.mm(weight.to(grad_scaled.dtype)) if grad_scaled is not None else None
        return grad_x, None, None, grad_scale, None


class _ScaledFrozenEmbedding(torch.autograd.Function):
    """E[ids] ⊙ s for a frozen table: keeps the ids (a few bytes a token) and recomputes E[ids] in backward
    instead of keeping an activation-sized tensor no other operation keeps."""

    @staticmethod
    def forward(ctx, ids: Tensor, weight: Tensor, scale: Tensor) -> Tensor:
        rows = weight.index_select(0, ids.reshape(-1))  # F.embedding's values; a new tensor, scaled in place
        cast = scale.to(rows.dtype)
        ctx.save_for_backward(ids, weight, cast)
        return rows.mul_(cast)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ids, weight, cast = ctx.saved_tensors
        if not ctx.needs_input_grad[2]:
            return None, None, None
        rows = weight.index_select(0, ids.reshape(-1))
        if _is_float32_or_64(grad) and rows.dtype == grad.dtype:
            product = rows.mul_(grad)
        else:
            product = rows.float() * grad.float()
        return None, None, product.sum(0)


def apply_scale(output: Tensor, scale: Tensor, lean: bool = True,
                scale_range: ScaleRange = None) -> Tensor:
    """V ⊙ s with s cast to the activation dtype (z itself stays float32); the value is exactly V * s.
    ``lean=False`` where the model modifies this output in place later (a kept V' would be stale).
    ``scale_range``: s's |s| range when already known (``scale_ranges``), else it is read here (a host sync)."""
    if not lean or IMPLEMENTATION == "simple" or _transformed() or not _tracked(output, scale):
        return output * scale.to(output.dtype)
    return _LeanScale.apply(output, scale, scale_range)


def scaled_linear(x: Tensor, weight: Tensor, bias: Tensor | None, scale: Tensor, lean: bool = True,
                  scale_range: ScaleRange = None) -> Tensor:
    """F.linear(x, weight, bias) ⊙ s, exactly; one lean autograd node when weight and bias are frozen."""
    if _transformed():
        return apply_scale(F.linear(x, weight, bias), scale, lean=False)
    if not _tracked(x, weight, bias, scale):
        output = F.linear(x, weight, bias)
        return output.mul_(scale.to(output.dtype))
    frozen = not weight.requires_grad and (bias is None or not bias.requires_grad)
    if not lean or not frozen or IMPLEMENTATION == "simple":
        return apply_scale(F.linear(x, weight, bias), scale, lean=lean, scale_range=scale_range)
    flat = _ScaledFrozenLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias, scale, scale_range)
    return flat.view(*x.shape[:-1], flat.shape[-1])


def scaled_embedding(ids: Tensor, weight: Tensor, scale: Tensor, lean: bool = True) -> Tensor:
    """F.embedding(ids, weight) ⊙ s, exactly, for a frozen table and a plain lookup (no max_norm; padding_idx
    only shapes the table's own gradient, which a frozen table has none of)."""
    if _transformed():
        return apply_scale(F.embedding(ids, weight), scale, lean=False)
    if not _tracked(weight, scale):
        output = F.embedding(ids, weight)
        return output.mul_(scale.to(output.dtype))
    if not lean or weight.requires_grad or IMPLEMENTATION == "simple":
        return apply_scale(F.embedding(ids, weight), scale, lean=lean)
    flat = _ScaledFrozenEmbedding.apply(ids, weight, scale)
    return flat.view(*ids.shape, flat.shape[-1])
