"""Tiny models and the method configs as the YAMLs set them, for the baseline tests."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf
import yaml

from propulsion.baselines import BaselineConfig

CONF = Path(__file__).resolve().parents[2] / "conf" / "method"
NEW_METHODS = ("adapter_s", "parallel", "mam", "propetl_adapter", "propetl_lora", "propetl_prefix")


def config(method: str, **overrides) -> BaselineConfig:
    values = yaml.safe_load((CONF / f"{method}.yaml").read_text())["baseline"]
    return BaselineConfig.from_dict({**values, **overrides})


def roberta(seed: int = 0) -> tf.RobertaForSequenceClassification:
    torch.manual_seed(seed)
    return tf.RobertaForSequenceClassification(tf.RobertaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=128)).eval()


def llama(seed: int = 0) -> tf.LlamaForCausalLM:
    torch.manual_seed(seed)
    return tf.LlamaForCausalLM(tf.LlamaConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        intermediate_size=64, tie_word_embeddings=False)).eval()


def batch(seed: int = 0, size: int = 4, length: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits
