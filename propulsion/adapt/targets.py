"""Target modules: logical names (query, value, ...) resolved per architecture, and a check on the meta device
that the patterns a method names match a module, before anything is loaded."""

from __future__ import annotations

from typing import Any

from propulsion.specs import MethodSpec, UserError

LOGICAL_TARGETS = ("query", "key", "value", "qkv", "attn", "mlp", "ffn", "embedding")


def resolve(model, targets: Any, peft_default: bool = False) -> list[str] | None:
    """Logical names (query, value, ...) become the architecture's module names; patterns pass through. A mapping
    model_type -> targets (a baseline as its source ran it on each architecture) picks this model's entry.
    ``peft_default``: a logical name our presets cannot place gives None (PEFT's own default targets) where PEFT
    has defaults for this architecture, instead of an error."""
    from propulsion.method.presets import resolve_targets

    if targets is None:
        return None
    if isinstance(targets, dict):
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in targets:
            raise UserError(f"method.targets names modules for {', '.join(targets)} only, not for this "
                            f"{model_type} model; pass method.targets=[module-name patterns]")
        targets = targets[model_type]
    names: list[str] = []
    for target in [targets] if isinstance(targets, str) else list(targets):
        if target in LOGICAL_TARGETS:
            try:
                names.extend(resolve_targets(model, target))
            except ValueError as error:
                if peft_default and peft_knows(model):  # e.g. `query` on GPT-2's fused c_attn
                    return None
                raise UserError(str(error)) from None
        else:
            names.append(target)
    return list(dict.fromkeys(names))


def peft_knows(model) -> bool:
    """Whether PEFT has default LoRA targets for this model's type."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING


def meta_model(model_config, model_kind: str):
    """The model built from its config on the meta device: no weights, no memory."""
    import torch

    from propulsion.backbones import auto_class

    try:
        with torch.device("meta"):
            return auto_class(model_kind).from_config(model_config)
    except ValueError as error:  # transformers: this architecture has no head of that kind (BERT for seq2seq)
        raise UserError(f"model type {model_config.model_type!r} cannot be built as a {model_kind} model: "
                        f"{str(error).splitlines()[0]}") from None


def check(model_config, spec: MethodSpec, model_kind: str, peft_default: bool = False) -> None:
    """Refuse target patterns that match no module of the model (built on the meta device)."""
    from propulsion.method.presets import resolve_targets

    if spec.targets in (None, "all"):
        return
    model = meta_model(model_config, model_kind)
    resolved = resolve(model, spec.targets, peft_default)
    # Logical names were resolved against the model already; what is left to check is the patterns.
    modules = {name for name, _ in model.named_modules()}
    patterns = [name for name in resolved or [] if name not in modules]
    if patterns:
        try:
            resolve_targets(model, patterns)
        except ValueError as error:
            raise UserError(f"method.targets: {error}") from None
