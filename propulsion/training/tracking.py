"""Experiment tracking: Weights & Biases (offline unless a key is configured), TensorBoard (accelerate's tracker,
event files under ``<logger.dir>/tensorboard/<run>``), or nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from propulsion.specs import LoggerSpec, UserError


def wandb_mode(spec: LoggerSpec) -> str:
    """online only when the user configured W&B; otherwise offline files they can `wandb sync` later."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if spec.mode != "auto":
        return spec.mode
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A nested config as TensorBoard's hyperparameters: 'trainer/lr' keys, scalars kept, the rest as text."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}/"))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


class Tracker:
    def __init__(self, spec: LoggerSpec, run_name: str, config: dict[str, Any], enabled: bool = True):
        self.run = None
        self.board = None
        if not enabled:
            return
        if spec.name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            self.board = TensorBoardTracker(run_name, Path(spec.dir) / "tensorboard")
            try:
                self.board.start()  # torch.utils.tensorboard (needs `tensorboard`) or tensorboardX
            except ModuleNotFoundError:
                raise UserError("logger=tensorboard needs TensorBoard: pip install 'propulsion[tensorboard]' "
                                "(or tensorboardX); or logger=none") from None
            self.board.store_init_configuration(flat_hparams(config))
            return
        if spec.name != "wandb":
            return
        try:
            import wandb
        except ModuleNotFoundError:
            raise UserError("logger=wandb needs Weights & Biases: pip install wandb; or logger=none "
                            "or logger=tensorboard") from None

        Path(spec.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=spec.project, entity=spec.entity, name=run_name, config=config,
                              mode=wandb_mode(spec), dir=spec.dir, tags=list(spec.tags), reinit="finish_previous")

    def log(self, values: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)
        if self.board is not None:
            self.board.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)
        if self.board is not None:  # TensorBoard has no summary: the final values under final/, text as text
            self.board.log({f"final/{key}": value for key, value in values.items()
                            if isinstance(value, (int, float, str)) and not isinstance(value, bool)})

    def finish(self, failed: bool = False) -> None:
        if self.board is not None:
            self.board.finish()
            self.board = None
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
