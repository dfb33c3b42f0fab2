"""The one place where a Propulsion scale meets an activation: V' = V ⊙ s, s broadcast over the last dim.

Memory. The plain expression ``V * s`` makes autograd keep V (the layer's pre-scale output) for the gradient
of s — an activation-sized tensor per wrapped layer that nothing else needs. The gradient of s only needs the
per-feature reduction Σ_tokens g ⊙ V = (Σ_tokens g ⊙ V') / s, so the lean function keeps V' instead: the
tensor the next operation (the next Linear, GELU, the attention matmul) usually keeps anyway, so the storage
is shared and Propulsion adds (almost) nothing to the saved activations. Where a scale entry is exactly 0, V
cannot be recovered from V' and the function keeps V, as the plain expression does.
The forward value is exactly ``V * s`` either way (identity at init stays bitwise).
"""

from __future__ import annotations

import torch
from torch import Tensor

IMPLEMENTATIONS = ("lean", "simple")
IMPLEMENTATION = "lean"  # "simple" is the straightforward V * s, kept for tests and the benchmark


def compute_scale(vectors: Tensor, degree: int, pooling: str) -> Tensor:
    """s = pool_i(z_i ** k) in float32, from the (p, d_out) parameter. p = 1 skips pooling (bit for bit)."""
    powered = vectors.float() ** degree
    if powered.shape[0] == 1:
        return powered[0]
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


class _LeanScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: Tensor, scale: Tensor) -> Tensor:
        cast = scale.to(output.dtype)
        scaled = output * cast
        # One host sync per layer; it decides whether V can be recovered from V' (no zero scale entry).
        ctx.recover = not bool((cast == 0).any())
        ctx.save_for_backward(scaled if ctx.recover else output, cast)
        return scaled

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved, cast = ctx.saved_tensors
        grad_output = grad * cast if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            # Reduce in float32 whatever the activation dtype: z's gradient sums over every token.
            features = grad.shape[-1]
            reduced = (grad.float() * saved.float()).reshape(-1, features).sum(0)
            grad_scale = reduced / cast.float() if ctx.recover else reduced
        return grad_output, grad_scale


class _LeanEmbeddingScale(torch.autograd.Function):
    """For a frozen embedding V = E[ids]: keep the ids (a few bytes a token) and recompute E[ids] in backward,
    instead of keeping V or V' (an activation-sized tensor no other operation keeps)."""

    @staticmethod
    def forward(ctx, output: Tensor, scale: Tensor, ids: Tensor, weight: Tensor) -> Tensor:
        cast = scale.to(output.dtype)
        ctx.save_for_backward(ids, weight, cast)
        return output * cast

    @staticmethod
    def backward(ctx, grad: Tensor):
        ids, weight, cast = ctx.saved_tensors
        grad_output = grad * cast if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            features = grad.shape[-1]
            rows = weight.detach()[ids.reshape(-1)].float()
            grad_scale = (grad.float().reshape(-1, features) * rows).sum(0)
        return grad_output, grad_scale, None, None


def apply_embedding_scale(output: Tensor, scale: Tensor, ids: Tensor, weight: Tensor, lean: bool = True) -> Tensor:
    """Embedding output ⊙ s; lean path when the embedding table is frozen."""
    if not lean or IMPLEMENTATION == "simple" or weight.requires_grad or not scale.requires_grad:
        return apply_scale(output, scale, lean=lean)
    return _LeanEmbeddingScale.apply(output, scale, ids, weight)


def apply_scale(output: Tensor, scale: Tensor, lean: bool = True) -> Tensor:
    """V ⊙ s with s cast to the activation dtype (z itself stays float32). ``lean=False`` where the model
    modifies this output in place later (the kept V' would be stale)."""
    if not lean or IMPLEMENTATION == "simple" or not (output.requires_grad or scale.requires_grad):
        return output * scale.to(output.dtype)
    return _LeanScale.apply(output, scale)
