"""The families people fine-tune, built tiny from their configs: the family matrix's parameters and its doc table.

Every ``model_type`` of PEFT's LoRA target mapping that the installed transformers ships, plus the encoders beside
them (MPNet, DistilBERT, ALBERT, ModernBERT) and mBART. Each is built with 2 layers, hidden 32 and a 100-word
vocabulary, for each head it supports among sequence classification, QA, causal LM and seq2seq.

``python -m tests.method.families --write`` rewrites the table in docs/library.md from these parameters; a test
fails while the committed table differs from what they generate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers as tf
from transformers.models.auto import modeling_auto

VOCAB = 100
PAD, BOS, EOS = 0, 1, 2
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS)
_ENCODER_DECODER = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, decoder_start_token_id=EOS)
_T5 = dict(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4, decoder_start_token_id=PAD)
# Family -> the config fields its config names differently from SIZES, or that default to a large model.
# A family built from another config type than its PEFT key names it after (llama4 and gemma4 are multimodal
# configs whose causal LM is the text model) says so in `config`.
FAMILIES: dict[str, dict] = {
    "albert": dict(embedding_size=16), "bart": _ENCODER_DECODER, "bert": {}, "bloom": dict(n_layer=2, n_head=4),
    "codegen": dict(rotary_dim=4, n_ctx=64), "deberta": dict(pooler_hidden_size=32),
    "deberta-v2": dict(pooler_hidden_size=32, relative_attention=True, position_buckets=16, max_relative_positions=64,
                       pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0),
    "distilbert": dict(dim=32, hidden_dim=64, n_layers=2, n_heads=4), "electra": dict(embedding_size=16),
    "falcon": {}, "gemma": dict(head_dim=8, num_key_value_heads=2), "gemma2": dict(head_dim=8, num_key_value_heads=2),
    "gemma3_text": dict(head_dim=8, num_key_value_heads=2, sliding_window=16),
    "gemma4": dict(config="gemma4_text", head_dim=8, num_key_value_heads=2, sliding_window=16, per_layer_config={},
                   layer_types=["sliding_attention", "full_attention"], vocab_size_per_layer_input=VOCAB,
                   hidden_size_per_layer_input=8),
    "gpt2": {}, "gpt_bigcode": {}, "gpt_neo": dict(attention_types=[[["global", "local"], 1]], window_size=8),
    "gpt_neox": {}, "gptj": dict(rotary_dim=4), "layoutlm": {}, "llama": dict(num_key_value_heads=2),
    "llama4": dict(config="llama4_text", head_dim=8, num_key_value_heads=2, intermediate_size_mlp=64,
                   num_local_experts=2),
    "mbart": _ENCODER_DECODER, "mistral": dict(num_key_value_heads=2),
    "mixtral": dict(num_key_value_heads=2, num_local_experts=2, num_experts_per_tok=1),
    "modernbert": dict(cls_token_id=BOS, sep_token_id=EOS, global_attn_every_n_layers=1, local_attention=16),
    "mpnet": {}, "mpt": dict(d_model=32, n_layers=2, n_heads=4, expansion_ratio=2, max_seq_len=64),
    "mt5": _T5, "nemotron_h": dict(
        layers_block_type=["linear_attention", "moe", "full_attention", "mlp"], head_dim=8, num_key_value_heads=2,
        mamba_num_heads=4, mamba_head_dim=16, n_groups=1, ssm_state_size=8, chunk_size=8, n_routed_experts=2,
        moe_intermediate_size=16, moe_shared_expert_intermediate_size=16, num_experts_per_tok=1),
    "opt": dict(ffn_dim=64, word_embed_proj_dim=32), "phi": {},
    "qwen2": dict(num_key_value_heads=2), "qwen3": dict(head_dim=8, num_key_value_heads=2), "roberta": {},
    "rwkv": dict(attention_hidden_size=32, context_length=64), "stablelm": dict(num_key_value_heads=2),
    "t5": _T5, "xlm-roberta": {},
}
# Families we cannot support, each with the one line that says why (the matrix asserts the line).
UNSUPPORTED = {
    "blip-2": "blip-2 is a vision-language model (Blip2ForConditionalGeneration needs pixel_values); the suite's "
              "heads (sequence classification, QA, causal LM, seq2seq) take text only",
    "rwkv": "rwkv does not train on CPU in transformers 5 even without an adapter: its CPU attention "
            "(rwkv_linear_attention_cpu) writes into a tensor its own backward needs",
}
HEAD_CLASSES = {
    "sequence-classification": modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    "question-answering": modeling_auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES,
    "causal-lm": modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    "seq2seq": modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
}
# Encoders are fine-tuned with a task head: their causal-LM classes (BERT as a decoder) are left out, as are the
# decoder-only halves of the encoder-decoders (BartForCausalLM).
ENCODERS = {"albert", "bert", "deberta", "deberta-v2", "distilbert", "electra", "layoutlm", "modernbert", "mpnet",
            "roberta", "xlm-roberta"}


def config_type(family: str) -> str:
    return FAMILIES[family].get("config", family)


def heads(family: str) -> list[str]:
    model_type = config_type(family)
    found = [head for head, classes in HEAD_CLASSES.items() if model_type in classes]
    if family in ENCODERS or "seq2seq" in found:
        found = [head for head in found if head != "causal-lm"]
    return found


CASES = [(family, head) for family in sorted(FAMILIES) if family not in UNSUPPORTED for head in heads(family)]


def tiny_config(family: str):
    fields = {**SIZES, **{k: v for k, v in FAMILIES[family].items() if k != "config"}}
    # Through __init__, not setattr: configs derive fields from their sizes there (rotary dims, layer types).
    return tf.AutoConfig.for_model(config_type(family), **fields)


def build(family: str, head: str, seed: int = 0):
    """The tiny model of ``family`` with ``head``, in eval mode (dropout off), the same for the same seed."""
    auto = getattr(tf, {"sequence-classification": "AutoModelForSequenceClassification",
                        "question-answering": "AutoModelForQuestionAnswering",
                        "causal-lm": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM"}[head])
    config = tiny_config(family)
    if torch.get_default_device().type == "meta":
        return auto.from_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return auto.from_config(config).eval()


def inputs(family: str, head: str, batch: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
    """Token ids that end in EOS (BART / T5 classify at the EOS token), no padding."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    ids[:, -1] = EOS
    values = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if head == "seq2seq" or (config_type(family) in ("t5", "mt5") and head == "question-answering"):
        values["decoder_input_ids"] = ids[:, :4]
    return values


def output(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    result = model(**batch)
    return result.logits if getattr(result, "logits", None) is not None else result.start_logits


# -- the docs table -----------------------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"
BEGIN, END = "<!-- families table: generated by python -m tests.method.families --write -->", "<!-- end families -->"
SHORT = {"sequence-classification": "classification", "question-answering": "QA", "causal-lm": "causal LM",
         "seq2seq": "seq2seq"}


def table() -> str:
    rows = ["| model_type | " + " | ".join(SHORT.values()) + " |", "|---|" + "---|" * len(SHORT)]
    for family in sorted(set(FAMILIES) - set(UNSUPPORTED)):
        supported = heads(family)
        rows.append(f"| {family} | " + " | ".join("✓" if head in supported else "" for head in SHORT) + " |")
    rows += [""] + [f"- Unsupported: {reason}." for _, reason in sorted(UNSUPPORTED.items())]
    return "\n".join([BEGIN, *rows, END])


def documented_table(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text[text.index(BEGIN):text.index(END) + len(END)]


def write() -> None:
    text = DOC.read_text()
    current = documented_table(text)
    if current is None:
        raise SystemExit(f"{DOC} has no families table between {BEGIN!r} and {END!r}")
    DOC.write_text(text.replace(current, table()))


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(table())
