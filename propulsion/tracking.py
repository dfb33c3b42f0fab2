"""Experiment tracking: Weights & Biases (offline unless a key is configured) or nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from propulsion.specs import LoggerSpec


def wandb_mode(spec: LoggerSpec) -> str:
    """online only when the user configured W&B; otherwise offline files they can `wandb sync` later."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if spec.mode != "auto":
        return spec.mode
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


class Tracker:
    def __init__(self, spec: LoggerSpec, run_name: str, config: dict[str, Any], enabled: bool = True):
        self.run = None
        if spec.name != "wandb" or not enabled:
            return
        import wandb

        Path(spec.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=spec.project, entity=spec.entity, name=run_name, config=config,
                              mode=wandb_mode(spec), dir=spec.dir, tags=list(spec.tags), reinit="finish_previous")

    def log(self, values: dict[str, float], step: int) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
