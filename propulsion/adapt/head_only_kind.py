"""Head only: the task head trains (BERT's pooler and classifier, RoBERTa's classifier; ``head_module_names``),
everything else stays frozen. The control for what a method adds beyond the head it trains (issue 25). A plain
model: its trainable tensors are saved by name (``trainable.safetensors``), as BitFit's are. docs/contributing.md
("Add a method") shows this very entry as its worked example."""

from __future__ import annotations

from propulsion.adapt.bitfit_full_kind import loader_after, save_trainable_tensors
from propulsion.adapt.registry import MethodEntry, Prepared, register_method
from propulsion.specs import MethodSpec


def apply_head_only(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    from propulsion.method import head_module_names
    from propulsion.training.hooks import Hooks

    heads = head_module_names(model)  # the task head's modules, per architecture (classifier, bert.pooler, ...)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(any(name.startswith(f"{head}.") for head in heads))
    return Prepared(model, Hooks(), {"head_modules": heads})


HEAD_ONLY = register_method(MethodEntry(kind="head_only", apply=apply_head_only, save=save_trainable_tensors,
                                        load=loader_after(apply_head_only)))
