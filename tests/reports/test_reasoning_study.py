"""The reasoning study's table (declarations.REASONING_SMOLLM2, issue 26) on hand-made records and predictions in
the real schema: metrics keyed <set>/accuracy and <set>/n (×100) and predictions.jsonl lines as
tasks/reasoning.evaluate writes them, extraction and scoring by tasks/metrics. Accuracy and extraction-failure rate
worked out by hand, seeds, the zero-shot row apart from trained Propulsion, the majority-answer reference, decoding
and subset sizes, missing runs, an empty folder and byte-identical reruns."""

from __future__ import annotations

import json

from propulsion import records
from propulsion.reports import cli, reasoning_study
from propulsion.reports.declarations import REASONING_SMOLLM2
from propulsion.tasks import metrics

GENERATION = {"commonsense": {"num_beams": 1, "do_sample": False, "max_new_tokens": 32},
              "arithmetic": {"num_beams": 1, "do_sample": False, "max_new_tokens": 256}}
TRAINABLE = {"propulsion": 1026240, "lora": 6635520}

# boolq: golds true, false, true, true; answers extracted in 3 of 4 rows, 2 of them right -> 50.0, fail 25.0;
# the majority answer (true) is 3 of 4 -> 75.0.
BOOLQ = [("true", "the answer is true"), ("false", "true"), ("true", "I cannot say"), ("true", "true")]
ARC_EASY = [("answer1", "answer1"), ("answer2", "answer2")]  # 100.0, fail 0.0
ARC_CHALLENGE = [("answer3", "answer1"), ("answer3", "answer2")]  # 0.0, fail 0.0
OBQA = [("answer4", "answer4"), ("answer1", "none of them")]  # 50.0, fail 50.0
GSM8K = [("31.0", "so she pays 31 dollars"), ("4.0", "she pays 5"), ("12.0", "I do not know")]  # 33.3, fail 33.3


def run(root, name, task, method, seed, sets, *, max_steps=None, trainable=None, wall=600.0,
        finished="2026-12-01T10:00:00Z", predictions=True):
    """One run's record and predictions.jsonl as propulsion.run writes them for a reasoning run."""
    lines, scores = [], {}
    for dataset, rows in sets.items():
        golds, texts = [g for g, _ in rows], [t for _, t in rows]
        scores.update({f"{dataset}/{k}": v for k, v in metrics.reasoning_accuracy(dataset, texts, golds).items()})
        lines += [{"dataset": dataset, "instruction": f"question {i}", "generation": text,
                   "extracted": metrics.extract_answer(dataset, text), "gold": gold,
                   "correct": metrics.reasoning_accuracy(dataset, [text], [gold])["accuracy"] == 100.0}
                  for i, (gold, text) in enumerate(rows)]
    config = {"model": {"name": "smollm2-135m"}, "method": {"name": method},
              "task": {"name": task, "family": "reasoning", "options": {"generation": GENERATION[task]}},
              "trainer": {"lr": 3e-4, "max_steps": max_steps, "batch_size": 4}, "seed": seed, "protocol": "paper",
              "output_root": "x"}
    count = TRAINABLE[method] if trainable is None else trainable
    record = {"schema_version": records.SCHEMA_VERSION, "status": "completed", "run_id": name, "task": task,
              "family": "reasoning", "method": method, "seed": seed, "model": "smollm2-135m", "protocol": "paper",
              "main_metric": "boolq/accuracy", "config": config, "metrics": scores,
              "params": {"trainable": count, "total": 134515008, "percent": 100 * count / 134515008},
              "train": {"steps": 0 if max_steps == 0 else 48}, "wall_time_s": wall,
              "peak_memory_bytes": 2500 * 2**20, "finished_at": finished,
              "evaluation": {"final": {"split": "test", "rows": {d: len(r) for d, r in sets.items()},
                                       "generation": GENERATION[task]}}}
    folder = root / name
    records.write_json_atomic(folder / records.RECORD_NAME, record)
    if predictions:
        (folder / records.PREDICTIONS_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))


COMMONSENSE = {"boolq": BOOLQ, "ARC-Easy": ARC_EASY, "ARC-Challenge": ARC_CHALLENGE, "openbookqa": OBQA}


def make_runs(root):
    run(root, "cs-propulsion-0", "commonsense", "propulsion", 0, COMMONSENSE)
    # Zero-shot: every answer right on boolq, nothing extracted on ARC-Easy.
    run(root, "cs-zero-shot-0", "commonsense", "propulsion", 0,
        {"boolq": [(g, g) for g, _ in BOOLQ], "ARC-Easy": [("answer1", "hmm"), ("answer2", "well")]}, max_steps=0)
    # LoRA, 3 seeds on boolq: 1, 2, 3 right of 4 (25, 50, 75) and 2, 1, 0 extraction failures (50, 25, 0).
    for seed, rows in enumerate([[("true", "true"), ("false", "?"), ("true", "?"), ("true", "false")],
                                 [("true", "true"), ("false", "false"), ("true", "?"), ("true", "false")],
                                 [("true", "true"), ("false", "false"), ("true", "true"), ("true", "false")]]):
        run(root, f"cs-lora-{seed}", "commonsense", "lora", seed, {"boolq": rows}, wall=100.0 * (seed + 1))
    run(root, "ar-propulsion-0", "arithmetic", "propulsion", 0, {"gsm8k": GSM8K})


def cells_of(text, label, section):
    part = text.split(f"## {section}", 1)[1].split("##", 1)[0]
    line = next(line for line in part.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def rendered(tmp_path):
    make_runs(tmp_path / "runs")
    runs, _ = records.load_records(tmp_path / "runs")
    return reasoning_study.table(REASONING_SMOLLM2, runs, [])


def test_accuracy_and_failure_rate_by_hand(tmp_path):
    text = rendered(tmp_path)
    assert cells_of(text, "Method", "commonsense") == [
        "Method", "#TPs", "boolq", "boolq fail %", "ARC-Easy", "ARC-Easy fail %", "ARC-Challenge",
        "ARC-Challenge fail %", "openbookqa", "openbookqa fail %", "Avg.", "seeds", "wall s/run", "peak MiB/run"]
    # Avg. (50 + 100 + 0 + 50) / 4 = 50.0
    assert cells_of(text, "Propulsion", "commonsense") == [
        "Propulsion", "1,026,240", "50.0", "25.0", "100.0", "0.0", "0.0", "0.0", "50.0", "50.0", "50.0", "1", "600",
        "2500"]
    # gsm8k: 31 right, 5 wrong, nothing extracted from the third: 33.3, fail 33.3; no Avg. without every set.
    arithmetic = cells_of(text, "Propulsion", "arithmetic")
    assert arithmetic[4:6] == ["33.3", "33.3"] and arithmetic[2] == "–" and arithmetic[16] == "–"


def test_seeds_give_mean_sd_and_n(tmp_path):
    lora = cells_of(rendered(tmp_path), "LoRA", "commonsense")
    # accuracy 25, 50, 75 -> 50.0 ± 25.0; failures 50, 25, 0 -> 25.0 ± 25.0; wall: median of 100, 200, 300
    assert lora[:4] == ["LoRA", "6,635,520", "50.0 ± 25.0", "25.0 ± 25.0"]
    assert lora[4] == "–" and lora[-3:] == ["3", "200", "2500"]


def test_zero_shot_is_its_own_row_never_mixed_with_trained_propulsion(tmp_path):
    text = rendered(tmp_path)
    zero = cells_of(text, "zero-shot (untrained)", "commonsense")
    # boolq all right, nothing extracted on ARC-Easy: 0.0 with fail 100.0; #TPs 0 (no step taken)
    assert zero[:6] == ["zero-shot (untrained)", "0", "100.0", "0.0", "0.0", "100.0"]
    assert cells_of(text, "Propulsion", "commonsense")[2] == "50.0"  # the trained run alone, 1 seed
    assert "commonsense × zero-shot (untrained): #TPs 0 (no step taken); its records count 1,026,240" in text
    assert cells_of(text, "zero-shot (untrained)", "arithmetic")[1:3] == ["–", "–"]


def test_another_methods_untrained_run_is_left_out_and_named(tmp_path):
    make_runs(tmp_path / "runs")
    run(tmp_path / "runs", "cs-lora-untrained", "commonsense", "lora", 0, {"boolq": BOOLQ}, max_steps=0)
    runs, _ = records.load_records(tmp_path / "runs")
    text = reasoning_study.table(REASONING_SMOLLM2, runs, [])
    assert cells_of(text, "LoRA", "commonsense")[2] == "50.0 ± 25.0"
    assert "cs-lora-untrained/record.json: lora with trainer.max_steps=0 (untrained" in text


def test_majority_answer_is_a_reference_row(tmp_path):
    text = rendered(tmp_path)
    # boolq golds true, false, true, true -> 75.0; ARC-Easy answer1, answer2 -> 50.0; no fail %, #TPs or seeds
    majority = cells_of(text, "majority answer (reference)", "commonsense")
    assert majority[:6] == ["majority answer (reference)", "–", "75.0", "–", "50.0", "–"]
    assert majority[-3:] == ["–", "–", "–"]
    assert cells_of(text, "majority answer (reference)", "arithmetic")[4] == "33.3"  # three different golds


def test_decoding_subset_sizes_and_missing_runs(tmp_path):
    text = rendered(tmp_path)
    assert ("- commonsense: num_beams 1 (greedy), max_new_tokens 32; rows evaluated per test set: boolq 4; "
            "ARC-Easy 2; ARC-Challenge 2; openbookqa 2") in text
    assert "- arithmetic: num_beams 1 (greedy), max_new_tokens 256; rows evaluated per test set: MultiArith –" in text
    # 12 planned (5 methods + zero-shot, 2 tasks, seed 0); commonsense Propulsion, LoRA, zero-shot and arithmetic
    # Propulsion have a record.
    assert "Missing (8 of 12 planned runs have no completed record yet;" in text
    assert "- commonsense × AdaLoRA: seed 0" in text and "- arithmetic × zero-shot (untrained): seed 0" in text
    assert "- commonsense × LoRA: seed 0" not in text and "- commonsense × Propulsion: seed 0" not in text


def test_a_run_without_predictions_keeps_its_accuracy(tmp_path):
    run(tmp_path / "runs", "cs-parallel-0", "commonsense", "parallel", 0, {"boolq": BOOLQ}, trainable=32440320,
        predictions=False)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / records.RECORD_NAME).write_text("{not json")
    assert cli.main(["--only", "reasoning_smollm2", "--runs", str(tmp_path / "runs"), "--out",
                     str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "table.md").read_text()
    assert cells_of(text, "Parallel", "commonsense")[1:4] == ["32,440,320", "50.0", "–"]
    assert "no readable predictions.jsonl beside" in text and "Skipped (1):" in text
    assert cells_of(text, "majority answer (reference)", "commonsense")[2] == "–"  # no golds to read


def test_empty_folder_renders_the_empty_table_byte_identically(tmp_path):
    for runs in (tmp_path / "absent", tmp_path / "empty"):
        runs.mkdir(exist_ok=True) if runs.name == "empty" else None
        out = tmp_path / f"out-{runs.name}"
        assert reasoning_study.render(REASONING_SMOLLM2, runs, out) == 0
        text = (out / "table.md").read_text()
        assert cells_of(text, "LoRA", "arithmetic")[1:] == ["–"] * 19
        assert "Missing (12 of 12 planned runs" in text and "- commonsense: no records yet" in text
    make_runs(tmp_path / "runs")
    first = reasoning_study.render(REASONING_SMOLLM2, tmp_path / "runs", tmp_path / "a")
    again = reasoning_study.render(REASONING_SMOLLM2, tmp_path / "runs", tmp_path / "b")
    assert first == again == 0
    assert (tmp_path / "a" / "table.md").read_bytes() == (tmp_path / "b" / "table.md").read_bytes()
