"""Backbone + tokenizer for a task family: from the hub, a local directory, a GGUF file, or a built-in tiny model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import transformers

from propulsion import gguf_weights, tiny
from propulsion.specs import ModelSpec, UserError

# Task family -> the transformers auto class that puts the right head on the backbone.
AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "causal-lm": "AutoModelForCausalLM",
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def auto_class(kind: str):
    if kind not in AUTO_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; valid choices: {', '.join(AUTO_CLASSES)}")
    return getattr(transformers, AUTO_CLASSES[kind])


def _from_gguf(spec: ModelSpec) -> ModelSpec:
    """A GGUF file is loaded from its converted folder (propulsion/gguf_weights.py; converted the first time)."""
    if gguf_weights.is_gguf(spec.name_or_path):
        return dataclasses.replace(spec, name_or_path=str(gguf_weights.converted(spec.name_or_path)))
    return spec


def load_tokenizer(spec: ModelSpec, padding_side: str = "right"):
    if spec.tiny:
        return tiny.build_tokenizer(padding_side=padding_side)
    spec = _from_gguf(spec)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code
        )
    except OSError as error:
        raise UserError(_unreachable("tokenizer", spec, error)) from None
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:  # decoder-only LLMs ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# The config keys through which each family sets hidden-layer and attention dropout: BERT/RoBERTa/DeBERTa the
# first two, BART dropout + attention_dropout, LLaMA attention_dropout (its MLP has no dropout), BLOOM
# hidden_dropout + attention_dropout, GPT-J the *_pdrop three. ``model.dropout`` sets every one the config has.
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop")


def config_overrides(spec: ModelSpec, task_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the run changes in the model's config: ``model.dropout`` on the family's dropout keys, then the
    task's own settings (e.g. num_labels). Recorded with the run."""
    overrides: dict[str, Any] = {}
    if spec.dropout is not None:
        config = load_config(spec)
        keys = [key for key in DROPOUT_KEYS if hasattr(config, key)]
        if not keys:
            raise UserError(f"model.dropout={spec.dropout}: the {config.model_type} config of {spec.name!r} has none "
                            f"of the dropout keys {', '.join(DROPOUT_KEYS)}; leave model.dropout null")
        overrides = {key: float(spec.dropout) for key in keys}
    return overrides | dict(task_overrides or {})


def load_model(spec: ModelSpec, kind: str, config_overrides: dict[str, Any] | None = None):
    """The backbone with the head for ``kind``; ``config_overrides`` e.g. {"num_labels": 3}."""
    overrides = dict(config_overrides or {})
    cls = auto_class(kind)
    if spec.tiny:
        if spec.tiny not in tiny.TINY_FAMILIES:
            raise UserError(f"unknown tiny model family {spec.tiny!r}; valid choices: {', '.join(tiny.TINY_FAMILIES)}")
        return reinitialise(tiny.build_tiny_model(spec.tiny, cls, **overrides), spec.reinit)
    spec = _from_gguf(spec)
    try:
        model = cls.from_pretrained(
            spec.name_or_path, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
            dtype=DTYPES[spec.dtype], **overrides,
        )
    except OSError as error:
        raise UserError(_unreachable("model", spec, error)) from None
    return reinitialise(model, spec.reinit)


def reinitialise(model, names: list[str] | None):
    """Draw the named modules' weights afresh with the model's own initialiser (``_init_weights``, the one
    from_pretrained uses for weights a checkpoint lacks), from the global RNG the run has seeded.

    transformers 5 marks every tensor it loads or initialises ``_is_hf_initialized`` and its initialisers skip a
    marked tensor, so ``_init_weights`` alone leaves a checkpoint's weights as they were: the marks of the named
    modules' tensors are cleared first. A module whose weight matrices all come out unchanged is an error, not a
    silent no-op."""
    modules = dict(model.named_modules())
    for name in names or []:
        if name not in modules:
            near = sorted(m for m in modules if m and name.split(".")[-1] in m.split("."))[:8]
            raise UserError(f"model.reinit names {name!r}, which this {model.config.model_type} model does not have"
                            f"{'; modules with that name: ' + ', '.join(near) if near else ''}")
        before = {key: tensor.detach().clone() for key, tensor in modules[name].state_dict().items()}
        for tensor in [*modules[name].parameters(), *modules[name].buffers()]:
            if getattr(tensor, "_is_hf_initialized", False):
                tensor._is_hf_initialized = False
        for module in modules[name].modules():
            model._init_weights(module)
        after = modules[name].state_dict()
        drawn = [key for key in before if before[key].dim() >= 2]  # matrices are drawn at random; norms reset to 1/0
        if drawn and all(torch.equal(before[key], after[key]) for key in drawn):
            raise RuntimeError(f"model.reinit: {name} came out of {type(model).__name__}._init_weights unchanged")
    return model


def load_config(spec: ModelSpec, **overrides):
    """The model's config only (no weights): parameter counts on the meta device. The sizes written in the
    model's YAML (``architecture``) are used when given, so counts need no download."""
    if spec.tiny:
        return tiny.tiny_config(spec.tiny, **overrides)
    if spec.architecture:
        fields = dict(spec.architecture)
        return transformers.AutoConfig.for_model(fields.pop("model_type"), **fields, **overrides)
    spec = _from_gguf(spec)
    try:
        return transformers.AutoConfig.from_pretrained(spec.name_or_path, revision=spec.revision, **overrides)
    except OSError as error:
        raise UserError(_unreachable("config", spec, error)) from None


def _unreachable(what: str, spec: ModelSpec, error: Exception) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"could not load the {what} of model {spec.name!r} from {spec.name_or_path!r} ({first_line}); "
        f"download it where the hub is reachable and pass model.name_or_path=/local/dir"
    )


# The files of a local model directory that decide its numbers: hashed into the record.
PROVENANCE_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt",
                    "tokenizer_config.json", "special_tokens_map.json")


def provenance(spec: ModelSpec) -> dict[str, Any]:
    """Where the weights came from: a local directory's resolved path and the sha256 of its config, weights and
    tokenizer files; for a hub id, the id and revision (the hub's cache holds the commit)."""
    from propulsion.tasks.data import sha256_file  # hashing lives with the data files' provenance

    if spec.tiny:
        return {"source": "tiny", "family": spec.tiny}
    if gguf_weights.is_gguf(spec.name_or_path):  # the GGUF's sha256 and the converted folder's
        return gguf_weights.provenance(spec.name_or_path)
    local = Path(spec.name_or_path)
    if not local.is_dir():
        return {"source": "hub", "name_or_path": spec.name_or_path, "revision": spec.revision}
    files = {name: sha256_file(local / name) for name in PROVENANCE_FILES if (local / name).is_file()}
    return {"source": "local", "name_or_path": spec.name_or_path, "path": str(local.resolve()), "sha256": files}
