"""docs/contributing.md, "Add a table": its Python blocks run as written and render the example table from records
this test writes; its sweep YAML names what the declaration shows."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.reports.test_tables import md_row, write_run

DOC = Path(__file__).resolve().parents[2] / "docs" / "contributing.md"


def section(text: str, heading: str) -> str:
    """The text under a '## ' heading, up to the next one."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_add_a_table_example_renders_its_cells(tmp_path, monkeypatch, capsys):
    add_a_table = section(DOC.read_text(), "Add a table")
    code = blocks(add_a_table, "python")
    assert len(code) == 2  # the declaration, then rendering it
    runs = tmp_path / "results" / "runs"
    write_run(runs, "lora0", method="lora", task="rte", seed=0, metrics={"accuracy": 0.70})
    write_run(runs, "lora1", method="lora", task="rte", seed=1, metrics={"accuracy": 0.74})
    write_run(runs, "lora1-older", method="lora", task="rte", seed=1, metrics={"accuracy": 0.10},
              finished_at="2025-12-01T00:00:00Z")  # an older run of the same seed: the newest counts
    write_run(runs, "prop0", task="rte", paper_degree=55, seed=0, metrics={"accuracy": 0.68})
    write_run(runs, "prop-mrpc", task="mrpc", paper_degree=55, seed=0, metrics={"accuracy": 0.85, "f1": 0.9})
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in code:
        exec(compile(block, str(DOC), "exec"), namespace)
    table = (tmp_path / "results" / "tables" / "table_rte.md").read_text()
    assert capsys.readouterr().out.strip() == table.strip()
    assert table.startswith("# RTE and MRPC accuracy by method (RoBERTa-base)\n")
    lora = md_row(table, "roberta-base", "lora")
    assert lora["RTE"] == "72.00 ± 2.83 (n=2) / –" and lora["MRPC acc"] == "– / –"
    propulsion = md_row(table, "roberta-base", "propulsion")
    assert propulsion["RTE"] == "68.00 (n=1) / –" and propulsion["MRPC acc"] == "85.00 (n=1) / –"
    assert "- Accuracy on the GLUE validation set, ×100." in table
    assert "1 older duplicate run(s) of the same config and seed for RTE not counted" in table


def test_the_add_a_table_sweep_fills_the_declared_columns():
    add_a_table = section(DOC.read_text(), "Add a table")
    (sweep,) = blocks(add_a_table, "yaml")
    params = yaml.safe_load(sweep)["hydra"]["sweeper"]["params"]
    namespace: dict = {}
    exec(compile(blocks(add_a_table, "python")[0], str(DOC), "exec"), namespace)
    declared = namespace["TABLE_RTE"]
    assert set(params["task"].split(",")) == {column.run_task for column in declared.columns}
    assert declared.sweeps == ("table_rte",) and "table_rte.yaml" in add_a_table
