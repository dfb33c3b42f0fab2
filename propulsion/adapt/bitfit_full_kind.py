"""BitFit (biases, and the head if asked) and full fine-tuning: plain models whose trainable tensors are saved by
parameter name in ``trainable.safetensors`` (full fine-tuning's is the whole model)."""

from __future__ import annotations

from pathlib import Path

from propulsion.adapt.registry import MethodEntry, Prepared, register_method
from propulsion.specs import MethodSpec

TENSORS = "trainable.safetensors"


def apply_bitfit(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    from propulsion.method import head_module_names
    from propulsion.training.hooks import Hooks

    heads = head_module_names(model) if spec.head == "full" else []
    for name, parameter in model.named_parameters():
        in_head = any(name.startswith(f"{head}.") for head in heads)
        parameter.requires_grad_(name.endswith("bias") or in_head)
    return Prepared(model, Hooks(), {"head_modules": heads})


def apply_full(model, spec: MethodSpec, model_kind: str, total_steps: int | None = None) -> Prepared:
    from propulsion.training.hooks import Hooks

    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return Prepared(model, Hooks(), {})


def save_trainable_tensors(model, directory: Path, *, metrics: dict | None, base_model_revision: str | None,
                           write: bool, sharded: bool) -> None:
    from safetensors.torch import save_file

    from propulsion.method import trainable_state

    state = trainable_state(model)  # every process: a collective when sharded
    if write:
        save_file(state, str(directory / TENSORS), metadata={"format": "pt"})


def loader_after(apply):
    """A load for a kind that leaves a plain model: ``apply`` on the fresh base, then the tensors by name."""

    def load(base_model, directory: Path, spec: MethodSpec, model_kind: str):
        """The method applied to a fresh base (what trains), then the saved tensors put in by name."""
        from safetensors.torch import load_file

        model = apply(base_model, spec, model_kind).model
        state = load_file(str(Path(directory) / TENSORS))
        missing, unexpected = model.load_state_dict(state, strict=False)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        lacking = sorted(trainable - set(state))
        if unexpected or lacking:
            raise ValueError(f"{directory / TENSORS} does not fit this model: "
                             f"{(unexpected or lacking)[0]!r} is {'unexpected' if unexpected else 'missing'}")
        return model

    return load


BITFIT = register_method(MethodEntry(kind="bitfit", apply=apply_bitfit, save=save_trainable_tensors,
                                    load=loader_after(apply_bitfit)))
FULL = register_method(MethodEntry(kind="full", apply=apply_full, save=save_trainable_tensors,
                                  load=loader_after(apply_full),
                                  trains_whole_model=True))
