"""trainer=authors composes the notebooks' values for every GLUE task (each checked against the notebook cell
named in conf/trainer_task/authors_<task>.yaml), trainer=paper keeps the paper's text, and the record's
config.trainer.preset says which ran."""

from __future__ import annotations

import pytest

from propulsion.compose import compose_spec, parameter_count

# task -> (degree, lr, epochs, batch, weight decay, scheduler, warm-up, eval every, restarts, dropout, select_on)
NOTEBOOKS = {
    "cola": (55, 1e-4, 7, 32, 0.0, "cosine", 500, 100, 1, None, "loss"),
    "mrpc": (55, 1e-4, 10, 32, 0.01, "cosine", 500, 100, 0, None, "loss"),
    "qnli": (55, 1e-4, 3, 32, 0.0, "cosine", 500, 100, 0, None, "loss"),
    "rte": (55, 2e-4, 30, 32, 0.0, "cosine", 500, 100, 0, None, "loss"),
    "qqp": (55, 1e-4, 2, 32, 0.0, "cosine", 500, 1000, 1, 0.0, "loss"),
    "mnli": (35, 1e-4, 3, 32, 5e-4, "cosine", 500, 500, 0, 0.0, "loss"),
    "stsb": (55, 2e-5, 10, 16, 0.0, "linear", 0, 100, 1, None, "loss"),
    "sst2": (5, 2e-4, 3, 32, 0.0, "cosine", 100, 100, 0, None, "final"),
}
PAPER_DEGREES = {"cola": 20, "sst2": 15, "mrpc": 55, "stsb": 15, "qqp": 15, "mnli": 20, "qnli": 55, "rte": 15}


@pytest.mark.parametrize("task", sorted(NOTEBOOKS))
def test_authors_preset_is_the_notebook(task):
    spec, config = compose_spec([f"task={task}", "trainer=authors"])
    trainer, expected = spec.trainer, NOTEBOOKS[task]
    got = (spec.method.degree, trainer.lr, trainer.epochs, trainer.batch_size, trainer.weight_decay,
           trainer.scheduler, trainer.warmup_steps, trainer.eval_every, trainer.restarts, spec.model.dropout,
           trainer.select_on)
    assert got == expected
    assert config["trainer"]["preset"] == "authors" and trainer.restart_optimizer == "keep"
    assert spec.task.max_length == (128 if task == "sst2" else 512)


@pytest.mark.parametrize("task", sorted(NOTEBOOKS))
def test_paper_preset_keeps_the_papers_degrees_and_selection(task):
    spec, config = compose_spec([f"task={task}"])
    assert spec.method.degree == PAPER_DEGREES[task]
    assert (spec.trainer.restarts, spec.trainer.select_on, spec.model.dropout) == (0, "metric", None)
    assert config["trainer"]["preset"] == "paper"
    assert compose_spec([f"task={task}", "trainer=quick"])[1]["trainer"]["preset"] == "quick"


def test_command_line_overrides_beat_the_preset():
    spec, _ = compose_spec(["task=cola", "trainer=authors", "degree=15", "trainer.lr=3e-4", "trainer.restarts=0"])
    assert (spec.method.degree, spec.trainer.lr, spec.trainer.restarts) == (15, 3e-4, 0)


def test_method_specific_notebook_settings_apply_to_propulsion_only():
    # roberta-base: 12 layers x (q, k, v, attention.output, intermediate 3072, output) Linear + 3 embeddings +
    # head dense 768 + out_proj (labels): 12 x (4 x 768 + 3072 + 768) + 3 x 768 + 768 + labels = 86,016 + labels.
    z = 12 * (4 * 768 + 3072 + 768) + 3 * 768 + 768
    # STS-B (stsb.ipynb cell 4): z with one label, plus the whole head (dense 768x768 + 768, out_proj 768 + 1).
    head = 768 * 768 + 768 + 768 + 1
    assert parameter_count("roberta-base", "propulsion", "stsb", ("trainer=authors",))["trainable"] == z + 1 + head
    assert z + 1 + head == 677_378  # the notebook's printed count
    # SST-2 (root sst2.ipynb): z with two labels plus every Linear's bias (12 x (4 x 768 + 3072 + 768), head
    # 768 + 2); LayerNorm biases stay frozen.
    biases = 12 * (4 * 768 + 3072 + 768) + 768 + 2
    assert parameter_count("roberta-base", "propulsion", "sst2", ("trainer=authors",))["trainable"] == z + 2 + biases
    assert z + 2 + biases == 169_732
    # MNLI: three labels (mnli.ipynb cell 5 prints 86,019); LoRA under trainer=authors keeps its own head policy.
    assert parameter_count("roberta-base", "propulsion", "mnli", ("trainer=authors",))["trainable"] == z + 3
    assert parameter_count("roberta-base", "lora", "stsb", ("trainer=authors",)) == parameter_count(
        "roberta-base", "lora", "stsb")


def test_an_authors_run_selects_by_dev_loss_restarts_and_says_so(tmp_path):
    # CoLA under trainer=authors on the tiny model: 2 rounds of 4 steps, evaluated every 2, chosen by dev loss.
    from tests.suite.helpers import records_under, run_cli, write_glue

    data = write_glue(tmp_path / "data", "cola")
    result = run_cli("model=tiny-roberta", "logger=none", "task=cola", f"task.data_dir={data}", "trainer=authors",
                     "trainer.max_steps=4", "trainer.eval_every=2", "trainer.warmup_steps=0", "trainer.lr=1e-2",
                     f"output_root={tmp_path}/runs")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path / "runs")
    assert record["config"]["trainer"]["preset"] == "authors" and record["train"]["selected_on"] == "loss"
    assert [(e["step"], e["round"]) for e in record["evaluations"]] == [(2, 0), (4, 0), (6, 1), (8, 1)]
    last_round = [e for e in record["evaluations"] if e["round"] == 1]
    best = min(last_round, key=lambda e: e["loss"])
    assert record["best"] == {"step": best["step"], "value": best["loss"]}
    assert record["metrics"] == best["metrics"] and "matthews_correlation" in record["metrics"]
    assert [r["round"] for r in record["train"]["rounds"]] == [0, 1]


def test_table1_sweeps_compose_and_say_their_preset():
    # Every table1 sweep as Hydra's basic sweeper would read it: each method (on STS-B, which has the most
    # specialised values) and each task (with the first method) becomes a valid RunSpec under the sweep's preset.
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from propulsion.compose import CONF_DIR, to_spec
    from tests.suite.helpers import REPO

    sweeps = sorted((REPO / "experiments").glob("table1_*.yaml"))
    assert {p.stem for p in sweeps} >= {"table1_roberta_base", "table1_roberta_base_paper",
                                        "table1_roberta_base_baselines", "table1_roberta_large",
                                        "table1_roberta_large_paper", "table1_roberta_large_baselines"}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for path in sweeps:
            params = OmegaConf.load(path)["hydra"]["sweeper"]["params"]
            methods, tasks = str(params["method"]).split(","), str(params["task"]).split(",")
            fixed = [f"model={params['model']}", f"trainer={params['trainer']}"]
            for overrides in ([f"method={m}", "task=stsb"] for m in methods):
                spec, config = to_spec(compose(config_name="config", overrides=[*fixed, *overrides]))
                assert config["trainer"]["preset"] == params["trainer"], (Path(path).stem, overrides)
            for task in tasks:
                to_spec(compose(config_name="config", overrides=[*fixed, f"method={methods[0]}", f"task={task}"]))
