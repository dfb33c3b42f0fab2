"""The Propulsion entry: the library (propulsion.method) injected into the model; saved in its adapter format."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from propulsion.adapt.registry import MethodEntry, Prepared, register_method
from propulsion.method.config import PropulsionConfig
from propulsion.specs import MethodSpec, UserError


def propulsion_config(spec: MethodSpec) -> PropulsionConfig:
    """The spec's Propulsion settings (declared once, as PropulsionConfig's fields) as the library's config."""
    try:
        return PropulsionConfig(**{setting.name: getattr(spec, setting.name) for setting in fields(PropulsionConfig)})
    except ValueError as error:
        raise UserError(str(error)) from None


def validate(spec: MethodSpec) -> None:
    propulsion_config(spec)


def apply(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    from propulsion.method import head_module_names, inject_propulsion
    from propulsion.training.hooks import Hooks

    heads = head_module_names(model)
    wrapped = inject_propulsion(model, propulsion_config(spec))
    return Prepared(model, Hooks(), {"wrapped_modules": len(wrapped), "head_modules": heads,
                                     "head_policy": spec.head})


def made(model) -> bool:
    from propulsion.method import PropulsionModel

    return isinstance(model, PropulsionModel) or isinstance(getattr(model, "propulsion_config", None),
                                                            PropulsionConfig)


def save(model, directory: Path, *, metrics: dict | None, base_model_revision: str | None, write: bool,
         sharded: bool) -> None:
    """Adapter weights + config + a model card with the run's metrics (``PropulsionModel.from_pretrained``)."""
    from propulsion.method import PropulsionModel, save_adapter

    if isinstance(model, PropulsionModel):  # the library's wrapper (a user's model): its own save_pretrained
        if sharded:
            raise UserError("saving this adapter from a sharded (FSDP) model is not supported; run with "
                            "save_adapter=false (the record and its metrics are unaffected)")
        if write:
            model.save_pretrained(directory, metrics=metrics)
        return
    save_adapter(model, model.propulsion_config, directory, metrics=metrics, base_model_revision=base_model_revision,
                 write=write)


def load(base_model, directory: Path, spec: MethodSpec | None = None, model_kind: str | None = None):
    from propulsion.method import PropulsionModel

    return PropulsionModel.from_pretrained(base_model, directory)


ENTRY = register_method(MethodEntry(kind="propulsion", validate=validate, apply=apply, save=save, load=load,
                                   made=made, checks_targets=True, takes_degree=True, saves_new_frozen=True))
