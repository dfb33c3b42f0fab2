"""The private-torch shim: each call equals its public fallback, the fallbacks take over when a name is gone,
and no other module of the package names a private torch API."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from propulsion.method import _torch_compat, scaling

PACKAGE = Path(_torch_compat.__file__).resolve().parents[1]  # propulsion/
PRIVATE = re.compile(r"\btorch\.(?:_[A-Za-z]|utils\._|[A-Za-z_.]*\._C\b)|from torch\.\S*\b_[a-z]")


def _tensors():
    return [torch.tensor([-3.0, 0.5, 2.0]), torch.tensor([0.0, 4.0]), torch.tensor([1.0, math.inf]),
            torch.tensor([math.nan, 1.0]), torch.tensor([-0.25])]


@pytest.mark.parametrize("order", [1, math.inf])
def test_foreach_norm_equals_the_public_norms(order):
    got = _torch_compat.foreach_norm(_tensors(), ord=order)
    want = _torch_compat.norm_each(_tensors(), ord=order)
    # By hand, ord=inf: 3, 4, inf, nan, 0.25; ord=1: 5.5, 4, inf, nan, 0.25.
    by_hand = [3.0, 4.0, math.inf, math.nan, 0.25] if order == math.inf else [5.5, 4.0, math.inf, math.nan, 0.25]
    for a, b, c in zip(got, want, by_hand, strict=True):
        assert (math.isnan(a.item()) and math.isnan(b.item()) and math.isnan(c)) or a.item() == b.item() == c


def test_foreach_reciprocal_maps_zero_to_infinity():
    [out] = _torch_compat.foreach_reciprocal([torch.tensor([2.0, 0.0, -4.0])])
    assert out.tolist() == [0.5, math.inf, -0.25]


def test_scale_ranges_are_the_same_on_the_public_fallbacks(monkeypatch):
    bases = [torch.tensor([0.5, -2.0, 1.0]), torch.tensor([0.0, 3.0]), torch.tensor([math.nan, 1.0])]
    private = scaling.scale_ranges(bases, [2, 1, 1])
    monkeypatch.setattr(_torch_compat, "_FOREACH_NORM", None)
    monkeypatch.setattr(_torch_compat, "_FOREACH_RECIPROCAL", None)
    public = scaling.scale_ranges(bases, [2, 1, 1])
    assert private[:2] == public[:2] == [(0.25, 4.0), (0.0, 3.0)]
    assert all(math.isnan(value) for value in (*private[2], *public[2]))


def test_functorch_transforms_are_seen_inside_vmap_only():
    seen = []

    def probe(x):
        seen.append(_torch_compat.functorch_transforms_active())
        return x * 2

    assert _torch_compat.functorch_transforms_active() is False
    torch.func.vmap(probe)(torch.ones(3, 2))
    assert seen == [True]


def test_dispatch_mode_base_sees_operations():
    class Counter(_torch_compat.dispatch_mode_base()):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Counter() as counter:
        torch.ones(2).mul(3.0)
    assert any(name.startswith("mul") for name in counter.names)


def test_no_private_torch_api_outside_the_shim():
    assert PRIVATE.search("torch._foreach_norm(x)") and PRIVATE.search("torch._C._are_functorch_transforms_active")
    assert PRIVATE.search("from torch.utils._python_dispatch import TorchDispatchMode")
    assert not PRIVATE.search("torch.func.vmap(f) and torch.autograd.Function")
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "_torch_compat.py"
                 for number, line in enumerate(path.read_text().splitlines(), start=1) if PRIVATE.search(line)]
    assert offenders == []
