"""Injection into a transformers model, the PropulsionModel wrapper, save/load and parameter counting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from propulsion.method.config import PropulsionConfig
from propulsion.method.layer import PropulsionLayer, install_scale_checks, remove_scale_checks
from propulsion.method.presets import head_module_names, modified_in_place, resolve_targets

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "propulsion_config.json"


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable and total parameters; a tensor shared by two modules counts once (works on meta too)."""
    trainable = total = 0
    for parameter in model.parameters():  # parameters() yields each shared tensor once
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return ParameterCount(trainable, total)


def propulsion_layers(model: nn.Module) -> dict[str, PropulsionLayer]:
    return {name: module for name, module in model.named_modules() if isinstance(module, PropulsionLayer)}


def _tied_groups(model: nn.Module) -> list[list[str]]:
    """Full names of parameters that are one tensor under several names (tied weights, e.g. lm_head and the
    input embeddings), each group listed in module order."""
    groups: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _retie(model: nn.Module, groups: list[list[str]]) -> None:
    """Make each group one tensor again: every member takes the first member's parameter."""
    for first, *others in groups:
        parameter = model.get_parameter(first)
        for name in others:
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, parameter)


def _untie_config_where_split(model: nn.Module, groups: list[list[str]]) -> None:
    """transformers re-ties input and output embeddings from ``config.tie_word_embeddings`` (tie_weights(),
    resize_token_embeddings(), loading a checkpoint): once a merge gave the members of a tied group different
    values, the config must say they are untied, or the next tie_weights() silently undoes the merge."""
    parameters = dict(model.named_parameters(remove_duplicate=False))
    split = [names for names in groups if len({id(parameters.get(n)) for n in names}) > 1]
    if not split:
        return
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "tie_word_embeddings", False):
            config.tie_word_embeddings = False


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def inject_propulsion(model: nn.Module, config: PropulsionConfig) -> list[str]:
    """Freeze ``model``, wrap the targeted layers in place, and mark what trains; returns the wrapped names."""
    if propulsion_layers(model):
        raise ValueError("this model already holds Propulsion layers; merge_and_unload() it first")
    heads = head_module_names(model)
    names = resolve_targets(model, config.targets, config.architecture,
                            exclude_prefixes=heads if config.head == "full" else None)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in names:
        layer = PropulsionLayer(model.get_submodule(name), config)
        layer.lean = not modified_in_place(model, name, config.architecture)
        _replace(model, name, layer)
    if config.head in ("full", "both"):  # "both" keeps the head's z as well (wrapped above)
        for head in heads:
            for parameter in model.get_submodule(head).parameters():
                parameter.requires_grad_(True)
    if config.bias == "all":
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith("bias"):
                parameter.requires_grad_(True)
    elif config.bias == "linear":  # normalisation layers' biases stay frozen
        for module in model.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.requires_grad_(True)
    model.propulsion_config = config  # read back by save_pretrained
    install_scale_checks(model)
    return names


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what trains (z vectors, plus head / biases when their policy trains them), as CPU copies."""
    return {name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.named_parameters()
            if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Copy tensors into the model; a missing key or a shape mismatch is a clear ValueError. ``strict``: every
    tensor the model trains must be in ``state`` (else that z would silently keep its init)."""
    params = dict(model.named_parameters())
    for key, value in state.items():
        if key not in params:
            raise ValueError(f"adapter tensor {key!r} (shape {tuple(value.shape)}) has no place in this model "
                             f"(architectures or targets differ?)")
        if tuple(params[key].shape) != tuple(value.shape):
            raise ValueError(f"adapter tensor {key!r} has shape {tuple(value.shape)} but the model's is "
                             f"{tuple(params[key].shape)}: the adapter was trained on a different model size")
    missing = [key for key, p in params.items() if p.requires_grad and key not in state]
    if strict and missing:
        raise ValueError(f"the adapter lacks {len(missing)} tensor(s) this model trains, e.g. {missing[0]!r} "
                         f"(model shape {tuple(params[missing[0]].shape)}): saved with another config?")
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value.to(params[key].device, params[key].dtype))


# Public names for checkpointing an injected plain model (the same functions).
save_propulsion_state = trainable_state
load_propulsion_state = load_trainable_state


def save_adapter(model: nn.Module, config: PropulsionConfig, directory: str | Path) -> None:
    """The trainable tensors (safetensors) and the config of a model with Propulsion injected: what
    ``PropulsionModel.save_pretrained`` writes and ``PropulsionModel.from_pretrained`` loads onto a fresh base."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if any(layer.merged for layer in propulsion_layers(model).values()):
        raise ValueError("unmerge() before save_pretrained(): merged weights are not an adapter")
    save_file(trainable_state(model), str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    payload = {"propulsion_config": config.to_dict(),
               "base_model_type": getattr(getattr(model, "config", None), "model_type", None)}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


class PropulsionModel(nn.Module):
    """A transformers model with Propulsion injected; forward, generate and attributes pass through."""

    def __init__(self, model: nn.Module, config: PropulsionConfig):
        super().__init__()
        self.base_model = model
        self.propulsion_config = config
        self.wrapped_modules = inject_propulsion(model, config)
        self._tied_before_merge: list[list[str]] | None = None  # set by merge(), read by unmerge()

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.base_model.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        counted = count_parameters(self)
        return counted.trainable, counted.total

    def print_trainable_parameters(self) -> None:
        counted = count_parameters(self)
        print(f"trainable params: {counted.trainable:,} || all params: {counted.total:,} "
              f"|| trainable%: {counted.percent:.4f}")

    def merge(self) -> None:
        """Fold every scale into its base weights. Merging makes new weight tensors, so weights tied to each
        other (lm_head and the input embeddings) stop being one tensor; unmerge() ties them again."""
        if self._tied_before_merge is None:
            self._tied_before_merge = _tied_groups(self.base_model)
        for layer in propulsion_layers(self.base_model).values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in propulsion_layers(self.base_model).values():
            layer.unmerge()
        if self._tied_before_merge is not None:
            _retie(self.base_model, self._tied_before_merge)  # the members are equal again up to rounding
            self._tied_before_merge = None

    def merge_and_unload(self) -> nn.Module:
        """The plain model: every wrapper merged and replaced by its base layer. Where a merge gave tied weights
        different values, ``config.tie_word_embeddings`` is set to False so transformers keeps them apart."""
        groups = self._tied_before_merge if self._tied_before_merge is not None else _tied_groups(self.base_model)
        for name, layer in propulsion_layers(self.base_model).items():
            layer.merge()
            _replace(self.base_model, name, layer.base_layer)
        if hasattr(self.base_model, "propulsion_config"):
            del self.base_model.propulsion_config
        remove_scale_checks(self.base_model)  # a plain model: nothing of ours runs in its forward
        _untie_config_where_split(self.base_model, [[n.replace(".base_layer.", ".") for n in g] for g in groups])
        self._tied_before_merge = None
        return self.base_model

    def save_pretrained(self, directory: str | Path) -> None:
        save_adapter(self.base_model, self.propulsion_config, directory)

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, directory: str | Path) -> PropulsionModel:
        directory = Path(directory)
        for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (directory / required).exists():
                raise ValueError(f"{directory} holds no Propulsion adapter: {required} is missing")
        payload = json.loads((directory / ADAPTER_CONFIG).read_text())
        model = cls(base_model, PropulsionConfig.from_dict(payload["propulsion_config"]))
        load_trainable_state(model.base_model, load_file(str(directory / ADAPTER_WEIGHTS)))
        return model


def get_propulsion_model(model: nn.Module, config: PropulsionConfig) -> PropulsionModel:
    return PropulsionModel(model, config)
