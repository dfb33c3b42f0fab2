"""The training loop's checkpoint selection on scripted dev scores (the loop itself, a two-parameter model)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from propulsion import training
from propulsion.specs import TrainerSpec


class Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, x, y):
        return SimpleNamespace(loss=torch.nn.functional.mse_loss(self.linear(x), y))


def run_with_scores(scores: list[float], tmp_path) -> training.TrainResult:
    """Four steps, an evaluation after each, the dev score of evaluation i being scores[i]."""
    data = [{"x": torch.tensor([float(i)]), "y": torch.tensor([2.0 * i])} for i in range(8)]
    collate = lambda rows: {k: torch.stack([row[k] for row in rows]) for k in rows[0]}  # noqa: E731
    calls = iter(scores)
    spec = TrainerSpec(lr=1e-2, batch_size=2, epochs=1, weight_decay=0.0, eval_every=1, checkpoint_every=100)
    return training.train(model=Regressor(), train_set=data, dev_sets={"dev": data[:2]}, collate=collate,
                          evaluate=lambda model, loader: {"pearson": next(calls)}, main_metric="pearson",
                          spec=spec, seed=0, accelerator=Accelerator(cpu=True), run_dir=tmp_path,
                          log=lambda values, step: None)


def test_a_nan_dev_score_never_becomes_the_best(tmp_path):
    # STS-B's Pearson is NaN while predictions are constant; a NaN best would stay best (nothing is > NaN).
    result = run_with_scores([math.nan, 0.5, 0.7, 0.6], tmp_path)
    assert result.steps == 4 and result.best["step"] == 3 and result.best["value"] == 0.7


def test_no_finite_dev_score_reports_the_final_model_with_its_scores(tmp_path):
    result = run_with_scores([math.nan] * 4, tmp_path / "all-nan")
    assert result.best["step"] == 4 and result.best["value"] is None
    assert math.isnan(result.best["metrics"]["pearson"])  # the record shows the NaN, the tables footnote it
