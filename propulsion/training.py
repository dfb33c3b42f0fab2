"""The training loop: reads top to bottom. accelerate handles devices, mixed precision and processes.

One run is ``1 + trainer.restarts`` rounds. A round is what one Hugging Face ``Trainer.train()`` call does: a fresh
optimizer and schedule over the configured epochs, evaluations, and the best evaluation kept; a restart begins from
that best model, as the authors' notebooks did by calling ``trainer.train()`` a second time. Only the trainable
tensors are checkpointed (plus optimizer, scheduler and RNG state; :mod:`propulsion.checkpoint`), so a killed run
resumes from its last checkpoint at the same step with the same data order. Which evaluation is best is
:mod:`propulsion.selection`'s rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from propulsion import checkpoint
from propulsion.checkpoint_selection import Selection
from propulsion.hooks import Hooks
from propulsion.method import load_trainable_state, trainable_state
from propulsion.specs import TrainerSpec

__all__ = ["TrainResult", "decay_groups", "evaluate_sets", "load_trainable_state", "total_steps", "train",
           "trainable_state"]


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


@dataclass
class TrainState:
    """What the loop carries from step to step; a checkpoint stores it as plain containers (:meth:`to_dict`)."""

    step: int = 0                                   # optimizer steps, counted over all rounds
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    train_loss: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None              # the best evaluation of the current round
    rounds: list[dict[str, Any]] = field(default_factory=list)  # the best of each finished round
    running_loss: tuple[float, int] = (0.0, 0)      # (sum, count) of the training losses since the last evaluation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> TrainState:
        known = {f.name for f in fields(cls)}  # a checkpoint from before `rounds` existed lacks it
        return cls(**{k: v for k, v in saved.items() if k in known})


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
    selection = Selection(spec.select_on, main_metric, greater_is_better)
    batches_per_epoch = math.ceil(len(train_set) / (spec.batch_size * accelerator.num_processes))
    steps_per_epoch = _steps_per_epoch(batches_per_epoch, spec)
    round_steps = total_steps(len(train_set), spec, accelerator.num_processes)
    n_steps = round_steps * (1 + spec.restarts)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(model, spec)
    scheduler = _schedule(optimizer, spec, round_steps, accelerator.num_processes)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    dev_loaders = {alias: accelerator.prepare(DataLoader(data, batch_size=spec.eval_batch_size, collate_fn=collate))
                   for alias, data in dev_sets.items()}

    state, best_state, resumed_from = TrainState(), {}, None
    folder = checkpoint.folder_for(run_dir)
    if resume and checkpoint.exists(folder, accelerator):
        saved, best_state = checkpoint.load(folder, accelerator, accelerator.unwrap_model(model), optimizer,
                                            scheduler, hooks)
        state = TrainState.from_dict(saved)
        resumed_from = state.step
        accelerator.print(f"resuming from step {resumed_from} ({folder})")

    def evaluate_now() -> tuple[dict[str, float], float | None]:
        metrics = _evaluate_loaders(model, dev_loaders, evaluate)
        # Dev loss on the first dev split (MNLI: matched), computed only when it selects the model.
        loss = dev_loss(model, next(iter(dev_loaders.values())), accelerator) if selection.on == "loss" else None
        model.train()
        return metrics, loss

    progress = tqdm(total=n_steps, initial=state.step, desc="train", disable=not accelerator.is_local_main_process)
    running_loss, running_count = state.running_loss
    model.train()
    while state.step < n_steps:
        round_ = state.step // round_steps
        if state.step == round_ * round_steps and round_ > 0:
            # A restart, as a second Trainer.train(): from the previous round's best model (its final one where
            # nothing was selected), with a fresh schedule and selection. The HF Trainer keeps its optimizer (and
            # AdamW's moments) across train() calls and only rebuilds the scheduler (transformers' trainer.py:
            # create_optimizer runs `if self.optimizer is None`; `_created_lr_scheduler` resets the schedule):
            # restart_optimizer=keep does that, fresh starts AdamW anew. Checkpoints are never written at a
            # round's last step, so a resumed run never lands here with the round already begun.
            state.rounds.append(_round_summary(round_ - 1, state.best))
            if best_state:
                load_trainable_state(accelerator.unwrap_model(model), best_state)
            state.best, best_state = None, {}
            if spec.restart_optimizer == "fresh":
                optimizer = accelerator.prepare(_optimizer(accelerator.unwrap_model(model), spec))
            scheduler = accelerator.prepare(_schedule(optimizer, spec, round_steps, accelerator.num_processes))
        local = state.step - round_ * round_steps  # steps done in this round
        epoch = local // steps_per_epoch
        while local < round_steps:
            loader = accelerator.prepare(_epoch_loader(train_set, spec, collate, seed, epoch, round_))
            done_in_epoch = (local - epoch * steps_per_epoch) * spec.gradient_accumulation_steps
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
                    state.step, local = state.step + 1, local + 1
                    if hooks.after_optimizer_step:
                        hooks.after_optimizer_step(state.step)
                    optimizer.zero_grad(set_to_none=True)
                progress.update(1)
                mean_loss = running_loss / max(running_count, 1)
                log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, state.step)
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(f"training loss became {mean_loss} at step {state.step}")
                at_boundary = local % spec.eval_every == 0 or local == round_steps
                if at_boundary:  # the loss curve is kept with or without a dev set (reasoning has none)
                    state.train_loss.append({"step": state.step, "loss": mean_loss,
                                             "lr": scheduler.get_last_lr()[0]})
                    running_loss, running_count = 0.0, 0
                if dev_loaders and at_boundary:
                    metrics, dev_loss_value = evaluate_now()
                    entry = {"step": state.step, "epoch": local / steps_per_epoch, "round": round_, "split": "dev",
                             "metrics": metrics}
                    if dev_loss_value is not None:
                        entry["loss"] = dev_loss_value
                    state.evaluations.append(entry)
                    log({f"dev/{k}": v for k, v in metrics.items()}
                        | ({"dev/loss": dev_loss_value} if dev_loss_value is not None else {}), state.step)
                    value = selection.value(metrics, dev_loss_value)
                    progress.set_postfix(loss=f"{mean_loss:.4f}", **{selection.label: f"{value:.4f}"})
                    if selection.is_better(value, state.best):
                        state.best = {"step": state.step, "value": value, "metrics": metrics}
                        best_state = trainable_state(accelerator.unwrap_model(model))
                if state.step % spec.checkpoint_every == 0 and local < round_steps:
                    state.running_loss = (running_loss, running_count)
                    checkpoint.save(folder, accelerator, model, optimizer, scheduler, state.to_dict(), best_state,
                                    hooks)
                if local >= round_steps:
                    break
            epoch += 1
    progress.close()
    if state.best is None:  # no dev set (reasoning), or no finite dev score: the final model is reported
        final = state.evaluations[-1]["metrics"] if state.evaluations else {}
        state.best = {"step": state.step, "value": None, "metrics": final}
        best_state = trainable_state(accelerator.unwrap_model(model))
    state.rounds.append(_round_summary(spec.restarts, state.best))
    if not spec.keep_checkpoint:
        checkpoint.remove(folder, accelerator)
    return TrainResult(
        steps=state.step, total_steps=n_steps, evaluations=state.evaluations, train_loss=state.train_loss,
        best=state.best, final=state.evaluations[-1]["metrics"] if state.evaluations else {},
        best_state=best_state, resumed_from_step=resumed_from,
        notes={"steps_per_epoch": steps_per_epoch, "batches_per_epoch": batches_per_epoch,
               "weight_decay_tensors": {"decayed": len(optimizer.param_groups[0]["params"]),
                                        "not_decayed": len(optimizer.param_groups[1]["params"])},
               "selected_on": selection.on, "rounds": state.rounds},
    )


def _optimizer(model: torch.nn.Module, spec: TrainerSpec) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (weight decay by :func:`decay_groups`)."""
    decayed, undecayed = decay_groups(model, spec.decay_norm_and_bias)
    return torch.optim.AdamW([{"params": decayed, "weight_decay": spec.weight_decay},
                              {"params": undecayed, "weight_decay": 0.0}], lr=spec.lr)


def _schedule(optimizer, spec: TrainerSpec, round_steps: int, processes: int):
    """The learning-rate schedule of one round (one Trainer.train()), from warm-up."""
    # accelerate steps a prepared scheduler once per process at every optimizer step (it assumes each process
    # saw its own share of a num_processes-times larger batch), so the schedule is laid out in those units.
    warmup = spec.warmup_steps if spec.warmup_ratio is None else math.ceil(spec.warmup_ratio * round_steps)
    return get_scheduler(spec.scheduler, optimizer, num_warmup_steps=min(warmup, round_steps) * processes,
                         num_training_steps=round_steps * processes)


def _round_summary(round_: int, best: dict[str, Any] | None) -> dict[str, Any]:
    return {"round": round_, "best_step": best["step"] if best else None, "value": best["value"] if best else None}


@torch.no_grad()
def dev_loss(model, loader: DataLoader, accelerator) -> float:
    """Mean loss per example over a dev split, as the HF Trainer's eval_loss (each batch's mean loss weighted by
    its size, gathered over processes without the padding duplicates)."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        loss = model(**batch).loss
        if loss is None:
            raise ValueError("trainer.select_on=loss needs dev batches the model computes a loss on (with labels); "
                             "this task's have none: use trainer.select_on=metric")
        size = len(next(iter(batch.values())))
        losses = accelerator.gather_for_metrics(loss.detach().float().reshape(1).repeat(size))
        total, count = total + losses.sum().item(), count + losses.numel()
    return total / max(count, 1)


def _epoch_loader(train_set, spec: TrainerSpec, collate, seed: int, epoch: int, round_: int = 0) -> DataLoader:
    # The order of an epoch depends only on (seed, round, epoch): a resumed run sees the same batches. A restart
    # shuffles anew (a second Trainer.train() draws its order from the generator where the first left it).
    key = [seed, epoch] if round_ == 0 else [seed, round_, epoch]
    order = np.random.default_rng(key).permutation(len(train_set)).tolist()
    # Its own generator: creating the iterator must not draw from the global RNG that dropout uses,
    # or a resumed run (iterator created mid-epoch) would see different dropout masks.
    generator = torch.Generator().manual_seed(seed * 100_003 + 1_009 * round_ + epoch)
    return DataLoader(train_set, batch_size=spec.batch_size, sampler=order, collate_fn=collate,
                      num_workers=spec.num_workers, generator=generator)


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
    loaders = {alias: accelerator.prepare(DataLoader(data, batch_size=spec.eval_batch_size, collate_fn=collate))
               for alias, data in sets.items()}
    return _evaluate_loaders(model, loaders, evaluate)


def _evaluate_loaders(model, loaders: dict[str, DataLoader], evaluate) -> dict[str, float]:
    """The one evaluation rule of the loop and the final test: one alias keeps the family's keys, several prefix
    them with ``alias/``."""
    results: dict[str, float] = {}
    for alias, loader in loaders.items():
        scores = evaluate(model, loader)
        results.update(scores if len(loaders) == 1 else {f"{alias}/{k}": v for k, v in scores.items()})
    return results
