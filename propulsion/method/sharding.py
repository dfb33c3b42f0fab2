"""Tensors that live in shards across processes (FSDP2's DTensor parameters), read and written whole.

Under FSDP2 (``scripts/accelerate/fsdp.yaml``) every parameter is a DTensor holding one slice per process. What
the suite saves (the trainable tensors, the adapter, the optimizer's moments) must be the whole tensors, and what
it loads must go back into each process's slice. Gathering is a collective: **every process** calls these
functions, in the same order; only the main process then writes files. Without sharding they are the identity
(a plain tensor is already whole), so single-process and DDP runs take the same code path.
"""

from __future__ import annotations

from typing import Any

import torch


def _dtensor_type():
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch without distributed support
        return None
    return DTensor


def is_sharded(tensor: torch.Tensor) -> bool:
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def model_is_sharded(model: torch.nn.Module) -> bool:
    return any(is_sharded(p) for p in model.parameters())


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered from every process's slice when sharded: a collective)."""
    return tensor.full_tensor() if is_sharded(tensor) else tensor


@torch.no_grad()
def copy_into(parameter: torch.Tensor, whole: torch.Tensor) -> None:
    """Write a whole tensor into a parameter: into this process's slice when the parameter is sharded."""
    if is_sharded(parameter):
        from torch.distributed.tensor import distribute_tensor

        local = parameter.to_local()
        shard = distribute_tensor(whole.to(local.device, local.dtype), parameter.device_mesh, parameter.placements)
        local.copy_(shard.to_local())
    else:
        parameter.copy_(whole.to(parameter.device, parameter.dtype))


def optimizer_state(model: torch.nn.Module, optimizer) -> dict[str, Any]:
    """The optimizer's state to save. Sharded: AdamW's moments gathered whole and keyed by parameter name (a
    collective; torch.distributed.checkpoint's full state dict), so the file does not depend on the process
    count (resume is tested on the same count). Otherwise the optimizer's own state dict."""
    if not model_is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, _plain(optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer, state: dict[str, Any]) -> None:
    """Restore what :func:`optimizer_state` saved (every process reads the same whole state and keeps its slice)."""
    if not model_is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, _plain(optimizer), optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))


def _plain(optimizer):
    """accelerate wraps the optimizer (AcceleratedOptimizer); torch's state-dict helpers want the torch one."""
    return getattr(optimizer, "optimizer", optimizer)
