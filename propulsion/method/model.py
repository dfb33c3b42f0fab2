"""Injection into a transformers model, the PropulsionModel wrapper, save/load and parameter counting."""

from __future__ import annotations

import contextlib
import inspect
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from propulsion.method import hub, sharding
from propulsion.method.config import PropulsionConfig
from propulsion.method.hub import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_CARD, TRAINER_WEIGHTS
from propulsion.method.layer import (
    BASE,
    DEFAULT_ADAPTER,
    PropulsionLayer,
    install_scale_checks,
    remove_scale_checks,
)
from propulsion.method.presets import head_module_names, modified_in_place, resolve_targets
from propulsion.method.wrapping import Wrapper

ADAPTER_NAME = re.compile(r"[A-Za-z0-9_\-]+")  # a ParameterDict key (no '.') and a folder name


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


def inject_propulsion(model: nn.Module, config: PropulsionConfig, adapter_name: str = DEFAULT_ADAPTER) -> list[str]:
    """Freeze ``model``, wrap the targeted layers in place, and mark what trains; returns the wrapped names."""
    if propulsion_layers(model):
        raise ValueError("this model already holds Propulsion layers; merge_and_unload() it first")
    heads = head_module_names(model)
    names = resolve_targets(model, config.targets, config.architecture,
                            exclude_prefixes=heads if config.head == "full" else None)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in names:
        layer = PropulsionLayer(model.get_submodule(name), config, adapter_name)
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
    """Only what trains (z vectors, plus head / biases when their policy trains them), as CPU copies. Sharded
    (FSDP2) tensors are gathered whole: every process must call it (:mod:`propulsion.method.sharding`)."""
    return {name: sharding.full(p.detach()).to("cpu", copy=True).contiguous() for name, p in model.named_parameters()
            if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Copy tensors into the model; a missing key or a shape mismatch is a clear ValueError. ``strict``: every
    tensor the model trains must be in ``state`` (else that z would silently keep its init)."""
    params = dict(model.named_parameters())
    required = [key for key, p in params.items() if p.requires_grad]
    _load_into(params, required, state, strict)


def _load_into(params: dict[str, torch.Tensor], required: list[str], state: dict[str, torch.Tensor],
               strict: bool) -> None:
    for key, value in sorted(state.items(), key=lambda item: not _is_vectors(item[0])):  # z named first
        if key not in params:
            raise ValueError(f"adapter tensor {key!r} (shape {tuple(value.shape)}) has no place in this model "
                             f"(architectures or targets differ?)")
        if tuple(params[key].shape) != tuple(value.shape):
            raise ValueError(f"adapter tensor {key!r} has shape {tuple(value.shape)} but the model's is "
                             f"{tuple(params[key].shape)}: the adapter was trained on a different model size")
    missing = [key for key in required if key not in state]
    if strict and missing:
        raise ValueError(f"the adapter lacks {len(missing)} tensor(s) this model trains, e.g. {missing[0]!r} "
                         f"(model shape {tuple(params[missing[0]].shape)}): saved with another config?")
    for key, value in state.items():
        sharding.copy_into(params[key], value)  # a sharded parameter takes this process's slice


def _is_vectors(name: str) -> bool:
    return name.endswith(".propulsion") or ".propulsion_extra." in name


def _adapter_tensors(model: nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """The named adapter's tensors under the names a one-adapter model gives them (``<layer>.propulsion``), so
    any adapter saves and loads like the first; plus what else trains (head / bias policies)."""
    tensors: dict[str, torch.Tensor] = {f"{name}.propulsion": layer.vectors(adapter_name)
                                        for name, layer in propulsion_layers(model).items()}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and not _is_vectors(name):
            tensors[name] = parameter
    return tensors


def new_frozen_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Frozen parameters a base checkpoint does not hold: the task head's (``head_module_names``: a classifier,
    a QA head, the pooler where the head uses it), initialised at random when the base is built. An adapter that
    leaves them frozen (head="propulsion") only reproduces its outputs with these exact values, so they are saved
    with it and loaded onto any freshly built base. Counted apart from the trainable parameters (the paper's #TPs)."""
    heads = tuple(f"{name}." for name in head_module_names(model))
    if not heads:
        return {}
    return {name: parameter for name, parameter in model.named_parameters()
            if name.startswith(heads) and not parameter.requires_grad and not _is_vectors(name)}


# Public names for checkpointing an injected plain model (the same functions).
save_propulsion_state = trainable_state
load_propulsion_state = load_trainable_state


def adapter_payload(model: nn.Module, config: PropulsionConfig, base_model_revision: str | None = None,
                    frozen: dict[str, torch.Tensor] | None = None) -> dict:
    """What ``propulsion_config.json`` holds: the config, and where the adapter belongs (base model id as
    transformers loaded it, the base's revision as given, architecture) and which library wrote it.
    transformers 5 keeps no commit on the config, so the revision is what the caller says (as PEFT's
    ``get_peft_model(..., revision=)``); older versions' ``config._commit_hash`` is used when nothing is given."""
    from propulsion.version import __version__

    base_config = getattr(model, "config", None)
    return {"propulsion_config": config.to_dict(),
            "base_model_type": getattr(base_config, "model_type", None),
            "base_model_name_or_path": getattr(base_config, "_name_or_path", None) or None,
            "base_model_revision": base_model_revision or getattr(base_config, "_commit_hash", None),
            # frozen tensors saved beside the trained ones (new_frozen_tensors): names and parameter count
            "frozen_saved": {"tensors": sorted(frozen or {}),
                             "parameters": sum(t.numel() for t in (frozen or {}).values())},
            "propulsion_version": __version__}


def save_adapter(model: nn.Module, config: PropulsionConfig, directory: str | Path, adapter_name: str | None = None,
                 metrics: dict | None = None, repo_id: str | None = None, base_model_revision: str | None = None,
                 write: bool = True) -> None:
    """The adapter's tensors (safetensors), its config and a model card (README.md) for a model with Propulsion
    injected: what ``PropulsionModel.save_pretrained`` writes and ``PropulsionModel.from_pretrained`` loads onto a
    fresh base. ``metrics`` (a run's results) go into the card. Sharded (FSDP2): every process calls it and gathers
    the tensors; ``write`` is true on the one process that writes the files."""
    directory = Path(directory)
    layers = propulsion_layers(model)
    if any(layer.merged for layer in layers.values()):
        raise ValueError("unmerge() before save_pretrained(): merged weights are not an adapter")
    if adapter_name is None:
        adapter_name = next(iter(layers.values())).first_adapter if layers else DEFAULT_ADAPTER
    state = {name: sharding.full(t.detach()).to("cpu", copy=True).contiguous()  # every process gathers (FSDP2)
             for name, t in _adapter_tensors(model, adapter_name).items()}
    frozen = {name: sharding.full(t.detach()).to("cpu", copy=True).contiguous()
              for name, t in new_frozen_tensors(model).items()}
    if not write:
        return
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state | frozen, str(directory / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    payload = adapter_payload(model, config, base_model_revision, frozen)
    (directory / ADAPTER_CONFIG).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    total = sum(p.numel() for name, p in model.named_parameters() if not _is_vectors(name))
    trainable = sum(t.numel() for t in state.values())
    card = hub.model_card(payload, trainable, total + trainable, len(layers), metrics, repo_id)
    (directory / MODEL_CARD).write_text(card)


EXTRA_STATE = "_extra_state"  # PropulsionModel.state_dict()'s entry holding the adapter's payload (JSON as bytes)


def read_adapter(folder: Path) -> tuple[PropulsionConfig, dict[str, torch.Tensor], dict]:
    """(config, tensors by parameter name, payload) of a saved adapter: ``save_pretrained``'s folder, or a
    ``Trainer.save_model()`` / checkpoint folder (``model.safetensors``: the config travels in its extra state)."""
    if not (folder / ADAPTER_CONFIG).exists() and (folder / TRAINER_WEIGHTS).exists():
        return _read_trainer_folder(folder)
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / required).exists():
            raise ValueError(f"{folder} holds no Propulsion adapter: {required} is missing")
    payload = json.loads((folder / ADAPTER_CONFIG).read_text())
    return PropulsionConfig.from_dict(payload["propulsion_config"]), load_file(str(folder / ADAPTER_WEIGHTS)), payload


def _read_trainer_folder(folder: Path) -> tuple[PropulsionConfig, dict[str, torch.Tensor], dict]:
    saved = load_file(str(folder / TRAINER_WEIGHTS))
    if EXTRA_STATE not in saved:
        raise ValueError(f"{folder} holds no Propulsion adapter: {TRAINER_WEIGHTS} has no {EXTRA_STATE} entry "
                         f"(saved by another model, or by propulsion before 0.x)")
    payload = _decode(saved.pop(EXTRA_STATE))
    first = f".{FIRST_VECTORS}"
    wanted = set(payload["frozen_saved"]["tensors"]) | set(payload["trainable_tensors"])
    state = {}
    for key, value in saved.items():  # base_model.<name>; the first adapter's z and what else trains or is new
        name = key.removeprefix("base_model.")
        if name in wanted or name.endswith(first):
            state[name] = value
    return PropulsionConfig.from_dict(payload["propulsion_config"]), state, payload


FIRST_VECTORS = "propulsion"  # the first adapter's z in each layer (PropulsionLayer.propulsion)


def _encode(payload: dict) -> torch.Tensor:
    return torch.tensor(list(json.dumps(payload, sort_keys=True).encode()), dtype=torch.uint8)


def _decode(tensor: torch.Tensor) -> dict:
    return json.loads(bytes(tensor.tolist()).decode())


class PropulsionModel(Wrapper):
    """A transformers model with Propulsion injected; forward, generate and attributes pass through.

    ``PropulsionModel(model, config)`` is an instance of a subclass made once per base class whose ``forward``
    carries the base model's signature: ``transformers.Trainer`` reads it (on the class) to keep the dataset's
    columns and find the label names. ``state_dict()`` holds the adapter (every adapter's z and whatever else
    trains), not the frozen base, so the Trainer's checkpoints are adapter-sized and its resume / best-model
    loading (``load_state_dict(..., strict=False)``) restore exactly that. ``base_model.state_dict()`` is the full
    model. Named adapters as PEFT's LoRA: add_adapter, set_adapter, delete_adapter, disable_adapter(), and mixed
    batches (``adapter_names=[...]``, one per example; ``"__base__"`` for the base model)."""

    WRAPPED = "base_model"  # attributes it lacks (config, generate, ...) are the base model's

    def __new__(cls, model: nn.Module | None = None, *args, **kwargs):
        if cls is PropulsionModel and isinstance(model, nn.Module):
            cls = _specialised(type(model))
        return super().__new__(cls)

    def __init__(self, model: nn.Module, config: PropulsionConfig, adapter_name: str = DEFAULT_ADAPTER,
                 revision: str | None = None):
        super().__init__()
        _check_adapter_name(adapter_name)
        self.base_model = model
        self.base_model_revision = revision  # the base model's hub revision, recorded in the saved adapter
        self.propulsion_configs: dict[str, PropulsionConfig] = {adapter_name: config}
        self.wrapped_modules = inject_propulsion(model, config, adapter_name)
        self._active_adapter: str | None = adapter_name
        self._tied_before_merge: list[list[str]] | None = None  # set by merge(), read by unmerge()

    # -- passthrough -------------------------------------------------------------------------------------
    def forward(self, *args, adapter_names: list[str] | None = None, **kwargs):
        if adapter_names is None:
            return self.base_model(*args, **kwargs)
        with self._mixed_batch(adapter_names, args, kwargs):
            return self.base_model(*args, **kwargs)

    def generate(self, *args, adapter_names: list[str] | None = None, **kwargs):
        if adapter_names is None:
            return self.base_model.generate(*args, **kwargs)
        with self._mixed_batch(adapter_names, args, kwargs):
            return self.base_model.generate(*args, **kwargs)

    def get_base_model(self) -> nn.Module:
        return self.base_model

    def __reduce_ex__(self, protocol):
        # An instance of a class made at run time pickles as "make that class again for this base class", so a
        # new process (which never made it) can unpickle it; deepcopy goes the same way.
        base_class = getattr(type(self), "_base_class", None)
        if base_class is None:
            return super().__reduce_ex__(protocol)
        return _blank_instance, (base_class,), self.__dict__.copy()

    # -- state: the adapter, not the frozen base --------------------------------------------------------
    def _adapter_keys(self) -> list[str]:
        return [name for name, p in self.named_parameters(remove_duplicate=False)
                if p.requires_grad or _is_vectors(name)]

    def _new_frozen_keys(self) -> list[str]:
        return [f"base_model.{name}" for name in new_frozen_tensors(self.base_model)]

    def get_extra_state(self) -> torch.Tensor:
        """The first adapter's payload (config, base model, the saved frozen tensors' names) as JSON bytes in a
        uint8 tensor: ``state_dict()`` carries it, so the folder ``transformers.Trainer.save_model()`` (or a
        checkpoint) writes is an adapter ``PropulsionModel.from_pretrained(base, folder)`` loads."""
        first = next(iter(self.propulsion_configs))
        payload = adapter_payload(self.base_model, self.propulsion_configs[first], self.base_model_revision,
                                  new_frozen_tensors(self.base_model))
        payload["trainable_tensors"] = sorted(name for name, p in self.base_model.named_parameters()
                                              if p.requires_grad and not _is_vectors(name))
        return _encode(payload)

    def set_extra_state(self, state) -> None:
        """Loading a state reads the tensors; the payload only describes them (read by read_adapter)."""

    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False):
        """The adapter: every adapter's z and what else trains, the frozen tensors the base checkpoint does not
        hold (new_frozen_tensors), and the payload (``_extra_state``)."""
        full = super().state_dict(prefix=prefix, keep_vars=keep_vars)
        keep = {prefix + name for name in [*self._adapter_keys(), *self._new_frozen_keys(), EXTRA_STATE]}
        destination = OrderedDict() if destination is None else destination
        for key, value in full.items():
            if key in keep:
                destination[key] = value
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """An adapter state (what ``state_dict()`` gives; the new frozen tensors and the payload optional, as in
        states saved before they were) or a full one (keys of ``base_model.*`` and adapter)."""
        keys = set(self._adapter_keys())
        optional = {*self._new_frozen_keys(), EXTRA_STATE}
        if not set(state_dict) <= keys | optional:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        missing = sorted(keys - set(state_dict))
        if strict and missing:
            raise RuntimeError(f"the adapter state lacks {len(missing)} tensor(s), e.g. {missing[0]!r}")
        super().load_state_dict(state_dict, strict=False, assign=assign)
        return nn.modules.module._IncompatibleKeys(missing, [])

    # -- named adapters ---------------------------------------------------------------------------------
    @property
    def propulsion_config(self) -> PropulsionConfig:
        """The active adapter's config (the first adapter's inside disable_adapter())."""
        return self.propulsion_configs[self._active_adapter or next(iter(self.propulsion_configs))]

    @property
    def active_adapter(self) -> str | None:
        return self._active_adapter

    @property
    def active_adapters(self) -> list[str]:
        return [self._active_adapter] if self._active_adapter else []

    def _layers(self) -> dict[str, PropulsionLayer]:
        return propulsion_layers(self.base_model)

    def _require(self, name: str) -> None:
        if name not in self.propulsion_configs:
            raise ValueError(f"unknown adapter {name!r}; this model's adapters: {', '.join(self.propulsion_configs)}")

    def _require_unmerged(self, action: str) -> None:
        if any(layer.merged for layer in self._layers().values()):
            raise ValueError(f"cannot {action} while an adapter is merged; unmerge() first")

    def add_adapter(self, adapter_name: str, config: PropulsionConfig) -> None:
        """New z vectors on the same wrapped layers (initialised by ``config``), not active until set_adapter.
        Adapters share the base model, so none may train base weights (head='full' or bias='all')."""
        _check_adapter_name(adapter_name)
        if adapter_name in self.propulsion_configs:
            raise ValueError(f"adapter {adapter_name!r} exists already; delete_adapter() it first")
        self._require_unmerged("add an adapter")
        for name, existing in [(adapter_name, config), *self.propulsion_configs.items()]:
            if existing.head == "full" or existing.bias == "all":
                raise ValueError(f"adapter {name!r} trains base weights (head={existing.head!r}, "
                                 f"bias={existing.bias!r}); named adapters share the base model, so each must "
                                 f"use head='propulsion' and bias='none'")
        architecture = config.architecture
        wrapped = resolve_targets(self.base_model, config.targets, architecture)
        if sorted(wrapped) != sorted(self.wrapped_modules):
            extra = sorted(set(wrapped) - set(self.wrapped_modules))[:3]
            lacking = sorted(set(self.wrapped_modules) - set(wrapped))[:3]
            raise ValueError(f"adapter {adapter_name!r} targets other modules than the model's adapters "
                             f"(new: {extra}, not targeted: {lacking}); named adapters share one set of layers")
        for layer in self._layers().values():
            layer.add_adapter(adapter_name, config)
        self.propulsion_configs[adapter_name] = config

    def set_adapter(self, adapter_name: str) -> None:
        """Make ``adapter_name`` the one forward uses and the only one that trains."""
        self._require(adapter_name)
        self._require_unmerged("switch adapters")
        for layer in self._layers().values():
            layer.active_adapter = adapter_name
            for name in layer.settings:
                layer.vectors(name).requires_grad_(name == adapter_name)
        self._active_adapter = adapter_name

    def delete_adapter(self, adapter_name: str) -> None:
        self._require(adapter_name)
        first = next(iter(self.propulsion_configs))
        if adapter_name == first:
            raise ValueError(f"adapter {adapter_name!r} is the model's first (its vectors are the layers' own "
                             f"'propulsion'); it cannot be deleted, only the ones added after it")
        if adapter_name == self._active_adapter:
            raise ValueError(f"adapter {adapter_name!r} is active; set_adapter() another one before deleting it")
        for layer in self._layers().values():
            layer.delete_adapter(adapter_name)
        del self.propulsion_configs[adapter_name]

    @contextlib.contextmanager
    def disable_adapter(self):
        """Inside the block the model is the base model (every Propulsion layer passes its input through)."""
        self._require_unmerged("disable the adapter")
        layers = self._layers().values()
        before = self._active_adapter
        for layer in layers:
            layer.active_adapter = None
        self._active_adapter = None
        try:
            yield
        finally:
            for layer in layers:
                layer.active_adapter = before
            self._active_adapter = before

    @contextlib.contextmanager
    def _mixed_batch(self, adapter_names, args, kwargs):
        if isinstance(adapter_names, str) or not all(isinstance(n, str) for n in adapter_names):
            raise ValueError(f"adapter_names must be a list of adapter names, one per example, got {adapter_names!r}")
        unknown = sorted({n for n in adapter_names if n != BASE and n not in self.propulsion_configs})
        if unknown:
            raise ValueError(f"unknown adapter(s) {unknown} in adapter_names; this model's adapters: "
                             f"{', '.join(self.propulsion_configs)} (and {BASE!r} for the base model)")
        self._require_unmerged("run a mixed batch")
        if self.training and torch.is_grad_enabled() and any(
                getattr(m, "gradient_checkpointing", False) is True for m in self.base_model.modules()):
            # the backward's recomputation runs after this forward, when the layers no longer know the batch's
            # adapters: it would recompute with the active adapter alone
            raise ValueError("mixed batches (adapter_names) cannot train with gradient checkpointing; disable it "
                             "or train one adapter at a time (set_adapter)")
        first = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(first, torch.Tensor) and first.shape[0] != len(adapter_names):
            raise ValueError(f"adapter_names has {len(adapter_names)} entries for a batch of {first.shape[0]}")
        layers = self._layers().values()
        for layer in layers:
            layer.batch_adapters = list(adapter_names)
        try:
            yield
        finally:
            for layer in layers:
                layer.batch_adapters = None

    # -- counting, merging ------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        counted = count_parameters(self)
        return counted.trainable, counted.total

    def print_trainable_parameters(self) -> None:
        counted = count_parameters(self)
        print(f"trainable params: {counted.trainable:,} || all params: {counted.total:,} "
              f"|| trainable%: {counted.percent:.4f}")

    def add_weighted_adapter(self, adapters: list[str], weights: list[float], adapter_name: str) -> None:
        """A new adapter whose per-layer scale is Σ wᵢ·sᵢ, sᵢ = adapter i's scale (zᵢᵏ for one vector, pooled for
        several). z^k cannot hold a negative sum at even k, nor any sum exactly after a k-th root, so the new
        adapter is stored with degree 1 and one vector: its z *is* the sum, and its outputs equal Σ wᵢ·zᵢᵏ bit for
        bit (the sum taken in float32, in the order given). set_adapter() to use it."""
        if isinstance(adapters, str) or not adapters or len(adapters) != len(weights):
            raise ValueError(f"adapters and weights must be lists of one length, got {adapters!r} and {weights!r}")
        for name in adapters:
            self._require(name)
        if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights):
            raise ValueError(f"weights must be numbers, got {weights!r}")
        first = self.propulsion_configs[adapters[0]]
        self.add_adapter(adapter_name, PropulsionConfig(degree=1, targets=first.targets, num_vectors=1,
                                                        pooling="mean", init="ones",
                                                        architecture=first.architecture))
        with torch.no_grad():
            for layer in self._layers().values():
                total = sum(float(w) * layer.scale(name) for w, name in zip(weights, adapters, strict=True))
                layer.vectors(adapter_name).copy_(total.view(1, -1))

    def merge_adapter(self) -> None:
        """PEFT's name for merge()."""
        self.merge()

    def unmerge_adapter(self) -> None:
        """PEFT's name for unmerge()."""
        self.unmerge()

    def unload(self) -> nn.Module:
        """The base model back, without any adapter: every wrapper replaced by its base layer, unmerged first
        (PEFT's unload()). Weights a policy trained in full (head="full", bias="all") keep their trained values."""
        self.unmerge()
        for name, layer in self._layers().items():
            _replace(self.base_model, name, layer.base_layer)
        if hasattr(self.base_model, "propulsion_config"):
            del self.base_model.propulsion_config
        remove_scale_checks(self.base_model)
        return self.base_model

    def merge(self) -> None:
        """Fold every scale into its base weights. Merging makes new weight tensors, so weights tied to each
        other (lm_head and the input embeddings) stop being one tensor; unmerge() ties them again."""
        if self._tied_before_merge is None:
            self._tied_before_merge = _tied_groups(self.base_model)
        for layer in self._layers().values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in self._layers().values():
            layer.unmerge()
        if self._tied_before_merge is not None:
            _retie(self.base_model, self._tied_before_merge)  # the members are equal again up to rounding
            self._tied_before_merge = None

    def merge_and_unload(self) -> nn.Module:
        """The plain model with the active adapter merged: every wrapper replaced by its base layer. Where a merge
        gave tied weights different values, ``config.tie_word_embeddings`` is set to False so transformers keeps
        them apart."""
        groups = self._tied_before_merge if self._tied_before_merge is not None else _tied_groups(self.base_model)
        for name, layer in self._layers().items():
            layer.merge()
            _replace(self.base_model, name, layer.base_layer)
        if hasattr(self.base_model, "propulsion_config"):
            del self.base_model.propulsion_config
        remove_scale_checks(self.base_model)  # a plain model: nothing of ours runs in its forward
        _untie_config_where_split(self.base_model, [[n.replace(".base_layer.", ".") for n in g] for g in groups])
        self._tied_before_merge = None
        return self.base_model

    # -- saving, loading, the hub -----------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, selected_adapters: list[str] | None = None,
                        metrics: dict | None = None, push_to_hub: bool = False, repo_id: str | None = None,
                        **hub_kwargs) -> None:
        """Each adapter as config + safetensors + model card: 'default' in ``directory``, any other in
        ``directory/<name>`` (PEFT's layout). ``push_to_hub``: then upload ``directory`` to ``repo_id``
        (default: the folder's name) with :func:`propulsion.method.hub.upload` (``hub_kwargs``: private, token,
        revision, commit_message, create_pr, api)."""
        names = list(self.propulsion_configs) if selected_adapters is None else list(selected_adapters)
        for name in names:
            self._require(name)
        if push_to_hub:
            repo_id = repo_id or Path(directory).name
        for name in names:
            folder = Path(directory) if name == DEFAULT_ADAPTER else Path(directory) / name
            save_adapter(self.base_model, self.propulsion_configs[name], folder, name, metrics, repo_id,
                         self.base_model_revision)
        if push_to_hub:
            return hub.upload(directory, repo_id, **hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, metrics: dict | None = None, selected_adapters: list[str] | None = None,
                    **hub_kwargs):
        """Save to a temporary folder and upload it to ``repo_id`` as one commit (huggingface_hub's HfApi);
        returns its CommitInfo."""
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            return self.save_pretrained(folder, selected_adapters, metrics, push_to_hub=True, repo_id=repo_id,
                                        **hub_kwargs)

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, source: str | Path, adapter_name: str = DEFAULT_ADAPTER,
                        revision: str | None = None, subfolder: str | None = None,
                        token: str | bool | None = None, cache_dir: str | Path | None = None) -> PropulsionModel:
        """A saved adapter (a folder, or hub repo ``org/name`` at ``revision``) on ``base_model``."""
        folder = hub.resolve(source, revision, subfolder, token, cache_dir)
        config, state, _ = read_adapter(folder)
        model = cls(base_model, config, adapter_name)
        load_trainable_state(model.base_model, state)
        return model

    def load_adapter(self, source: str | Path, adapter_name: str, revision: str | None = None,
                     subfolder: str | None = None, token: str | bool | None = None,
                     cache_dir: str | Path | None = None) -> None:
        """Add a saved adapter (folder or hub repo) under ``adapter_name``; set_adapter() to use it."""
        folder = hub.resolve(source, revision, subfolder, token, cache_dir)
        config, state, payload = read_adapter(folder)
        frozen = {name: state.pop(name) for name in (payload.get("frozen_saved") or {}).get("tensors", [])
                  if name in state}
        own = new_frozen_tensors(self.base_model)
        differing = [name for name, value in frozen.items()
                     if name in own and not torch.equal(own[name].detach().cpu(), value)]
        if differing:  # named adapters share one base: one head
            raise ValueError(f"adapter {adapter_name!r} was saved with another frozen head ({differing[0]!r} differs "
                             f"from this model's); named adapters share the base model's head, so load it onto "
                             f"its own base with PropulsionModel.from_pretrained")
        self.add_adapter(adapter_name, config)
        params = _adapter_tensors(self.base_model, adapter_name)
        try:
            _load_into(params, [key for key in params if _is_vectors(key)], state, strict=True)
        except ValueError:
            self.delete_adapter(adapter_name)
            raise


def _check_adapter_name(name: str) -> None:
    if not isinstance(name, str) or not ADAPTER_NAME.fullmatch(name) or name == BASE:
        raise ValueError(f"adapter name {name!r} must be letters, digits, '_' or '-' (and not {BASE!r})")


_SPECIALISED: dict[type, type] = {}


def _specialised(base_class: type) -> type:
    """``PropulsionModel`` with ``forward`` showing the base class's signature (made once per base class and
    registered in this module under its name, so instances pickle). Calls still go to PropulsionModel.forward."""
    specialised = _SPECIALISED.get(base_class)
    if specialised is not None:
        return specialised
    try:
        signature = inspect.signature(base_class.forward)  # (self, input_ids, ..., labels, ...)
    except (TypeError, ValueError):  # no introspectable forward: the generic class
        return PropulsionModel

    def forward(self, *args, **kwargs):
        return PropulsionModel.forward(self, *args, **kwargs)

    forward.__signature__ = signature
    forward.__doc__ = PropulsionModel.forward.__doc__
    name = f"Propulsion{base_class.__name__}"
    while name in globals():  # two base classes of one name from different modules
        name += "_"
    specialised = type(name, (PropulsionModel,), {"forward": forward, "__module__": __name__, "__qualname__": name,
                                                  "_base_class": base_class})
    forward.__qualname__ = f"{name}.forward"
    globals()[name] = specialised
    _SPECIALISED[base_class] = specialised
    return specialised


def _blank_instance(base_class: type) -> PropulsionModel:
    """An uninitialised instance of the specialised class for ``base_class`` (unpickling fills its __dict__)."""
    return nn.Module.__new__(_specialised(base_class))


def get_propulsion_model(model: nn.Module, config: PropulsionConfig, adapter_name: str = DEFAULT_ADAPTER,
                         revision: str | None = None) -> PropulsionModel:
    """``revision``: the base model's hub revision (branch, tag or commit), recorded when the adapter is saved."""
    return PropulsionModel(model, config, adapter_name, revision)
