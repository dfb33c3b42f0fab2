"""The training loop's resumable checkpoint: one folder in the run folder, written whole or not at all.

It holds only what a resumed run needs to go on as the uninterrupted one would: the trainable tensors (and the
best ones so far), the optimizer, the scheduler, every process's generators, fp16's loss scale, the method's own
state (AdaLoRA's rank allocator) and the loop's state as plain containers. Safetensors for tensors;
``torch.load(weights_only=True)`` for the rest. Under FSDP2 the trainable tensors and AdamW's moments are
gathered whole by every process before the main one writes, and each process takes its slice back on resume
(:mod:`propulsion.method.sharding`); the saved state is whole and keyed by name (resume tested on the same
number of processes).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from propulsion.method import load_trainable_state, sharding, trainable_state
from propulsion.training.hooks import Hooks

CHECKPOINT_DIR = "checkpoint"


def folder_for(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR


def _previous(folder: Path) -> Path:
    return folder.with_name(folder.name + ".old")


def exists(folder: Path, accelerator) -> bool:
    """Whether there is a checkpoint to resume from. A kill between :func:`save`'s two renames leaves only the
    previous checkpoint (".old"), and it is whole: it is put back first."""
    previous = _previous(folder)
    if not folder.exists() and (previous / "state.pt").exists() and accelerator.is_main_process:
        previous.rename(folder)
    accelerator.wait_for_everyone()
    return (folder / "state.pt").exists()


def save(folder: Path, accelerator, model, optimizer, scheduler, loop_state: dict[str, Any],
         best_state: dict[str, torch.Tensor], hooks: Hooks) -> None:
    """Write to a temporary folder, then swap it in: a kill mid-write leaves the previous checkpoint."""
    accelerator.wait_for_everyone()
    rng = _gather_rng_states(accelerator)  # every process's, so each resumes its own dropout stream
    # Collectives when sharded: every process gathers, the main one writes.
    trainable = trainable_state(accelerator.unwrap_model(model))
    optimizer_state = sharding.optimizer_state(model, optimizer)
    if not accelerator.is_main_process:
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable, str(tmp / "trainable.safetensors"))
    if best_state:
        save_file(best_state, str(tmp / "best.safetensors"))
    method_tensors, method_data = hooks.state() if hooks.state else ({}, {})
    if method_tensors:
        save_file(method_tensors, str(tmp / "method.safetensors"))
    scaler = getattr(accelerator, "scaler", None)  # fp16's loss scale is state too
    torch.save({"optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "rng": rng,
                "scaler": scaler.state_dict() if scaler is not None else None, "method": method_data,
                "state": loop_state}, tmp / "state.pt")
    old = _previous(folder)
    shutil.rmtree(old, ignore_errors=True)  # what a kill during the last save's clean-up left
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path, accelerator, model, optimizer, scheduler,
         hooks: Hooks) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore everything :func:`save` wrote into the given objects; returns (loop state, best tensors)."""
    bundle = torch.load(folder / "state.pt", weights_only=True)  # tensors and plain containers only
    load_trainable_state(model, load_file(str(folder / "trainable.safetensors")))
    sharding.load_optimizer_state(model, optimizer, bundle["optimizer"])
    scheduler.load_state_dict(bundle["scheduler"])
    states = bundle["rng"]  # one per process of the saving run; a resume on fewer or more processes takes the first
    mine = states[accelerator.process_index] if accelerator.process_index < len(states) else states[0]
    torch.set_rng_state(mine["cpu"])
    if mine["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])  # the current device's: the one this process's dropout uses
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and bundle.get("scaler"):
        scaler.load_state_dict(bundle["scaler"])
    if hooks.load_state:
        method_file = folder / "method.safetensors"
        hooks.load_state(load_file(str(method_file)) if method_file.exists() else {}, bundle.get("method") or {})
    best_file = folder / "best.safetensors"
    return bundle["state"], (load_file(str(best_file)) if best_file.exists() else {})


def remove(folder: Path, accelerator) -> None:
    if folder.exists() and accelerator.is_main_process:
        shutil.rmtree(folder)


def _gather_rng_states(accelerator) -> list[dict[str, torch.Tensor | None]]:
    """Each process's CPU generator and its own device's CUDA generator (dropout on a GPU), in process order."""
    mine = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    if accelerator.num_processes == 1:
        return [mine]
    gathered: list[Any] = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(gathered, mine)
    return gathered
