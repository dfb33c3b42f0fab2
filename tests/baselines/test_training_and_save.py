"""Training touches only the method's tensors and lowers the loss; save -> load onto a fresh base -> same outputs;
ProPETL keeps one prototype and binary masks at the set density; bad masks and shapes are one clear error."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from safetensors.torch import load_file, save_file

from propulsion.baselines import apply_baseline, load_baseline, propetl, save_baseline
from propulsion.baselines.tuner import BITS, WEIGHTS

from .helpers import NEW_METHODS, batch, config, logits, roberta

KIND = "sequence-classification"


def labelled(seed: int = 0):
    inputs = batch(seed, size=8)
    inputs["labels"] = inputs["input_ids"][:, 0] % 2
    return inputs


def train(model, steps: int, lr: float = 1e-3, seed: int = 0) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    inputs, losses = labelled(seed), []
    model.train()
    torch.manual_seed(seed)
    for _ in range(steps):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("method", NEW_METHODS)
def test_training_changes_only_the_methods_tensors_and_the_loss_drops(method):
    model, details = apply_baseline(roberta(), config(method), KIND)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    losses = train(model, steps=15, lr=5e-3)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable  # nothing frozen moved
    assert trainable - changed <= {n for n in trainable if n.endswith("_scores")}  # masks may keep their top-k
    assert any("classifier" not in n for n in changed)  # the method itself learned, not only the head
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("method", NEW_METHODS)
def test_save_then_load_onto_a_fresh_base_gives_identical_outputs(method, tmp_path):
    model, _ = apply_baseline(roberta(), config(method), KIND)
    train(model, steps=3)
    model.eval()
    inputs = batch(1)
    expected = logits(model, inputs)
    files = save_baseline(model, tmp_path)
    assert sorted(files) == ["adapter_model.safetensors", "baseline_config.json"]
    saved = load_file(str(tmp_path / WEIGHTS))
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert not frozen & set(saved)  # only the trained tensors are stored
    loaded = load_baseline(roberta(), tmp_path, KIND).eval()
    assert torch.equal(logits(loaded, inputs), expected)


@pytest.mark.parametrize("method", ["propetl_adapter", "propetl_lora", "propetl_prefix"])
def test_propetl_one_prototype_and_binary_masks_at_the_set_density(method, tmp_path):
    cfg = config(method)
    model, _ = apply_baseline(roberta(), cfg, KIND)
    train(model, steps=3, lr=1e-2)
    state = model.state_dict()
    if method != "propetl_prefix":  # prototype at the root, once; the layers hold only their mask scores
        prototype = [k for k in state if k.startswith(propetl.PROTOTYPES + ".")]
        assert prototype and not [k for k in state if "._prototype." in k]
        expected = {"propetl_adapter": 4, "propetl_lora": 4}[method]  # down/up weight+bias | A, B x query, value
        assert len(prototype) == expected
    masks = propetl.mask_parameters(model)
    assert masks
    for scores in masks.values():
        mask = propetl.binary_mask(scores.detach(), cfg.density)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert int(mask.sum()) == propetl.ones_count(mask.numel(), cfg.density)
        assert abs(mask.mean().item() - cfg.density) <= 1 / mask.numel() + 1e-9  # per layer, per matrix
    save_baseline(model, tmp_path)
    saved = load_file(str(tmp_path / WEIGHTS))
    bits = {k: v for k, v in saved.items() if k.endswith(BITS)}
    assert len(bits) == len(masks) and all(v.dtype == torch.uint8 for v in bits.values())
    for key, packed in bits.items():  # 8 mask entries a byte
        assert packed.numel() == (masks[key[: -len(BITS)]].numel() + 7) // 8


def test_prototype_gradient_sums_over_layers():
    # The prototype is one tensor: both layers' masked uses send their gradient into it.
    model, _ = apply_baseline(roberta(), config("propetl_lora"), KIND)
    layers = [m for m in model.modules() if isinstance(m, propetl.MaskedLoraLayer)]
    assert len(layers) == 4 and len({id(layer._prototype.module) for layer in layers}) == 2


def _saved_propetl(tmp_path):
    model, _ = apply_baseline(roberta(), config("propetl_adapter"), KIND)
    save_baseline(model, tmp_path)
    return load_file(str(tmp_path / WEIGHTS))


def test_a_mask_that_is_not_binary_is_one_clear_error(tmp_path):
    state = _saved_propetl(tmp_path)
    key = next(k for k in state if k.endswith(BITS))
    name = key[: -len(BITS)]
    shape = json.loads((tmp_path / "baseline_config.json").read_text())["mask_shapes"][name]
    mask = propetl.unpack_bits(state.pop(key), shape)
    mask.view(-1)[0] = 0.5
    state[name] = mask  # a float mask stored unpacked, with a value that is neither 0 nor 1
    save_file(state, str(tmp_path / WEIGHTS))
    with pytest.raises(ValueError) as error:
        load_baseline(roberta(), tmp_path, KIND)
    assert str(error.value) == f"mask {name!r} is not binary: it holds values other than 0 and 1"


def test_a_mask_at_another_density_is_one_clear_error(tmp_path):
    state = _saved_propetl(tmp_path)
    key = next(k for k in state if k.endswith(BITS))
    state[key] = torch.full_like(state[key], 255)  # every entry 1: density 1.0, config says 0.5
    save_file(state, str(tmp_path / WEIGHTS))
    # hidden 32, reduction 12: bottleneck 2, so the down mask has 2 x 32 = 64 entries and density 0.5 keeps 32
    with pytest.raises(ValueError, match=r"keeps 64 of 64 entries but density 0.5 keeps 32: saved with another"):
        load_baseline(roberta(), tmp_path, KIND)


def test_a_shape_that_does_not_fit_the_base_is_one_clear_error(tmp_path):
    model, _ = apply_baseline(roberta(), config("parallel"), KIND)
    save_baseline(model, tmp_path)
    torch.manual_seed(0)
    wider = tf.RobertaForSequenceClassification(tf.RobertaConfig(
        vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64))
    with pytest.raises(ValueError) as error:
        load_baseline(wider, tmp_path, KIND)
    assert "but the model's is" in str(error.value) and "different model size" in str(error.value)
    assert "\n" not in str(error.value)


def test_unsupported_families_are_one_clear_line():
    with torch.device("meta"):
        falcon = tf.FalconForCausalLM(tf.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                      vocab_size=100))
        deberta = tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100))
    with pytest.raises(ValueError, match=r"do not support model_type 'falcon': Falcon adds the MLP output"):
        apply_baseline(falcon, config("parallel"), "causal-lm")
    with pytest.raises(ValueError, match=r"mam puts a prefix on attention .* which deberta-v2 does not take"):
        apply_baseline(deberta, config("mam"), KIND)
