"""Tiny built-in models and a local tokenizer: the suite end to end with no download.

``model=tiny-<family>`` builds a randomly initialised model of that architecture (hidden 32, 2 layers)
from a config, and a word-level tokenizer made here with the ``tokenizers`` library. The same loading
code then runs as for a hub model, so tests and the offline demo exercise the real pipeline.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, RoBERTa's order
BOS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = range(5)

# Words the synthetic sample data is written in, plus enough general English for free text.
WORDS = """
a an the and or but not no yes is are was were be been it this that these those there here what which who
whom whose when where why how of in on at to from by with for about as into over under after before between
i you he she we they me him her us them my your his its our their good great fine nice happy love best
bad awful poor sad hate worst terrible boring movie film story plot actor actors scene scenes music book
food place service day night time year man woman person people child children city country world house
car dog cat tree water fire sun moon sky red blue green big small old new long short high low fast slow
hot cold first last next other same many much more most some any all each every one two three four five
six seven eight nine ten hundred thousand number numbers answer question true false correct option
solution ending response instruction input output below task write request appropriately completes
describes problem add plus minus times divided equals total sum left has have had get got give gave buy
bought sell sold make made take took go went come came see saw know knew think thought say said tell
told ask asked find found use used work worked play played read wrote eat ate drink run ran walk walked
apple apples orange oranges ball balls book books pen pens coin coins dollar dollars cent cents hour hours
minute minutes mile miles friend friends team game games school class student students teacher paris
london france england river mountain capital president company market price cost pay paid money
summary article news report said according officials police government minister people state
sentence premise hypothesis entails contradicts neutral paraphrase similar different same meaning
alpha beta gamma delta kappa sigma omega
""".split()


def build_tokenizer(model_max_length: int = 512, padding_side: str = "right") -> PreTrainedTokenizerFast:
    """A deterministic word-level tokenizer: lower-cased words, the numbers 0-1000, and punctuation."""
    vocab: dict[str, int] = {token: index for index, token in enumerate(SPECIALS)}
    numbers = [str(n) for n in range(1001)]  # whole numbers decode back as written (reasoning answers)
    for token in list(dict.fromkeys(WORDS)) + numbers + list(string.punctuation):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=False)]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", BOS_ID), ("</s>", EOS_ID)],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        cls_token="<s>", sep_token="</s>", model_max_length=model_max_length, padding_side=padding_side,
    )


def vocab_size() -> int:
    return len(build_tokenizer().get_vocab())


_COMMON = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}


def tiny_config(family: str, **overrides):
    """A transformers config of the family with hidden size 32 and 2 layers."""
    from transformers import (
        BartConfig,
        BertConfig,
        BloomConfig,
        DebertaV2Config,
        GPTJConfig,
        LlamaConfig,
        MPNetConfig,
        Qwen2Config,
        RobertaConfig,
    )

    size = vocab_size()
    builders = {
        "roberta": lambda: RobertaConfig(
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=520, type_vocab_size=1, **_COMMON),
        "bert": lambda: BertConfig(
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=512, pad_token_id=PAD_ID),
        "deberta": lambda: DebertaV2Config(
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=512, relative_attention=True,
            position_buckets=16, max_relative_positions=64, pos_att_type=["p2c", "c2p"],
            position_biased_input=False, type_vocab_size=0, norm_rel_ebd="layer_norm", share_att_key=True,
            pad_token_id=PAD_ID),
        "bart": lambda: BartConfig(
            vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=512,
            decoder_start_token_id=EOS_ID, forced_eos_token_id=EOS_ID, **_COMMON),
        "llama": lambda: LlamaConfig(
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            intermediate_size=64, max_position_embeddings=512, tie_word_embeddings=False, **_COMMON),
        "bloom": lambda: BloomConfig(vocab_size=size, hidden_size=32, n_layer=2, n_head=4, **_COMMON),
        "gptj": lambda: GPTJConfig(
            vocab_size=size, n_embd=32, n_layer=2, n_head=4, rotary_dim=4, n_positions=512, **_COMMON),
        "mpnet": lambda: MPNetConfig(  # all-mpnet-base-v2's architecture (relative position buckets 32)
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=520, **_COMMON),
        "qwen2": lambda: Qwen2Config(  # Qwen2.5's: grouped-query attention, q/k/v biases, tied embeddings
            vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=512, tie_word_embeddings=True, **_COMMON),
    }
    if family not in builders:
        raise ValueError(f"unknown tiny model family {family!r}; valid choices: {', '.join(sorted(builders))}")
    config = builders[family]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


TINY_FAMILIES = ("roberta", "bert", "deberta", "bart", "llama", "bloom", "gptj", "mpnet", "qwen2")


def build_tiny_model(family: str, auto_class, seed: int = 0, **config_overrides):
    """Randomly initialised model of the family for ``auto_class`` (e.g. AutoModelForSequenceClassification)."""
    config = tiny_config(family, **config_overrides)
    # A fixed seed makes "the tiny model" one well-defined model, whatever the run's seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return auto_class.from_config(config)
