"""The method registry: one entry per method kind, registered once (PEFT's ``register_peft_method`` in spirit).

Every other place asks the entry: which checks a spec needs before anything loads, how a model is frozen and
given what it trains, how it is counted, saved and loaded back. No torch at import: light modules (the plan,
the records) may ask an entry's plain facts (``trains_whole_model``, ``takes_degree``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from propulsion.specs import MethodSpec, UserError


@dataclass
class Prepared:
    model: Any  # torch.nn.Module
    hooks: Any  # propulsion.training.hooks.Hooks
    details: dict[str, Any]  # what was resolved (target modules, AdaLoRA schedule, ...): into the record


def no_check(spec: MethodSpec) -> None:
    """A kind with nothing to check before loading."""


def count_trainable(model) -> dict[str, Any]:
    """Trainable and total parameters, each tensor once (tied weights counted once)."""
    from propulsion.method import count_parameters

    counted = count_parameters(model)
    return {"trainable": counted.trainable, "total": counted.total, "percent": counted.percent}


@dataclass(frozen=True)
class MethodEntry:
    """What a method kind supplies. The callables take plain arguments:

    - ``apply(model, spec, model_kind, total_steps) -> Prepared``: freeze what the method freezes, attach what it
      trains (``total_steps``: AdaLoRA's schedule).
    - ``save(model, directory, *, metrics, base_model_revision, write, sharded)``: the trained parameters in the
      method's own format (safetensors). Sharded (FSDP2) every process calls it; only ``write`` writes.
    - ``load(base_model, directory, spec, model_kind) -> model``: the inverse of save onto a fresh base model.
    - ``made(model) -> bool``: is this a model this kind's apply or load produced? ``save_trained`` is handed a
      model, not a spec, and asks the entries; at most one may say yes. None: the kind leaves a plain model
      (no wrapper, no mark), which is what a model no entry recognises is taken to be.
    """

    kind: str
    apply: Callable[..., Prepared]
    save: Callable[..., None]
    load: Callable[..., Any]
    made: Callable[[Any], bool] | None = None
    validate: Callable[[MethodSpec], None] = no_check  # before anything is loaded or written; raises UserError
    count: Callable[[Any], dict[str, Any]] = count_trainable  # also on the meta device (count_parameters_on_meta)
    checks_targets: bool = False  # method.targets names modules: checked on the model built on the meta device
    trains_whole_model: bool = False  # every weight gets a gradient (the plan's FLOPs: backward for weights too)
    takes_degree: bool = False  # method.degree (k) applies: the run folder and the record carry it
    # A logical target (query, value, ...) our presets cannot place on this architecture falls back to PEFT's own
    # default targets when PEFT has them (GPT-2's fused c_attn for [query, value]), as `method=lora` does in PEFT.
    peft_default_targets: bool = False
    # Its save already writes the frozen tensors a base checkpoint lacks (a random task head), so the adapter
    # reproduces its outputs on any freshly built base; for the others save_trained writes them beside (NEW_FROZEN).
    saves_new_frozen: bool = False


_ENTRIES: dict[str, MethodEntry] = {}


def register_method(entry: MethodEntry) -> MethodEntry:
    """Register a method kind; a kind is registered once."""
    if entry.kind in _ENTRIES:
        raise ValueError(f"method kind {entry.kind!r} is already registered")
    _ENTRIES[entry.kind] = entry
    return entry


def unregister_method(kind: str) -> None:
    """Drop a kind (a test's or an example's own)."""
    _ENTRIES.pop(kind, None)


def registered_kinds() -> tuple[str, ...]:
    return tuple(_ENTRIES)


def method_entry(kind: str) -> MethodEntry:
    """The entry for ``kind``; an unknown kind is one line naming the registered ones."""
    try:
        return _ENTRIES[kind]
    except (KeyError, TypeError):
        raise UserError(f"unknown method.kind {kind!r}; valid choices: {', '.join(_ENTRIES)}") from None


def entry_that_made(model) -> MethodEntry:
    """The entry whose apply (or load) produced ``model``; a model none recognises is a plain one."""
    recognised = [entry for entry in _ENTRIES.values() if entry.made is not None and entry.made(model)]
    if len(recognised) > 1:
        raise ValueError(f"method kinds {', '.join(e.kind for e in recognised)} all claim a {type(model).__name__}")
    if recognised:
        return recognised[0]
    plain = [entry for entry in _ENTRIES.values() if entry.made is None]
    if not plain or len({entry.save for entry in plain}) > 1:  # a plain model must have one way to be saved
        raise ValueError(f"no registered method kind recognises a {type(model).__name__} (plain kinds: "
                         f"{', '.join(e.kind for e in plain) or 'none'}; a kind with its own format supplies made)")
    return plain[0]  # BitFit and full fine-tuning: their trainable tensors by name
