"""Target presets: which modules `attn`, `mlp`, `embedding`, ... mean in a model.

`all` needs no table: every nn.Linear and nn.Embedding (and GPT-2's Conv1D). The others come from each module's
role, read from its name (roles.py), so any family with the common naming has them; a hand-written table entry
(regexes over full module names) only where a family's names do not say their role.
"""

from __future__ import annotations

import re

from torch import nn
from transformers.pytorch_utils import Conv1D

from propulsion.method import roles

# Hand-written presets, only for a family whose module names do not say their role (roles.py reads the rest):
# model_type -> preset -> regexes over full module names. None needed today; the matrix test
# (tests/method/test_families.py) shows which families the roles cover.
ARCHITECTURES: dict[str, dict[str, list[str]]] = {}
PRESET_ROLES = {
    "query": ("query",), "key": ("key",), "value": ("value",), "attn": ("query", "key", "value", "qkv"),
    "qkv": ("query", "key", "value", "qkv"), "mlp": ("ffn_up", "ffn_gate", "ffn_down", "ffn"),
    "ffn": ("ffn_up", "ffn_gate", "ffn_down", "ffn"), "embedding": ("embedding",),
}
# Conv1D is GPT-2's Linear with a transposed (in, out) weight; the layer scales and merges it per output column.
WRAPPABLE = (nn.Linear, nn.Embedding, Conv1D)
# Outputs the model modifies in place afterwards (Falcon: `mlp_output += attention_output`): the lean scaling
# cannot keep the scaled output for its backward there, so these layers use the plain V * s.
IN_PLACE_OUTPUTS = {"falcon": [r".*mlp\.dense_4h_to_h"],
                    # Llama 4 adds the routed experts' output into the shared expert's (`out.add_(...)`)
                    "llama4_text": [r".*feed_forward\.shared_expert\.down_proj"]}
# Modules whose weight is read directly (never called), so a wrapper's z would get no gradient: `all` skips
# them. DeBERTa reads rel_embeddings.weight for its relative positions; BART's `shared` is only the tied
# source of encoder/decoder embed_tokens, which are the modules actually called.
# Linear subclasses that return more than their output (Llama 4's router: scores and logits): not wrappable.
# A wrapped module that does this fails its first forward with a TypeError naming it (layer.py).
NOT_WRAPPED = {"llama4_text": [r".*feed_forward\.router"]}
NEVER_CALLED = {"deberta-v2": [r".*rel_embeddings"], "bart": [r"(model\.)?shared"], "mbart": [r"(model\.)?shared"],
                "t5": [r"(transformer\.)?shared"], "mt5": [r"(transformer\.)?shared"]}


def preset_names(modules: dict[str, nn.Module], model_type: str | None, preset: str) -> list[str]:
    """The names among ``modules`` (name -> Linear / Embedding) a preset selects: from the family's hand-written
    entry if it has one, else from each module's role (roles.py). `attn` and `qkv` are query + key + value, or
    the fused projection."""
    if preset not in PRESET_ROLES:
        raise ValueError(f"unknown preset {preset!r}; valid choices: all, {', '.join(PRESET_ROLES)}")
    table = ARCHITECTURES.get(model_type or "")
    if table is not None:
        patterns = table.get(preset) or table.get("qkv" if preset == "attn" else preset, [])
        return [n for n in modules if any(pattern_matches(p, n) for p in patterns)]
    found = {n: roles.role(n, isinstance(module, nn.Embedding)) for n, module in modules.items()}
    selected = [n for n, r in found.items() if r in PRESET_ROLES[preset]]
    if not selected and preset in roles.QUERY_KEY_VALUE:
        fused = sorted({n.rpartition(".")[2] for n, r in found.items() if r == "qkv"})
        if fused:
            raise ValueError(
                f"{model_type} computes query, key and value in one fused module ({', '.join(fused)}): "
                f"preset {preset!r} cannot select one of them; use targets='attn' or module-name patterns")
    if not selected and not any(r not in (None, "embedding") for r in found.values()):
        raise ValueError(
            f"no target presets for model_type {model_type!r} (no module is named as a query / key / value or "
            f"FFN projection); pass targets='all' or a list of module-name patterns")
    return selected


def modified_in_place(model: nn.Module, name: str, architecture: str | None = None) -> bool:
    model_type = architecture or getattr(getattr(model, "config", None), "model_type", None)
    return any(re.fullmatch(p, name) for p in IN_PLACE_OUTPUTS.get(model_type or "", []))


def pattern_matches(pattern: str, name: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or re.fullmatch(pattern, name) is not None


def wrappable_modules(model: nn.Module) -> dict[str, nn.Module]:
    # In a model already wrapped (PropulsionModel.add_adapter) a layer is named as its wrapper is.
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    excluded = NOT_WRAPPED.get(model_type or "", [])
    return {name.removesuffix(".base_layer"): module for name, module in model.named_modules()
            if isinstance(module, WRAPPABLE) and name and not any(re.fullmatch(p, name) for p in excluded)}


def head_module_names(model: nn.Module) -> list[str]:
    """The task head: the model's top-level children other than its backbone (``base_model_prefix``) and other
    than its output embeddings — a language model's lm_head is pretrained (often tied), not a new task head.
    Only children that hold parameters: BERT's and DeBERTa's top-level ``dropout`` is no head module. Plus a pooler
    the backbone holds for the head (BERT's ``bert.pooler``: dense + tanh over [CLS]), which is the head's first
    layer: RoBERTa's head holds the same layer itself (``classifier.dense``), DeBERTa's as its top-level
    ``pooler``. A checkpoint trained without it (sentence-transformers mean-pool) leaves it untrained for the task,
    so a method that trains "the head" must train it too."""
    prefix = getattr(model, "base_model_prefix", "")
    children = dict(model.named_children())
    if prefix not in children:  # a bare backbone (AutoModel) has no head
        return []
    output_embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    heads = [name for name, child in children.items()
             if name != prefix and child is not output_embeddings and any(True for _ in child.parameters())]
    pooler = getattr(children[prefix], "pooler", None)  # None where the head does not use one (QA, RoBERTa)
    if heads and isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        heads.append(f"{prefix}.pooler")
    return heads


def resolve_targets(model: nn.Module, targets, architecture: str | None = None,
                    exclude_prefixes: list[str] | None = None) -> list[str]:
    """Names of the Linear/Embedding modules a preset or pattern list selects (error if none match)."""
    candidates = wrappable_modules(model)
    excluded = tuple(f"{p}." for p in exclude_prefixes or [])
    names = [n for n in candidates if not (n.startswith(excluded) or n in (exclude_prefixes or []))]
    if isinstance(targets, str):
        model_type = architecture or getattr(getattr(model, "config", None), "model_type", None)
        dead = NEVER_CALLED.get(model_type or "", [])
        names = [n for n in names if not any(re.fullmatch(p, n) for p in dead)]
        if targets == "all":
            return names
        selected = preset_names({n: candidates[n] for n in names}, model_type, targets)
        if not selected:
            raise ValueError(f"preset {targets!r} matched no Linear/Embedding module of this {model_type} model "
                             f"(a mixture of experts may hold its experts as one fused parameter, not Linear "
                             f"modules); pass module-name patterns")
        return selected
    unmatched = [p for p in targets if not any(pattern_matches(p, n) for n in names)]
    if unmatched:
        heads = [n for n in candidates if n not in names and any(pattern_matches(p, n) for p in unmatched)]
        reason = (f" outside the head, which head='full' trains in full (it matched {heads})" if heads else
                  " of the model")
        raise ValueError(f"target pattern(s) {unmatched} match no Linear/Embedding module{reason}")
    return [n for n in names if any(pattern_matches(p, n) for p in targets)]
