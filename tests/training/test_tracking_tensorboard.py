"""logger=tensorboard: accelerate's TensorBoardTracker writes event files a TensorBoard reads (issue 14, item 5)."""

from __future__ import annotations

import struct

import pytest

from propulsion.specs import LoggerSpec, UserError
from propulsion.training.tracking import Tracker, flat_hparams


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files under ``folder``: the TFRecord framing (length, crc, Event proto, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_tensorboard_logs_steps_config_and_final_values(tmp_path):
    pytest.importorskip("tensorboardX")  # or tensorboard: the `tensorboard` extra installs one
    config = {"task": {"name": "sst2"}, "trainer": {"lr": 0.01, "betas": [0.9, 0.98]}, "seed": 0, "x": None}
    tracker = Tracker(LoggerSpec(name="tensorboard", dir=str(tmp_path)), "run-1", config)
    tracker.log({"train/loss": 0.75, "lr": 0.01}, step=2)
    tracker.log({"train/loss": 0.5}, step=4)
    tracker.summary({"status": "completed", "accuracy": 0.875, "flag": True})
    tracker.finish()
    run = tmp_path / "tensorboard" / "run-1"
    logged = scalars(run)
    assert logged["train/loss"] == [(2, 0.75), (4, 0.5)] and logged["final/accuracy"] == [(0, 0.875)]
    assert "final/flag" not in logged  # booleans are not numbers to plot
    (hparams,) = run.rglob("hparams.yml")  # accelerate stores the configuration beside the events
    assert "trainer/lr: 0.01" in hparams.read_text() and "trainer/betas: '[0.9, 0.98]'" in hparams.read_text()


def test_flat_hparams_and_the_logger_choice():
    assert flat_hparams({"a": {"b": 1, "c": {"d": None}}, "e": [1]}) == {"a/b": 1, "a/c/d": "None", "e": "[1]"}
    with pytest.raises(UserError, match=r"unknown logger 'tensorbord'; valid choices: wandb, tensorboard, none"):
        LoggerSpec(name="tensorbord")
