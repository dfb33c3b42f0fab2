"""Where the adapters go, per architecture: the Linear modules that end attention, start and end the FFN.

Regexes over full module names, like ``propulsion.method.presets``. `attn_out` is the attention output projection
(a sequential adapter follows it, before dropout / residual / LayerNorm, as in Houlsby et al. and He et al.);
`ffn_in` and `ffn_out` are the FFN's first and last Linear (a parallel adapter reads the input of `ffn_in` and adds
to the output of `ffn_out`); `ffn_linears` are the Linears LLM-Adapters put a Parallel adapter beside.
"""

from __future__ import annotations

import re

from torch import nn

_BERT_LIKE = {
    "attn_out": r".*attention\.output\.dense",
    "ffn_in": r".*intermediate\.dense",
    "ffn_out": r".*layer\.\d+\.output\.dense",
}
_BART = {  # decoder cross-attention keeps no adapter (He et al. place theirs after self-attention)
    "attn_out": r".*self_attn\.out_proj",
    "ffn_in": r".*layers\.\d+\.fc1",
    "ffn_out": r".*layers\.\d+\.fc2",
}
_LLAMA = {  # gate_proj and up_proj read the same input; up_proj is the one tapped
    "attn_out": r".*self_attn\.o_proj",
    "ffn_in": r".*mlp\.up_proj",
    "ffn_out": r".*mlp\.down_proj",
    "ffn_linears": r".*mlp\.(up_proj|down_proj)",  # LLM-Adapters math_running_commands: ["up_proj", "down_proj"]
}
_BLOOM = {
    "attn_out": r".*self_attention\.dense",
    "ffn_in": r".*mlp\.dense_h_to_4h",
    "ffn_out": r".*mlp\.dense_4h_to_h",
    "ffn_linears": r".*mlp\.(dense_h_to_4h|dense_4h_to_h)",  # LLM-Adapters: ["dense_4h_to_h", "dense_h_to_4h"]
}
_GPTJ = {
    "attn_out": r".*attn\.out_proj",
    "ffn_in": r".*mlp\.fc_in",
    "ffn_out": r".*mlp\.fc_out",
    "ffn_linears": r".*mlp\.(fc_in|fc_out)",  # LLM-Adapters: ["fc_in", "fc_out"]
}
PLACES: dict[str, dict[str, str]] = {
    "roberta": _BERT_LIKE, "bert": _BERT_LIKE, "xlm-roberta": _BERT_LIKE, "deberta-v2": _BERT_LIKE,
    "bart": _BART, "mbart": _BART, "llama": _LLAMA, "mistral": _LLAMA, "bloom": _BLOOM, "gptj": _GPTJ,
}
# Model types we know and do not support, with the reason.
UNSUPPORTED = {
    "falcon": "Falcon adds the MLP output into the attention output in place (parallel block), so an adapter "
              "on its FFN output would change what the attention residual reads",
}


def model_type_of(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def places(model_type: str | None) -> dict[str, str]:
    if model_type in UNSUPPORTED:
        raise ValueError(f"the adapter baselines do not support model_type {model_type!r}: {UNSUPPORTED[model_type]}")
    table = PLACES.get(model_type or "")
    if table is None:
        raise ValueError(f"no adapter placement for model_type {model_type!r}; "
                         f"supported: {', '.join(sorted(PLACES))}")
    return table


def find(model: nn.Module, model_type: str | None, place: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Names of the Linear modules at ``place`` (error if the architecture has none there)."""
    table = places(model_type)
    if place not in table:
        raise ValueError(f"placement {place!r} is not defined for model_type {model_type!r} "
                         f"(defined: {', '.join(sorted(table))})")
    pattern = table[place]
    excluded = tuple(f"{prefix}." for prefix in exclude)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and re.fullmatch(pattern, name) and not name.startswith(excluded)]
    if not names:
        raise ValueError(f"placement {place!r} matched no Linear module of this {model_type} model")
    return names


def layer_key(name: str) -> str:
    """The transformer block a module belongs to: the name up to and including its layer index."""
    match = re.match(r"(.*?\.(?:layer|layers|h)\.\d+)\.", name)
    if match is None:
        raise ValueError(f"cannot tell which layer module {name!r} belongs to")
    return match.group(1)
