"""reports/stats.py on hand-made cases with known answers: the paired t-interval, TOST, Holm, the verdict's
branches, the hierarchical bootstrap (deterministic, collapsing where nothing varies, resampling seeds), the
predictions loader, and stats.csv's exact text."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from scipy.stats import t as student_t

from propulsion import records
from propulsion.reports import stats
from propulsion.specs import UserError

# --------------------------------------------------------------------------------------------------------
# Paired differences and the t-interval
# --------------------------------------------------------------------------------------------------------


def test_t_interval_of_one_two_three_by_hand():
    # mean 2, s = 1, half-width t(0.975, 2) · 1/√3 = 4.302653 / 1.732051 = 2.484138
    result = stats.t_interval([1.0, 2.0, 3.0])
    assert (result.n, result.mean) == (3, 2.0)
    assert result.low == pytest.approx(2 - 2.4841377, abs=1e-6)
    assert result.high == pytest.approx(2 + 2.4841377, abs=1e-6)
    assert result.note == ""


def test_one_seed_gives_no_interval_and_says_so():
    result = stats.t_interval([4.0])
    assert (result.n, result.mean, result.low, result.high) == (1, 4.0, None, None)
    assert result.note == "one seed: no t-interval"
    with pytest.raises(ValueError, match="no paired seeds"):
        stats.t_interval([])


def test_seeds_are_matched_by_number_and_an_unpaired_seed_is_dropped_and_counted():
    paired = stats.paired_differences({2: 80.0, 0: 81.0, 1: 79.0, 7: 50.0}, {1: 78.0, 0: 80.0, 2: 77.0, 3: 10.0})
    assert paired.seeds == (0, 1, 2)
    assert paired.differences == (1.0, 1.0, 3.0)
    assert paired.dropped == (3, 7)
    assert paired.n == 3


# --------------------------------------------------------------------------------------------------------
# TOST, Holm, verdict
# --------------------------------------------------------------------------------------------------------

SMALL = [0.1, -0.2, 0.3, 0.0]  # mean 0.05, s = √(0.13 / 3) = 0.208167, se = 0.104083, 3 dof


def test_tost_p_values_by_hand():
    se = math.sqrt(0.13 / 3) / 2
    result = stats.tost(SMALL, 1.0)
    assert result.p_lower == pytest.approx(student_t.sf((0.05 + 1.0) / se, 3), rel=1e-9)
    assert result.p_upper == pytest.approx(student_t.cdf((0.05 - 1.0) / se, 3), rel=1e-9)
    assert result.p == pytest.approx(0.0013898, abs=1e-6)  # the upper side: the mean leans towards +δ
    assert result.p < 0.05  # equivalent within ±1
    narrow = stats.tost(SMALL, 0.1)  # ±0.1: t = (0.05 − 0.1) / se = −0.4804 on the upper side
    assert narrow.p == pytest.approx(student_t.cdf(-0.05 / se, 3), rel=1e-9)
    assert narrow.p == pytest.approx(0.3319, abs=1e-4)
    assert narrow.p > 0.05  # not equivalent within ±0.1


def test_tost_needs_two_seeds_and_a_positive_margin_and_handles_no_spread():
    assert stats.tost([0.5], 2.0) is None
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.tost(SMALL, 0.0)
    inside = stats.tost([1.0, 1.0, 1.0], 2.0)
    assert (inside.p_lower, inside.p_upper) == (0.0, 0.0)
    outside = stats.tost([3.0, 3.0], 2.0)
    assert (outside.p_lower, outside.p_upper, outside.p) == (0.0, 1.0, 1.0)


def test_holm_on_literal_p_values():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # capped at 1, untested entries stay None and are not counted in m (m = 2 here)
    adjusted = stats.holm([0.6, None, 0.02])
    assert adjusted[1] is None
    assert adjusted[0] == pytest.approx(0.6) and adjusted[2] == pytest.approx(0.04)
    assert stats.holm([0.5, 0.7]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


@pytest.mark.parametrize(("p_holm", "low", "high", "expected"), [
    (0.01, -1.0, 1.0, "equivalent"),
    (0.01, 0.5, 1.0, "equivalent"),  # equivalent first, even where the interval excludes 0
    (0.05, 0.5, 3.0, "better"),  # p = alpha is not below it
    (0.20, -3.0, -0.5, "worse"),
    (None, 0.1, 2.0, "better"),
    (0.20, -1.0, 1.0, "inconclusive"),
    (0.20, 0.0, 1.0, "inconclusive"),  # an interval touching 0 does not exclude it
    (None, None, None, "inconclusive"),  # one seed: no test, no interval
])
def test_verdict_branches(p_holm, low, high, expected):
    assert stats.verdict(p_holm, low, high) == expected
    assert expected in stats.VERDICTS


# --------------------------------------------------------------------------------------------------------
# Hierarchical bootstrap
# --------------------------------------------------------------------------------------------------------


def predictions(values, labels, name="set0"):
    return stats.Predictions(name, np.asarray(values), np.asarray(labels))


def noisy(seed_count=3, n=40, regression=False):
    rng = np.random.default_rng(123)
    method, baseline = {}, {}
    for s in range(seed_count):
        if regression:
            labels = rng.uniform(0, 5, n)
            method[s] = predictions(labels + rng.normal(0, 0.5, n), labels)
            baseline[s] = predictions(labels + rng.normal(0, 1.0, n), labels)
        else:
            labels = rng.integers(0, 2, n)
            method[s] = predictions(np.where(rng.random(n) < 0.8, labels, 1 - labels), labels)
            baseline[s] = predictions(np.where(rng.random(n) < 0.7, labels, 1 - labels), labels)
    return method, baseline


@pytest.mark.parametrize("metric", ["accuracy", "pearson"])
def test_bootstrap_is_deterministic_for_a_seed(metric):
    method, baseline = noisy(regression=metric == "pearson")
    first = stats.hierarchical_bootstrap(method, baseline, metric, resamples=300, seed=7)
    again = stats.hierarchical_bootstrap(method, baseline, metric, resamples=300, seed=7)
    other = stats.hierarchical_bootstrap(method, baseline, metric, resamples=300, seed=8)
    assert (first.low, first.high) == (again.low, again.high)  # byte-identical floats
    assert (first.low, first.high) != (other.low, other.high)
    assert first.low < first.point < first.high


def test_bootstrap_point_recomputes_the_metric_on_each_seeds_examples():
    method, baseline = noisy(regression=True)
    expected = 100 * np.mean([pearsonr(method[s].predictions, method[s].labels)[0]
                              - pearsonr(baseline[s].predictions, baseline[s].labels)[0] for s in range(3)])
    assert stats.hierarchical_bootstrap(method, baseline, "pearson", resamples=10).point == pytest.approx(expected)


def test_bootstrap_interval_collapses_where_every_seed_and_example_agree():
    labels = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    right = {s: predictions(labels, labels) for s in range(3)}  # every example right on every seed
    wrong = {s: predictions(1 - labels, labels) for s in range(3)}  # every example wrong
    result = stats.hierarchical_bootstrap(right, wrong, "accuracy", resamples=200)
    assert (result.point, result.low, result.high, result.undefined) == (100.0, 100.0, 100.0, 0)
    same = stats.hierarchical_bootstrap(right, right, "accuracy", resamples=200)
    assert (same.point, same.low, same.high) == (0.0, 0.0, 0.0)
    # Pearson recomputed per resample: r = +1 against r = −1 on any resample of 20 distinct scores (×100: 200)
    scores = np.linspace(0.0, 5.0, 20)
    exact = {0: predictions(scores, scores), 1: predictions(scores, scores)}
    flipped = {0: predictions(-scores, scores), 1: predictions(-scores, scores)}
    pearson = stats.hierarchical_bootstrap(exact, flipped, "pearson", resamples=200)
    assert (pearson.point, pearson.low, pearson.high) == pytest.approx((200.0, 200.0, 200.0))


def test_bootstrap_resamples_seeds_first():
    # Seed 0: method right everywhere, baseline wrong (difference 100); seed 1: both right (0). Examples never
    # vary within a seed, so a resample's mean is 0, 50 or 100: with 2000 resamples the 2.5% and 97.5%
    # percentiles are 0 and 100 (each extreme has probability 1/4).
    labels = np.array([1, 0, 1, 1, 0])
    method = {0: predictions(labels, labels), 1: predictions(labels, labels)}
    baseline = {0: predictions(1 - labels, labels), 1: predictions(labels, labels)}
    result = stats.hierarchical_bootstrap(method, baseline, "accuracy", resamples=2000, seed=0)
    assert (result.point, result.low, result.high) == (50.0, 0.0, 100.0)


def test_bootstrap_refuses_different_examples_and_unknown_metrics():
    labels = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="seed 0: method and baseline were not scored on the same examples"):
        stats.hierarchical_bootstrap({0: predictions(labels, labels)}, {0: predictions(labels, 1 - labels)},
                                     "accuracy")
    with pytest.raises(UserError, match="no bootstrap for metric 'f1'; valid choices: accuracy, pearson, spearmanr"):
        stats.hierarchical_bootstrap({0: predictions(labels, labels)}, {0: predictions(labels, labels)}, "f1")


# --------------------------------------------------------------------------------------------------------
# Loading predictions beside a record
# --------------------------------------------------------------------------------------------------------


def write_run(folder, seed, lines, metrics=None):
    folder.mkdir(parents=True)
    record = {"schema_version": records.SCHEMA_VERSION, "status": "completed", "task": "mrpc", "method": "lora",
              "seed": seed, "family": "glue", "config": {"seed": seed}, "metrics": metrics or {"accuracy": 0.5}}
    (folder / records.RECORD_NAME).write_text(json.dumps(record))
    (folder / records.PREDICTIONS_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_predictions_load_from_beside_the_record_in_index_order(tmp_path):
    lines = [{"set": "abc", "index": i, "prediction": p, "label": y} for i, p, y in [(1, 0, 0), (0, 1, 1), (2, 1, 0)]]
    write_run(tmp_path / "runs" / "a", 3, lines, {"accuracy": 0.8125})
    found, skipped = records.load_records(tmp_path / "runs")
    assert skipped == []
    loaded = stats.load_predictions(found[0])
    assert loaded.set == "abc"
    assert loaded.predictions.tolist() == [1, 0, 1] and loaded.labels.tolist() == [1, 0, 0]
    assert stats.predictions_by_seed(found)[3].labels.tolist() == [1, 0, 0]
    assert stats.scores_by_seed(found, "accuracy") == {3: 81.25}  # GLUE metrics ×100, as the tables print


def test_predictions_with_several_sets_need_a_name(tmp_path):
    lines = [{"set": name, "index": 0, "prediction": 0.5, "label": 1.0} for name in ("m", "mm")]
    write_run(tmp_path / "a", 0, lines)
    record = records.load_records(tmp_path)[0][0]
    with pytest.raises(ValueError, match="2 evaluated sets \\(m, mm\\); name one"):
        stats.load_predictions(record)
    assert stats.load_predictions(record, "mm").predictions.tolist() == [0.5]
    with pytest.raises(ValueError, match="no set 'x'; valid choices: m, mm"):
        stats.load_predictions(record, "x")


def test_predictions_file_is_the_one_glue_writes(tmp_path):
    from propulsion.tasks import glue  # torch: only here, to check the two names and formats agree

    write_run(tmp_path / "a", 0, [])
    glue._write_predictions(tmp_path / "a" / records.PREDICTIONS_NAME, "fp", np.array([0.5, 2.25]),
                            np.array([1.0, 2.0]), regression=True)
    loaded = stats.load_predictions(records.load_records(tmp_path)[0][0])
    assert (loaded.set, loaded.predictions.tolist(), loaded.labels.tolist()) == ("fp", [0.5, 2.25], [1.0, 2.0])


# --------------------------------------------------------------------------------------------------------
# Margins as data
# --------------------------------------------------------------------------------------------------------


def test_default_margins_are_the_issues_and_a_yaml_block_gives_the_same():
    settings = stats.Equivalence()
    assert (settings.margin("mrpc", "accuracy"), settings.margin("stsb", "pearson")) == (2.0, 1.5)
    assert (settings.alpha, settings.confidence) == (0.05, 0.95)
    assert stats.Equivalence.from_mapping({"margins": {"mrpc": {"accuracy": 2}, "stsb": {"pearson": 1.5}},
                                           "alpha": 0.05}) == settings
    assert stats.Equivalence.from_mapping(None) == settings
    with pytest.raises(UserError, match="no equivalence margin for cola/matthews_correlation; margins are fixed "
                                        "for: mrpc/accuracy, stsb/pearson"):
        settings.margin("cola", "matthews_correlation")


@pytest.mark.parametrize(("block", "message"), [
    ({"margin": 2}, "unknown equivalence setting(s) margin; valid choices: margins, alpha, confidence, resamples, "
                    "bootstrap_seed"),
    ({"margins": {"mrpc": {"accuracy": -2}}}, "equivalence.margins.mrpc.accuracy must be a positive number"),
    ({"margins": {"mrpc": 2}}, "equivalence.margins must map task -> {metric: margin}"),
    ({"alpha": 5}, "equivalence.alpha must be a number in (0, 1); got 5"),
    ({"resamples": 0}, "equivalence.resamples must be an integer >= 1; got 0"),
])
def test_bad_equivalence_blocks_are_one_clear_line(block, message):
    with pytest.raises(UserError) as error:
        stats.Equivalence.from_mapping(block)
    assert str(error.value).startswith(message)


# --------------------------------------------------------------------------------------------------------
# stats_rows and stats.csv
# --------------------------------------------------------------------------------------------------------


def family():
    lora_mrpc = {0: 80.0, 1: 81.0, 2: 82.0}
    lora_stsb = {0: 85.0, 1: 85.0, 2: 85.0, 3: 85.0}
    return [
        # listed out of order: rows come sorted
        stats.Comparison("stsb", "pearson", "propulsion", "lora",
                         {0: 85.1, 1: 84.8, 2: 85.3, 3: 85.0, 4: 90.0}, lora_stsb),  # seed 4: method only
        stats.Comparison("mrpc", "accuracy", "propulsion", "lora", {0: 81.0, 1: 83.0, 2: 85.0}, lora_mrpc),
        stats.Comparison("mrpc", "accuracy", "head_only", "lora", {0: 75.0, 1: 75.0, 2: 75.0}, lora_mrpc),
        stats.Comparison("stsb", "pearson", "bitfit", "lora", {0: 84.0}, lora_stsb),
    ]


def test_stats_rows_values_holm_family_and_verdicts():
    rows = stats.stats_rows(family())
    assert [(r["task"], r["method"]) for r in rows] == [("mrpc", "head_only"), ("mrpc", "propulsion"),
                                                          ("stsb", "bitfit"), ("stsb", "propulsion")]
    head, propulsion_mrpc, bitfit, propulsion_stsb = rows
    # differences [1, 2, 3]: mean 2 ± 2.4841; TOST at ±2 has p_upper = t.cdf(0) = 0.5: not equivalent
    assert propulsion_mrpc["seeds"] == 3 and propulsion_mrpc["mean_diff"] == pytest.approx(2.0)
    assert propulsion_mrpc["ci_low"] == pytest.approx(-0.4841377, abs=1e-6)
    assert propulsion_mrpc["p_tost"] == pytest.approx(0.5)
    assert propulsion_mrpc["verdict"] == "inconclusive"
    # differences [-5, -6, -7]: the interval lies below 0; TOST's lower side p = t.sf((−6 + 2)·√3, 2) = 0.9899
    assert head["p_tost"] == pytest.approx(student_t.sf(-4 * math.sqrt(3), 2), rel=1e-9)
    assert head["verdict"] == "worse" and head["ci_high"] == pytest.approx(-6 + 2.4841377, abs=1e-6)
    # one seed: no interval, no test, not in Holm's family
    assert (bitfit["seeds"], bitfit["ci_low"], bitfit["p_tost"], bitfit["p_holm"]) == (1, None, None, None)
    assert (bitfit["seeds_dropped"], bitfit["verdict"]) == (3, "inconclusive")
    assert bitfit["note"] == "one seed: no t-interval; seed(s) 1, 2, 3 unpaired, dropped"
    # SMALL's differences at ±1.5, Holm over the 3 tests: the smallest p times 3
    se = math.sqrt(0.13 / 3) / 2
    p = student_t.cdf((0.05 - 1.5) / se, 3)
    assert propulsion_stsb["p_tost"] == pytest.approx(p, rel=1e-9)
    assert propulsion_stsb["p_holm"] == pytest.approx(3 * p, rel=1e-9)
    assert (propulsion_stsb["seeds"], propulsion_stsb["seeds_dropped"]) == (4, 1)
    assert propulsion_stsb["verdict"] == "equivalent"
    assert propulsion_stsb["note"] == "seed(s) 4 unpaired, dropped"
    assert propulsion_stsb["boot_low"] is None  # no predictions given


STATS_CSV = """\
task,metric,method,baseline,seeds,mean_diff,ci_low,ci_high,verdict,seeds_dropped,margin,boot_low,boot_high,p_tost,p_holm,note
mrpc,accuracy,head_only,lora,3,-6.00,-8.48,-3.52,worse,0,2.00,,,0.9899,1.0000,
mrpc,accuracy,propulsion,lora,3,2.00,-0.48,4.48,inconclusive,0,2.00,,,0.5000,1.0000,
stsb,pearson,bitfit,lora,1,-1.00,,,inconclusive,3,1.50,,,,,"one seed: no t-interval; seed(s) 1, 2, 3 unpaired, dropped"
stsb,pearson,propulsion,lora,4,0.05,-0.28,0.38,equivalent,1,1.50,,,0.0004,0.0012,"seed(s) 4 unpaired, dropped"
"""


def test_stats_csv_columns_and_formatting_exact(tmp_path):
    rows = stats.stats_rows(family())
    assert tuple(rows[0])[:9] == stats.COLUMNS == ("task", "metric", "method", "baseline", "seeds", "mean_diff",
                                                   "ci_low", "ci_high", "verdict")
    assert stats.stats_csv(rows) == STATS_CSV
    assert stats.stats_csv(list(reversed(rows))) == STATS_CSV  # sorted whatever the order given
    path = stats.write_stats_csv(rows, tmp_path / "out" / "stats.csv")
    assert path.read_bytes() == STATS_CSV.encode()


def test_no_negative_zero_and_bootstrap_columns_filled_from_predictions():
    labels = np.array([0, 1, 1, 0])
    right = {s: predictions(labels, labels) for s in range(2)}
    comparison = stats.Comparison("mrpc", "accuracy", "propulsion", "lora", {0: 80.0, 1: 80.0}, {0: 80.0, 1: 80.0},
                                  right, right)
    row = stats.stats_rows([comparison], stats.Equivalence(resamples=50))[0]
    assert (row["boot_low"], row["boot_high"]) == (0.0, 0.0)
    line = stats.stats_csv([{**row, "mean_diff": -0.0001}]).splitlines()[1]
    assert line == "mrpc,accuracy,propulsion,lora,2,0.00,0.00,0.00,equivalent,0,2.00,0.00,0.00,0.0000,0.0000,"


def test_a_seed_without_predictions_is_named_in_the_note():
    labels = np.array([0, 1, 1, 0])
    right = {0: predictions(labels, labels)}
    comparison = stats.Comparison("mrpc", "accuracy", "propulsion", "lora", {0: 81.0, 1: 82.0}, {0: 80.0, 1: 80.0},
                                  right, right)
    row = stats.stats_rows([comparison], stats.Equivalence(resamples=20))[0]
    assert row["note"] == "bootstrap without seed(s) 1 (no predictions)"
    assert (row["boot_low"], row["boot_high"]) == (0.0, 0.0)
