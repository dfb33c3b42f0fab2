"""The small-scale study (declarations.SMALL_SCALE, rendered by reports/study.py) on hand-made records: cell
values, the average, counts, and byte-identical reruns."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from propulsion import records
from propulsion.reports import cli, study
from propulsion.reports.declarations import SMALL_SCALE

TPS = {"propulsion": 22274, "propulsion_attn": 6912, "lora": 74498, "bitfit": 174338, "full_ft": 22713986}


def record(task, method, seed, metrics, lr=1e-2, wall=100.0, memory_mib=1000, status="completed"):
    trainable = TPS[method] - (1 if task == "stsb" else 0)  # STS-B's head has one output, not two
    config = {"model": {"name": "all-minilm-l6-v2"}, "task": {"name": task, "max_length": 64},
              "method": {"name": method, "kind": "propulsion" if method == "propulsion" else "peft"},
              "trainer": {"lr": lr, "epochs": 1, "batch_size": 16}, "seed": seed, "protocol": "heldout",
              "output_root": "x"}
    return {"schema_version": records.SCHEMA_VERSION, "status": status, "task": task, "method": method,
            "seed": seed, "model": "all-minilm-l6-v2", "family": "glue", "protocol": "heldout", "config": config,
            "metrics": metrics, "params": {"trainable": trainable}, "wall_time_s": wall,
            "peak_memory_bytes": memory_mib * 2**20, "finished_at": f"2026-12-01T15:0{seed}:00+00:00",
            "data": {"sizes": {"train": 600}}, "train": {"device": "cpu", "steps": 38}, "best": {"value": 0.5},
            "model_files": {"sha256": {"model.safetensors": "53aa"}}}


def load(root):
    """The study's records through the one loader, and its skipped lines as its table lists them."""
    runs, skipped = records.load_records(root)
    return runs, [study.skip_line(skip) for skip in skipped]


def main(argv):
    """``python -m propulsion.reports --only small_scale ARGS``."""
    return cli.main(["--only", "small_scale", *argv])


def write(root, rec, name):
    records.write_json_atomic(root / name / "record.json", rec)


# Per seed: (CoLA MCC, MRPC acc, MRPC F1, STS-B Pearson, STS-B Spearman, RTE acc)
PROPULSION = {0: (0.10, 0.70, 0.80, 0.50, 0.48, 0.50), 1: (0.20, 0.72, 0.82, 0.60, 0.58, 0.54)}


def make_runs(root):
    for seed, (mcc, acc, f1, p, s, rte) in PROPULSION.items():
        write(root, record("cola", "propulsion", seed, {"matthews_correlation": mcc}, wall=50 + seed), f"c{seed}")
        write(root, record("mrpc", "propulsion", seed, {"accuracy": acc, "f1": f1}, wall=60), f"m{seed}")
        write(root, record("stsb", "propulsion", seed, {"pearson": p, "spearmanr": s}, wall=70), f"s{seed}")
        write(root, record("rte", "propulsion", seed, {"accuracy": rte}, wall=80, memory_mib=1200), f"r{seed}")
    write(root, record("rte", "lora", 0, {"accuracy": 0.60}, lr=2e-3), "lora-r0")
    write(root, record("rte", "lora", 1, {}, status="failed"), "lora-r1")


def test_cells_average_and_counts(tmp_path):
    make_runs(tmp_path / "runs")
    runs, skipped = load(tmp_path / "runs")
    assert len(runs) == 9 and len(skipped) == 1 and "status 'failed'" in skipped[0]
    text, stats = study.table(SMALL_SCALE, runs, skipped)
    row = next(line for line in text.splitlines() if line.startswith("| Propulsion(All)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # CoLA: 10, 20 -> 15.0 ± 7.1 (sample std of two values a, b is |a - b| / sqrt 2)
    assert cells[:8] == ["Propulsion(All)", "22,273–22,274", "15.0 ± 7.1", "71.0 ± 1.4", "81.0 ± 1.4",
                         "55.0 ± 7.1", "53.0 ± 7.1", "52.0 ± 2.8"]
    # Avg. per seed: (10 + 70 + 50 + 50) / 4 = 45, (20 + 72 + 60 + 54) / 4 = 51.5 -> 48.25 ± 4.6
    assert cells[8] == "48.2 ± 4.6"
    assert stats["propulsion"]["avg"][0] == 48.25
    # 8 runs; median wall of 50, 51, 60, 60, 70, 70, 80, 80 = 65; median memory of 6 x 1000 and 2 x 1200 = 1000
    assert cells[9:] == ["8", "65", "1000"]
    lora = next(line for line in text.splitlines() if line.startswith("| LoRA"))
    assert [c.strip() for c in lora.strip("|").split("|")][:8] == ["LoRA", "74,498", "–", "–", "–", "–", "–", "60.0"]
    assert "lr per method: LoRA 0.002; Propulsion(All) 0.01" in text
    assert "- model: all-minilm-l6-v2; weights sha256 (model.safetensors): 53aa" in text


def test_a_cell_with_two_configs_keeps_the_one_with_more_seeds_and_says_so(tmp_path):
    make_runs(tmp_path / "runs")
    write(tmp_path / "runs", record("rte", "propulsion", 0, {"accuracy": 0.99}, lr=1e-3), "other-lr")
    runs, skipped = load(tmp_path / "runs")
    text, stats = study.table(SMALL_SCALE, runs, skipped)
    assert stats["propulsion"]["columns"]["RTE acc"][0] == 52.0  # the two-seed lr=1e-2 group, not 99
    assert "rte × propulsion: config" in text and "(1 seed(s)) left out" in text


def test_make_tables_output_is_byte_identical(tmp_path):
    make_runs(tmp_path / "runs")
    out = tmp_path / "out"
    args = ["--runs", str(tmp_path / "runs"), "--lr-search", str(tmp_path / "runs"), "--out", str(out)]
    assert main(args) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(first) == {"table.md", "lr_search.md", "score_vs_params.png"}
    assert main(args) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    search = first["lr_search.md"].decode()
    assert "| Method | lr | cola | mrpc | rte | stsb | mean | chosen | wall s |" in search
    # every seed's best.value is 0.5; wall is summed over the rate's runs: 50 + 51 + 2 x (60 + 70 + 80) = 521
    assert "| Propulsion(All) | 0.01 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | yes | 521 |" in search
    assert "| LoRA | 0.002 |  |  | 50.0 |  | 50.0 | yes | 100 |" in search  # the failed seed-1 run is not read


def test_no_records_gives_a_table_and_no_figure(tmp_path):
    assert main(["--runs", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 0
    assert "(no completed records yet)" in (tmp_path / "out" / "table.md").read_text()
    assert not (tmp_path / "out" / "score_vs_params.png").exists()


def test_the_lr_choice_is_the_best_dev_value_and_ties_keep_the_smaller_lr(tmp_path, capsys):
    def searched(method, lr, best, task="stsb"):
        rec = record(task, method, 0, {"pearson": 0.99}, lr=lr)  # the held-out metric must not matter
        rec["best"] = {"value": best}
        return rec

    runs = [searched("propulsion", 2e-3, 0.40), searched("propulsion", 1e-2, 0.55),
            searched("lora", 5e-4, 0.60), searched("lora", 2e-3, 0.60),
            searched("propulsion_attn", 2e-3, float("nan")), searched("propulsion_attn", 1e-2, 0.10)]
    assert study.choose_lrs(runs) == {"propulsion": 1e-2, "lora": 5e-4, "propulsion_attn": 1e-2}
    for i, rec in enumerate(runs):
        write(tmp_path / "search", rec, f"r{i}")
    assert main(["--lr-search", str(tmp_path / "search"), "--lr-overrides"]) == 0
    assert capsys.readouterr().out.strip() == ("vars.lr.lora=0.0005 vars.lr.propulsion=0.01 "
                                               "vars.lr.propulsion_attn=0.01")


def test_the_lr_choice_averages_the_tasks_searched_and_compares_lrs_on_the_tasks_they_share():
    def searched(method, lr, best, task):
        rec = record(task, method, 0, {"pearson": 0.99}, lr=lr)
        rec["best"] = {"value": best}
        return rec

    runs = [
        # a tie on CoLA (both at the majority class) is decided by STS-B: mean 0.30 against 0.25
        searched("propulsion", 2e-3, 0.0, "cola"), searched("propulsion", 1e-2, 0.0, "cola"),
        searched("propulsion", 2e-3, 0.50, "stsb"), searched("propulsion", 1e-2, 0.60, "stsb"),
        # the mean, not either task alone: CoLA prefers 1e-4, STS-B 3e-5, the mean 3e-5 (0.45 against 0.40)
        searched("full_ft", 3e-5, 0.10, "cola"), searched("full_ft", 1e-4, 0.20, "cola"),
        searched("full_ft", 3e-5, 0.80, "stsb"), searched("full_ft", 1e-4, 0.60, "stsb"),
        # 5e-3 has no STS-B run (failed or not yet run): both rates are judged on CoLA alone
        searched("lora", 1e-3, 0.05, "cola"), searched("lora", 5e-3, 0.10, "cola"),
        searched("lora", 1e-3, 0.90, "stsb"),
        # a diverged run counts as the worst, whatever the other task says
        searched("bitfit", 2e-3, 0.0, "cola"), searched("bitfit", 1e-2, 0.30, "cola"),
        searched("bitfit", 2e-3, 0.40, "stsb"), searched("bitfit", 1e-2, float("nan"), "stsb"),
    ]
    assert study.choose_lrs(runs) == {"propulsion": 1e-2, "full_ft": 3e-5, "lora": 5e-3, "bitfit": 2e-3}


def test_a_partial_sweep_without_an_average_still_draws_its_figure(tmp_path):
    # One task only: no method has the four-task Avg., whose panel is empty; the legend comes from the others.
    write(tmp_path / "runs", record("rte", "lora", 0, {"accuracy": 0.6}), "a")
    write(tmp_path / "runs", record("rte", "propulsion", 0, {"accuracy": 0.55}), "b")
    assert main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "score_vs_params.png").stat().st_size > 0


def test_the_sweeps_lrs_are_what_the_committed_search_chose():
    # `make experiment NAME=small_scale` reads vars.lr from the YAML, `make small-scale` passes the search's choice:
    # the two must agree, or the same sweep would run at other rates depending on how it is started.
    repo = Path(__file__).resolve().parents[2]
    searched, _ = load(repo / "results/small_scale/lr_search/runs")
    fixed = OmegaConf.load(repo / "experiments/small_scale.yaml").vars.lr
    assert searched and study.choose_lrs(searched) == {method: float(lr) for method, lr in fixed.items()}


def test_the_readme_block_is_the_tables_rows_and_nothing_else_moves(tmp_path, capsys):
    make_runs(tmp_path / "runs")
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro\n\n", "\n\n## Next section\n"
    readme.write_text(f"{before}{SMALL_SCALE.readme_start}\nstale rows\n{SMALL_SCALE.readme_end}{after}")
    args = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--readme", str(readme)]
    assert main(args) == 0
    written = readme.read_text()
    assert written.startswith(before + SMALL_SCALE.readme_start + "\n") and written.endswith(
        SMALL_SCALE.readme_end + after)
    assert "stale rows" not in written and "9 completed records;" in written
    table_rows = [line for line in (tmp_path / "out" / "table.md").read_text().splitlines() if line.startswith("|")]
    assert [line for line in written.splitlines() if line.startswith("|")] == table_rows
    assert main(args) == 0 and readme.read_text() == written  # a rerun changes nothing

    bare = tmp_path / "bare.md"
    bare.write_text("# no markers\n")
    assert main([*args[:2], "--out", str(tmp_path / "out2"), "--readme", str(bare)]) == 2
    assert "has no small-scale table block" in capsys.readouterr().err
    assert bare.read_text() == "# no markers\n" and not (tmp_path / "out2").exists()  # nothing half-written
