"""Propulsion as a library, laid out like a PEFT tuner: config, presets, layer, model. No Hydra, no tasks."""

from propulsion.method.config import PropulsionConfig
from propulsion.method.layer import PropulsionLayer
from propulsion.method.model import (
    ParameterCount,
    PropulsionModel,
    count_parameters,
    get_propulsion_model,
    inject_propulsion,
    load_propulsion_state,
    load_trainable_state,
    propulsion_layers,
    save_adapter,
    save_propulsion_state,
    trainable_state,
)
from propulsion.method.presets import head_module_names, resolve_targets

__all__ = [
    "ParameterCount", "PropulsionConfig", "PropulsionLayer", "PropulsionModel", "count_parameters",
    "get_propulsion_model", "head_module_names", "inject_propulsion", "load_propulsion_state", "load_trainable_state",
    "propulsion_layers", "resolve_targets", "save_adapter", "save_propulsion_state", "trainable_state",
]
