"""NTK analysis: closed forms on a one-layer model, kernel properties on a tiny RoBERTa, the command."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from propulsion import tiny
from propulsion.studies import ntk

try:  # the Propulsion library; until it lands, a stand-in injector below keeps these tests meaningful
    from propulsion.method import inject_propulsion  # noqa: F401

    HAS_METHOD = True
except ImportError:
    HAS_METHOD = False


class OneLayer(nn.Module):
    """y = (W x + b) ⊙ z^k, read out as r · y: the paper's φ_P with a fixed linear readout."""

    def __init__(self, d_in: int, d_out: int, degree: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.propulsion = nn.Parameter(torch.ones(d_out))
        self.register_buffer("readout", torch.randn(d_out))
        self.degree = degree

    def forward(self, x):
        return (self.linear(x) * self.propulsion**self.degree) @ self.readout


def _one_layer(degree=3):
    torch.manual_seed(0)
    model = OneLayer(5, 7, degree).double()
    with torch.no_grad():  # away from 1, so z^(k-1) is not all ones
        model.propulsion.copy_(1 + 0.2 * torch.randn(7, dtype=torch.float64))
    x = torch.randn(4, 5, dtype=torch.float64)
    return model, x


def _identity(output):
    return output


def test_propulsion_ntk_matches_closed_form():
    model, x = _one_layer(degree=3)
    k, z, r = model.degree, model.propulsion.detach(), model.readout
    v = model.linear(x).detach()  # (n, d_out): v = W x + b
    grads = k * z ** (k - 1) * r * v  # ∂φ/∂z_j = k z_j^(k-1) r_j v_j(x)
    expected = grads @ grads.T
    torch.testing.assert_close(_ntk(model, x, "propulsion"), expected, rtol=1e-12, atol=1e-12)


def test_full_ntk_matches_closed_form():
    model, x = _one_layer(degree=3)
    k, z, r = model.degree, model.propulsion.detach(), model.readout
    # ∂φ/∂W_jl = r_j z_j^k x_l and ∂φ/∂b_j = r_j z_j^k: K = Σ_j (r_j z_j^k)² (x·x' + 1)
    expected = (r * z**k).pow(2).sum() * (x @ x.T + 1)
    torch.testing.assert_close(_ntk(model, x, "full"), expected, rtol=1e-12, atol=1e-12)


def _ntk(model, x, which, **kwargs):
    return ntk.empirical_ntk(model, {"x": x}, ntk.select_params(model, which), _identity, **kwargs)


def test_blocking_does_not_change_the_kernel():
    model, x = _one_layer()
    whole = _ntk(model, x, "full")
    # 4 examples × 5 entries per block: W (35 entries) gets a block of its own, as does b
    torch.testing.assert_close(_ntk(model, x, "full", max_entries=20), whole, rtol=1e-12, atol=1e-12)


def test_select_params_splits_the_model():
    model, _ = _one_layer()
    assert list(ntk.select_params(model, "propulsion")) == ["propulsion"]
    assert list(ntk.select_params(model, "full")) == ["linear.weight", "linear.bias"]
    with pytest.raises(ntk.UserError, match="valid choices"):
        ntk.select_params(model, "lora")


# ------------------------------------------------------------------ tiny RoBERTa


class _Scaled(nn.Module):
    """Stand-in Propulsion layer for tests: base output × z^k (the library's own is tested elsewhere)."""

    def __init__(self, base, degree):
        super().__init__()
        self.base_layer = base
        self.degree = degree
        self.propulsion = nn.Parameter(torch.ones(base.out_features))

    def forward(self, x):
        return self.base_layer(x) * self.propulsion**self.degree


def _stand_in_inject(model, degree, targets):
    import copy

    injected = copy.deepcopy(model)
    for module in list(injected.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, _Scaled(child, degree))
    for param in injected.parameters():
        param.requires_grad_(False)
    return injected.eval()


def _inject(model, degree):
    return ntk.inject(model, degree, "all") if HAS_METHOD else _stand_in_inject(model, degree, "all")


@pytest.fixture(scope="module")
def roberta():
    model = tiny.build_tiny_model("roberta", AutoModelForSequenceClassification, num_labels=2).eval()
    tokenizer = tiny.build_tokenizer()
    texts, labels, _ = ntk.load_examples(None, 6, seed=0)
    inputs = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    return model, inputs, torch.tensor(labels)


@pytest.mark.parametrize("which", ["full", "propulsion"])
def test_kernels_are_symmetric_and_psd(roberta, which):
    model, inputs, _ = roberta
    subject = model if which == "full" else _inject(model, degree=5)
    kernel = ntk.empirical_ntk(subject, inputs, ntk.select_params(subject, which)).double()
    assert kernel.shape == (6, 6)
    torch.testing.assert_close(kernel, kernel.T, rtol=1e-5, atol=1e-6 * float(kernel.abs().max()))
    eig = torch.linalg.eigvalsh((kernel + kernel.T) / 2)
    assert eig.max() > 0
    assert eig.min() >= -1e-6 * eig.max()


def test_injected_model_at_init_computes_the_plain_model(roberta):
    model, inputs, _ = roberta
    result = ntk.analyse(model, _inject(model, degree=5), inputs, roberta[2], steps=0, lr=1e-3,
                         optimizer="adamw", num_columns=16)
    assert result["init_output_max_abs_gap"] < 1e-5
    # t = 0: nothing moved, kernels and Jacobians are unchanged exactly
    for which in ("full", "propulsion"):
        assert result["drift"][which]["kernel_relative_change"] == 0.0
        assert result["drift"][which]["jacobian_relative_change"] == 0.0
    comparison = result["comparison"]
    assert -1.0 <= comparison["alignment"] <= 1.0 + 1e-6


def test_kernel_moves_after_training(roberta):
    model, inputs, labels = roberta
    result = ntk.analyse(model, _inject(model, degree=5), inputs, labels, steps=3, lr=1e-2,
                         optimizer="adamw", num_columns=16)
    for which in ("full", "propulsion"):
        drift = result["drift"][which]
        assert drift["kernel_relative_change"] > 0
        assert drift["jacobian_relative_change"] > 0
        assert len(drift["losses"]) == 3
        assert drift["J_0_columns"].shape == (6, 16)
    # the originals were not trained: their kernel is the one at init
    again = ntk.empirical_ntk(model, inputs, ntk.select_params(model, "full"))
    torch.testing.assert_close(again, result["drift"]["full"]["K_0"])


def test_command_writes_record_and_heatmaps(tmp_path, monkeypatch):
    if not HAS_METHOD:
        monkeypatch.setattr(ntk, "inject", _stand_in_inject)
    out = tmp_path / "ntk-run"
    code = ntk.main(["--model", "tiny-roberta", "--n", "4", "--steps", "2", "--degree", "3", "--lr", "1e-3",
                     "--out", str(out)])
    assert code == 0
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "completed" and record["family"] == "ntk" and record["degree"] == 3
    values = record["ntk"]
    assert len(values["full"]["K_0"]) == 4 and len(values["propulsion"]["K_t"][0]) == 4
    assert values["full"]["kernel_relative_change"] > 0 and values["propulsion"]["kernel_relative_change"] > 0
    assert record["params"]["trainable"] == values["propulsion"]["num_params"]
    for figure in values["figures"].values():
        assert (out / figure.split("/")[-1]).stat().st_size > 1000


def test_command_reports_a_bad_data_path(tmp_path, capsys):
    code = ntk.main(["--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "missing.json" in capsys.readouterr().err


def test_compare_kernels_golden_values():
    a = torch.randn(5, 3, dtype=torch.float64)
    k = a @ a.T
    same_shape = ntk.compare_kernels(k, 0.25 * k)  # a rescaled kernel: same shape, 75 % smaller
    assert same_shape["relative_difference"] == pytest.approx(0.75)
    assert same_shape["trace_ratio_propulsion_over_full"] == pytest.approx(0.25)
    assert same_shape["alignment"] == pytest.approx(1.0)
    assert same_shape["centered_alignment"] == pytest.approx(1.0)
    assert same_shape["normalized_difference"] == pytest.approx(0.0, abs=1e-12)
    # a constant offset c·11^T raises plain alignment but leaves the centered one unchanged
    b = torch.randn(5, 3, dtype=torch.float64)
    other = b @ b.T
    plain = ntk.compare_kernels(k, other)
    offset = ntk.compare_kernels(k + 100.0, other + 100.0)
    assert offset["alignment"] > plain["alignment"]
    assert offset["centered_alignment"] == pytest.approx(plain["centered_alignment"])


# ------------------------------------------------------------------ with the Propulsion library

needs_method = pytest.mark.skipif(not HAS_METHOD, reason="propulsion.method not importable")


class _Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(5, 7)
        self.register_buffer("readout", torch.randn(7))

    def forward(self, x):
        return self.dense(x) @ self.readout


@needs_method
def test_library_layer_matches_closed_form():
    from propulsion.method import PropulsionConfig, inject_propulsion, propulsion_layers

    torch.manual_seed(1)
    model, x, k = _Dense(), torch.randn(4, 5), 4
    assert inject_propulsion(model, PropulsionConfig(degree=k, targets=["dense"])) == ["dense"]
    layer = propulsion_layers(model)["dense"]
    with torch.no_grad():
        layer.propulsion.copy_(1 + 0.1 * torch.randn_like(layer.propulsion))
    z, r, v = layer.propulsion.detach()[0], model.readout, layer.base_layer(x).detach()
    grads = k * z ** (k - 1) * r * v
    torch.testing.assert_close(_ntk(model, x, "propulsion"), grads @ grads.T, rtol=1e-5, atol=1e-6)


@needs_method
def test_library_full_kernel_at_init_is_the_plain_models(roberta):
    model, inputs, _ = roberta
    injected = ntk.inject(model, degree=15, targets="all")
    z = ntk.select_params(injected, "propulsion")
    assert all(name.endswith("propulsion") for name in z)
    assert "classifier.dense.propulsion" in z and "classifier.out_proj.propulsion" in z  # the head's z train
    # z = 1: the injected model's kernel over the base weights is plain full fine-tuning's
    plain = ntk.empirical_ntk(model, inputs, ntk.select_params(model, "full"))
    wrapped = ntk.empirical_ntk(injected, inputs, ntk.select_params(injected, "full"))
    torch.testing.assert_close(wrapped, plain, rtol=1e-5, atol=1e-5 * float(plain.abs().max()))
    assert len(model.state_dict()) == len([n for n in injected.state_dict() if "propulsion" not in n])


def test_command_takes_sentence_pairs_and_records_the_data_checksum(tmp_path, monkeypatch):
    # RTE's hub schema: a pair per example, tokenised as [CLS] a [SEP] b [SEP].
    if not HAS_METHOD:
        monkeypatch.setattr(ntk, "inject", _stand_in_inject)
    rows = [{"sentence1": f"premise number {i} is here", "sentence2": f"hypothesis {i}", "label": i % 2, "idx": i}
            for i in range(3)]
    data = tmp_path / "validation.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    texts, labels, name = ntk.load_examples(str(data), 3, seed=0)
    assert texts[1] == ("premise number 1 is here", "hypothesis 1") and labels == [0, 1, 0] and name == "validation"
    out = tmp_path / "ntk-pairs"
    assert ntk.main(["--data", str(data), "--n", "3", "--steps", "1", "--degree", "3", "--out", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["data_file"] == {"path": str(data.resolve()),
                                   "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    assert record["model_files"] == {"source": "tiny", "family": "roberta"}
    assert len(record["ntk"]["full"]["K_0"]) == 3
