"""Golden tests: the exact training losses of the first steps of Propulsion and LoRA on tiny-roberta.

Any change to what a run computes (data order, initialisation, tokenisation, the method's forward, the optimizer,
the schedule, dropout) moves these numbers. If a change is meant to, rerun with GOLDEN_PRINT=1 and say why in the
commit; if it is not meant to, it is a bug. The run goes through the suite's own path (compose -> specs ->
run_experiment) on the sample SST-2 data the end-to-end tests write, with one evaluation per step so the record's
loss curve holds every step's loss.
"""

from __future__ import annotations

import os

import pytest

from propulsion.compose import compose_spec
from propulsion.training.one_run import run_experiment
from tests.suite.helpers import write_glue

STEPS = 8
# Written out so that a change to trainer=quick's defaults is seen here as a change, not absorbed.
TRAINER = ["trainer=quick", "trainer.lr=1e-2", "trainer.batch_size=16", "trainer.warmup_steps=0",
           "trainer.scheduler=linear", "trainer.weight_decay=0.0", f"trainer.max_steps={STEPS}",
           "trainer.eval_every=1", "trainer.checkpoint_every=100"]

GOLDEN = {
    "propulsion": [0.698746, 0.690196, 0.698777, 0.695615, 0.689333, 0.693977, 0.693799, 0.693457],
    "lora": [0.696784, 0.71461, 0.693212, 0.690021, 0.713412, 0.67393, 0.678427, 0.67575],
}


def losses(tmp_path, method: str, *extra: str) -> list[float]:
    data = write_glue(tmp_path / "data", "sst2")
    spec, config = compose_spec(["model=tiny-roberta", "task=sst2", f"task.data_dir={data}", f"method={method}",
                                 "logger=none", "seed=0", "save_adapter=false", f"output_root={tmp_path}/runs",
                                 *TRAINER, *extra])
    record = run_experiment(spec, config)
    assert record["status"] == "completed", record.get("error")
    curve = record["train_loss"]
    assert [point["step"] for point in curve] == list(range(1, STEPS + 1))
    return [point["loss"] for point in curve]


@pytest.mark.parametrize("method", sorted(GOLDEN))
def test_first_steps_losses_are_the_golden_ones(tmp_path, method):
    got = losses(tmp_path, method)
    if os.environ.get("GOLDEN_PRINT"):
        print(method, [round(x, 6) for x in got])
    assert got == pytest.approx(GOLDEN[method], abs=1e-4)


def test_a_changed_learning_rate_moves_the_losses_past_the_tolerance(tmp_path):
    # The golden test can fail: 10% more lr leaves step 1 (before any update) and changes every later step.
    got = losses(tmp_path, "propulsion", "trainer.lr=1.1e-2")
    assert got[0] == pytest.approx(GOLDEN["propulsion"][0], abs=1e-4)
    assert all(abs(a - b) > 1e-4 for a, b in zip(got[1:], GOLDEN["propulsion"][1:], strict=True))
