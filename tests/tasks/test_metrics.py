"""Metric functions against values computed by hand from the official definitions."""

import math

import pytest

from propulsion.tasks.metrics import (
    COMMONSENSE_DATASETS,
    MATH_DATASETS,
    extract_answer,
    extract_aqua_choice,
    extract_commonsense_answer,
    extract_number,
    is_math_correct,
    normalize_answer,
    reasoning_accuracy,
    rouge_metrics,
    score_predictions,
    split_sentences,
    squad_exact,
    squad_f1,
    squad_metrics,
    squad_v2_metrics,
)

approx = pytest.approx

# ---------------------------------------------------------------------------------------------- GLUE


def _glue_metrics(task: str) -> list[str]:
    """The metrics a shipped GLUE task's YAML lists (composed, so its shared base counts too)."""
    from propulsion.compose import compose_spec

    return compose_spec([f"task={task}"])[0].task.metrics


def test_cola_mcc_from_confusion_matrix():
    # TP=3, FN=1, TN=3, FP=1 -> (3*3 - 1*1) / sqrt(4*4*4*4) = 8/16.
    refs = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 1, 0, 0, 0, 1, 1, 0]
    assert score_predictions(_glue_metrics("cola"), preds, refs) == {"matthews_correlation": approx(0.5)}


def test_mrpc_accuracy_and_positive_class_f1():
    # TP=3, FN=1, FP=1, TN=1: accuracy 4/6; F1(class 1) = 6/8, F1(class 0) = 2/4, macro = (0.75 + 0.5) / 2.
    refs = [1, 1, 1, 1, 0, 0]
    preds = [1, 1, 0, 1, 1, 0]
    for task in ("mrpc", "qqp"):
        assert score_predictions(_glue_metrics(task), preds, refs) == {
            "accuracy": approx(2 / 3), "f1": approx(0.75), "f1_macro": approx(0.625)}


def test_macro_f1_is_the_mean_of_both_classes_and_can_sit_far_below_glue_f1():
    # Always "paraphrase" on 3 positives, 1 negative: TP=3, FP=1 -> F1(1) = 6/7; class 0 is never predicted,
    # F1(0) = 0 -> macro 3/7. MRPC's dev set is 68% positive: a model near that regime scores a binary F1 well
    # above its accuracy and a macro F1 below it (the paper's MRPC: F1 85.99 < accuracy 89.34 fits macro).
    scores = score_predictions(_glue_metrics("mrpc"), [1, 1, 1, 1], [1, 1, 1, 0])
    assert scores == {"accuracy": approx(0.75), "f1": approx(6 / 7), "f1_macro": approx(3 / 7)}
    # Negatives all right, positives half right: TP=1, FN=1, TN=2 -> F1(1) = 2/3, F1(0) = 4/5, macro 11/15 > F1.
    scores = score_predictions(_glue_metrics("qqp"), [1, 0, 0, 0], [1, 1, 0, 0])
    assert scores == {"accuracy": approx(0.75), "f1": approx(2 / 3), "f1_macro": approx(11 / 15)}


def test_accuracy_tasks():
    for task in ("sst2", "qnli", "rte", "mnli"):
        assert score_predictions(_glue_metrics(task), [0, 1, 2, 1], [0, 1, 1, 1]) == {"accuracy": approx(0.75)}


def test_stsb_pearson_and_spearman_with_ties():
    assert _glue_metrics("stsb") == ["pearson", "spearmanr"]
    # Pearson: dx = [-1.5,-.5,.5,1.5], dy = [-3,-1,0,4] -> 11 / sqrt(5 * 26).
    out = score_predictions(["pearson", "spearmanr"], [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0])
    assert out["pearson"] == approx(11 / math.sqrt(130))
    assert out["spearmanr"] == approx(1.0)
    # Tied predictions get average ranks [1, 2.5, 2.5, 4]: Pearson of ranks = 4.5 / sqrt(4.5 * 5) = 0.9487;
    # the no-ties shortcut 1 - 6*sum(d^2)/(n(n^2-1)) would give 0.95 instead.
    out = score_predictions(["spearmanr"], [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert out == {"spearmanr": approx(3 / math.sqrt(10))}


def test_glue_errors_and_main_metric():
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['acc'\]; valid choices: accuracy, f1"):
        score_predictions(["accuracy", "acc"], [1], [1])
    with pytest.raises(ValueError, match="unknown metric"):
        score_predictions([], [1], [1])
    with pytest.raises(ValueError, match="equal length"):
        score_predictions(["accuracy"], [1, 0], [1])
    # The metrics and the one that selects the best checkpoint live in each task's YAML. The choice follows the
    # GLUE fine-tuning literature the paper compares with (RoBERTa, LoRA, AdaLoRA): MCC for CoLA, Pearson for
    # STS-B, accuracy for the rest, MRPC and QQP included (their F1 is reported beside it).
    from propulsion.compose import compose_spec

    expected = {"cola": ("matthews_correlation", ["matthews_correlation"]),
                "stsb": ("pearson", ["pearson", "spearmanr"]),
                "mnli": ("matched/accuracy", ["accuracy"]),
                "mrpc": ("accuracy", ["accuracy", "f1", "f1_macro"]),
                "qqp": ("accuracy", ["accuracy", "f1", "f1_macro"])}
    for task in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"):
        spec = compose_spec([f"task={task}"])[0].task
        assert (spec.main_metric, spec.metrics) == expected.get(task, ("accuracy", ["accuracy"])), task


# --------------------------------------------------------------------------------------------- SQuAD


def test_normalize_answer():
    assert normalize_answer("The  Cat!") == "cat"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Theatre of the absurd") == "theatre of absurd"  # whole words only


def test_exact_and_token_f1():
    assert squad_exact("the Cat.", "cat") == 1.0
    assert squad_f1("cat sat on", "cat sat down") == approx(2 / 3)  # P = R = 2/3
    assert squad_f1("big red car", "red car") == approx(0.8)  # P = 2/3, R = 1
    assert squad_f1("dog", "cat") == 0.0
    assert squad_f1("", "") == 1.0  # v2 rule
    assert squad_f1("", "", empty_match=False) == 0.0  # v1.1 script
    assert squad_f1("the", "cat") == 0.0


def test_squad_v1_max_over_golds_and_missing_prediction():
    refs = {"q1": ["dog", "a black dog", "black cat!"], "q2": ["red car", "the car"], "q3": ["x"]}
    preds = {"q1": "Black cat", "q2": "big red car", "extra": "ignored"}
    # q1: EM 1, F1 1; q2: EM 0, F1 max(0.8, 0.5); q3 unanswered: 0 but counted.
    assert squad_metrics(preds, refs) == {"exact_match": approx(100 / 3), "f1": approx(60.0)}


def test_squad_v2_no_answer_and_breakdown():
    refs = {"q1": ["red car"], "q2": [], "q3": [], "q4": ["Paris"]}
    preds = {"q1": "big red car", "q2": "", "q3": "blue", "q4": "paris"}
    out = squad_v2_metrics(preds, refs)
    assert out == {
        "exact": approx(50.0), "f1": approx(70.0), "total": 4.0,  # (0+1+0+1)/4, (.8+1+0+1)/4
        "HasAns_exact": approx(50.0), "HasAns_f1": approx(90.0), "HasAns_total": 2.0,
        "NoAns_exact": approx(50.0), "NoAns_f1": approx(50.0), "NoAns_total": 2.0,
    }  # fmt: skip
    assert "NoAns_total" not in squad_v2_metrics({"q1": "red car"}, {"q1": ["red car"]})
    with pytest.raises(ValueError, match="no prediction"):
        squad_v2_metrics({"q1": "x"}, refs)


def test_squad_v2_threshold_and_best_threshold():
    refs = {"q1": ["cat"], "q2": [], "q3": ["blue sky"]}
    preds = {"q1": "cat", "q2": "dog", "q3": "sky"}  # raw exact 1, 0, 0; raw f1 1, 0, 2/3
    probs = {"q1": 0.1, "q2": 0.8, "q3": 0.5}
    out = squad_v2_metrics(preds, refs, no_answer_probs=probs)
    assert out["exact"] == approx(100 / 3) and out["f1"] == approx(100 * (5 / 3) / 3)
    # Sweep from 1 (all no-answer): +q1 (p=.1) -> 2; +q3 (p=.5): exact 2, f1 8/3; +q2 (p=.8): -1.
    assert out["best_exact"] == approx(200 / 3) and out["best_exact_thresh"] == 0.1
    assert out["best_f1"] == approx(100 * (8 / 3) / 3) and out["best_f1_thresh"] == 0.5
    # Threshold 0.6 turns q2 (p=.8 > .6) into a no-answer prediction, which is right for q2.
    out = squad_v2_metrics(preds, refs, no_answer_probs=probs, na_threshold=0.6)
    assert out["exact"] == approx(200 / 3) and out["f1"] == approx(100 * (8 / 3) / 3)


# --------------------------------------------------------------------------------------------- ROUGE


def test_rouge_with_stemming():
    # Tokens after stemming: [the, cat, was, run] vs [the, cat, run]; "was" has < 4 letters, not stemmed.
    # rouge1: 3 hits, P 3/4, R 1 -> 6/7; rouge2: 1 hit, P 1/3, R 1/2 -> 2/5; LCS = 3 -> 6/7.
    out = rouge_metrics(["the cat was running"], ["the cat runs"])
    assert out == {"rouge1": approx(600 / 7), "rouge2": approx(40.0), "rougeL": approx(600 / 7),
                   "rougeLsum": approx(600 / 7)}  # fmt: skip


def test_rouge_lsum_differs_from_rouge_l_and_mean():
    # rougeL: LCS([b c a d], [a d b c]) = 2 -> 1/2. rougeLsum: each reference sentence is fully covered by
    # the union LCS with the predicted sentences -> 1. rouge2: 2 of 3 bigrams shared -> 2/3.
    out = rouge_metrics(["b c. a d.", "x"], ["a d. b c.", "y"])
    assert out == {"rouge1": approx(50.0), "rouge2": approx(100 / 3), "rougeL": approx(25.0),
                   "rougeLsum": approx(50.0)}  # fmt: skip


def test_split_sentences():
    assert split_sentences("One. Two!  Three? four.five\nSix") == [
        "One.",
        "Two!",
        "Three?",
        "four.five",
        "Six",
    ]


# ----------------------------------------------------------------------------------------- Reasoning


@pytest.mark.parametrize(
    ("dataset", "generation", "expected"),
    [
        ("boolq", "the correct answer is false, not true", "false"),
        ("boolq", "True", None),  # label words are case-sensitive, as in LLM-Adapters
        ("piqa", "solution2 beats solution1", "solution2"),
        ("social_i_qa", "the answer is answer3", "answer3"),
        ("ARC-Easy", "answer5", "answer5"),
        ("ARC-Challenge", "answer4 or answer1", "answer4"),
        ("openbookqa", "answer2", "answer2"),
        ("hellaswag", "ending4", "ending4"),
        ("hellaswag", "ending5", None),
        ("winogrande", "option2", "option2"),
        ("winogrande", "I am not sure", None),
    ],
)
def test_commonsense_extraction(dataset, generation, expected):
    assert extract_commonsense_answer(dataset, generation) == expected
    assert extract_answer(dataset, generation) == expected


def test_number_extraction():
    assert extract_number("The total is 1,234.5 dollars") == 1234.5
    assert extract_number("from 3 we go down to -7.") == -7.0
    assert extract_number("no digits here") is None
    for dataset in MATH_DATASETS:
        if dataset != "AQuA":
            assert extract_answer(dataset, "2 + 3 = 5. The answer is 5") == 5.0


def test_aqua_reference_and_strict():
    gen = "As a result the answer is (C)"
    assert extract_aqua_choice(gen) == "A"  # reference rule over-matches the "A" of "As"
    assert extract_aqua_choice(gen, strict=True) == "C"
    assert extract_answer("AQuA", gen, aqua_strict=True) == "C"
    assert extract_aqua_choice("A train moves. So (B) 10 is right.", strict=True) == "B"
    assert extract_aqua_choice("Answer: Each is D", strict=True) == "D"  # "Each" is not an option letter
    assert extract_aqua_choice("Therefore E.", strict=True) == "E"
    assert extract_aqua_choice("A man sat", strict=True) is None
    assert extract_aqua_choice("no letters", strict=False) is None


def test_is_math_correct():
    assert is_math_correct(1234.5, "1,234.5")
    assert is_math_correct(2.0009, 2)
    assert not is_math_correct(2.002, 2)
    assert not is_math_correct(None, 2)


def test_reasoning_accuracy():
    out = reasoning_accuracy("gsm8k", ["so -3", "it is 1,000", "no idea", "7"], [-3, "1000", 4, 8])
    assert out == {"accuracy": 50.0, "n": 4.0}
    out = reasoning_accuracy("boolq", ["true", "nothing"], ["true", "false"])
    assert out == {"accuracy": 50.0, "n": 2.0}
    gens, golds = ["As a result the answer is (C)"], ["C"]
    assert reasoning_accuracy("AQuA", gens, golds)["accuracy"] == 0.0
    assert reasoning_accuracy("aqua", gens, golds, aqua_strict=True)["accuracy"] == 100.0


def test_reasoning_dataset_lists_and_errors():
    assert len(COMMONSENSE_DATASETS) == 8 and len(MATH_DATASETS) == 7
    with pytest.raises(ValueError, match="valid: boolq"):
        extract_answer("boolqq", "true")
    with pytest.raises(ValueError, match="not a commonsense dataset"):
        extract_commonsense_answer("gsm8k", "3")
    with pytest.raises(ValueError, match="equal length"):
        reasoning_accuracy("gsm8k", ["1"], [])
