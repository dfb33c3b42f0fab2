"""Tiny random models of every architecture the presets know, built from configs (no download)."""

from __future__ import annotations

import torch
import transformers as tf

VOCAB = 100


def roberta_classifier(seed: int = 0, hidden: int = 32, labels: int = 2):
    """The brief's tiny RoBERTa classifier, in eval mode (dropout off)."""
    torch.manual_seed(seed)
    config = tf.RobertaConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, num_labels=labels)
    return tf.RobertaForSequenceClassification(config).eval()


def tied_llama(seed: int = 0):
    """A tiny Llama whose lm_head is the input embedding table (transformers ties them at construction)."""
    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=4, intermediate_size=64, tie_word_embeddings=True)
    model = tf.LlamaForCausalLM(config).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


def family_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB)
    builders = {
        "roberta": lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, **common)),
        "bert": lambda: tf.BertForSequenceClassification(tf.BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **common)),
        "deberta-v2": lambda: tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            relative_attention=True, position_buckets=16, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
            position_biased_input=False, type_vocab_size=0, **common)),
        "bart": lambda: tf.BartForConditionalGeneration(tf.BartConfig(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, **common)),
        "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=64, tie_word_embeddings=False, **common)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, **common)),
        "bloom": lambda: tf.BloomForCausalLM(tf.BloomConfig(hidden_size=32, n_layer=2, n_head=4, **common)),
        "gptj": lambda: tf.GPTJForCausalLM(tf.GPTJConfig(n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                                        n_positions=64, **common)),
        "falcon": lambda: tf.FalconForCausalLM(tf.FalconConfig(hidden_size=32, num_hidden_layers=2,
                                                               num_attention_heads=4, **common)),
        "phi": lambda: tf.PhiForCausalLM(tf.PhiConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                      intermediate_size=64, **common)),
    }
    return builders[family]().eval()


def batch(seed: int = 0, size: int = 4, length: int = 10) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (size, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def outputs(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits
