"""The family matrix: every family people fine-tune, built tiny from its config, for each head it supports.

Per (family, head): Propulsion `all` and `attn` inject; the output at init is the base model's exactly; no wrapped
layer is dead or has its output modified in place unless the family tables say so (quirks.probe, general code);
one training step changes only z; merged equals unmerged within 1e-5 (tied embeddings included); save -> load onto
a fresh base gives identical outputs; the meta-device count equals the materialised one; LoRA and the parallel
adapter baseline inject by default targets. Families and heads: tests/method/families.py (also docs/library.md).
"""

from __future__ import annotations

import copy
import functools
import re
import warnings

import pytest
import torch
import yaml
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_LORA_TARGETS

from propulsion import adapt
from propulsion.baselines import presets as adapter_presets
from propulsion.method import (
    PropulsionConfig,
    PropulsionModel,
    count_parameters,
    get_propulsion_model,
    propulsion_layers,
)
from propulsion.method import presets as propulsion_presets
from propulsion.method.quirks import probe
from propulsion.specs import MethodSpec, UserError
from tests.method import families

CONF = families.DOC.parents[1] / "conf" / "method"
LORA = MethodSpec(name="lora", kind="peft", peft_type="LORA", head="full", peft_config={"r": 2, "lora_alpha": 4},
                  targets=["query", "value"])  # conf/method/lora.yaml's default targets, as a user runs it


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread computes them fastest, and several contend on a shared machine (4x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Families where conf/method/lora.yaml's default targets [query, value] cannot resolve, with the line the user reads.
LORA_REFUSED = {"modernbert": "modernbert computes query, key and value in one fused module (Wqkv): preset 'query' "
                              "cannot select one of them; use targets='attn' or module-name patterns"}


@functools.cache
def _base(family: str, head: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return families.build(family, head)


def base(family: str, head: str):
    """A fresh copy of the case's tiny model (built once per session)."""
    return copy.deepcopy(_base(family, head))


def table_matches(table: dict, model_type: str, name: str) -> bool:
    return any(re.fullmatch(pattern, name) for pattern in table.get(model_type, []))


@pytest.mark.parametrize(("family", "head"), families.CASES)
def test_propulsion_on_every_family(family, head, tmp_path):
    batch = families.inputs(family, head)
    with torch.no_grad():
        reference = families.output(_base(family, head), batch)
    model_type = _base(family, head).config.model_type

    attn = get_propulsion_model(base(family, head), PropulsionConfig(targets="attn"))
    assert propulsion_layers(attn.base_model)
    with torch.no_grad():
        assert torch.equal(families.output(attn, batch), reference)

    model = get_propulsion_model(base(family, head), PropulsionConfig(degree=3, targets="all"))
    with torch.no_grad():
        assert torch.equal(families.output(model, batch), reference)  # identity at init
    # Quirks, found by running it: nothing wrapped is dead (the tables keep such modules out of `all`), and an
    # output written in place afterwards is one the tables switch to the plain scaling.
    found = probe(model, batch)
    assert found.never_called == [], f"{family}: add these never-called modules to presets.NEVER_CALLED"
    lean = {name for name in found.modified_in_place if propulsion_layers(model.base_model)[name].lean}
    assert not lean, f"{family}: add these in-place outputs to presets.IN_PLACE_OUTPUTS: {sorted(lean)}"
    assert all(table_matches(propulsion_presets.IN_PLACE_OUTPUTS, model_type, n) for n in found.modified_in_place)

    # One step changes only z.
    z = {id(v) for layer in propulsion_layers(model.base_model).values() for v in layer.all_vectors()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    families.output(model, batch).float().pow(2).mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == z
    torch.optim.SGD(trainable, lr=0.5).step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= {name for name, p in model.named_parameters() if id(p) in z}

    with torch.no_grad():
        trained = families.output(model, batch)
        model.save_pretrained(tmp_path)
        loaded = PropulsionModel.from_pretrained(base(family, head), tmp_path)
        assert torch.equal(families.output(loaded, batch), trained)  # save -> load onto a fresh base
        merged = model.merge_and_unload()  # tied embeddings / LM head included
        # Within 1e-5 of the logits' scale: mT5's reach |12|, where float32 rounding alone is ~1e-6 each.
        difference = (families.output(merged, batch) - trained).abs().max()
        assert difference <= 1e-5 * max(1.0, trained.abs().max().item())


@pytest.mark.parametrize(("family", "head"), families.CASES)
def test_meta_count_equals_materialised(family, head):
    config = PropulsionConfig(targets="all")
    real = count_parameters(get_propulsion_model(base(family, head), config))
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = count_parameters(get_propulsion_model(families.build(family, head), config))
    assert meta == real and 0 < real.trainable < real.total


def _parallel_spec() -> MethodSpec:
    values = yaml.safe_load((CONF / "parallel.yaml").read_text())
    return MethodSpec(name="parallel", kind="baseline", baseline=values["baseline"])


@pytest.mark.parametrize(("family", "head"), families.CASES)
def test_lora_and_an_adapter_baseline_by_default_targets(family, head):
    batch = families.inputs(family, head)
    with torch.no_grad():
        reference = families.output(_base(family, head), batch)
    model_type = _base(family, head).config.model_type
    if family in LORA_REFUSED:  # not in PEFT's mapping either: PEFT asks for target_modules there too
        with pytest.raises(UserError, match=re.escape(LORA_REFUSED[family])):
            adapt.apply_method(base(family, head), LORA, head)
        return
    lora = adapt.apply_method(base(family, head), LORA, head)
    wrapped = [name for name, _ in lora.model.named_modules() if name.endswith("lora_A")]
    assert wrapped, f"{family}: LoRA wrapped nothing"
    with torch.no_grad():
        assert torch.equal(families.output(lora.model, batch), reference)  # B = 0 at init

    if model_type in adapter_presets.UNSUPPORTED:
        with pytest.raises(Exception, match=re.escape(adapter_presets.UNSUPPORTED[model_type])):
            adapt.apply_method(base(family, head), _parallel_spec(), head)
        return
    parallel = adapt.apply_method(base(family, head), _parallel_spec(), head)
    assert parallel.details["wrapped_modules"] > 0
    if parallel.details["baseline"]["init"] == "lora":  # zero up-projection: identity at init
        with torch.no_grad():
            assert torch.equal(families.output(parallel.model, batch), reference)


def test_the_matrix_covers_peft_and_the_encoders():
    shipped = {model_type for model_type in PEFT_LORA_TARGETS if model_type in families.tf.CONFIG_MAPPING}
    assert shipped <= set(families.FAMILIES) | set(families.UNSUPPORTED)
    assert {"mpnet", "distilbert", "albert", "modernbert"} <= set(families.FAMILIES)
    supported = {family for family, _ in families.CASES}
    assert len(supported) >= 30 and supported == set(families.FAMILIES) - set(families.UNSUPPORTED)


def test_unsupported_families_say_why():
    assert set(families.UNSUPPORTED) == {"blip-2", "rwkv"}
    # blip-2: no text head to build.
    config = families.tf.AutoConfig.for_model("blip-2")
    assert [head for head, classes in families.HEAD_CLASSES.items() if config.model_type in classes] == []
    assert families.UNSUPPORTED["blip-2"].startswith("blip-2 is a vision-language model")
    # rwkv: the base model itself, every weight trainable and no adapter, fails its backward.
    model = base("rwkv", "causal-lm")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        families.output(model, families.inputs("rwkv", "causal-lm")).pow(2).mean().backward()
    assert families.UNSUPPORTED["rwkv"].startswith("rwkv does not train on CPU")


def test_fused_and_expert_families_say_what_a_preset_cannot_select():
    with pytest.raises(ValueError, match=r"gpt2 computes query, key and value in one fused module \(c_attn\)"):
        get_propulsion_model(base("gpt2", "causal-lm"), PropulsionConfig(targets="query"))
    with pytest.raises(ValueError, match=r"preset 'mlp' matched no Linear/Embedding module of this mixtral model "
                                         r"\(a mixture of experts may hold its experts as one fused parameter"):
        get_propulsion_model(base("mixtral", "causal-lm"), PropulsionConfig(targets="mlp"))


class _Quirky(torch.nn.Module):
    """`used` runs and its output is then written in place; `unused` is read by weight only; `clean` runs."""

    def __init__(self):
        super().__init__()
        self.used, self.unused, self.clean = (torch.nn.Linear(4, 4) for _ in range(3))

    def forward(self, x):
        y = self.used(x)
        y.add_(self.unused.weight.sum())
        return self.clean(y)


def test_probe_finds_a_dead_wrapper_and_an_in_place_output():
    model = get_propulsion_model(_Quirky(), PropulsionConfig(targets="all"))
    found = probe(model, {"x": torch.ones(2, 4)})
    assert found.never_called == ["unused"] and found.modified_in_place == ["used"]


def test_lora_falls_back_to_peft_targets_where_ours_cannot_resolve():
    # [query, value] on GPT-2's fused c_attn: no target list of ours, PEFT chooses from its own mapping.
    lora = adapt.apply_method(base("gpt2", "causal-lm"), LORA, "causal-lm")
    assert lora.details["target_modules"] is None
    assert sorted(n for n, _ in lora.model.named_modules() if n.endswith("lora_A")) == [
        f"base_model.model.transformer.h.{i}.attn.c_attn.lora_A" for i in range(2)]


def test_tied_families_are_in_the_matrix():
    tied = [family for family, head in families.CASES if head in ("causal-lm", "seq2seq")
            and _base(family, head).get_output_embeddings().weight is _base(family, head).get_input_embeddings().weight]
    assert len(tied) >= 5  # merge equals unmerged on each (test_propulsion_on_every_family)


def test_docs_table_is_generated_from_the_matrix():
    documented = families.documented_table(families.DOC.read_text())
    assert documented == families.table(), "run: python -m tests.method.families --write"
