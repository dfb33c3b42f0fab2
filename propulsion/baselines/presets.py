"""Where the adapters go: the Linear modules that end attention, start and end the FFN, read from module roles.

`attn_out` is the attention output projection (a sequential adapter follows it, before dropout / residual /
LayerNorm, as in Houlsby et al. and He et al.); `ffn_in` and `ffn_out` are the FFN's first and last Linear (a
parallel adapter reads the input of `ffn_in` and adds to the output of `ffn_out`); `ffn_linears` are the Linears
LLM-Adapters put a Parallel adapter beside. Each comes from the module's role (``propulsion.method.roles``), so
every family with the common naming has them: BERT's attention.output.dense / intermediate.dense /
output.dense, BART's self_attn.out_proj / fc1 / fc2, LLaMA's o_proj / up_proj / down_proj (gate_proj reads the
same input as up_proj: up_proj is the one tapped; LLM-Adapters' math_running_commands: ["up_proj", "down_proj"]),
BLOOM's dense_h_to_4h / dense_4h_to_h, GPT-J's fc_in / fc_out.
"""

from __future__ import annotations

import re

from torch import nn

from propulsion.method import roles

# place -> the roles it takes; decoder cross-attention keeps no adapter (He et al. place theirs after
# self-attention).
PLACE_ROLES = {"attn_out": ("attn_out",), "ffn_in": ("ffn_up",), "ffn_out": ("ffn_down",),
               "ffn_linears": ("ffn_up", "ffn_down")}
# Model types we know and do not support, with the reason.
UNSUPPORTED = {
    "falcon": "Falcon adds the MLP output into the attention output in place (parallel block), so an adapter "
              "on its FFN output would change what the attention residual reads",
    "mixtral": "Mixtral holds its experts as one fused 3-D parameter, not nn.Linear modules: there is no FFN Linear "
               "to put an adapter at",
    "gpt2": "GPT-2 computes its projections with Conv1D, not nn.Linear, which the adapters wrap",
    "gpt_bigcode": "GPT-BigCode computes its projections with Conv1D, not nn.Linear, which the adapters wrap",
}


def model_type_of(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def places(model_type: str | None) -> dict[str, tuple[str, ...]]:
    if model_type in UNSUPPORTED:
        raise ValueError(f"the adapter baselines do not support model_type {model_type!r}: {UNSUPPORTED[model_type]}")
    return PLACE_ROLES


def find(model: nn.Module, model_type: str | None, place: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Names of the Linear modules at ``place`` (error if the architecture has none there)."""
    table = places(model_type)
    if place not in table:
        raise ValueError(f"placement {place!r} is not defined for model_type {model_type!r} "
                         f"(defined: {', '.join(sorted(table))})")
    excluded = tuple(f"{prefix}." for prefix in exclude)
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and roles.role(name) in table[place] and not name.startswith(excluded)
             and not roles.is_cross_attention(name)]
    if not names:
        raise ValueError(f"placement {place!r} matched no Linear module of this {model_type} model (the adapter "
                         f"baselines wrap nn.Linear modules named as attention output / FFN projections)")
    return names


def layer_key(name: str) -> str:
    """The transformer block a module belongs to: the name up to and including its layer index."""
    match = re.match(r"(.*?\.(?:layer|layers|h|block|blocks|albert_layers)\.\d+)\.", name)
    if match is None:
        raise ValueError(f"cannot tell which layer module {name!r} belongs to")
    return match.group(1)
