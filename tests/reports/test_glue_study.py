"""The GLUE study (declarations.GLUE_MINILM, issue 25) and its pilot on hand-made records in the real schema: row
values, the #TPs split, verdicts worked out by hand, stats.csv, the lr search's edge flag, missing runs, an empty
folder, and byte-identical reruns."""

from __future__ import annotations

import csv
import io
import json

import pytest

from propulsion import records
from propulsion.reports import pilot, study
from propulsion.reports.declarations import GLUE_MINILM

# (trainable, head) per method and task, as adapt.count gives them on all-MiniLM-L6-v2: the head is BERT's pooler
# (147,840) and classifier (384 x labels + labels), plus the z on those two Linears where the method has them.
PARAMS = {("lora", "mrpc"): (73728 + 148610, 148610), ("lora", "stsb"): (73728 + 148225, 148225),
          ("propulsion_head", "mrpc"): (170884, 148996), ("propulsion_head", "stsb"): (170498, 148610),
          ("propulsion", "mrpc"): (22274, 386), ("propulsion", "stsb"): (22273, 385),
          ("lora_r2", "mrpc"): (18432 + 148610, 148610),
          ("head_only", "mrpc"): (148610, 148610)}
METRIC = {"mrpc": "accuracy", "stsb": "pearson"}


def record(task, method, seed, value, *, lr=1e-3, curve=(0.5, 0.6), extra=None, finished="2026-12-01T10:00:00+00:00"):
    trainable, head = PARAMS[(method, task)]
    key = METRIC[task]
    metrics = {key: value, **(extra or {})}
    config = {"model": {"name": "all-minilm-l6-v2", "reinit": None}, "task": {"name": task, "max_length": 128},
              "method": {"name": method}, "trainer": {"lr": lr, "epochs": 3, "batch_size": 16}, "seed": seed,
              "protocol": "heldout", "output_root": "x"}
    evaluations = [{"step": 43 * (i + 1), "split": "dev", "round": 0, "epoch": 0.25 * (i + 1), "metrics": {key: v}}
                   for i, v in enumerate(curve)]
    return {"schema_version": records.SCHEMA_VERSION, "status": "completed", "task": task, "method": method,
            "seed": seed, "model": "all-minilm-l6-v2", "family": "glue", "protocol": "heldout", "config": config,
            "main_metric": key, "metrics": metrics, "params": {"trainable": trainable, "head": head},
            "evaluations": evaluations, "best": {"step": 86, "value": max(curve)}, "wall_time_s": 300.0,
            "peak_memory_bytes": 1500 * 2**20, "finished_at": finished, "data": {"sizes": {"train": 3668}},
            "train": {"device": "cpu", "steps": 690}, "model_files": {"sha256": {"model.safetensors": "53aa"}}}


def write(root, rec, name):
    records.write_json_atomic(root / name / "record.json", rec)


# Per-seed MRPC accuracy (fractions, as records hold them). LoRA r=8: 80, 81, 82, 83, 84 (×100).
LORA = [0.80, 0.81, 0.82, 0.83, 0.84]
HEAD_DIFF = [0.0, 0.005, -0.005, 0.005, -0.005]  # Propulsion + head − LoRA: mean 0, sd 0.5 points
PROP_DIFF = [-0.10, -0.11, -0.09, -0.10, -0.10]  # Propulsion − LoRA: mean −10, sd 0.71 points
R2_DIFF = [0.01, -0.03, 0.05]  # LoRA r=2 − LoRA, 3 seeds: mean +1, sd 4 points
STSB_LORA = [0.80, 0.81, 0.82, 0.83, 0.84]
STSB_DIFF = [0.03, 0.035, 0.025, 0.03, 0.03]  # Propulsion + head − LoRA on STS-B Pearson: mean +3, sd 0.35


def make_runs(root):
    for seed in range(5):
        write(root, record("mrpc", "lora", seed, LORA[seed], extra={"f1": 0.85}), f"mrpc-lora-{seed}")
        write(root, record("mrpc", "propulsion_head", seed, LORA[seed] + HEAD_DIFF[seed], lr=4e-4),
              f"mrpc-ph-{seed}")
        write(root, record("mrpc", "propulsion", seed, LORA[seed] + PROP_DIFF[seed], lr=2e-3), f"mrpc-p-{seed}")
        write(root, record("stsb", "lora", seed, STSB_LORA[seed]), f"stsb-lora-{seed}")
        write(root, record("stsb", "propulsion_head", seed, STSB_LORA[seed] + STSB_DIFF[seed], lr=4e-4),
              f"stsb-ph-{seed}")
    for seed in range(3):
        write(root, record("mrpc", "lora_r2", seed, LORA[seed] + R2_DIFF[seed]), f"mrpc-r2-{seed}")


def cells_of(text, label):
    line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def rendered(tmp_path):
    make_runs(tmp_path / "runs")
    runs, _ = records.load_records(tmp_path / "runs")
    return study.paired_table(GLUE_MINILM, runs, [])


def test_rows_params_split_and_verdicts_by_hand(tmp_path):
    text, _, rows = rendered(tmp_path)
    header = cells_of(text, "Method")
    assert header == ["Method", "#TPs outside head", "#TPs head", "MRPC acc", "MRPC F1", "STS-B P", "STS-B S", "seeds",
                      "MRPC acc vs LoRA r=8", "STS-B P vs LoRA r=8", "wall s/run", "peak MiB/run"]
    # Propulsion + head, MRPC: 80, 81.5, 81.5, 83.5, 83.5 -> 82.0 ± 1.5 (squares 4 + .25 + .25 + 2.25 + 2.25 = 9, / 4);
    # STS-B: 83, 84.5, 84.5, 86, 87 -> 85.0 ± 1.5 (4 + .25 + .25 + 1 + 4 = 9.5, / 4, sqrt = 1.54)
    # #TPs: 21,888 outside the head on both tasks (z off the head); the head 148,610 (STS-B) to 148,996 (MRPC).
    # Verdict: differences 0, .5, −.5, .5, −.5: mean 0, s = 0.5, t(.975, 4) = 2.776 -> ±0.62; TOST at ±2 rejects.
    assert cells_of(text, "Propulsion(All) + head") == [
        "Propulsion(All) + head", "21,888", "148,610–148,996", "82.0 ± 1.5", "–", "85.0 ± 1.5", "–", "5",
        "equivalent +0.0 [-0.6, +0.6] (n=5)", "better +3.0 [+2.6, +3.4] (n=5)", "300", "1500"]
    # Propulsion, head frozen: 70, 70, 73, 73, 74 -> 72.0 ± 1.9 (4 + 4 + 1 + 1 + 4 = 14, / 4, sqrt = 1.87);
    # differences −10 ± 0.71 / √5 · 2.776 = ±0.88 -> worse; no STS-B run: "–"
    prop = cells_of(text, "Propulsion(All)")
    assert prop[1:4] == ["21,888", "386", "72.0 ± 1.9"] and prop[8:10] == ["worse -10.0 [-10.9, -9.1] (n=5)", "–"]
    # LoRA r=2, 3 seeds: +1, −3, +5 -> mean 1, s = 4, t(.975, 2) = 4.303 · 4 / √3 = 9.94 -> inconclusive
    assert cells_of(text, "LoRA r=2")[8] == "inconclusive +1.0 [-8.9, +10.9] (n=3)"
    lora = cells_of(text, "LoRA r=8")
    assert lora[1:5] == ["73,728", "148,225–148,610", "82.0 ± 1.6", "85.0 ± 0.0"] and lora[8:10] == ["baseline"] * 2
    assert "Avg." not in header  # no average over tasks
    by = {(r["task"], r["method"]): r for r in rows}
    assert {k: r["verdict"] for k, r in by.items()} == {
        ("mrpc", "lora_r2"): "inconclusive", ("mrpc", "propulsion"): "worse",
        ("mrpc", "propulsion_head"): "equivalent", ("stsb", "propulsion_head"): "better"}
    assert by[("mrpc", "propulsion")]["mean_diff"] == pytest.approx(-10.0)
    assert by[("mrpc", "propulsion_head")]["p_holm"] == pytest.approx(4 * by[("mrpc", "propulsion_head")]["p_tost"])


def test_missing_runs_are_named(tmp_path):
    text, _, _ = rendered(tmp_path)
    # 48 expected (5 seeds x 3 methods + 3 x 3, two tasks); 28 written
    assert "Missing (20 of 48 runs have no completed record yet):" in text
    assert "- stsb × LoRA r=2: seed(s) 0, 1, 2 of 0–2" in text
    assert "- stsb × Propulsion(All): seed(s) 0, 1, 2, 3, 4 of 0–4" in text
    assert "mrpc × LoRA r=8" not in text


def test_render_writes_stats_csv_figures_and_reruns_byte_identically(tmp_path):
    make_runs(tmp_path / "runs")
    for seed in range(5):  # predictions beside the MRPC LoRA and Propulsion + head records: the bootstrap columns
        for name in (f"mrpc-lora-{seed}", f"mrpc-ph-{seed}"):
            lines = [json.dumps({"set": "s", "index": i, "prediction": (i + seed + len(name)) % 2, "label": i % 2})
                     for i in range(10)]
            (tmp_path / "runs" / name / records.PREDICTIONS_NAME).write_text("\n".join(lines) + "\n")
    out, search = tmp_path / "out", tmp_path / "search"
    for method, lrs in (("lora", (3e-4, 1e-3, 3e-3)), ("bitfit", (3e-3, 1e-2, 3e-2))):
        for lr, value in zip(lrs, (0.70, 0.80, 0.75) if method == "lora" else (0.70, 0.75, 0.80), strict=True):
            for task in ("mrpc", "stsb"):
                rec = record(task, "lora", 0, value, lr=lr, curve=(value,))
                rec["method"] = rec["config"]["method"]["name"] = method
                write(search, rec, f"{task}-{method}-{lr}")
    assert study.render(GLUE_MINILM, tmp_path / "runs", search, out) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["learning_curves.png", "lr_search.md", "score_vs_params.png", "stats.csv", "table.md"]
    first = {name: (out / name).read_bytes() for name in names}
    assert study.render(GLUE_MINILM, tmp_path / "runs", search, out) == 0
    assert {name: (out / name).read_bytes() for name in names} == first
    rows = list(csv.DictReader(io.StringIO(first["stats.csv"].decode())))
    assert list(rows[0])[:9] == ["task", "metric", "method", "baseline", "seeds", "mean_diff", "ci_low", "ci_high",
                                 "verdict"]
    head = next(r for r in rows if (r["task"], r["method"]) == ("mrpc", "propulsion_head"))
    assert (head["seeds"], head["mean_diff"], head["ci_low"], head["ci_high"], head["verdict"]) == \
        ("5", "0.00", "-0.62", "0.62", "equivalent")
    assert head["boot_low"] and head["boot_high"]  # from the predictions
    assert not next(r for r in rows if r["method"] == "propulsion")["boot_low"]  # none written beside them
    search_md = first["lr_search.md"].decode()
    assert "| LoRA r=8 | 0.001 | 80.0 | 80.0 | 80.0 | yes | 600 |" in search_md  # interior
    assert "| BitFit | 0.03 | 80.0 | 80.0 | 80.0 | yes (edge) | 600 |" in search_md  # the top of its range
    assert "Edge choices: BitFit." in search_md


def test_an_empty_folder_renders_tables_that_say_so_and_no_figures(tmp_path):
    out = tmp_path / "out"
    assert study.render(GLUE_MINILM, tmp_path / "absent", tmp_path / "absent-search", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["lr_search.md", "stats.csv", "table.md"]
    text = (out / "table.md").read_text()
    assert "| (no completed records yet) |" in text and "Missing (48 of 48 runs" in text
    assert (out / "stats.csv").read_text().count("\n") == 1  # the header only
    assert "No choice yet." in (out / "lr_search.md").read_text()


# The pilot: frozen-head Propulsion, degree x k*lr cells read back from degree, lr and the pooler's reinit.
def pilot_record(task, degree, lr, heldout, curve, reinit=None):
    rec = record(task, "propulsion", 0, heldout, lr=lr, curve=curve)
    rec["degree"] = degree
    rec["config"]["model"]["reinit"] = reinit
    rec["best"] = {"step": 43 * (curve.index(max(curve)) + 1), "value": max(curve)}
    return rec


def test_pilot_table_cells_missing_and_figures(tmp_path):
    runs = tmp_path / "runs"
    write(runs, pilot_record("stsb", 15, 1.333e-3, 0.70, (0.50, 0.72, 0.71)), "a")
    write(runs, pilot_record("stsb", 55, 3.636e-4, 0.69, (0.52, 0.70, 0.73)), "b")
    write(runs, pilot_record("stsb", 15, 1.333e-3, 0.40, (0.30, 0.41), reinit=["bert.pooler"]), "c")
    running = pilot_record("mrpc", 15, 1.333e-3, 0.70, (0.6,))
    running["status"] = "running"
    write(runs, running, "d")
    out = tmp_path / "out"
    pilot.render(GLUE_MINILM.pilot, runs, out)
    text = (out / "table.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| stsb")]
    # pretrained first, by degree; k*lr = 15 x 1.333e-3 = 0.02; best 72 at its second evaluation (step 86) of 690
    assert rows == [
        "| stsb | pearson | pretrained | k15_mid | 15 | 0.001333 | 0.02 | 0 | 70.0 | 72.0 | 86 | 690 | 71.0 |",
        "| stsb | pearson | pretrained | k55_mid | 55 | 0.0003636 | 0.02 | 0 | 69.0 | 73.0 | 129 | 690 | 73.0 |",
        "| stsb | pearson | random | k15_mid | 15 | 0.001333 | 0.02 | 0 | 40.0 | 41.0 | 86 | 690 | 41.0 |"]
    assert "Missing (13: no completed record yet):" in text and "- mrpc × k15_mid (pooler random)" in text
    assert "- stsb × k15_mid (pooler pretrained)" not in text
    assert "Skipped (1):" in text and "status 'running'" in text
    assert sorted(p.name for p in out.iterdir()) == ["degree_as_lr.png", "learning_curves.png", "table.md"]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    pilot.render(GLUE_MINILM.pilot, runs, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_pilot_with_no_records(tmp_path):
    pilot.render(GLUE_MINILM.pilot, tmp_path / "absent", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table.md"]
    assert "Missing (16: no completed record yet):" in (tmp_path / "out" / "table.md").read_text()
