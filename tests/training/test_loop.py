"""The training loop's checkpoint selection on scripted dev scores (the loop itself, a two-parameter model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from propulsion.specs import TrainerSpec
from propulsion.training import loop
from propulsion.training.hooks import Hooks


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.seen: list[float] = []  # every training example's x, in order

    def forward(self, x, y):
        if self.training:
            self.seen += x.view(-1).tolist()
        return SimpleNamespace(loss=torch.nn.functional.mse_loss(self.linear(x), y))


DATA = [{"x": torch.tensor([float(i)]), "y": torch.tensor([2.0 * i])} for i in range(8)]


def collate(rows):
    return {k: torch.stack([row[k] for row in rows]) for k in rows[0]}


def run(tmp_path, scores=None, model=None, accelerator=None, **trainer) -> loop.TrainResult:
    """Batches of 2 of the 8 examples; the dev score of evaluation i is scores[i] (0.5 when not given)."""
    calls = iter(scores or [])
    spec = TrainerSpec(**{"lr": 1e-2, "batch_size": 2, "epochs": 1, "weight_decay": 0.0, "eval_every": 1,
                          "checkpoint_every": 100, **trainer})
    return loop.train(model=model or Regressor(), train_set=DATA, dev_sets={"dev": DATA[:2]}, collate=collate,
                          evaluate=lambda model, loader: {"pearson": next(calls, 0.5)}, main_metric="pearson",
                          spec=spec, seed=0, accelerator=accelerator or Accelerator(cpu=True), run_dir=tmp_path,
                          log=lambda values, step: None)


def run_with_scores(scores: list[float], tmp_path) -> loop.TrainResult:
    return run(tmp_path, scores)


def test_a_nan_dev_score_never_becomes_the_best(tmp_path):
    # STS-B's Pearson is NaN while predictions are constant; a NaN best would stay best (nothing is > NaN).
    result = run_with_scores([math.nan, 0.5, 0.7, 0.6], tmp_path)
    assert result.steps == 4 and result.best["step"] == 3 and result.best["value"] == 0.7


def test_no_finite_dev_score_reports_the_final_model_with_its_scores(tmp_path):
    result = run_with_scores([math.nan] * 4, tmp_path / "all-nan")
    assert result.best["step"] == 4 and result.best["value"] is None
    assert math.isnan(result.best["metrics"]["pearson"])  # the record shows the NaN, the tables footnote it


def test_gradient_accumulation_sees_every_example_of_every_epoch(tmp_path):
    # 4 batches an epoch, 3 accumulated: a step after batch 3 and one at the end of the data (accelerate), so 2
    # steps an epoch. Counting 1 (4 // 3) made the loop stop early and skip the start of later epochs.
    model = Regressor()
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=3)
    result = run(tmp_path, model=model, accelerator=accelerator, epochs=3, gradient_accumulation_steps=3)
    assert result.steps == result.total_steps == 6
    assert sorted(model.seen) == sorted(3 * [float(i) for i in range(8)])
    assert [e["epoch"] for e in result.evaluations] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert loop.total_steps(8, TrainerSpec(batch_size=2, epochs=3, gradient_accumulation_steps=3)) == 6


def test_weight_decay_spares_biases_and_norm_weights_as_the_hf_trainer_does():
    from propulsion import PropulsionConfig, get_propulsion_model
    from tests.method.tiny_models import roberta_classifier

    full = roberta_classifier()  # everything trains
    decayed, spared = loop.decay_groups(full)
    names = {id(p): n for n, p in full.named_parameters()}
    assert spared and all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in spared)
    assert all(not names[id(p)].endswith("bias") and "LayerNorm" not in names[id(p)] for p in decayed)
    assert len(decayed) + len(spared) == len(list(full.parameters()))
    assert loop.decay_groups(full, everything=True) == (list(full.parameters()), [])
    # Propulsion with trainable biases: z is a weight (decayed, towards 0 as for any weight), biases are not.
    model = get_propulsion_model(roberta_classifier(), PropulsionConfig(bias="all"))
    decayed, spared = loop.decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in decayed} == {"propulsion"}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in spared} == {"bias"}


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_previous_checkpoint(tmp_path):
    # _save_checkpoint moves the old checkpoint aside, then the new one in: killed in between, only ".old" is
    # left, and it is complete.
    first = run(tmp_path, epochs=1, checkpoint_every=2, keep_checkpoint=True)
    assert first.steps == 4
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    resumed = run(tmp_path, epochs=1, checkpoint_every=2, keep_checkpoint=True)
    assert resumed.resumed_from_step == 2 and resumed.steps == 4
    assert (tmp_path / "checkpoint").exists() and not (tmp_path / "checkpoint.old").exists()


def test_a_stale_old_checkpoint_does_not_stop_the_next_save(tmp_path):
    # Killed while deleting the previous checkpoint: a partial ".old" is left beside a complete checkpoint.
    run(tmp_path, epochs=1, checkpoint_every=2, keep_checkpoint=True)
    (tmp_path / "checkpoint.old").mkdir()
    (tmp_path / "checkpoint.old" / "state.pt").write_text("partial")
    resumed = run(tmp_path, epochs=2, checkpoint_every=2, keep_checkpoint=True)  # saves at steps 4 and 6
    assert resumed.resumed_from_step == 2 and resumed.steps == 8
    assert not (tmp_path / "checkpoint.old").exists()


def test_every_scheduler_offered_runs_with_warm_up_and_total_steps_alone():
    from transformers import SchedulerType, get_scheduler

    from propulsion.specs import SCHEDULERS

    for name in SCHEDULERS:
        assert name in {kind.value for kind in SchedulerType}
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(1))], lr=1e-3)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=2, num_training_steps=10)
        optimizer.step()
        scheduler.step()  # no metric needed


def mse_on_dev(weight: float, bias: float) -> float:
    """The Regressor's dev loss by hand: dev = DATA[:2] = (x 0, y 0) and (x 1, y 2)."""
    return ((bias - 0.0) ** 2 + (weight + bias - 2.0) ** 2) / 2


def test_loss_based_selection_keeps_the_lowest_dev_loss_and_ignores_the_metric(tmp_path):
    # The scripted metric would pick step 1; by dev loss the best is wherever the loss is lowest.
    result = run(tmp_path, [0.9, 0.1, 0.1, 0.1], select_on="loss", lr=0.3, epochs=1)
    losses = [e["loss"] for e in result.evaluations]
    assert len(losses) == 4 and len(set(losses)) == 4
    best = min(range(4), key=losses.__getitem__)
    assert result.best["step"] == best + 1 and result.best["value"] == losses[best]
    assert result.notes["selected_on"] == "loss"
    # The loss is the dev loss of the model as it is: the best tensors give it back by hand.
    weight, bias = result.best_state["linear.weight"].item(), result.best_state["linear.bias"].item()
    assert mse_on_dev(weight, bias) == pytest.approx(result.best["value"], rel=1e-5)


def restarted(tmp_path, restart_optimizer: str) -> tuple[loop.TrainResult, dict[int, torch.Tensor]]:
    """Round 0: steps 1-4, best (scripted) at step 2; round 1: steps 5-8. The tensors after every step."""
    weights: dict[int, torch.Tensor] = {}
    torch.manual_seed(0)
    model = Regressor()

    def after_step(step: int) -> None:
        weights[step] = torch.cat([model.linear.weight.detach().view(-1), model.linear.bias.detach()]).clone()

    spec = TrainerSpec(lr=1e-2, batch_size=2, epochs=1, weight_decay=0.0, eval_every=1, checkpoint_every=100,
                       restarts=1, scheduler="linear", restart_optimizer=restart_optimizer)
    calls = iter([0.1, 0.9, 0.2, 0.3, 0.4, 0.5, 0.8, 0.6])
    result = loop.train(model=model, train_set=DATA, dev_sets={"dev": DATA[:2]}, collate=collate,
                            evaluate=lambda model, loader: {"pearson": next(calls)}, main_metric="pearson",
                            spec=spec, seed=0, accelerator=Accelerator(cpu=True), run_dir=tmp_path,
                            log=lambda values, step: None, hooks=Hooks(after_optimizer_step=after_step))
    return result, weights


def test_a_restart_continues_from_the_best_model_with_a_fresh_schedule(tmp_path):
    result, weights = restarted(tmp_path, "fresh")
    assert result.steps == result.total_steps == 8
    assert [e["round"] for e in result.evaluations] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [e["epoch"] for e in result.evaluations] == [0.25, 0.5, 0.75, 1.0] * 2
    # From step 2's tensors. A fresh AdamW's first update moves every element by the full lr (m / sqrt(v) = sign(g)
    # at its step 1) and the fresh linear schedule starts again at the full lr; the ended one would give 0.
    assert (weights[5] - weights[2]).abs().tolist() == pytest.approx([1e-2, 1e-2], rel=1e-4)
    # The reported model is the second round's best (step 7), as after Trainer.train() twice.
    assert result.best["step"] == 7 and result.best["value"] == 0.8
    assert result.notes["rounds"] == [{"round": 0, "best_step": 2, "value": 0.9},
                                      {"round": 1, "best_step": 7, "value": 0.8}]
    assert torch.equal(torch.cat([result.best_state["linear.weight"].view(-1), result.best_state["linear.bias"]]),
                       weights[7])


def test_a_restart_keeps_adamw_state_as_the_hf_trainer_does(tmp_path):
    # restart_optimizer=keep (the default, HF's): the same full lr from the fresh schedule, but AdamW's moments
    # from step 4 make the step-5 update differ from the lr-sized first step of a fresh AdamW.
    kept, weights = restarted(tmp_path / "keep", "keep")
    fresh, fresh_weights = restarted(tmp_path / "fresh", "fresh")
    assert torch.equal(weights[4], fresh_weights[4])  # round 0 is the same
    moved = (weights[5] - weights[2]).abs()
    assert moved.tolist() != pytest.approx([1e-2, 1e-2], rel=1e-3) and (moved > 0).all()
    assert kept.best["step"] == 7 and kept.notes["rounds"][0]["best_step"] == 2


def test_a_resumed_run_with_a_restart_ends_as_the_uninterrupted_one(tmp_path):
    # 8 steps in 2 rounds; checkpoints at 3 and 6 (never at a round's end), the one at 6 kept. Rerunning resumes
    # in round 1 from step 6, with round 1's optimizer, schedule and best so far.
    settings = {"select_on": "loss", "lr": 0.1, "restarts": 1, "checkpoint_every": 3, "keep_checkpoint": True}
    straight = run(tmp_path, **settings)
    resumed = run(tmp_path, **settings)
    assert straight.resumed_from_step is None and resumed.resumed_from_step == 6
    assert [e["round"] for e in resumed.evaluations] == [0] * 4 + [1] * 4
    assert resumed.evaluations == straight.evaluations and resumed.best == straight.best
    assert resumed.notes["rounds"] == straight.notes["rounds"]
    assert all(torch.equal(resumed.best_state[k], straight.best_state[k]) for k in straight.best_state)


def test_restarts_and_selection_are_checked():
    from propulsion.specs import UserError

    for bad in ({"restarts": -1}, {"restarts": 1.5}, {"select_on": "accuracy"}, {"restart_optimizer": "reset"}):
        with pytest.raises(UserError, match=f"trainer.{next(iter(bad))}"):
            TrainerSpec(**bad)


def test_select_on_final_reports_the_last_evaluation(tmp_path):
    # The authors' SST-2 notebook saves no checkpoint before the end: the final model, whatever its score.
    result = run(tmp_path, [0.9, 0.1, 0.2, 0.3], select_on="final")
    assert result.best["step"] == 4 and result.best["value"] == 0.3
