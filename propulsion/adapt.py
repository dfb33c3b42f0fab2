"""Turn a method spec into a trainable model: Propulsion, the PEFT baselines, BitFit, full fine-tuning.

Every method goes through :func:`apply_method`, and parameter counting lives here too, so each
record's counts come from the same code for every method.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from propulsion.method import PropulsionConfig, count_parameters, head_module_names, inject_propulsion
from propulsion.method.presets import resolve_targets
from propulsion.specs import MethodSpec, UserError
from propulsion.training.hooks import Hooks

# Model kind (models.AUTO_CLASSES) -> PEFT task type.
PEFT_TASK_TYPES = {
    "sequence-classification": "SEQ_CLS",
    "question-answering": "QUESTION_ANS",
    "seq2seq": "SEQ_2_SEQ_LM",
    "causal-lm": "CAUSAL_LM",
}
PEFT_CONFIGS = {
    "LORA": "LoraConfig",
    "ADALORA": "AdaLoraConfig",
    "IA3": "IA3Config",
    "PREFIX_TUNING": "PrefixTuningConfig",
    "PROMPT_TUNING": "PromptTuningConfig",
    "LOKR": "LoKrConfig",
    "LOHA": "LoHaConfig",
}
LOGICAL_TARGETS = ("query", "key", "value", "qkv", "attn", "mlp", "ffn", "embedding")


@dataclass
class Prepared:
    model: torch.nn.Module
    hooks: Hooks
    details: dict[str, Any]  # what was resolved (target modules, AdaLoRA schedule, ...): into the record


def propulsion_config(spec: MethodSpec) -> PropulsionConfig:
    try:
        return PropulsionConfig(
            degree=spec.degree, targets=spec.targets, head=spec.head, bias=spec.bias,
            num_vectors=spec.num_vectors, pooling=spec.pooling, init=spec.init, init_scale=spec.init_scale,
        )
    except ValueError as error:
        raise UserError(str(error)) from None


def baseline_config(spec: MethodSpec):
    from propulsion.baselines import BaselineConfig

    try:
        return BaselineConfig.from_dict({"method": spec.name, **spec.baseline})
    except ValueError as error:
        raise UserError(str(error)) from None


def validate(spec: MethodSpec) -> None:
    """Catch a bad method config before anything is loaded or written."""
    if spec.kind == "propulsion":
        propulsion_config(spec)
    elif spec.kind == "baseline":
        baseline_config(spec)
    elif spec.kind == "peft" and spec.peft_type not in PEFT_CONFIGS:
        raise UserError(f"unknown method.peft_type {spec.peft_type!r}; valid choices: {', '.join(PEFT_CONFIGS)}")


def apply_method(model: torch.nn.Module, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    """Freeze what the method freezes and attach what it trains. ``total_steps`` is AdaLoRA's schedule."""
    if spec.kind == "propulsion":
        heads = head_module_names(model)
        wrapped = inject_propulsion(model, propulsion_config(spec))
        return Prepared(model, Hooks(), {"wrapped_modules": len(wrapped), "head_modules": heads,
                                         "head_policy": spec.head})
    if spec.kind == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return Prepared(model, Hooks(), {})
    if spec.kind == "bitfit":
        return _bitfit(model, spec)
    if spec.kind == "baseline":  # ours: Adapterˢ, parallel, MAM, ProPETL (propulsion.baselines)
        from propulsion.baselines import apply_baseline

        try:
            prepared, details = apply_baseline(model, baseline_config(spec), model_kind)
        except ValueError as error:  # an unsupported family or a shape that does not fit
            raise UserError(str(error)) from None
        return Prepared(prepared, Hooks(), details)
    return _peft(model, spec, model_kind, total_steps)


def _bitfit(model: torch.nn.Module, spec: MethodSpec) -> Prepared:
    heads = head_module_names(model) if spec.head == "full" else []
    for name, parameter in model.named_parameters():
        in_head = any(name.startswith(f"{head}.") for head in heads)
        parameter.requires_grad_(name.endswith("bias") or in_head)
    return Prepared(model, Hooks(), {"head_modules": heads})


def _resolve(model: torch.nn.Module, targets: Any) -> list[str] | None:
    """Logical names (query, value, ...) become the architecture's module names; patterns pass through. A mapping
    model_type -> targets (a baseline as its source ran it on each architecture) picks this model's entry."""
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
                if _peft_knows(model):  # e.g. `query` on GPT-2's fused c_attn: PEFT's own default targets
                    return None
                raise UserError(str(error)) from None
        else:
            names.append(target)
    return list(dict.fromkeys(names))


def _peft_knows(model: torch.nn.Module) -> bool:
    """Whether PEFT has default LoRA targets for this model's type (None from _resolve then lets PEFT choose)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return model_type in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING


def check_targets(model_config, spec: MethodSpec, model_kind: str) -> None:
    """Refuse target patterns that match no module of the model, before anything is loaded or written: the
    model is built on the meta device from its config (no weights, no memory)."""
    from propulsion.backbones import auto_class

    if spec.kind not in ("propulsion", "peft") or spec.targets in (None, "all"):
        return
    try:
        with torch.device("meta"):
            model = auto_class(model_kind).from_config(model_config)
    except ValueError as error:  # transformers: this architecture has no head of that kind (BERT for seq2seq)
        raise UserError(f"model type {model_config.model_type!r} cannot be built as a {model_kind} model: "
                        f"{str(error).splitlines()[0]}") from None
    resolved = _resolve(model, spec.targets)
    # Logical names were resolved against the model already; what is left to check is the patterns.
    modules = {name for name, _ in model.named_modules()}
    patterns = [name for name in resolved or [] if name not in modules]
    if patterns:
        try:
            resolve_targets(model, patterns)
        except ValueError as error:
            raise UserError(f"method.targets: {error}") from None


def _peft(model: torch.nn.Module, spec: MethodSpec, model_kind: str, total_steps: int | None) -> Prepared:
    import peft

    kwargs = dict(spec.peft_config)
    targets = _resolve(model, spec.targets if spec.targets != "all" else None)
    if targets:
        kwargs["target_modules"] = targets
    heads = head_module_names(model) if spec.head == "full" else []
    details: dict[str, Any] = {"target_modules": targets, "head_modules": heads}
    if spec.peft_type == "ADALORA":
        if not total_steps:
            raise ValueError("AdaLoRA needs the total number of training steps")
        tinit, tfinal = int(spec.tinit_ratio * total_steps), int(spec.tfinal_ratio * total_steps)
        if total_steps <= tinit + tfinal:
            raise UserError(f"AdaLoRA needs total_step > tinit + tfinal, got {total_steps} <= {tinit} + {tfinal}")
        kwargs.update(total_step=total_steps, tinit=tinit, tfinal=tfinal)
        details.update(total_step=total_steps, tinit=tinit, tfinal=tfinal)
    config_class = getattr(peft, PEFT_CONFIGS[spec.peft_type])
    # PEFT appends to the list it is given: hand it a copy so the record's list stays as resolved.
    config = config_class(task_type=PEFT_TASK_TYPES[model_kind], modules_to_save=list(heads) or None, **kwargs)
    peft_model = peft.get_peft_model(model, config)
    hooks = Hooks()
    if spec.peft_type == "ADALORA":
        # AdaLoRA reallocates ranks from the gradients of each step; the loop calls this before zero_grad.
        hooks = _adalora_hooks(peft_model.base_model)
    return Prepared(peft_model, hooks, details)


ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")


def _adalora_hooks(tuner) -> Hooks:
    """update_and_allocate each step, and for checkpoints the rank allocator's importance averages and, after
    the final budget step, the rank pattern every later step masks with (PEFT keeps both outside the weights;
    a resume without the pattern crashed, one without the averages allocated differently)."""
    allocator = tuner.rankallocator
    config = tuner.peft_config[tuner.trainable_adapter_name]

    def pattern() -> dict[str, list[bool]]:  # PEFT keeps lists of bools (tensors in some versions)
        return {name: [bool(v) for v in (mask.tolist() if torch.is_tensor(mask) else mask)]
                for name, mask in sorted((config.rank_pattern or {}).items())}

    def state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"{kind}/{name}": value.detach().cpu().contiguous()
                   for kind in ALLOCATOR_STATE for name, value in getattr(allocator, kind).items()}
        return tensors, {"rank_pattern": pattern() or None}

    def load_state(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
        device = next(tuner.parameters()).device
        allocator.reset_ipt()
        for key, value in tensors.items():
            kind, name = key.split("/", 1)
            getattr(allocator, kind)[name] = value.to(device)
        config.rank_pattern = data.get("rank_pattern")

    def summary() -> dict[str, Any]:
        """The ranks AdaLoRA kept per module (None before its final budget step)."""
        ranks = {name: sum(mask) for name, mask in pattern().items()}
        if not ranks:
            return {"final_ranks": None}
        return {"final_ranks": ranks, "final_rank_total": sum(ranks.values())}

    return Hooks(after_optimizer_step=tuner.update_and_allocate, state=state, load_state=load_state,
                 summary=summary)


def save_trained(model: torch.nn.Module, directory: Path, metrics: dict | None = None,
                 base_model_revision: str | None = None, write: bool = True) -> list[str]:
    """The trained parameters in the method's own format, as safetensors; returns the files written.
    Propulsion: adapter weights + config + model card with the run's ``metrics``
    (``PropulsionModel.from_pretrained(base, directory)``); PEFT:
    ``save_pretrained`` (``PeftModel.from_pretrained``); BitFit and full fine-tuning: the trainable tensors by
    parameter name, ``trainable.safetensors`` (full fine-tuning's is the whole model). Sharded (FSDP2): every
    process calls it, the tensors are gathered whole, and only the process with ``write`` writes files."""
    from peft import PeftModel
    from safetensors.torch import save_file

    from propulsion import records
    from propulsion.method import PropulsionModel, save_adapter, sharding, trainable_state

    sharded = sharding.model_is_sharded(model)
    if write:
        directory.mkdir(parents=True, exist_ok=True)
    injected = getattr(model, "propulsion_config", None)
    if sharded and (hasattr(model, "baseline_config") or isinstance(model, PropulsionModel)):
        raise UserError("saving this adapter from a sharded (FSDP) model is not supported; run with "
                        "save_adapter=false (the record and its metrics are unaffected)")
    if hasattr(model, "baseline_config"):  # ours (also when PEFT carries MAM's prefix): baselines.load_baseline
        from propulsion.baselines import save_baseline

        if write:
            save_baseline(model, directory)
    elif isinstance(model, PropulsionModel):
        if write:
            model.save_pretrained(directory, metrics=metrics)
    elif isinstance(injected, PropulsionConfig):
        save_adapter(model, injected, directory, metrics=metrics, base_model_revision=base_model_revision, write=write)
    elif isinstance(model, PeftModel):
        # PEFT reads model.state_dict(), which holds shards under FSDP: hand it the gathered tensors.
        state = trainable_state(model) if sharded else None
        if write:
            _save_peft(model, directory, state)
    else:
        state = trainable_state(model)  # every process: a collective when sharded
        if write:
            save_file(state, str(directory / "trainable.safetensors"), metadata={"format": "pt"})
    if not write:
        return []
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    for path in files:
        records.make_readable(path)
    return [str(path.relative_to(directory)) for path in files]


def _save_peft(model, directory: Path, state: dict[str, torch.Tensor] | None) -> None:
    # AdaLoRA's save_pretrained cuts its matrices down to the final budget's rank pattern; the reported model (the
    # best dev checkpoint) may come from before that step. Without a pattern the masked full-rank weights are
    # saved: exactly the reported model.
    config = model.peft_config.get(model.active_adapter)
    pattern = getattr(config, "rank_pattern", None)
    if pattern:
        config.rank_pattern = None
    try:
        model.save_pretrained(str(directory), state_dict=state)
    finally:
        if pattern:
            config.rank_pattern = pattern


def count(model: torch.nn.Module) -> dict[str, Any]:
    counted = count_parameters(model)
    return {"trainable": counted.trainable, "total": counted.total, "percent": counted.percent}


def count_parameters_on_meta(model_config, spec: MethodSpec, model_kind: str) -> dict[str, Any]:
    """Counts for a full-size model built on the meta device from its config: no download, no memory."""
    from propulsion.backbones import auto_class

    with torch.device("meta"):
        model = auto_class(model_kind).from_config(model_config)
        prepared = apply_method(model, spec, model_kind, total_steps=1000)
    return count(prepared.model)
