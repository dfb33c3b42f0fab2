"""The paper's tables (declarations + engine) from synthetic records: values, layout, the paper beside ours, skips,
determinism, and the transcription."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from propulsion import records
from propulsion.reports import cli, declarations, engine, selection
from propulsion.reports.selection import PAPER_DIR

PAPER_TEXT = Path("/work/shared/paper/propulsion.md")


def write_run(root: Path, name: str, *, task="sst2", method="propulsion", degree=None, seed=0, family="glue",
              metrics=None, status="completed", model="roberta-base", trainable=86_018, evaluations=None,
              finished_at="2026-01-01T00:00:00Z", wall_time_s=5.0, peak_memory_bytes=2**30, steps=10,
              paper_degree=15, error=None, trainer=None, protocol="paper", task_settings=None, **method_settings):
    """One record as the runner writes it; the method config starts from conf/method/<method>.yaml."""
    degree = paper_degree if degree is None else degree
    preset = yaml.safe_load((selection.METHOD_CONF_DIR / f"{method}.yaml").read_text())
    # As Hydra composes it: the method file reads task values through oc.select (reasoning's LLM-Adapters LoRA).
    settings = selection.beside_task({k: v for k, v in preset.items() if k != "degree"}, task_settings)
    method_config = {**settings, **method_settings}
    kind = method_config["kind"]
    if kind == "propulsion":
        method_config["degree"] = degree
    config = {"model": {"name": model}, "task": {"name": task, "degree": paper_degree, **(task_settings or {})},
              "seed": seed, "degree": degree, "method": method_config, "protocol": protocol,
              "trainer": {"name": "paper", "lr": None, **(trainer or {})}, "output_root": str(root),
              "logger": {"name": "none"}, "run_name": name}
    metrics = {"accuracy": 0.9} if metrics is None else metrics
    main_metric = next(iter(metrics))
    record = records.new_record(
        run_id=name, model=model, task=task, family=family, method=method,
        degree=degree if kind == "propulsion" else None, seed=seed, protocol=protocol, config=config,
        main_metric=main_metric, metrics=metrics, status=status, error=error, finished_at=finished_at,
        params={"trainable": trainable, "total": 10**8, "percent": trainable / 10**6},
        evaluations=evaluations if evaluations is not None else [{"step": 10, "epoch": 1, "split": "validation",
                                                                  "metrics": metrics}],
        train={"steps": steps}, wall_time_s=wall_time_s, peak_memory_bytes=peak_memory_bytes,
        peak_memory_kind="process_peak_rss")
    records.write_json_atomic(root / name / "record.json", record)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "a", seed=0, metrics={"accuracy": 0.93})
    write_run(root, "b", seed=1, metrics={"accuracy": 0.95})
    write_run(root, "c", seed=0, degree=55, metrics={"accuracy": 0.10})  # another config: never averaged in
    for seed in range(3):  # more seeds, but an init ablation: must not fill the Propulsion(All) cell
        write_run(root, f"init{seed}", seed=seed, init="normal", metrics={"accuracy": 0.50})
    write_run(root, "d", task="mnli", paper_degree=20,
              metrics={"matched/accuracy": 0.86, "mismatched/accuracy": 0.85})
    write_run(root, "e", targets="query", trainable=9_218, metrics={"accuracy": 0.915})  # Table 5 only
    write_run(root, "lora", method="lora", trainable=887_042, metrics={"accuracy": 0.92})
    write_run(root, "squad", model="deberta-v3-base", task="squad", family="qa", paper_degree=35,
              trainable=161_000, metrics={"f1": 88.0, "exact_match": 81.0})
    write_run(root, "xsum", model="bart-large", task="xsum", family="summarization", paper_degree=35,
              trainable=330_000, metrics={"rouge2": 18.0, "rouge1": 41.0, "rougeL": 31.0, "rougeLsum": 33.5})
    write_run(root, "cs", model="llama-7b", task="commonsense", family="reasoning", num_vectors=5,
              metrics={"boolq/accuracy": 70.0, "piqa/accuracy": 80.0})
    write_run(root, "f", status="failed", error="FloatingPointError: loss became nan")
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "record.json").write_text("{not json")
    records.write_json_atomic(root / "foreign" / "record.json", {"schema_version": 99, "status": "completed"})
    return root


def run_main(runs: Path, out: Path, *extra: str, figures: bool = False) -> dict[str, str]:
    """Tables (and figures if asked: they take seconds) from the records under runs; {file name: text}."""
    flags = ["--no-offline-counts"] + ([] if figures else ["--no-figures"])
    assert cli.main(["--only", "paper", "--runs", str(runs), "--out", str(out), *flags, *extra]) == 0
    return {p.name: p.read_text() for p in sorted((out / "tables").iterdir())}


def md_row(text: str, model: str, method: str) -> dict[str, str]:
    """One row of a generated Markdown table, keyed by the header."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [model, method]:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no row {model} {method}")


def test_seeds_are_averaged_and_other_configs_are_not(runs, tmp_path):
    table = run_main(runs, tmp_path / "out")["table1.md"]
    row = md_row(table, "roberta-base", "propulsion")
    # mean of 93 and 95, sample std 1.41, beside the paper's 93.18; degree 55 and init=normal not averaged in
    assert row["SST-2"] == "94.00 ± 1.41 (n=2) / 93.18 [+0.82]"
    assert row["MNLI-m"] == "86.00 (n=1) / 86.41 [-0.41]"
    assert row["CoLA"] == "– / 61.76"  # a cell with no run
    assert row["Avg."] == "– / 84.95" and row["Avg. 2nd"] == "– / 87.81"
    assert row["#TPs ours / paper"] == "86,018 / 0.086M"  # the query-only run (9,218) is not this row's
    assert md_row(table, "roberta-base", "lora")["SST-2"] == "92.00 (n=1) / 92.40 [-0.40]"
    note = re.search(r"roberta-base / propulsion: 2 other config\(s\) for SST-2 not shown \(differ in (.*)\)", table)
    assert note and note.group(1) == "degree, method.degree, method.init"
    # rows the paper has and we do not implement stay, with the paper's numbers
    assert md_row(table, "roberta-large", "mam")["RTE"] == "– / 86.62"


def test_runs_off_the_papers_protocol_do_not_fill_a_cell_that_paper_runs_fill(tmp_path):
    # Newer runs with the quick trainer on sample data, or the held-out protocol, or capped data: the paper runs
    # (older, same seeds) fill the cell; alone, off-protocol runs fill it with a note saying so.
    root = tmp_path / "runs"
    for seed in range(3):
        write_run(root, f"paper{seed}", seed=seed, metrics={"accuracy": 0.93}, finished_at="2026-01-01T00:00:00Z")
        write_run(root, f"quick{seed}", seed=seed, metrics={"accuracy": 0.55}, finished_at="2026-02-01T00:00:00Z",
                  trainer={"name": "quick", "lr": 1e-2}, task_settings={"source": "sample"})
        write_run(root, f"heldout{seed}", seed=seed, metrics={"accuracy": 0.80}, protocol="heldout",
                  finished_at="2026-02-01T00:00:00Z")
        write_run(root, f"capped{seed}", seed=seed, metrics={"accuracy": 0.70}, finished_at="2026-02-01T00:00:00Z",
                  task_settings={"max_train_samples": 64})
        write_run(root, f"rte{seed}", task="rte", seed=seed, metrics={"accuracy": 0.60},
                  trainer={"name": "quick", "lr": 1e-2})
    table = run_main(root, tmp_path / "out")["table1.md"]
    row = md_row(table, "roberta-base", "propulsion")
    assert row["SST-2"].startswith("93.00 ± 0.00 (n=3)")
    assert row["RTE"].startswith("60.00 ± 0.00 (n=3)")
    assert "roberta-base / propulsion: RTE comes from runs off the paper's protocol (trainer.lr" in table
    assert "SST-2 comes from runs off" not in table


def test_a_seed_run_twice_counts_once_and_a_non_finite_metric_is_noted(tmp_path):
    root = tmp_path / "runs"
    for copy_index in range(3):  # seed 0 three times (e.g. two output folders under --runs), the newest 0.90
        write_run(root / f"copy{copy_index}", "s0", seed=0, metrics={"accuracy": 0.80 + 0.05 * copy_index},
                  finished_at=f"2026-01-0{copy_index + 1}T00:00:00Z")
    write_run(root, "s1", seed=1, metrics={"accuracy": 0.96})
    write_run(root, "s2", seed=2, metrics={"accuracy": float("nan")})
    table = run_main(root, tmp_path / "out")["table1.md"]
    assert md_row(table, "roberta-base", "propulsion")["SST-2"].startswith("93.00 ± 4.24 (n=2)")
    assert "2 older duplicate run(s) of the same config and seed for SST-2 not counted" in table
    assert "SST-2 of run s2 is not a finite number; left out." in table


def test_table_5_cells_prefer_the_preset_over_an_ablation_of_another_setting(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "query", targets="query", metrics={"accuracy": 0.915}, finished_at="2026-01-01T00:00:00Z")
    write_run(root, "query_zeros", targets="query", init="zeros", metrics={"accuracy": 0.50},
              finished_at="2026-02-01T00:00:00Z")
    table = run_main(root, tmp_path / "out")["table5.md"]
    assert md_row(table, "roberta-base", "propulsion:query")["SST-2"].startswith("91.50 (n=1)")


def test_fill_commands_name_the_missing_cells(runs, tmp_path):
    table = run_main(runs, tmp_path / "out")["table1.md"]
    commands = table.split("```")[1].strip().splitlines()
    assert ("python -m propulsion.run -m model=roberta-base method=propulsion "
            "task=cola,mrpc,qnli,qqp,rte,stsb seed=0,1,2") in commands
    assert ("python -m propulsion.run -m model=roberta-large method=adalora,adapter_s,bitfit,full_ft,ia3,lora,mam,"
            "prefix,prompt,propetl_adapter,propetl_lora,propetl_prefix,propulsion,propulsion_attn "
            "task=cola,mnli,mrpc,qnli,qqp,rte,sst2,stsb seed=0,1,2") in commands  # the baselines are ours now
    table5 = run_main(runs, tmp_path / "out")["table5.md"]
    assert ("python -m propulsion.run --config-dir experiments --config-name table5_layers model=roberta-base "
            "method=propulsion method.targets=attn,embedding,key,mlp,value task=mrpc,qnli,qqp,rte,sst2") in table5


def test_table_5_rows_come_from_the_targets(runs, tmp_path):
    table = run_main(runs, tmp_path / "out")["table5.md"]
    query = md_row(table, "roberta-base", "propulsion:query")
    assert query["SST-2"] == "91.50 (n=1) / 91.53 [-0.03]"
    assert query["#TPs ours / paper"] == "9,218 / 0.0115M"
    assert md_row(table, "roberta-base", "propulsion:all")["SST-2"] == "94.00 ± 1.41 (n=2) / 93.18 [+0.82]"
    assert md_row(table, "roberta-base", "propulsion:embedding")["RTE"] == "– / 66.30"


def test_table_2_shows_the_papers_rouge_l_beside_rougel_and_rougelsum(runs, tmp_path):
    tables = run_main(runs, tmp_path / "out")
    squad = md_row(tables["table2.md"], "deberta-v3-base", "propulsion")
    assert squad["SQuAD1.1 EM"] == "81.00 (n=1) / 81.73 [-0.73]"
    assert squad["SQuAD1.1 F1"] == "88.00 (n=1) / 88.07 [-0.07]"
    assert squad["SQuAD2.0 EM"] == "– / 82.68"
    xsum = md_row(tables["table2.md"], "bart-large", "propulsion")
    assert xsum["XSum R-L"] == "31.00 (n=1) / 31.42 [-0.42]" and xsum["XSum R-Lsum"] == "33.50 (n=1) / 31.42 [+2.08]"
    assert xsum["#TPs ours / paper"] == "330,000 / 0.330M"
    assert "task=squad_v2" in tables["table2.md"]


def test_table_3_columns_and_contamination(runs, tmp_path):
    table = run_main(runs, tmp_path / "out")["table3.md"]
    row = md_row(table, "llama-7b", "propulsion")
    assert row["boolq"] == "70.00 (n=1) / 68.99 [+1.01]" and row["piqa"] == "80.00 (n=1) / 79.47 [+0.53]"
    assert row["AddSub †"] == "– / 87.63" and row["SVAMP"] == "– / 60.51"
    assert "mawps" not in table.splitlines()[4]  # no run has it: no column
    assert "contaminated" in table
    # The table's sweep: its 5 vectors, dropout, L2, bf16 and schedule, for the cells still empty.
    assert ("python -m propulsion.run --config-dir experiments --config-name table3_reasoning model=llama-7b "
            "method=adalora,lora,parallel,prefix,propulsion task=arithmetic,commonsense") in table
    write_run(runs, "math", model="llama-7b", task="arithmetic", family="reasoning", num_vectors=5,
              metrics={"gsm8k/accuracy": 30.0, "mawps/accuracy": 75.5})
    table = run_main(runs, tmp_path / "again")["table3.md"]
    assert md_row(table, "llama-7b", "propulsion")["mawps"] == "75.50 (n=1) / –"
    assert md_row(table, "llama-7b", "propulsion")["boolq"] == "70.00 (n=1) / 68.99 [+1.01]"


def test_average_column_follows_the_papers_rule(tmp_path):
    root = tmp_path / "runs"
    first = {"cola": ("matthews_correlation", 0.60), "sst2": ("accuracy", 0.90), "qnli": ("accuracy", 0.91),
             "rte": ("accuracy", 0.70)}
    for task, (metric, value) in first.items():
        write_run(root, task, model="roberta-large", method="lora", task=task, metrics={metric: value})
    write_run(root, "mrpc", model="roberta-large", method="lora", task="mrpc", metrics={"accuracy": 0.88, "f1": 0.91})
    write_run(root, "stsb", model="roberta-large", method="lora", task="stsb",
              metrics={"pearson": 0.90, "spearmanr": 0.89})
    write_run(root, "qqp", model="roberta-large", method="lora", task="qqp", metrics={"accuracy": 0.89, "f1": 0.86})
    write_run(root, "mnli", model="roberta-large", method="lora", task="mnli",
              metrics={"matched/accuracy": 0.86, "mismatched/accuracy": 0.99})
    row = md_row(run_main(root, tmp_path / "out")["table1.md"], "roberta-large", "lora")
    # (60 + 90 + 88 + 90 + 89 + 86 + 91 + 70) / 8 = 83.00; (91 + 89 + 86) / 3 = 88.67; paper 87.24 / 88.18
    assert row["Avg."] == "83.00 (n=1) / 87.24 [-4.24]"
    assert row["Avg. 2nd"] == "88.67 (n=1) / 88.18 [+0.49]"


def test_broken_failed_and_foreign_records_are_reported_and_skipped(runs, tmp_path, capsys):
    skipped = run_main(runs, tmp_path / "out")["skipped.md"]
    assert "broken/record.json: unreadable" in skipped
    assert "foreign/record.json: unreadable" in skipped and "not a schema-1 run record" in skipped
    assert "f/record.json: status 'failed': FloatingPointError: loss became nan" in skipped
    assert "skipped" in capsys.readouterr().out


def test_a_skipped_records_reason_survives_a_long_path(tmp_path):
    # read_record's message starts with the path: a cut to a fixed length once left "not a schema-1 run re"
    deep = tmp_path / ("a" * 100) / ("b" * 100) / records.RECORD_NAME
    deep.parent.mkdir(parents=True)
    deep.write_text('{"schema_version": 0}')
    _, skipped = records.load_records(tmp_path)
    assert [(s.path, s.reason) for s in skipped] == [
        (str(deep), f"unreadable: {deep}: not a schema-{records.SCHEMA_VERSION} run record")]


def test_output_is_byte_identical_on_rerun(runs, tmp_path):
    first = run_main(runs, tmp_path / "one", figures=True)
    second = run_main(runs, tmp_path / "two", figures=True)
    assert first == second
    for name in ("fig5_degree.png", "fig5_degree.pdf", "fig3_convergence.pdf", "fig4_memory.png"):
        assert (tmp_path / "one" / "figures" / name).read_bytes() == (tmp_path / "two" / "figures" / name).read_bytes()
    assert {f"table{i}.{ext}" for i in (1, 2, 3, 5) for ext in ("md", "csv", "tex")} <= set(first)
    csv_rows = list(csv.DictReader((tmp_path / "one" / "tables" / "table1.csv").open()))
    cell = [r for r in csv_rows if (r["model"], r["method"], r["column"]) == ("roberta-base", "propulsion", "SST-2")]
    assert cell[0]["ours_mean"] == "94.0000" and cell[0]["ours_std"] == "1.4142" and cell[0]["n"] == "2"


def test_empty_runs_folder_still_gives_the_papers_tables(tmp_path):
    tables = run_main(tmp_path / "nothing", tmp_path / "out", figures=True)
    assert not (tmp_path / "out" / "figures").exists()  # no data, no figure, no error
    assert md_row(tables["table1.md"], "roberta-base", "propulsion")["SST-2"] == "– / 93.18"
    assert tables["skipped.md"] == "# Skipped records\n\n"


def test_rows_without_records_are_counted_by_the_injected_counter(tmp_path):
    asked = []

    def count(model, method, task, overrides):
        asked.append((model, method, task, overrides))
        return 1234 if method == "lora" else None

    write_run(tmp_path / "runs", "a")
    argv = ["--only", "paper", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--no-figures"]
    assert cli.main(argv, count=count) == 0
    text = (tmp_path / "out" / "tables" / "table1.md").read_text()
    assert md_row(text, "roberta-base", "lora")["#TPs ours / paper"] == "1,234 / 0.89M"
    assert md_row(text, "roberta-base", "propulsion")["#TPs ours / paper"] == "86,018 / 0.086M"  # from the record
    assert md_row(text, "roberta-base", "prefix")["#TPs ours / paper"] == "– / 0.96M"  # the counter gave nothing
    assert md_row(text, "roberta-base", "mam")["#TPs ours / paper"] == "– / 46.78M"  # the counter gave nothing
    assert "match no BitFit configuration" in text
    # the head depends on the task: each row is counted with its first paper task
    assert ("roberta-large", "lora", "cola", ()) in asked and ("deberta-v3-base", "lora", "squad", ()) in asked
    assert ("bart-large", "lora", "xsum", ()) in asked and ("roberta-base", "mam", "cola", ()) in asked  # ours now
    # Table 5's rows are Propulsion's targets: counted as method=propulsion with method.targets
    assert ("roberta-base", "propulsion", "sst2", ("method.targets=query",)) in asked
    # no counter (or --no-offline-counts): "–", and nothing asked
    asked.clear()
    assert cli.main([*argv, "--no-offline-counts"], count=count) == 0 and asked == []


def test_tables_entrypoint_counts_rows_on_the_meta_device(tmp_path):
    # A paper folder with one Table 1 row and one Table 5 row (the full tables count ~45 rows: a minute).
    paper_dir = tmp_path / "paper"
    paper_dir.mkdir()
    header = "table,model,method,task,metric,value,params,note\n"
    (paper_dir / "table1.csv").write_text(header + "1,roberta-base,lora,cola,matthews_correlation,60.09,0.89M,\n")
    (paper_dir / "table5.csv").write_text(header + "5,roberta-base,propulsion:mlp,sst2,accuracy,92.42,0.0115M,\n")
    argv = ["--only", "paper", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "out"), "--paper",
            str(paper_dir), "--no-figures"]
    assert cli.main(argv) == 0
    text = {n: (tmp_path / "out" / "tables" / f"{n}.md").read_text() for n in ("table1", "table5")}
    assert md_row(text["table1"], "roberta-base", "lora")["#TPs ours / paper"] == "887,042 / 0.89M"
    # 12 x (intermediate 3072 + output 768) z entries
    assert md_row(text["table5"], "roberta-base", "propulsion:mlp")["#TPs ours / paper"] == "46,080 / 0.0115M"
    assert not (tmp_path / "out" / "tables" / "table2.md").exists()  # no paper rows, no records: no table


def test_the_meta_counter_answers_none_for_names_without_a_config():
    from propulsion.compose import trainable_count

    assert trainable_count("roberta-base", "no-such-method", "cola") is None
    assert trainable_count("my-local-model", "lora", "cola") is None


def paper(name: str) -> list[dict[str, str]]:
    with open(PAPER_DIR / f"{name}.csv") as handle:
        return list(csv.DictReader(handle))


def value(rows, **where) -> float:
    (match,) = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return float(match["value"])


def test_transcribed_paper_numbers():
    t1, t2, t3, t5, figs = paper("table1"), paper("table2"), paper("table3"), paper("table5"), paper("figures")
    assert len(t1) == 28 * 13 and len(t2) == 10 * 10 and len(t3) == 20 * 13 and len(t5) == 7 * 5
    assert value(t1, model="roberta-base", method="propulsion", task="sst2", metric="accuracy") == 93.18
    assert value(t1, model="roberta-base", method="propulsion", task="cola", metric="matthews_correlation") == 61.76
    assert value(t1, model="roberta-large", method="full_ft", task="mrpc", metric="f1") == 94.28
    assert value(t1, model="roberta-base", method="adapter_s", task="qqp", metric="f1") == 86.55
    assert value(t1, model="roberta-large", method="propulsion", task="average", metric="f1") == 90.11
    assert value(t2, method="propulsion", task="squad", metric="exact_match") == 81.73
    assert value(t2, method="propulsion", task="squad", metric="f1") == 88.07
    assert value(t2, method="lora", task="xsum", metric="rouge2") == 18.44
    assert value(t2, method="adalora", task="cnn_dailymail", metric="rougeL") == 39.63
    assert value(t3, model="llama-13b", method="propulsion", task="SVAMP") == 66.67
    assert value(t3, model="bloomz-7b1", method="parallel", task="AddSub") == 70.33
    assert value(t5, method="propulsion:attn", task="sst2") == 92.72
    assert value(t5, method="propulsion:embedding", task="rte") == 66.3
    assert value(figs, table="fig11_pooling", task="sst2", setting="pooling=mean") == 96.83
    assert value(figs, table="fig11_pooling", task="rte", setting="pooling=l2") == 76.83
    assert value(figs, table="fig4_memory", method="propulsion", metric="peak_memory_gb") == 17.2
    params = {(r["model"], r["method"]): r["params"] for r in t1 + t2}
    assert params[("roberta-base", "bitfit")] == "0.086M" and params[("bart-large", "propulsion")] == "0.330M"
    assert params[("deberta-v3-base", "propulsion")] == "0.161M"


@pytest.mark.skipif(not PAPER_TEXT.exists(), reason="the paper's text is not in this checkout")
def test_every_transcribed_number_is_in_the_papers_text():
    text = PAPER_TEXT.read_text()
    for name in ("table1", "table2", "table3", "table5", "figures"):
        for row in paper(name):
            number = row["value"]
            # as printed (CSV may drop trailing zeros: 66.30 -> 66.3), never as a piece of a longer number
            zeros = "0*" if "." in number else ""
            assert re.search(rf"(?<![\d.]){re.escape(number)}{zeros}(?![\d])", text), (name, row)


def test_the_average_rule_reproduces_the_papers_avg_column():
    rows = paper("table1")
    header = {("cola", "matthews_correlation"): "CoLA", ("sst2", "accuracy"): "SST-2", ("mrpc", "accuracy"): "MRPC acc",
              ("mrpc", "f1"): "MRPC F1", ("stsb", "pearson"): "STS-B P", ("stsb", "spearmanr"): "STS-B S",
              ("qqp", "accuracy"): "QQP acc", ("qqp", "f1"): "QQP F1", ("mnli", "accuracy"): "MNLI-m",
              ("qnli", "accuracy"): "QNLI", ("rte", "accuracy"): "RTE"}
    mismatched = []
    for model, method in sorted({(r["model"], r["method"]) for r in rows}):
        mine = {(r["task"], r["metric"]): float(r["value"])
                for r in rows if (r["model"], r["method"]) == (model, method)}
        first, second = engine.paper_average({header[k]: v for k, v in mine.items() if k in header})
        if abs(first - mine[("average", "accuracy")]) > 0.011 or abs(second - mine[("average", "f1")]) > 0.011:
            mismatched.append((model, method))
    # The two printed averages that disagree with the paper's own cells (84.20 vs 84.01; 88.20 vs 87.11).
    assert mismatched == [("roberta-base", "bitfit"), ("roberta-large", "adalora")]


def test_f1_columns_read_macro_f1_and_footnote_cells_with_only_binary_f1(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "mrpc", task="mrpc", paper_degree=55, metrics={"accuracy": 0.88, "f1": 0.91, "f1_macro": 0.86})
    write_run(root, "qqp", task="qqp", metrics={"accuracy": 0.89, "f1": 0.87})  # a record from before f1_macro
    table = run_main(root, tmp_path / "out")["table1.md"]
    row = md_row(table, "roberta-base", "propulsion")
    assert row["MRPC F1"] == "86.00 (n=1) / 85.99 [+0.01]"  # macro, not the binary 91
    assert row["QQP F1"] == "87.00 (n=1) / 86.53 [+0.47]"
    assert ("roberta-base / propulsion: QQP F1 had only GLUE's binary F1 (no f1_macro in the records): not the "
            "paper's macro F1.") in table
    assert "MRPC F1 had only" not in table
    csv_rows = list(csv.DictReader((tmp_path / "out" / "tables" / "table1.csv").open()))
    metric = {r["column"]: r["metric"] for r in csv_rows if (r["model"], r["method"]) == ("roberta-base", "propulsion")}
    assert metric["MRPC F1"] == "f1_macro" and metric["QQP F1"] == "f1"


def test_table_1_takes_the_authors_and_paper_presets_and_prefers_authors_for_propulsion(tmp_path):
    root = tmp_path / "runs"
    # Propulsion: a newer paper-preset run and an older authors-preset run (degree 55, as the notebooks) on SST-2.
    write_run(root, "paper", metrics={"accuracy": 0.91}, trainer={"preset": "paper"},
              finished_at="2026-02-01T00:00:00Z")
    write_run(root, "authors", degree=55, metrics={"accuracy": 0.93}, trainer={"preset": "authors", "lr": 2e-4},
              finished_at="2026-01-01T00:00:00Z")
    write_run(root, "quick", task="rte", metrics={"accuracy": 0.60}, trainer={"preset": "quick"})
    # LoRA: no preference between the two presets; the paper preset alone fills on protocol.
    write_run(root, "lora", method="lora", metrics={"accuracy": 0.92}, trainer={"preset": "paper"})
    table = run_main(root, tmp_path / "out")["table1.md"]
    row = md_row(table, "roberta-base", "propulsion")
    assert row["SST-2"].startswith("93.00 (n=1)")  # authors first, though older and off §4.2's degree
    assert "SST-2 comes from runs off" not in table
    assert "roberta-base / propulsion: RTE comes from runs off the paper's protocol (trainer.preset=quick)." in table
    assert "roberta-base / propulsion: trainer preset of the filled cells: authors (SST-2); quick (RTE)." in table
    assert "roberta-base / lora: trainer preset of the filled cells: paper (SST-2)." in table
    # Outside Table 1 only the paper preset is the protocol: Table 5's All row takes the paper run.
    table5 = run_main(root, tmp_path / "out5")["table5.md"]
    assert md_row(table5, "roberta-base", "propulsion:all")["SST-2"].startswith("91.00 (n=1)")


def test_records_without_a_preset_keep_todays_ranking(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "old", metrics={"accuracy": 0.93}, finished_at="2026-01-01T00:00:00Z")
    write_run(root, "new", metrics={"accuracy": 0.80}, trainer={"lr": 1.0}, finished_at="2026-02-01T00:00:00Z")
    table = run_main(root, tmp_path / "out")["table1.md"]
    assert md_row(table, "roberta-base", "propulsion")["SST-2"].startswith("93.00 (n=1)")
    assert "trainer preset of the filled cells" not in table


def test_notes_state_what_the_papers_numbers_show():
    t1, t5 = paper("table1"), paper("table5")
    # Table 5's K+Q+V row against Table 1's Propulsion(Attn): the tasks that differ, computed
    differ = [t for t in ("sst2", "mrpc", "qqp", "qnli", "rte")
              if value(t5, method="propulsion:attn", task=t)
              != value(t1, model="roberta-base", method="propulsion_attn", task=t, metric="accuracy")]
    assert differ == ["sst2", "qqp"]
    notes = {table.name: table.notes for table in declarations.TABLES}
    note = notes["table5"][0]
    assert "SST-2 (92.72 vs 92.03) and QQP (85.82 vs 86.73)" in note and "QNLI" not in note
    assert "roberta-base / bitfit" in notes["table1"][1] and "roberta-large / adalora" in notes["table1"][1]
