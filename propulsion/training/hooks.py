"""What a method asks of the training loop: the rare explicit step (AdaLoRA's rank allocation) and the state
that step keeps outside the parameters. Both :mod:`propulsion.adapt` (which builds hooks) and
:mod:`propulsion.training.loop` (which calls them) import this; neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Hooks:
    """Method-specific steps the loop calls explicitly (AdaLoRA's rank allocation), and the state they keep
    outside the parameters, which a checkpoint must hold for a resumed run to go on as the uninterrupted one."""

    after_optimizer_step: Callable[[int], None] | None = None  # called with the step, gradients still present
    state: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None  # (tensors, plain data)
    load_state: Callable[[dict[str, torch.Tensor], dict[str, Any]], None] | None = None
    summary: Callable[[], dict[str, Any]] | None = None  # what the record should say after training
