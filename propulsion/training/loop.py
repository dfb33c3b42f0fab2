"""The training loop: reads top to bottom. accelerate handles devices, mixed precision and processes.

One run is ``1 + trainer.restarts`` rounds. A round is what one Hugging Face ``Trainer.train()`` call does: a
fresh schedule over the configured epochs, evaluations, and the best evaluation kept; a restart begins from that
best model, as the authors' notebooks did by calling ``trainer.train()`` a second time (:meth:`_Loop.restart`).
Only the trainable tensors are checkpointed (plus optimizer, scheduler and RNG state;
:mod:`propulsion.training.checkpoints`), so a killed run resumes from its last checkpoint at the same step with the
same data order. Which evaluation is best is :mod:`propulsion.training.reported`'s rule.
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

from propulsion.method import load_trainable_state, trainable_state
from propulsion.specs import TrainerSpec
from propulsion.training import checkpoints
from propulsion.training.hooks import Hooks
from propulsion.training.reported import Selection

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
    dev_metrics: bool = True,
) -> TrainResult:
    """``dev_metrics=False``: an evaluation measures the dev loss only (task.evaluation.during=loss)."""
    loop = _Loop(model=model, train_set=train_set, collate=collate, evaluate=evaluate, spec=spec, seed=seed,
                 accelerator=accelerator, log=log, hooks=hooks or Hooks(),
                 selection=Selection(spec.select_on, main_metric, greater_is_better),
                 checkpoint_dir=checkpoints.folder_for(run_dir), dev_metrics=dev_metrics)
    loop.prepare(dev_sets)
    if resume:
        loop.resume()
    while loop.state.step < loop.n_steps:
        if loop.at_round_start():
            loop.restart()
        loop.train_round()
    return loop.finish()


@dataclass
class _Loop:
    """One training run's moving parts; :func:`train` calls its steps in order."""

    model: torch.nn.Module
    train_set: Any
    collate: Callable
    evaluate: Callable[[torch.nn.Module, DataLoader], dict[str, float]]
    spec: TrainerSpec
    seed: int
    accelerator: Any
    log: Callable[[dict[str, float], int], None]
    hooks: Hooks
    selection: Selection
    checkpoint_dir: Path
    dev_metrics: bool = True  # False: evaluations measure the dev loss only
    state: TrainState = field(default_factory=TrainState)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)  # the current round's best trainable tensors
    resumed_from: int | None = None

    def prepare(self, dev_sets: dict[str, Any]) -> None:
        spec, accelerator = self.spec, self.accelerator
        self.batches_per_epoch = math.ceil(len(self.train_set) / (spec.batch_size * accelerator.num_processes))
        self.steps_per_epoch = _steps_per_epoch(self.batches_per_epoch, spec)
        self.round_steps = total_steps(len(self.train_set), spec, accelerator.num_processes)  # one Trainer.train()
        self.n_steps = self.round_steps * (1 + spec.restarts)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = _optimizer(self.model, spec)
        scheduler = _schedule(optimizer, spec, self.round_steps, accelerator.num_processes)
        self.model, self.optimizer, self.scheduler = accelerator.prepare(self.model, optimizer, scheduler)
        self.dev_loaders = {alias: accelerator.prepare(DataLoader(data, batch_size=spec.eval_batch_size,
                                                                  collate_fn=self.collate))
                            for alias, data in dev_sets.items()}
        self.running = (0.0, 0)  # (sum, count) of the training losses since the last evaluation
        self.progress = tqdm(total=self.n_steps, desc="train", disable=not accelerator.is_local_main_process)

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def resume(self) -> None:
        if not checkpoints.exists(self.checkpoint_dir, self.accelerator):
            return
        saved, self.best_state = checkpoints.load(self.checkpoint_dir, self.accelerator, self.unwrapped,
                                                 self.optimizer, self.scheduler, self.hooks)
        self.state = TrainState.from_dict(saved)
        self.running = tuple(self.state.running_loss)
        self.resumed_from = self.state.step
        self.progress.update(self.state.step)
        self.accelerator.print(f"resuming from step {self.resumed_from} ({self.checkpoint_dir})")

    def at_round_start(self) -> bool:
        # Checkpoints are never written at a round's last step, so a resumed run never starts at a round boundary
        # with that round already begun: step == a multiple of round_steps means the previous round just ended.
        return self.state.step > 0 and self.state.step % self.round_steps == 0

    def restart(self) -> None:
        """A second Trainer.train(): from the previous round's best model (its final one where nothing was
        selected), with a fresh schedule and a fresh choice of the best. The HF Trainer keeps its optimizer, AdamW's
        moments included, across train() calls and rebuilds only the scheduler (transformers' trainer.py:
        create_optimizer acts `if self.optimizer is None`; `_created_lr_scheduler` resets the schedule):
        restart_optimizer=keep does that, fresh starts AdamW anew."""
        state, accelerator = self.state, self.accelerator
        state.rounds.append(_round_summary(state.step // self.round_steps - 1, state.best))
        if self.best_state:
            load_trainable_state(self.unwrapped, self.best_state)
        state.best, self.best_state = None, {}
        if self.spec.restart_optimizer == "fresh":
            self.optimizer = accelerator.prepare(_optimizer(self.unwrapped, self.spec))
        self.scheduler = accelerator.prepare(_schedule(self.optimizer, self.spec, self.round_steps,
                                                       accelerator.num_processes))

    def train_round(self) -> None:
        """Optimizer steps until the current round ends (from wherever it stands after a resume)."""
        spec, accelerator, state = self.spec, self.accelerator, self.state
        round_ = state.step // self.round_steps
        local = state.step - round_ * self.round_steps  # steps done in this round
        epoch = local // self.steps_per_epoch
        self.model.train()
        while local < self.round_steps:
            loader = accelerator.prepare(_epoch_loader(self.train_set, spec, self.collate, self.seed, epoch, round_))
            done_in_epoch = (local - epoch * self.steps_per_epoch) * spec.gradient_accumulation_steps
            if done_in_epoch:
                loader = accelerator.skip_first_batches(loader, done_in_epoch)
            for batch in loader:
                if not self._accumulate(batch):
                    continue
                local += 1
                self._after_step(round_, local)
                if local >= self.round_steps:
                    break
            epoch += 1

    def _accumulate(self, batch) -> bool:
        """Forward and backward one batch; True when that completed an optimizer step."""
        accelerator = self.accelerator
        with accelerator.accumulate(self.model):
            loss = self.model(**batch).loss
            accelerator.backward(loss)
            self.running = (self.running[0] + loss.detach().float().item(), self.running[1] + 1)
            if not accelerator.sync_gradients:
                return False
            if self.spec.max_grad_norm:
                accelerator.clip_grad_norm_(self.params, self.spec.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            if self.hooks.after_optimizer_step:
                self.hooks.after_optimizer_step(self.state.step)
            self.optimizer.zero_grad(set_to_none=True)
        return True

    def _after_step(self, round_: int, local: int) -> None:
        """Log; at an evaluation boundary keep the loss curve, evaluate and select; checkpoint when due."""
        spec, state = self.spec, self.state
        self.progress.update(1)
        mean_loss = self.running[0] / max(self.running[1], 1)
        lr = self.scheduler.get_last_lr()[0]
        self.log({"train/loss": mean_loss, "train/lr": lr}, state.step)
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"training loss became {mean_loss} at step {state.step}")
        if local % spec.eval_every == 0 or local == self.round_steps:
            # The loss curve is kept with or without a dev set (reasoning has none).
            state.train_loss.append({"step": state.step, "loss": mean_loss, "lr": lr})
            self.running = (0.0, 0)
            if self.dev_loaders:
                self._evaluate_and_select(round_, local, mean_loss)
        if state.step % spec.checkpoint_every == 0 and local < self.round_steps:
            state.running_loss = self.running
            checkpoints.save(self.checkpoint_dir, self.accelerator, self.model, self.optimizer, self.scheduler,
                            state.to_dict(), self.best_state, self.hooks)

    def _evaluate_and_select(self, round_: int, local: int, mean_loss: float) -> None:
        state, selection = self.state, self.selection
        metrics = _evaluate_loaders(self.model, self.dev_loaders, self.evaluate) if self.dev_metrics else {}
        # Dev loss on the first dev split (MNLI: matched), computed only when it selects the model or is all there is.
        loss = (dev_loss(self.model, next(iter(self.dev_loaders.values())), self.accelerator)
                if selection.on == "loss" or not self.dev_metrics else None)
        self.model.train()
        entry = {"step": state.step, "epoch": local / self.steps_per_epoch, "round": round_, "split": "dev",
                 "metrics": metrics}
        if loss is not None:
            entry["loss"] = loss
        state.evaluations.append(entry)
        self.log({f"dev/{k}": v for k, v in metrics.items()} | ({"dev/loss": loss} if loss is not None else {}),
                 state.step)
        value = selection.value(metrics, loss)
        self.progress.set_postfix(loss=f"{mean_loss:.4f}", **{selection.label: f"{value:.4f}"})
        if selection.is_better(value, state.best):
            state.best = {"step": state.step, "value": value, "metrics": metrics}
            self.best_state = trainable_state(self.unwrapped)

    def finish(self) -> TrainResult:
        state = self.state
        self.progress.close()
        if state.best is None:  # no dev set (reasoning), or no finite dev score: the final model is reported
            final = state.evaluations[-1]["metrics"] if state.evaluations else {}
            state.best = {"step": state.step, "value": None, "metrics": final}
            self.best_state = trainable_state(self.unwrapped)
        state.rounds.append(_round_summary(self.spec.restarts, state.best))
        if not self.spec.keep_checkpoint:
            checkpoints.remove(self.checkpoint_dir, self.accelerator)
        groups = self.optimizer.param_groups
        return TrainResult(
            steps=state.step, total_steps=self.n_steps, evaluations=state.evaluations, train_loss=state.train_loss,
            best=state.best, final=state.evaluations[-1]["metrics"] if state.evaluations else {},
            best_state=self.best_state, resumed_from_step=self.resumed_from,
            notes={"steps_per_epoch": self.steps_per_epoch, "batches_per_epoch": self.batches_per_epoch,
                   "weight_decay_tensors": {"decayed": len(groups[0]["params"]),
                                            "not_decayed": len(groups[1]["params"])},
                   "selected_on": self.selection.on, "rounds": state.rounds},
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
    """Optimizer steps of the whole run: max_steps (0: none, the untrained model is evaluated), else epochs × steps
    per epoch (AdaLoRA needs it up front)."""
    if spec.max_steps is not None:
        return spec.max_steps
    batches_per_epoch = math.ceil(n_train / (spec.batch_size * num_processes))
    return max(1, math.ceil(spec.epochs * _steps_per_epoch(batches_per_epoch, spec)))


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
