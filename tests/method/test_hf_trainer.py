"""A Propulsion model in transformers.Trainer / Seq2SeqTrainer with default arguments (issue 14, item 1)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
)

from propulsion import PropulsionConfig, PropulsionModel, get_propulsion_model
from propulsion.tiny import build_tiny_model, build_tokenizer

SENTENCES = ["good great movie", "bad awful film", "nice happy story", "sad boring plot"] * 4


def classification_data(tokenizer) -> Dataset:
    labels = [1, 0, 1, 0] * 4
    encoded = tokenizer(SENTENCES)
    # "sentence" and "idx" are not forward arguments: the Trainer must drop them by the base model's signature
    return Dataset.from_dict({"sentence": SENTENCES, "idx": list(range(16)), "label": labels, **encoded})


def classifier() -> PropulsionModel:
    base = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2)
    return get_propulsion_model(base, PropulsionConfig(degree=5))


def arguments(tmp_path, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, per_device_eval_batch_size=8,
                  learning_rate=0.05, max_steps=8, logging_steps=4, save_steps=4, eval_steps=4, eval_strategy="steps",
                  report_to="none", use_cpu=True, seed=0, disable_tqdm=True)
    values.update(overrides)
    return TrainingArguments(**values)


def z(model: PropulsionModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_the_class_shows_the_base_signature_so_labels_and_columns_are_found(tmp_path):
    model = classifier()
    assert type(model).__name__ == "PropulsionRobertaForSequenceClassification" and isinstance(model, PropulsionModel)
    parameters = list(inspect.signature(model.forward).parameters)
    assert parameters[:2] == ["input_ids", "attention_mask"] and "labels" in parameters
    trainer = Trainer(model=model, args=arguments(tmp_path, eval_strategy="no"), processing_class=build_tokenizer())
    assert trainer.label_names == ["labels"] and trainer.can_return_loss is False
    kept = trainer._remove_unused_columns(classification_data(build_tokenizer()))
    assert sorted(kept.column_names) == ["attention_mask", "input_ids", "label"]


def test_trainer_trains_evaluates_checkpoints_resumes_and_loads_the_best(tmp_path):
    tokenizer = build_tokenizer()
    data = classification_data(tokenizer)
    seen: list[list[int]] = []

    def compute_metrics(prediction):
        seen.append(prediction.label_ids.tolist())
        accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
        return {"accuracy": accuracy, "order": -len(seen)}  # the first evaluation scores best: a known best

    model = classifier()
    initial = z(model)
    trainer = Trainer(model=model, args=arguments(tmp_path, load_best_model_at_end=True, metric_for_best_model="order",
                                                  greater_is_better=True),
                      train_dataset=data, eval_dataset=data, processing_class=tokenizer,
                      compute_metrics=compute_metrics)
    trainer.train()
    # two evaluations (steps 4, 8), each given the labels in dataset order
    assert seen == [data["label"]] * 2
    out = tmp_path / "out"
    first = out / "checkpoint-4"
    assert trainer.state.best_model_checkpoint == str(first)
    # a checkpoint holds the adapter only: 12 wrapped Linear/Embedding layers' z (hand count below), no base weight
    saved = load_file(str(first / "model.safetensors"))
    # 2 layers x (query, key, value, attention.output.dense, intermediate.dense, output.dense) + 3 embeddings
    # + classifier.dense + classifier.out_proj = 12 + 3 + 2 = 17 z tensors; the frozen new head's 4 tensors
    # (classifier.dense and out_proj, weight and bias) and the payload (config) make it a loadable adapter
    vectors = {k: v for k, v in saved.items() if k.endswith(".propulsion")}
    head = {f"base_model.classifier.{m}.base_layer.{t}" for m in ("dense", "out_proj") for t in ("weight", "bias")}
    assert len(vectors) == 17 and set(saved) == set(vectors) | head | {"_extra_state"}
    assert sum(t.numel() for t in vectors.values()) == model.get_nb_trainable_parameters()[0]
    # load_best_model_at_end: the model holds checkpoint-4's z, which differ from both the init and step 8's
    final = load_file(str(out / "checkpoint-8" / "model.safetensors"))
    now = z(model)
    assert all(torch.equal(now[k], saved[k]) for k in saved)
    assert not all(torch.equal(saved[k], final[k]) for k in saved)
    assert not all(torch.equal(saved[k], initial[k]) for k in saved)

    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and 0.0 <= metrics["eval_accuracy"] <= 1.0

    # save_model(): the adapter, not the base model. z entries = output features of the wrapped layers:
    # embeddings 3 x 32 + per layer (q, k, v, attention out 32 each, intermediate 64, output 32) 224 x 2
    # + classifier dense 32 + out_proj 2 = 96 + 448 + 34 = 578
    trainer.save_model(str(tmp_path / "final"))
    final_saved = load_file(str(tmp_path / "final" / "model.safetensors"))
    assert sum(t.numel() for k, t in final_saved.items() if k.endswith(".propulsion")) == 578
    # ... and the folder is an adapter: onto a base whose head was drawn otherwise, the same logits
    other_base = build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2)
    with torch.no_grad():
        for parameter in other_base.classifier.parameters():
            parameter.add_(0.5)
    reloaded = PropulsionModel.from_pretrained(other_base, tmp_path / "final")
    assert reloaded.propulsion_config == PropulsionConfig(degree=5)
    inputs = {k: torch.tensor(data[:4][k]) for k in ("input_ids", "attention_mask")}
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)
    from_checkpoint = PropulsionModel.from_pretrained(other_base.__class__(other_base.config), first)
    assert all(torch.equal(from_checkpoint.base_model.get_parameter(k.removeprefix("base_model.")), v)
               for k, v in saved.items() if k != "_extra_state")  # a checkpoint folder is an adapter too

    # resume: a fresh model and trainer with more steps continue from checkpoint-8 (its z, its step count)
    resumed_model = classifier()
    resumed = Trainer(model=resumed_model, args=arguments(tmp_path, max_steps=12), train_dataset=data,
                      eval_dataset=data, processing_class=tokenizer)
    loaded = {}  # z at the first training forward after the resume

    def grab(module, args):
        if not loaded:
            loaded.update(z(resumed_model))

    handle = resumed_model.register_forward_pre_hook(grab)
    resumed.train(resume_from_checkpoint=True)
    handle.remove()
    assert resumed.state.global_step == 12
    assert all(torch.equal(loaded[k], final[k]) for k in final)


def test_seq2seq_trainer_evaluates_with_generate(tmp_path):
    tokenizer = build_tokenizer()
    base = build_tiny_model("bart", AutoModelForSeq2SeqLM)
    model = get_propulsion_model(base, PropulsionConfig(degree=3, targets="attn"))
    sources = ["the cat ate the apple", "the dog ran to the river"] * 2
    targets = ["cat ate apple", "dog ran"] * 2
    encoded = tokenizer(sources)
    labels = tokenizer(targets)["input_ids"]
    data = Dataset.from_dict({"document": sources, "labels": labels, **encoded})
    from transformers import DataCollatorForSeq2Seq

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "s2s"), per_device_train_batch_size=2,
                                    per_device_eval_batch_size=2, max_steps=2, learning_rate=0.05, report_to="none",
                                    use_cpu=True, predict_with_generate=True, generation_max_length=6,
                                    disable_tqdm=True)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    assert trainer.label_names == ["labels"]
    trainer.train()
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    prediction = trainer.predict(data, max_length=6)  # generated ids (padded with -100 past each sequence's end)
    assert prediction.predictions.shape[0] == 4 and prediction.predictions.dtype.kind == "i"
    trainer.save_model(str(tmp_path / "adapter"))
    saved = load_file(str(tmp_path / "adapter" / "model.safetensors"))
    # a generation model's head is its pretrained lm_head: no new frozen tensor, only z and the payload
    assert saved.pop("_extra_state").dtype == torch.uint8 and saved and all(k.endswith(".propulsion") for k in saved)
    reloaded = PropulsionModel.from_pretrained(build_tiny_model("bart", AutoModelForSeq2SeqLM), tmp_path / "adapter")
    assert reloaded.propulsion_config == PropulsionConfig(degree=3, targets="attn")


@pytest.mark.parametrize("strict", [True, False])
def test_state_dict_is_the_adapter_and_loads_back(strict):
    model = classifier()
    state = model.state_dict()
    head = {f"base_model.classifier.{m}.base_layer.{t}" for m in ("dense", "out_proj") for t in ("weight", "bias")}
    vectors = {k for k in state if k.startswith("base_model.") and k.endswith(".propulsion")}
    assert set(state) == vectors | head | {"_extra_state"}  # z, the frozen new head, the payload
    assert len(model.base_model.state_dict()) > len(state)  # the full model is one level down
    other = classifier()
    with torch.no_grad():
        for key in [*vectors, *head]:
            state[key].mul_(1.01)
    result = other.load_state_dict(state, strict=strict)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert all(torch.equal(other.state_dict()[k], v) for k, v in state.items())
