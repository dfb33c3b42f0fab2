"""Every private torch API the package touches, one function each, with the public way to do the same thing.

Private names (a leading underscore) carry no compatibility promise, so each is looked up once here: if a torch
release renames or drops one, the public fallback below takes over (slower, same values) instead of an
AttributeError deep inside a forward. Nothing outside this module may name a private torch API
(tests/method/test_torch_compat.py greps for it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

# torch._foreach_norm: the norms of many tensors in a fixed handful of kernels (multi-tensor apply), where a
# Python loop launches one reduction per tensor. scaling.scale_ranges reads the |s| range of every Propulsion
# layer of a model in each forward; one kernel per layer is a GPU launch (a few µs of host time) per layer.
_FOREACH_NORM = getattr(torch, "_foreach_norm", None)
# torch._foreach_reciprocal: 1 / b for many tensors at once (same reason); min |b| is read as 1 / max |1 / b|,
# since _foreach_norm has max (ord=inf) but no min.
_FOREACH_RECIPROCAL = getattr(torch, "_foreach_reciprocal", None)
# torch._C._are_functorch_transforms_active: whether a torch.func transform (vmap, jacrev, grad) is tracing.
# The lean scaling's autograd Functions read host values and scale in place, which vmap cannot batch; under a
# transform they step aside for the plain expression (same values). torch.func has no public query for this.
_FUNCTORCH_ACTIVE = getattr(getattr(torch, "_C", None), "_are_functorch_transforms_active", None)


def norm_each(tensors: Sequence[Tensor], ord: float) -> list[Tensor]:
    """The public fallback of ``foreach_norm``: one ``torch.linalg.vector_norm`` per tensor."""
    return [torch.linalg.vector_norm(tensor, ord=ord) for tensor in tensors]


def foreach_norm(tensors: Sequence[Tensor], ord: float) -> list[Tensor]:
    """The vector norm (``ord`` 1, 2 or inf) of each tensor, as 0-d tensors: ``torch._foreach_norm``.
    Fallback: ``norm_each`` (a kernel per tensor; the same values, NaN propagating alike)."""
    if _FOREACH_NORM is None:
        return norm_each(tensors, ord)
    return list(_FOREACH_NORM(list(tensors), ord=ord))


def foreach_reciprocal(tensors: Sequence[Tensor]) -> list[Tensor]:
    """1 / t for each tensor, new tensors (0 -> inf): ``torch._foreach_reciprocal``.
    Fallback: ``torch.reciprocal`` per tensor."""
    if _FOREACH_RECIPROCAL is None:
        return [torch.reciprocal(tensor) for tensor in tensors]
    return list(_FOREACH_RECIPROCAL(list(tensors)))


def functorch_transforms_active() -> bool:
    """Whether code runs inside a torch.func transform: ``torch._C._are_functorch_transforms_active``.
    Fallback: False. Then a lean autograd Function meets vmap, which refuses it with a RuntimeError ("autograd.
    Function ... vmap staticmethod"): loud, never a wrong value; NTK code would need the simple implementation
    (``scaling.implementation("simple")``)."""
    return bool(_FUNCTORCH_ACTIVE()) if _FUNCTORCH_ACTIVE is not None else False


def dispatch_mode_base() -> type:
    """The base class of a mode that sees every ATen operation (``torch.utils._python_dispatch.
    TorchDispatchMode``): the benchmark counts the operations a forward dispatches. There is no public
    equivalent and no fallback (the profiler counts kernels, not dispatched operations, and needs a run of its
    own); only ``make bench`` uses it, so an import error there names this function."""
    from torch.utils._python_dispatch import TorchDispatchMode

    return TorchDispatchMode

