"""Answer extraction on real generations: tests/fixtures/smollm2_generations.jsonl holds ten continuations that
SmolLM2-135M-Instruct (model=smollm2-135m, the Q4_1 GGUF dequantised, sha256 b179c952...) wrote zero-shot
(trainer.max_steps=0, greedy, 32 / 256 new tokens) on LLM-Adapters' evaluation prompts for real test rows of the
offline copy (the seed-0 subsets of experiments/study_reasoning_smollm2.yaml), with their gold answers. The expected
answers were read off the texts by hand."""

from __future__ import annotations

import json
from pathlib import Path

from propulsion.tasks import metrics

FIXTURE = Path(__file__).parent / "fixtures" / "smollm2_generations.jsonl"
# (reference rule, strict AQuA rule where it differs): what LLM-Adapters' extraction takes from each text.
EXPECTED = [
    None,      # boolq: "1. Yes. False." -- the label words are matched case-sensitively: "False" is not "false"
    None,      # boolq: "... Answer:\nTrue" -- same
    None,      # boolq: "1. No. False."
    None,      # ARC-Easy: prose, no "answerN"
    None,      # ARC-Challenge: "The answer to the question is: 1." -- "answer" without its digit
    None,      # openbookqa: "1. 13. 2. 15. ..." -- numbers, no label word
    11240.0,   # gsm8k: a doubling loop, cut at 256 tokens; the last number, "$11240"
    10.0,      # gsm8k: "The answer is 20." then a copied prompt whose last number is "$10 each"
    "B",       # AQuA: "The answer is (B). ..." cycling through the letters; first capital A-E, and last "(B)"
    None,      # AQuA: digits and lower case only
]


def _lines() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_the_fixture_is_real_generations_of_each_kind():
    lines = _lines()
    assert [line["dataset"] for line in lines] == ["boolq"] * 3 + ["ARC-Easy", "ARC-Challenge", "openbookqa"] + \
        ["gsm8k"] * 2 + ["AQuA"] * 2
    assert all(line["generation"].startswith("1. ") for line in lines)  # the instruct model's habit, zero-shot


def test_extraction_takes_what_the_reference_rules_take_from_real_generations():
    lines = _lines()
    assert [metrics.extract_answer(line["dataset"], line["generation"]) for line in lines] == EXPECTED
    # none of them is correct: the zero-shot model never answers in the label words' format
    for line in lines:
        scores = metrics.reasoning_accuracy(line["dataset"], [line["generation"]], [line["gold"]])
        assert scores == {"accuracy": 0.0, "n": 1.0}


def test_the_strict_aqua_rule_on_real_generations():
    aqua = [line for line in _lines() if line["dataset"] == "AQuA"]
    # the text ends "... The answer is (A). The answer is (B). The": the last phrase match is B as well
    assert [metrics.extract_aqua_choice(line["generation"], strict=True) for line in aqua] == ["B", None]
