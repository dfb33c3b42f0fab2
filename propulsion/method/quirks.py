"""Architecture quirks, found by running a Propulsion model once: no family table needed to find them.

- A wrapped layer that never runs in forward (its weight is read directly, as DeBERTa's ``rel_embeddings``, or it
  is only the tied source of modules that run, as BART's ``shared``): its z would get no gradient.
- A layer whose output the model modifies in place after our scale (Falcon: ``mlp_output += attention_output``):
  the lean scaling keeps that output for its backward, so such a layer must use the plain V * s.

``presets.NEVER_CALLED`` and ``presets.IN_PLACE_OUTPUTS`` list what this probe finds on the families we ship, so
that injection needs no probe forward; the family matrix (tests/method/test_families.py) runs the probe on every
family, so a new family's quirk fails a test instead of a user's run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from propulsion.method.layer import PropulsionLayer


@dataclass(frozen=True)
class Quirks:
    never_called: list[str]  # wrapped layers no forward ran
    modified_in_place: list[str]  # wrapped layers whose output changed after they returned it


def probe(model: nn.Module, inputs: dict) -> Quirks:
    """Run ``model(**inputs)`` once (no grad) and report its quirks. Each output's version counter, read when the
    layer returns it and again after the whole forward, tells whether anything wrote into it in place."""
    layers = {name.removeprefix("base_model."): module for name, module in model.named_modules()
              if isinstance(module, PropulsionLayer)}
    calls = dict.fromkeys(layers, 0)
    returned: list[tuple[str, torch.Tensor, int]] = []

    def recorder(name: str):
        def record(module, args, output):
            calls[name] += 1
            if isinstance(output, torch.Tensor):
                returned.append((name, output, output._version))
        return record

    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    in_place = sorted({name for name, output, version in returned if output._version != version})
    return Quirks(never_called=[name for name, count in calls.items() if not count], modified_in_place=in_place)
