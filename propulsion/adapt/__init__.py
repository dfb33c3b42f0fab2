"""Turn a method spec into a trainable model: Propulsion, the PEFT tuners, BitFit, full fine-tuning, our baselines.

One registry keyed by ``method.kind`` (registry.py); each kind registers its entry once, in its own module
(propulsion_kind, peft_kind, bitfit_full_kind, head_only_kind, baseline_kind), and the functions below only ask the
entry. So every record's counts, checks and saved files come from the same code for every method, and a new kind is one
module that calls :func:`register_method` (docs/contributing.md, "Add a method"). Importing this package loads
no torch: the entries import it when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from propulsion.adapt import (  # noqa: F401  (register)
    baseline_kind,
    bitfit_full_kind,
    head_only_kind,
    peft_kind,
    propulsion_kind,
)
from propulsion.adapt.propulsion_kind import propulsion_config
from propulsion.adapt.registry import (
    MethodEntry,
    Prepared,
    count_trainable,
    entry_that_made,
    method_entry,
    register_method,
    registered_kinds,
    unregister_method,
)
from propulsion.specs import MethodSpec, UserError

__all__ = ["MethodEntry", "Prepared", "apply_method", "check_targets", "count", "count_parameters_on_meta",
           "count_head", "count_trainable", "load_trained", "method_entry", "propulsion_config", "register_method",
           "new_frozen_count", "registered_kinds", "save_trained", "unregister_method", "validate"]


def validate(spec: MethodSpec) -> None:
    """Catch a bad method config before anything is loaded or written."""
    method_entry(spec.kind).validate(spec)


def apply_method(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    """Freeze what the method freezes and attach what it trains. ``total_steps`` is AdaLoRA's schedule."""
    return method_entry(spec.kind).apply(model, spec, model_kind, total_steps)


def check_targets(model_config, spec: MethodSpec, model_kind: str) -> None:
    """Refuse target patterns that match no module of the model, before anything is loaded or written: the
    model is built on the meta device from its config (no weights, no memory)."""
    from propulsion.adapt import targets

    entry = method_entry(spec.kind)
    if entry.checks_targets:
        targets.check(model_config, spec, model_kind, peft_default=entry.peft_default_targets)


def count(model) -> dict[str, Any]:
    """Trainable and total parameters of a prepared model (the entry that made it counts), and ``head``: how many
    of the trainable ones lie in the task head (:func:`count_head`)."""
    return {**entry_that_made(model).count(model), "head": count_head(model)}


def count_head(model) -> int:
    """Trainable parameters inside the task head's modules (``head_module_names``: BERT's pooler and classifier),
    whatever trains them (the head's own weights, or z on its layers); ``trainable - head`` lies outside the head.
    Tables split a method's count this way (issue 25: the head is most of LoRA's and BitFit's count)."""
    from propulsion.method import head_module_names

    inner = _inner(model)
    heads = tuple(f"{name}." for name in head_module_names(inner))
    if not heads:
        return 0
    return sum(parameter.numel() for name, parameter in inner.named_parameters()
               if parameter.requires_grad and name.startswith(heads))


def count_parameters_on_meta(model_config, spec: MethodSpec, model_kind: str) -> dict[str, Any]:
    """Counts for a full-size model built on the meta device from its config: no download, no memory."""
    import torch

    from propulsion.adapt.targets import meta_model

    entry = method_entry(spec.kind)
    model = meta_model(model_config, model_kind)
    with torch.device("meta"):
        prepared = entry.apply(model, spec, model_kind, 1000)  # 1000: any AdaLoRA schedule; counts do not move
    return {**entry.count(prepared.model), "head": count_head(prepared.model)}


def save_trained(model, directory: Path, metrics: dict | None = None, base_model_revision: str | None = None,
                 write: bool = True) -> list[str]:
    """The trained parameters in the method's own format, as safetensors; returns the files written (see each
    entry's save; :func:`load_trained` is the inverse). Sharded (FSDP2): every process calls it, the tensors
    are gathered whole, and only the process with ``write`` writes files."""
    from propulsion import records
    from propulsion.method import sharding

    directory = Path(directory)
    if write:
        directory.mkdir(parents=True, exist_ok=True)
    entry = entry_that_made(model)
    entry.save(model, directory, metrics=metrics, base_model_revision=base_model_revision, write=write,
               sharded=sharding.model_is_sharded(model))
    frozen = {} if entry.saves_new_frozen else _new_frozen(model)
    if write and frozen:
        from safetensors.torch import save_file

        save_file(frozen, str(directory / NEW_FROZEN), metadata={"format": "pt"})
    if not write:
        return []
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    for path in files:
        records.make_readable(path)
    return [str(path.relative_to(directory)) for path in files]


def load_trained(base_model, directory: Path, spec: MethodSpec, model_kind: str):
    """What :func:`save_trained` wrote, onto a fresh ``base_model``: the trained model back."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"no saved method at {directory}")
    model = method_entry(spec.kind).load(base_model, directory, spec, model_kind)
    if (directory / NEW_FROZEN).exists():
        import torch
        from safetensors.torch import load_file

        inner = _inner(model)
        with torch.no_grad():
            for name, tensor in load_file(str(directory / NEW_FROZEN)).items():
                inner.get_parameter(name).copy_(tensor)
    return model


# Frozen tensors a base checkpoint does not hold (a task head initialised at random when the base is built: its
# classifier, the pooler where the head uses it), saved beside a method's own files: loaded onto a base whose head
# was drawn otherwise, the method reproduces its outputs. Not trainable: the records' counts stay as they are.
NEW_FROZEN = "new_frozen.safetensors"


def _inner(model):
    """The transformers model under a PEFT wrapper (parameter names as the base has them), else the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def new_frozen_count(model) -> int:
    """How many frozen parameters an adapter of this model carries because the base checkpoint lacks them."""
    return sum(tensor.numel() for tensor in _new_frozen(model).values())


def _new_frozen(model) -> dict:
    from propulsion.method.model import new_frozen_tensors

    # PEFT's modules_to_save keeps the head's original frozen and unused beside the trained copy it saves itself
    return {name: tensor.detach().cpu().contiguous() for name, tensor in new_frozen_tensors(_inner(model)).items()
            if ".original_module." not in f".{name}"}
