"""The training loop: reads top to bottom. accelerate handles devices, mixed precision and processes.

Only the trainable tensors are checkpointed (plus optimizer, scheduler and RNG state), so a killed
run resumes from its last checkpoint at the same step with the same data order.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from propulsion.hooks import Hooks
from propulsion.records import metric_value
from propulsion.specs import TrainerSpec

CHECKPOINT_DIR = "checkpoint"


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    evaluations: list[dict[str, Any]]
    train_loss: list[dict[str, float]]
    best: dict[str, Any]
    final: dict[str, float]
    best_state: dict[str, torch.Tensor]
    resumed_from_step: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable tensors, keyed by parameter name."""
    return {name: p.detach().to("cpu", copy=True).contiguous()
            for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def train(
    *,
    model: torch.nn.Module,
    train_set,
    dev_sets: dict[str, Any],
    collate: Callable,
    evaluate: Callable[[torch.nn.Module, DataLoader], dict[str, float]],
    main_metric: str,
    spec: TrainerSpec,
    seed: int,
    accelerator,
    run_dir: Path,
    log: Callable[[dict[str, float], int], None],
    hooks: Hooks | None = None,
    resume: bool = True,
    greater_is_better: bool = True,
) -> TrainResult:
    hooks = hooks or Hooks()
    batches_per_epoch = math.ceil(len(train_set) / (spec.batch_size * accelerator.num_processes))
    steps_per_epoch = _steps_per_epoch(batches_per_epoch, spec)
    n_steps = total_steps(len(train_set), spec, accelerator.num_processes)

    params = [p for p in model.parameters() if p.requires_grad]
    decayed, undecayed = decay_groups(model, spec.decay_norm_and_bias)
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": spec.weight_decay},
                                   {"params": undecayed, "weight_decay": 0.0}], lr=spec.lr)
    # accelerate steps a prepared scheduler once per process at every optimizer step (it assumes each process
    # saw its own share of a num_processes-times larger batch), so the schedule is laid out in those units.
    processes = accelerator.num_processes
    scheduler = get_scheduler(spec.scheduler, optimizer, num_warmup_steps=min(spec.warmup_steps, n_steps) * processes,
                              num_training_steps=n_steps * processes)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    dev_loaders = {alias: accelerator.prepare(DataLoader(data, batch_size=spec.eval_batch_size, collate_fn=collate))
                   for alias, data in dev_sets.items()}

    state = {"step": 0, "evaluations": [], "train_loss": [], "best": None}
    best_state: dict[str, torch.Tensor] = {}
    resumed_from = None
    checkpoint = run_dir / CHECKPOINT_DIR
    previous = checkpoint.with_name(checkpoint.name + ".old")
    if resume and not checkpoint.exists() and (previous / "state.pt").exists() and accelerator.is_main_process:
        previous.rename(checkpoint)  # killed between _save_checkpoint's two renames: the previous one is whole
    accelerator.wait_for_everyone()
    if resume and (checkpoint / "state.pt").exists():
        state, best_state = _load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler,
                                             accelerator, hooks)
        resumed_from = state["step"]
        accelerator.print(f"resuming from step {resumed_from} ({checkpoint})")

    def evaluate_all() -> dict[str, float]:
        results: dict[str, float] = {}
        for alias, loader in dev_loaders.items():
            scores = evaluate(model, loader)
            results.update(scores if len(dev_loaders) == 1 else {f"{alias}/{k}": v for k, v in scores.items()})
        model.train()
        return results

    def is_better(value: float) -> bool:
        # A non-finite score (STS-B's Pearson of constant predictions is NaN) never becomes the best; a NaN best
        # would stay best forever, since nothing compares greater than NaN.
        if not math.isfinite(value):
            return False
        best = state["best"]
        return best is None or (value > best["value"] if greater_is_better else value < best["value"])

    step = state["step"]
    progress = tqdm(total=n_steps, initial=step, desc="train", disable=not accelerator.is_local_main_process)
    running_loss, running_count = state.get("running_loss", (0.0, 0))  # the loss mean since the last evaluation
    model.train()
    epoch = step // steps_per_epoch
    while step < n_steps:
        loader = accelerator.prepare(_epoch_loader(train_set, spec, collate, seed, epoch))
        done_in_epoch = (step - epoch * steps_per_epoch) * spec.gradient_accumulation_steps
        if done_in_epoch:
            loader = accelerator.skip_first_batches(loader, done_in_epoch)
        for batch in loader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                running_loss, running_count = running_loss + loss.detach().float().item(), running_count + 1
                if not accelerator.sync_gradients:
                    continue
                if spec.max_grad_norm:
                    accelerator.clip_grad_norm_(params, spec.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                if hooks.after_optimizer_step:
                    hooks.after_optimizer_step(step)
                optimizer.zero_grad(set_to_none=True)
            progress.update(1)
            mean_loss = running_loss / max(running_count, 1)
            log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, step)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"training loss became {mean_loss} at step {step}")
            at_boundary = step % spec.eval_every == 0 or step == n_steps
            if at_boundary:  # the loss curve is kept with or without a dev set (reasoning has none)
                state["train_loss"].append({"step": step, "loss": mean_loss, "lr": scheduler.get_last_lr()[0]})
                running_loss, running_count = 0.0, 0
            if dev_loaders and at_boundary:
                metrics = evaluate_all()
                state["evaluations"].append({"step": step, "epoch": step / steps_per_epoch, "split": "dev",
                                             "metrics": metrics})
                log({f"dev/{k}": v for k, v in metrics.items()}, step)
                value = metric_value(metrics, main_metric)
                progress.set_postfix(loss=f"{mean_loss:.4f}", **{main_metric: f"{value:.4f}"})
                if is_better(value):
                    state["best"] = {"step": step, "value": value, "metrics": metrics}
                    best_state = trainable_state(accelerator.unwrap_model(model))
            if step % spec.checkpoint_every == 0 and step < n_steps:
                state["step"], state["running_loss"] = step, (running_loss, running_count)
                _save_checkpoint(checkpoint, accelerator, model, optimizer, scheduler, state, best_state, hooks)
            if step >= n_steps:
                break
        epoch += 1
    progress.close()
    if state["best"] is None:  # no dev set (reasoning), or no finite dev score: the final model is reported
        final = state["evaluations"][-1]["metrics"] if state["evaluations"] else {}
        state["best"] = {"step": step, "value": None, "metrics": final}
        best_state = trainable_state(accelerator.unwrap_model(model))
    if checkpoint.exists() and not spec.keep_checkpoint and accelerator.is_main_process:
        shutil.rmtree(checkpoint)
    return TrainResult(
        steps=step, total_steps=n_steps, evaluations=state["evaluations"], train_loss=state["train_loss"],
        best=state["best"], final=state["evaluations"][-1]["metrics"] if state["evaluations"] else {},
        best_state=best_state, resumed_from_step=resumed_from,
        notes={"steps_per_epoch": steps_per_epoch, "batches_per_epoch": batches_per_epoch,
               "weight_decay_tensors": {"decayed": len(decayed), "not_decayed": len(undecayed)}},
    )


def _epoch_loader(train_set, spec: TrainerSpec, collate, seed: int, epoch: int) -> DataLoader:
    # The order of an epoch depends only on (seed, epoch): a resumed run sees the same batches.
    order = np.random.default_rng([seed, epoch]).permutation(len(train_set)).tolist()
    # Its own generator: creating the iterator must not draw from the global RNG that dropout uses,
    # or a resumed run (iterator created mid-epoch) would see different dropout masks.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(train_set, batch_size=spec.batch_size, sampler=order, collate_fn=collate,
                      num_workers=spec.num_workers, generator=generator)


def _save_checkpoint(folder: Path, accelerator, model, optimizer, scheduler, state, best_state,
                     hooks: Hooks) -> None:
    """Write to a temporary folder, then swap it in: a kill mid-write leaves the previous checkpoint."""
    accelerator.wait_for_everyone()
    rng = _gather_rng_states(accelerator)  # every process's, so each resumes its own dropout stream
    if not accelerator.is_main_process:
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(accelerator.unwrap_model(model)), str(tmp / "trainable.safetensors"))
    if best_state:
        save_file(best_state, str(tmp / "best.safetensors"))
    method_tensors, method_data = hooks.state() if hooks.state else ({}, {})
    if method_tensors:
        save_file(method_tensors, str(tmp / "method.safetensors"))
    scaler = getattr(accelerator, "scaler", None)  # fp16's loss scale is state too
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                "scaler": scaler.state_dict() if scaler is not None else None, "method": method_data,
                "state": state}, tmp / "state.pt")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)  # what a kill during the last save's clean-up left
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, model, optimizer, scheduler, accelerator, hooks: Hooks):
    bundle = torch.load(folder / "state.pt", weights_only=True)  # tensors and plain containers only
    load_trainable_state(model, load_file(str(folder / "trainable.safetensors")))
    optimizer.load_state_dict(bundle["optimizer"])
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


def _gather_rng_states(accelerator) -> list[dict[str, torch.Tensor | None]]:
    """Each process's CPU generator and its own device's CUDA generator (dropout on a GPU), in process order."""
    mine = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}
    if accelerator.num_processes == 1:
        return [mine]
    gathered: list[Any] = [None] * accelerator.num_processes
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def decay_groups(model: torch.nn.Module, everything: bool = False) -> tuple[list, list]:
    """(decayed, not decayed) trainable parameters. By default the Hugging Face Trainer's rule, which the
    baselines' published numbers were trained under: no decay for biases and normalisation weights (Propulsion's
    z is decayed, towards 0, like any other weight). ``everything``: decay them all."""
    from transformers import Trainer

    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if everything:
        return [p for _, p in trainable], []
    decay_names = set(Trainer.get_decay_parameter_names(None, model))  # uses only the model
    return ([p for name, p in trainable if name in decay_names],
            [p for name, p in trainable if name not in decay_names])


def _steps_per_epoch(batches_per_epoch: int, spec: TrainerSpec) -> int:
    # accelerate also steps at the end of the data (a last, shorter accumulation): ceil, not floor. With floor,
    # each epoch's extra step made the loop believe it had finished part of the next epoch and skip its batches.
    return max(1, math.ceil(batches_per_epoch / spec.gradient_accumulation_steps))


def total_steps(n_train: int, spec: TrainerSpec, num_processes: int = 1) -> int:
    """Optimizer steps of the whole run: max_steps, else epochs × steps per epoch (AdaLoRA needs it up front)."""
    batches_per_epoch = math.ceil(n_train / (spec.batch_size * num_processes))
    return spec.max_steps or max(1, math.ceil(spec.epochs * _steps_per_epoch(batches_per_epoch, spec)))


def evaluate_sets(model, sets: dict[str, Any], collate, evaluate, spec: TrainerSpec, accelerator) -> dict[str, float]:
    """Evaluate on named splits; several splits prefix their metric keys with the split's alias."""
    results: dict[str, float] = {}
    for alias, data in sets.items():
        loader = accelerator.prepare(DataLoader(data, batch_size=spec.eval_batch_size, collate_fn=collate))
        scores = evaluate(model, loader)
        results.update(scores if len(sets) == 1 else {f"{alias}/{k}": v for k, v in scores.items()})
    return results
