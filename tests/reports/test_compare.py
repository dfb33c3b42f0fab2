"""propulsion-compare: a user's runs side by side, mean ± std over seeds (issue 24, item 4)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from propulsion import records
from propulsion.reports import compare

REPO = Path(__file__).resolve().parents[2]


def write(root: Path, name: str, **fields) -> None:
    record = {"schema_version": records.SCHEMA_VERSION, "status": "completed", "model": "tiny-roberta", "task": "sst2",
              "method": "propulsion", "degree": 15, "seed": 0, "main_metric": "accuracy",
              "metrics": {"accuracy": 0.5}, "config": {"seed": 0, "trainer": {"lr": 1e-3}}}
    record.update(fields)
    records.write_json_atomic(root / name / records.RECORD_NAME, record)


def test_seeds_are_averaged_per_model_task_method_degree(tmp_path):
    for seed, value in enumerate((0.5, 0.6, 0.7)):
        write(tmp_path, f"p15-{seed}", seed=seed, metrics={"accuracy": value}, config={"seed": seed})
    write(tmp_path, "p5", degree=5, metrics={"accuracy": 0.4})
    write(tmp_path, "lora-0", method="lora", degree=None, metrics={"accuracy": 0.8}, config={"seed": 0})
    write(tmp_path, "lora-1", method="lora", degree=None, seed=1, metrics={"accuracy": 0.9},
          config={"seed": 1, "trainer": {"lr": 5e-4}})  # another lr: the row says it mixes settings
    write(tmp_path, "lora-f", method="lora", degree=None, seed=2, status="failed", metrics=None)
    table = compare.comparison(tmp_path)
    rows = {(r.method, r.degree): r for r in table.itertuples(index=False)}
    assert sorted(rows) == [("lora", "-"), ("propulsion", 5), ("propulsion", 15)]
    p15 = rows[("propulsion", 15)]
    assert (round(p15.mean, 9), round(p15.std, 9), p15.seeds, p15.failed, p15.settings) == (60.0, 10.0, 3, 0, 1)
    lora = rows[("lora", "-")]
    assert (round(lora.mean, 9), lora.seeds, lora.failed, lora.settings) == (85.0, 2, 1, 2)
    text = compare.markdown(table).splitlines()
    assert "| tiny-roberta | sst2 | lora | - | accuracy | 85.00 ± 7.07 (mixes 2 settings) | 2 | 1 |" in text
    assert "| tiny-roberta | sst2 | propulsion | 5 | accuracy | 40.00 ± – | 1 | 0 |" in text
    assert "| tiny-roberta | sst2 | propulsion | 15 | accuracy | 60.00 ± 10.00 | 3 | 0 |" in text


def test_the_command_line_prints_the_table_and_refuses_an_empty_folder(tmp_path):
    write(tmp_path / "runs", "a")
    out = subprocess.run([sys.executable, "-m", "propulsion.reports.compare", str(tmp_path / "runs"), "--out",
                          str(tmp_path / "cmp.md")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[2] == "| tiny-roberta | sst2 | propulsion | 15 | accuracy | 50.00 ± – | 1 | 0 |"
    assert (tmp_path / "cmp.md").read_text() == out.stdout and (tmp_path / "cmp.csv").exists()
    (tmp_path / "empty").mkdir()
    assert compare.main([str(tmp_path / "empty")]) == 2


def test_make_tables_reads_the_committed_records_only():
    makefile = (REPO / "Makefile").read_text()
    assert "TABLE_RUNS ?= results/records\n" in makefile and "--runs $(TABLE_RUNS) --out results" in makefile
    assert "compare:\n\t$(PYTHON) -m propulsion.reports.compare $(RUNS)\n" in makefile
    assert (REPO / "results/records/README.md").is_file()  # committed, so the folder exists in every clone
