"""What a module does, read from its name: the presets of any family that follows the common naming.

A role comes from the module's own name (its leaf: ``q_proj``, ``fc1``, ``query_key_value``) read in its context
(the blocks above it: ``attention``, ``mlp``, ``DenseReluDense``). The context decides where a leaf alone is
ambiguous: ``dense`` ends BERT's attention in ``attention.output.dense`` and its FFN in ``layer.3.output.dense``;
RWKV's ``key`` is an attention projection under ``attention`` and an FFN layer under ``feed_forward``.

Roles: query, key, value, qkv (one fused projection), attn_out, attn_other (DeBERTa's position projections,
RWKV's receptance), ffn_up, ffn_gate, ffn_down, ffn (an FFN Linear of no named side), embedding.
"""

from __future__ import annotations

import re

QUERY = {"q_proj", "query", "q", "query_proj", "q_lin", "wq"}
KEY = {"k_proj", "key", "k", "key_proj", "k_lin", "wk"}
VALUE = {"v_proj", "value", "v", "value_proj", "v_lin", "wv"}
FUSED_QKV = {"query_key_value", "c_attn", "wqkv", "qkv_proj", "qkv", "in_proj"}
ATTN_OUT = {"o_proj", "out_proj", "dense", "o", "out_lin", "c_proj", "wo", "output"}
FFN_UP = {"up_proj", "fc1", "fc_in", "c_fc", "wi", "wi_1", "lin1", "dense_h_to_4h", "ffn", "w1", "key"}
FFN_GATE = {"gate_proj", "wi_0", "w3"}
FFN_DOWN = {"down_proj", "fc2", "fc_out", "c_proj", "wo", "lin2", "dense_4h_to_h", "ffn_output", "w2", "value"}
# Blocks that hold an FFN; BERT's is also `layer.<i>.output` (checked apart: `attention.output` is attention's).
FFN_BLOCKS = {"mlp", "ffn", "feed_forward", "feedforward", "densereludense", "intermediate", "block_sparse_moe"}
CROSS_ATTENTION = {"encoder_attn", "encdecattention", "crossattention", "cross_attn"}
QUERY_KEY_VALUE = ("query", "key", "value")


def _is_attention(part: str) -> bool:
    return "attn" in part or "attention" in part


def role(name: str, is_embedding: bool = False) -> str | None:
    """The role of the module called ``name`` (full dotted name), or None where its name says nothing."""
    if is_embedding:
        return "embedding"
    parts = name.lower().split(".")
    leaf, context = parts[-1], parts[:-1]
    bert_ffn_output = re.search(r"\.\d+\.output\.dense$", name) is not None
    if bert_ffn_output or any(part in FFN_BLOCKS for part in context):
        if bert_ffn_output:
            return "ffn_down"
        if context and context[-1] == "intermediate":  # BERT's intermediate.dense
            return "ffn_up"
        return _ffn_role(leaf)
    if any(_is_attention(part) for part in context):
        return _attention_role(leaf)
    # No telling block above (BART's and OPT's layers hold fc1 / fc2 directly; NemotronH names blocks `mixer`):
    # only names that mean one thing wherever they are.
    if leaf in {"q_proj", "k_proj", "v_proj", "query_key_value", "c_attn", "wqkv", "qkv_proj"}:
        return _attention_role(leaf)
    if leaf in {"up_proj", "gate_proj", "down_proj", "fc1", "fc2", "ffn", "ffn_output", "dense_h_to_4h",
                "dense_4h_to_h"}:
        return _ffn_role(leaf)
    return None


def _attention_role(leaf: str) -> str:
    for role_name, names in zip(QUERY_KEY_VALUE, (QUERY, KEY, VALUE), strict=True):
        if leaf in names:
            return role_name
    if leaf in FUSED_QKV:
        return "qkv"
    return "attn_out" if leaf in ATTN_OUT else "attn_other"


def _ffn_role(leaf: str) -> str:
    if leaf in FFN_GATE:
        return "ffn_gate"
    if leaf in FFN_UP:
        return "ffn_up"
    return "ffn_down" if leaf in FFN_DOWN else "ffn"


def is_cross_attention(name: str) -> bool:
    return any(part in CROSS_ATTENTION for part in name.lower().split("."))
