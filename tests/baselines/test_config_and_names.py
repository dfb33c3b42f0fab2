"""BaselineConfig validation (one clear line) and the names the paper's tables use."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from propulsion.baselines import BaselineConfig

from .helpers import NEW_METHODS, config

PAPER = Path(__file__).resolve().parents[2] / "results" / "paper"


def test_method_names_are_the_paper_tables_names():
    rows = [row for name in ("table1.csv", "table3.csv") for row in csv.DictReader((PAPER / name).open())]
    names = {row["method"] for row in rows}
    assert set(NEW_METHODS) <= names
    assert {row["method"] for row in rows if row["table"] == "3"} >= {"parallel"}


@pytest.mark.parametrize("method", NEW_METHODS)
def test_every_yaml_makes_a_valid_config(method):
    assert config(method).method == method


@pytest.mark.parametrize(("field", "value", "message"), [
    ("method", "houlsby", "unknown method 'houlsby'; valid choices: adapter_s, parallel, mam"),
    ("bottleneck", 0, "bottleneck must be an integer >= 1, got 0"),
    ("density", 1.5, "density must be a number in (0, 1], got 1.5"),
    ("placement", "attn", "unknown placement 'attn'; valid choices: attn_ffn, ffn, ffn_linears"),
    ("scaling", -1, "scaling must be a number > 0, got -1"),
    ("causal_lm", {"bottlenek": 8}, "unknown causal_lm override(s) ['bottlenek']"),
    ("causal_lm", {"bottleneck": -8}, "bottleneck must be an integer >= 1, got -8"),
])
def test_bad_values_are_one_clear_line(field, value, message):
    values = {"method": "parallel", field: value}
    with pytest.raises(ValueError) as error:
        BaselineConfig(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_causal_lm_overrides_apply_only_to_llm_families():
    parallel = config("parallel")
    assert parallel.for_model_type("roberta").bottleneck == 512
    llm = parallel.for_model_type("llama")
    assert (llm.placement, llm.bottleneck, llm.scaling, llm.nonlinearity, llm.adapter_bias) == (
        "ffn_linears", 256, 1.0, "tanh", False)


def test_unknown_field_in_a_saved_config():
    with pytest.raises(ValueError, match=r"unknown BaselineConfig field\(s\) \['size'\]"):
        BaselineConfig.from_dict({"method": "mam", "size": 3})
