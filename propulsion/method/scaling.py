"""The one place where a Propulsion scale meets an activation: V' = V ⊙ s, s broadcast over the last dim.

Kept separate so a leaner backward (a custom autograd function) can replace it without touching layers.
"""

from __future__ import annotations

import torch
from torch import Tensor


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


def apply_scale(output: Tensor, scale: Tensor) -> Tensor:
    """V ⊙ s with s cast to the activation dtype (z itself stays float32)."""
    return output * scale.to(output.dtype)


__all__ = ["apply_scale", "compute_scale", "torch"]
