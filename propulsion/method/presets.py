"""Target presets per architecture: which modules `attn`, `mlp`, `embedding`, ... mean for a model type.

`all` needs no table: every nn.Linear and nn.Embedding (and GPT-2's Conv1D). The others are regexes over full
module names.
"""

from __future__ import annotations

import re

from torch import nn
from transformers.pytorch_utils import Conv1D

_BERT_LIKE = {
    "query": [r".*attention\.self\.query"],
    "key": [r".*attention\.self\.key"],
    "value": [r".*attention\.self\.value"],
    # The FFN's output.dense, not attention.output.dense.
    "mlp": [r".*intermediate\.dense", r".*layer\.\d+\.output\.dense"],
    "embedding": [r".*embeddings\.(word|position|token_type)_embeddings"],
}
_DEBERTA = {
    "query": [r".*attention\.self\.query_proj"],
    "key": [r".*attention\.self\.key_proj"],
    "value": [r".*attention\.self\.value_proj"],
    "mlp": _BERT_LIKE["mlp"],
    "embedding": [r".*embeddings\.word_embeddings"],
}
_BART = {
    "query": [r".*(self_attn|encoder_attn)\.q_proj"],
    "key": [r".*(self_attn|encoder_attn)\.k_proj"],
    "value": [r".*(self_attn|encoder_attn)\.v_proj"],
    "mlp": [r".*\.fc1", r".*\.fc2"],
    "embedding": [r".*embed_tokens", r".*embed_positions"],
}
_LLAMA = {
    "query": [r".*self_attn\.q_proj"],
    "key": [r".*self_attn\.k_proj"],
    "value": [r".*self_attn\.v_proj"],
    "mlp": [r".*mlp\.(gate_proj|up_proj|down_proj)"],
    "embedding": [r".*embed_tokens"],
}
_FUSED_QKV = {  # BLOOM and Falcon compute query, key and value in one Linear
    "qkv": [r".*query_key_value"],
    "mlp": [r".*dense_h_to_4h", r".*dense_4h_to_h"],
    "embedding": [r".*word_embeddings"],
}
_GPTJ = {
    "query": [r".*attn\.q_proj"],
    "key": [r".*attn\.k_proj"],
    "value": [r".*attn\.v_proj"],
    "mlp": [r".*mlp\.fc_in", r".*mlp\.fc_out"],
    "embedding": [r".*\.wte"],
}
_PHI = {
    "query": [r".*self_attn\.q_proj"],
    "key": [r".*self_attn\.k_proj"],
    "value": [r".*self_attn\.v_proj"],
    "mlp": [r".*mlp\.fc1", r".*mlp\.fc2"],
    "embedding": [r".*embed_tokens"],
}
ARCHITECTURES: dict[str, dict[str, list[str]]] = {
    "roberta": _BERT_LIKE, "bert": _BERT_LIKE, "xlm-roberta": _BERT_LIKE, "electra": _BERT_LIKE,
    "deberta-v2": _DEBERTA, "bart": _BART, "mbart": _BART, "llama": _LLAMA, "mistral": _LLAMA,
    "bloom": _FUSED_QKV, "falcon": _FUSED_QKV, "gptj": _GPTJ, "phi": _PHI,
}
# Conv1D is GPT-2's Linear with a transposed (in, out) weight; the layer scales and merges it per output column.
WRAPPABLE = (nn.Linear, nn.Embedding, Conv1D)
# Outputs the model modifies in place afterwards (Falcon: `mlp_output += attention_output`): the lean scaling
# cannot keep the scaled output for its backward there, so these layers use the plain V * s.
IN_PLACE_OUTPUTS = {"falcon": [r".*mlp\.dense_4h_to_h"]}
# Modules whose weight is read directly (never called), so a wrapper's z would get no gradient: `all` skips
# them. DeBERTa reads rel_embeddings.weight for its relative positions; BART's `shared` is only the tied
# source of encoder/decoder embed_tokens, which are the modules actually called.
NEVER_CALLED = {"deberta-v2": [r".*rel_embeddings"], "bart": [r"(model\.)?shared"], "mbart": [r"(model\.)?shared"]}


def preset_patterns(model_type: str | None, preset: str) -> list[str]:
    """Regexes for a preset on an architecture; `attn` and `qkv` are query + key + value."""
    table = ARCHITECTURES.get(model_type or "")
    if table is None:
        raise ValueError(
            f"no target presets for model_type {model_type!r} (known: {', '.join(sorted(ARCHITECTURES))}); "
            f"pass targets='all' or a list of module-name patterns"
        )
    if preset in ("attn", "qkv"):
        if "qkv" in table:
            return table["qkv"]
        return table["query"] + table["key"] + table["value"]
    if preset not in table:
        raise ValueError(
            f"{model_type} computes query, key and value in one fused module (query_key_value): "
            f"preset {preset!r} cannot select one of them; use targets='attn' or module-name patterns"
        )
    return table[preset]


def modified_in_place(model: nn.Module, name: str, architecture: str | None = None) -> bool:
    model_type = architecture or getattr(getattr(model, "config", None), "model_type", None)
    return any(re.fullmatch(p, name) for p in IN_PLACE_OUTPUTS.get(model_type or "", []))


def pattern_matches(pattern: str, name: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or re.fullmatch(pattern, name) is not None


def wrappable_modules(model: nn.Module) -> dict[str, nn.Module]:
    # In a model already wrapped (PropulsionModel.add_adapter) a layer is named as its wrapper is.
    return {name.removesuffix(".base_layer"): module for name, module in model.named_modules()
            if isinstance(module, WRAPPABLE) and name}


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
    if targets == "all":
        model_type = architecture or getattr(getattr(model, "config", None), "model_type", None)
        dead = NEVER_CALLED.get(model_type or "", [])
        return [n for n in names if not any(re.fullmatch(p, n) for p in dead)]
    if isinstance(targets, str):
        model_type = architecture or getattr(getattr(model, "config", None), "model_type", None)
        patterns = preset_patterns(model_type, targets)
        selected = [n for n in names if any(pattern_matches(p, n) for p in patterns)]
        if not selected:
            raise ValueError(f"preset {targets!r} matched no Linear/Embedding module of this {model_type} model")
        return selected
    unmatched = [p for p in targets if not any(pattern_matches(p, n) for n in names)]
    if unmatched:
        heads = [n for n in candidates if n not in names and any(pattern_matches(p, n) for p in unmatched)]
        reason = (f" outside the head, which head='full' trains in full (it matched {heads})" if heads else
                  " of the model")
        raise ValueError(f"target pattern(s) {unmatched} match no Linear/Embedding module{reason}")
    return [n for n in names if any(pattern_matches(p, n) for p in targets)]
