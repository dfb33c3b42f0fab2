"""Our adapter baselines (propulsion.baselines: Adapterˢ, parallel, MAM, ProPETL), saved in their own format."""

from __future__ import annotations

from pathlib import Path

from propulsion.adapt.registry import MethodEntry, Prepared, register_method
from propulsion.specs import MethodSpec, UserError


def baseline_config(spec: MethodSpec):
    from propulsion.baselines.config import BaselineConfig

    try:
        return BaselineConfig.from_dict({"method": spec.name, **spec.baseline})
    except ValueError as error:
        raise UserError(str(error)) from None


def validate(spec: MethodSpec) -> None:
    baseline_config(spec)


def apply(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    from propulsion.baselines import apply_baseline
    from propulsion.training.hooks import Hooks

    try:
        prepared, details = apply_baseline(model, baseline_config(spec), model_kind)
    except ValueError as error:  # an unsupported family or a shape that does not fit
        raise UserError(str(error)) from None
    return Prepared(prepared, Hooks(), details)


def made(model) -> bool:
    return hasattr(model, "baseline_config")  # also when PEFT carries MAM's prefix: asked before PEFT's entry


def save(model, directory: Path, *, metrics: dict | None, base_model_revision: str | None, write: bool,
         sharded: bool) -> None:
    from propulsion.baselines import save_baseline

    if sharded:
        raise UserError("saving this adapter from a sharded (FSDP) model is not supported; run with "
                        "save_adapter=false (the record and its metrics are unaffected)")
    if write:
        save_baseline(model, directory)


def load(base_model, directory: Path, spec: MethodSpec | None, model_kind: str):
    from propulsion.baselines import load_baseline

    return load_baseline(base_model, directory, model_kind)


ENTRY = register_method(MethodEntry(kind="baseline", validate=validate, apply=apply, save=save, load=load,
                                   made=made))
