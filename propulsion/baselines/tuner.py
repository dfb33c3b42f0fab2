"""Injection of our baselines into a transformers model, their parameter accounting, and save / load.

``apply_baseline`` freezes the model, adds the method's modules at the architecture's places, and marks what
trains (adapters / prototypes / mask scores, the task head, LayerNorms where the method trains them). MAM and
ProPETL-prefix put their prefix on attention through PEFT's prefix tuning (its past-key-value plumbing for every
family), so they return a PeftModel; the others return the model they were given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from propulsion.baselines import presets, propetl
from propulsion.baselines.config import BaselineConfig
from propulsion.baselines.layers import AdapterLayer, Bottleneck, InputTap, Slot
from propulsion.method.presets import head_module_names, resolve_targets

WEIGHTS = "adapter_model.safetensors"
CONFIG = "baseline_config.json"
BITS = ".bits"  # suffix of a packed binary mask in the saved file
NO_PREFIX = ("deberta-v2",)  # attention without past key values: PEFT's prefix tuning cannot reach it
PEFT_TASK_TYPES = {"sequence-classification": "SEQ_CLS", "question-answering": "QUESTION_ANS",
                   "seq2seq": "SEQ_2_SEQ_LM", "causal-lm": "CAUSAL_LM"}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _device(layer: nn.Module):
    return layer.weight.device



def _sequential(model: nn.Module, model_type: str, config: BaselineConfig, heads: list[str]) -> list[str]:
    """Houlsby: an adapter after the attention output and after the FFN output of every block."""
    wrapped = []
    for place, layer_norm in (("attn_out", config.attn_layer_norm), ("ffn_out", False)):
        for name in presets.find(model, model_type, place, exclude=tuple(heads)):
            layer = model.get_submodule(name)
            adapter = Bottleneck(layer.out_features, layer.out_features, config, _device(layer), layer_norm)
            _replace(model, name, AdapterLayer(layer, adapter, "sequential"))
            wrapped.append(name)
    return wrapped


def _parallel(model: nn.Module, model_type: str, config: BaselineConfig, heads: list[str]) -> list[str]:
    """He et al.: one scaled adapter beside each FFN block (reads the input of its first Linear, adds to the
    output of its last). LLM-Adapters (placement ffn_linears): one beside each FFN Linear, in -> out width."""
    wrapped = []
    if config.placement == "ffn_linears":
        for name in presets.find(model, model_type, "ffn_linears", exclude=tuple(heads)):
            layer = model.get_submodule(name)
            adapter = Bottleneck(layer.in_features, layer.out_features, config, _device(layer))
            _replace(model, name, AdapterLayer(layer, adapter, "parallel"))
            wrapped.append(name)
        return wrapped
    inputs = {presets.layer_key(n): n for n in presets.find(model, model_type, "ffn_in", exclude=tuple(heads))}
    for name in presets.find(model, model_type, "ffn_out", exclude=tuple(heads)):
        key = presets.layer_key(name)
        if key not in inputs:
            raise ValueError(f"no FFN input layer found in {key!r} for the parallel adapter on {name!r}")
        slot = Slot()
        tap = InputTap(model.get_submodule(inputs[key]), slot)
        _replace(model, inputs[key], tap)
        layer = model.get_submodule(name)
        adapter = Bottleneck(tap.in_features, layer.out_features, config, _device(layer))
        _replace(model, name, AdapterLayer(layer, adapter, "parallel", source=slot))
        wrapped.append(name)
    return wrapped


def _prototypes(model: nn.Module) -> nn.ModuleDict:
    if not hasattr(model, propetl.PROTOTYPES):
        setattr(model, propetl.PROTOTYPES, nn.ModuleDict())
    return getattr(model, propetl.PROTOTYPES)


def _propetl_adapter(model: nn.Module, model_type: str, config: BaselineConfig, heads: list[str]) -> list[str]:
    """One bottleneck prototype after every FFN output (the authors' Pfeiffer placement), masked per layer."""
    names = presets.find(model, model_type, "ffn_out", exclude=tuple(heads))
    first = model.get_submodule(names[0])
    prototype = Bottleneck(first.out_features, first.out_features, config, _device(first))
    _prototypes(model)["adapter"] = prototype
    for name in names:
        layer = model.get_submodule(name)
        if layer.out_features != first.out_features:
            raise ValueError(f"ProPETL shares one prototype across layers, but {name!r} has width "
                             f"{layer.out_features} and {names[0]!r} {first.out_features}")
        _replace(model, name, propetl.MaskedAdapterLayer(layer, prototype, config.density))
    return names


def _propetl_lora(model: nn.Module, config: BaselineConfig, heads: list[str]) -> list[str]:
    """One LoRA prototype per target kind (query, value), shared by all layers, masked per layer."""
    wrapped = []
    for target in config.lora_targets:
        try:
            names = resolve_targets(model, target, exclude_prefixes=heads)
        except ValueError as error:
            raise ValueError(f"propetl_lora lora_targets: {error}") from None
        first = model.get_submodule(names[0])
        if not isinstance(first, nn.Linear):
            raise ValueError(f"ProPETL LoRA wraps nn.Linear, but {names[0]!r} is a {type(first).__name__}")
        prototype = propetl.LoraPrototype(first.in_features, first.out_features, config.rank, _device(first))
        _prototypes(model)[target] = prototype
        for name in names:
            layer = model.get_submodule(name)
            if (layer.in_features, layer.out_features) != (first.in_features, first.out_features):
                raise ValueError(f"ProPETL shares one {target} prototype across layers, but {name!r} is "
                                 f"{layer.in_features}->{layer.out_features}, {names[0]!r} "
                                 f"{first.in_features}->{first.out_features}")
            layer_scaling = config.alpha / config.rank
            _replace(model, name, propetl.MaskedLoraLayer(layer, prototype, config.density, layer_scaling))
            wrapped.append(name)
    return wrapped


def _with_prefix(model: nn.Module, config: BaselineConfig, model_kind: str, heads: list[str]) -> nn.Module:
    """PEFT's prefix tuning (reparameterised: embedding -> Linear -> tanh -> Linear) on every attention layer;
    for ProPETL its encoder is replaced by the shared, per-layer masked one."""
    import peft

    if model_kind not in PEFT_TASK_TYPES:
        raise ValueError(f"prefix methods need a PEFT task type; model kind {model_kind!r} has none")
    # PEFT freezes the base model: our adapters are marked trainable again after (the head is PEFT's to copy).
    excluded = tuple(f"{h}." for h in heads)
    trained = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(excluded)]
    prefix = peft.PrefixTuningConfig(
        task_type=PEFT_TASK_TYPES[model_kind], num_virtual_tokens=config.prefix_length, prefix_projection=True,
        encoder_hidden_size=config.prefix_hidden, modules_to_save=list(heads) or None)
    wrapped = peft.get_peft_model(model, prefix)
    if config.method == "propetl_prefix":
        peft_config = wrapped.peft_config[wrapped.active_adapter]
        old = wrapped.prompt_encoder[wrapped.active_adapter]
        wrapped.prompt_encoder[wrapped.active_adapter] = propetl.MaskedPrefixEncoder(
            tokens=old.embedding.num_embeddings, token_dim=peft_config.token_dim, hidden=config.prefix_hidden,
            layers=peft_config.num_layers, per_layer=2 * peft_config.token_dim, density=config.density,
            device=old.embedding.weight.device)
    for name in trained:
        model.get_parameter(name).requires_grad_(True)
    return wrapped


def _is_layer_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def apply_baseline(model: nn.Module, config: BaselineConfig, model_kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """Freeze ``model``, add the method, mark what trains; returns the model to train and what was resolved.
    The details split the trainable count: the method's own tensors, the head, the backbone's LayerNorms, and
    for ProPETL the prototype and the mask entries (stored as bits)."""
    model_type = presets.model_type_of(model)
    config = config.for_model_type(model_type)
    presets.places(model_type)  # an unsupported family fails here, before anything changes
    if config.method in ("mam", "propetl_prefix") and model_type in NO_PREFIX:
        raise ValueError(f"{config.method} puts a prefix on attention (past key values), which {model_type} does "
                         f"not take; on it use adapter_s, parallel, propetl_adapter or propetl_lora")
    if hasattr(model, "baseline_config"):
        raise ValueError("this model already holds a baseline; apply it to a fresh base model")
    heads = head_module_names(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    builders = {
        "adapter_s": lambda: _sequential(model, model_type, config, heads),
        "parallel": lambda: _parallel(model, model_type, config, heads),
        "mam": lambda: _parallel(model, model_type, config, heads),
        "propetl_adapter": lambda: _propetl_adapter(model, model_type, config, heads),
        "propetl_lora": lambda: _propetl_lora(model, config, heads),
        "propetl_prefix": lambda: [],
    }
    wrapped = builders[config.method]()
    for module in model.modules():  # what was just added (ours) trains
        if isinstance(module, (Bottleneck, propetl.LoraPrototype)):
            module.requires_grad_(True)
        elif isinstance(module, (propetl.MaskedAdapterLayer, propetl.MaskedLoraLayer)):
            for parameter in module.parameters(recurse=False):  # the mask scores, not the frozen base layer
                parameter.requires_grad_(True)
    norms = 0
    if config.layer_norms:  # Houlsby et al. train the backbone's LayerNorms
        excluded = tuple(f"{h}." for h in heads)
        for name, module in model.named_modules():
            if _is_layer_norm(module) and not name.startswith(excluded) and ".adapter" not in name:
                for parameter in module.parameters():
                    parameter.requires_grad_(True)
                    norms += parameter.numel()
    if config.head == "full":
        for head in heads:
            for parameter in model.get_submodule(head).parameters():
                parameter.requires_grad_(True)
    result = model
    if config.method in ("mam", "propetl_prefix"):
        result = _with_prefix(model, config, model_kind, heads if config.head == "full" else [])
    result.baseline_config = config
    details = {"wrapped_modules": len(wrapped), "head_modules": heads, "baseline": config.to_dict(),
               **accounting(result, heads, norms)}
    return result, details


def accounting(model: nn.Module, heads: list[str], layer_norms: int = 0) -> dict[str, int]:
    """The trainable count split by kind; ProPETL's paper source counts mask scores as trainable floats, the
    stored adapter holds them as bits: ``stored_equivalent`` counts 32 mask bits as one float32."""
    masks = {id(p) for p in propetl.mask_parameters(model).values()}
    head_ids = set()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad and set(name.split(".")) & set(heads):
            head_ids.add(id(parameter))
    trainable = [p for p in model.parameters() if p.requires_grad]
    mask_entries = sum(p.numel() for p in trainable if id(p) in masks)
    head = sum(p.numel() for p in trainable if id(p) in head_ids)
    total = sum(p.numel() for p in trainable)
    method = total - mask_entries - head - layer_norms
    details = {"method_parameters": method + mask_entries, "head_parameters": head,
               "layer_norm_parameters": layer_norms}
    if masks:
        details.update(prototype_parameters=method, mask_entries=mask_entries,
                       stored_equivalent=method + head + layer_norms + (mask_entries + 31) // 32)
    return details


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a saved adapter holds: every trainable tensor by name, ProPETL mask scores as packed 0/1 bits."""
    config = model.baseline_config
    masks = propetl.mask_parameters(model)
    state: dict[str, torch.Tensor] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name in masks:
            with torch.no_grad():
                bits = propetl.binary_mask(parameter.detach().cpu(), config.density)
            state[name + BITS] = propetl.pack_bits(bits)
        else:
            state[name] = parameter.detach().to("cpu", copy=True).contiguous()
    return state


def save_baseline(model: nn.Module, directory: str | Path) -> list[str]:
    """``adapter_model.safetensors`` (trained tensors; masks as bits) and ``baseline_config.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    masks = propetl.mask_parameters(model)
    shapes = {name: list(p.shape) for name, p in masks.items() if p.requires_grad}
    save_file(trainable_tensors(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    payload = {"baseline_config": model.baseline_config.to_dict(), "mask_shapes": shapes,
               "base_model_type": presets.model_type_of(model)}
    (directory / CONFIG).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return [WEIGHTS, CONFIG]


def load_baseline(base_model: nn.Module, directory: str | Path, model_kind: str) -> nn.Module:
    """A fresh base model with the saved baseline applied and its tensors loaded: outputs equal the saved model's.
    A tensor with no place in the model, a shape that does not fit, a missing tensor, or a mask that is not
    binary or not at the config's density is one clear ValueError."""
    directory = Path(directory)
    for required in (CONFIG, WEIGHTS):
        if not (directory / required).exists():
            raise ValueError(f"{directory} holds no baseline adapter: {required} is missing")
    payload = json.loads((directory / CONFIG).read_text())
    config = BaselineConfig.from_dict(payload["baseline_config"])
    model, _ = apply_baseline(base_model, config, model_kind)
    load_tensors(model, load_file(str(directory / WEIGHTS)), payload.get("mask_shapes", {}))
    return model


def load_tensors(model: nn.Module, state: dict[str, torch.Tensor], mask_shapes: dict[str, list[int]]) -> None:
    config = model.baseline_config
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    masks = propetl.mask_parameters(model)
    values: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[: -len(BITS)] if key.endswith(BITS) else key
        if name not in params:
            raise ValueError(f"adapter tensor {key!r} has no place in this model (another method or architecture?)")
        shape = tuple(params[name].shape)
        if key.endswith(BITS):
            saved = tuple(mask_shapes.get(name, ()))
            if saved != shape:
                raise ValueError(f"mask {name!r} was saved with shape {saved} but the model's is {shape}: "
                                 f"the adapter was trained on a different model size")
            value = propetl.unpack_bits(value, shape)
        if tuple(value.shape) != shape:
            raise ValueError(f"adapter tensor {name!r} has shape {tuple(value.shape)} but the model's is {shape}: "
                             f"the adapter was trained on a different model size")
        if name in masks:  # the mask itself (0/1 floats) reproduces the mask exactly as scores
            value = propetl.scores_from_mask(name, value, config.density)
        values[name] = value
    missing = sorted(set(params) - set(values))
    if missing:
        raise ValueError(f"the adapter lacks {len(missing)} tensor(s) this model trains, e.g. {missing[0]!r}")
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
