"""Propulsion as a library, laid out like a PEFT tuner: config, presets, layer, model. No Hydra, no tasks.

The names below are imported on first use, so ``propulsion.method.config`` (plain dataclasses) can be read
without torch: the suite's specs declare the Propulsion settings from ``PropulsionConfig``'s fields."""

from importlib import import_module

# public name -> the module that defines it
_WHERE = {
    "PropulsionConfig": "config",
    "PropulsionLayer": "layer",
    **dict.fromkeys(
        ("ParameterCount", "PropulsionModel", "count_parameters", "get_propulsion_model", "inject_propulsion",
         "load_propulsion_state", "load_trainable_state", "propulsion_layers", "save_adapter",
         "save_propulsion_state", "trainable_state"), "model"),
    "head_module_names": "presets",
    "resolve_targets": "presets",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
