"""The PEFT tuners, used as the library ships them (LoRA, AdaLoRA, IA3, prefix, prompt, LoKr, LoHa by
``method.peft_type``): a new PEFT tuner of this list is one YAML file in conf/method/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from propulsion.adapt import targets as target_modules
from propulsion.adapt.registry import MethodEntry, Prepared, register_method
from propulsion.specs import MethodSpec, UserError

# Model kind (backbones.AUTO_CLASSES) -> PEFT task type.
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
ALLOCATOR_STATE = ("ipt", "exp_avg_ipt", "exp_avg_unc")


def validate(spec: MethodSpec) -> None:
    if spec.peft_type not in PEFT_CONFIGS:
        raise UserError(f"unknown method.peft_type {spec.peft_type!r}; valid choices: {', '.join(PEFT_CONFIGS)}")


def apply(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    import peft

    from propulsion.method import head_module_names
    from propulsion.training.hooks import Hooks

    kwargs = dict(spec.peft_config)
    # None: PEFT chooses (its default targets for this architecture; the record says target_modules: null)
    targets = target_modules.resolve(model, spec.targets if spec.targets != "all" else None, peft_default=True)
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
        hooks = adalora_hooks(peft_model.base_model)
    return Prepared(peft_model, hooks, details)


def adalora_hooks(tuner):
    """update_and_allocate each step, and for checkpoints the rank allocator's importance averages and, after
    the final budget step, the rank pattern every later step masks with (PEFT keeps both outside the weights;
    a resume without the pattern crashed, one without the averages allocated differently)."""
    import torch

    from propulsion.training.hooks import Hooks

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


def made(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel) and not hasattr(model, "baseline_config")  # MAM: a baseline holding PEFT


def save(model, directory: Path, *, metrics: dict | None, base_model_revision: str | None, write: bool,
         sharded: bool) -> None:
    """PEFT's ``save_pretrained`` (``PeftModel.from_pretrained`` loads it)."""
    from propulsion.method import trainable_state

    # PEFT reads model.state_dict(), which holds shards under FSDP: hand it the gathered tensors.
    state = trainable_state(model) if sharded else None
    if not write:
        return
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


def load(base_model, directory: Path, spec: MethodSpec | None = None, model_kind: str | None = None):
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(directory))


ENTRY = register_method(MethodEntry(kind="peft", validate=validate, apply=apply, save=save, load=load, made=made,
                                   checks_targets=True, peft_default_targets=True))
