"""The paper's tables from run records, ours beside theirs: ``python -m propulsion.aggregate`` (``make tables``).

Rules, so that a number in a table can be traced:
- Only records with status "completed" count; unreadable, foreign-schema, failed or unfinished records are
  listed in results/tables/skipped.md (and printed) and skipped. NTK and benchmark records are not table runs.
- Runs whose configs differ only by seed form one group (mean ± sample std over seeds, n shown). Different
  configs are never averaged together. The group key (``group_key``) is the identity the runner skips finished
  runs by (``records.run_identity``: the resolved config less where and how a run is written and executed, and
  the degree for methods other than Propulsion), less the seed.
- A table row is (model, method); Table 5's rows are (model, Propulsion targets), from any Propulsion record
  (``qkv`` counts as ``attn``). Rows of Tables 1–3 take a Propulsion record only at its preset's targets, so an
  ablation on one layer type never fills the Propulsion(All) row.
- Several groups for one cell (a degree sweep beside the default run, an init ablation, ...): the first by
  (1) method settings equal to the table's setting for that method (conf/method/<name>.yaml; Table 3's
  Propulsion: 5 vectors, paper §4.3; Table 5's rows differ in targets by design), (2) the paper's protocol:
  protocol=paper, the task's hub data uncapped (no sample data, no max_*_samples) and the trainer settings of
  conf/trainer/paper.yaml (plus, for Table 3, those of its sweep, experiments/table3_reasoning.yaml), (3) most
  seeds, (4) the task's paper degree, (5) newest finish time, (6) smallest group key. The others are footnoted
  with the settings they differ in; a cell filled off the paper's protocol says so.
- One record per seed in a group: where a config and seed were run more than once (two output folders under
  --runs), the newest counts and the others are footnoted. A completed run whose metric is not finite (STS-B's
  Pearson of constant predictions) is left out of its cell and footnoted, never dropped silently.
- GLUE metrics are stored as fractions and shown ×100; SQuAD, ROUGE and reasoning accuracy are stored ×100.
- The paper's Table 1 "Avg." is two numbers: the mean over the 8 tasks of each task's first metric (CoLA MCC,
  SST-2 acc, MRPC acc, STS-B Pearson, QQP acc, MNLI-m, QNLI, RTE), and the mean of the three second metrics
  (MRPC F1, STS-B Spearman, QQP F1). That rule reproduces 26 of the paper's 28 printed averages to rounding;
  the other two (RoBERTa-base BitFit, RoBERTa-large AdaLoRA) disagree with the paper's own cells.
- #TPs (Tables 1, 2, 5): ours from the chosen records' params.trainable (a range when the task heads differ),
  else counted on the meta device for the paper's first task of the row (Tables 1, 2 only); the paper's beside.
Output is deterministic: the same records give byte-identical files (sorted rows, fixed formats, no times).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from propulsion import records

ROOT = Path(__file__).resolve().parent.parent
PAPER_DIR = ROOT / "results" / "paper"
METHOD_CONF_DIR = ROOT / "conf" / "method"
FRACTION_FAMILIES = ("glue",)  # stored in [0, 1], shown ×100
OUR_METHODS = ("full_ft", "prompt", "prefix", "ia3", "bitfit", "lora", "adalora", "lokr", "loha", "propulsion",
               "propulsion_attn")
CONTAMINATED = ("MultiArith", "AddSub", "SingleEq")  # subsets of MAWPS, which math_10k contains
NOT_SETTINGS = ("name", "kind", "degree")  # preset keys that are not a method setting (degree ranked apart)
TRAINER_CONF = ROOT / "conf" / "trainer" / "paper.yaml"
EXPERIMENTS_DIR = ROOT / "experiments"
# Tables whose sweep (experiments/<name>.yaml) sets settings of its own or runs one seed: their fill commands run
# that sweep, and Table 3's trainer settings are its sweep's.
TABLE_EXPERIMENT = {"table3": "table3_reasoning", "table5": "table5_layers"}
# Trainer keys that change how a run is executed or written, not the number it reports.
NOT_PROTOCOL = ("name", "eval_batch_size", "gradient_checkpointing", *records.TRAINER_NOT_IDENTITY)


@dataclass(frozen=True)
class Column:
    header: str
    task: str  # the paper CSV's task; for a record, its task (or, Table 3, the test set)
    metric: str  # the paper CSV's metric
    record_key: str  # key in record["metrics"]
    run_task: str  # the task= a fill command names
    optional: bool = False  # shown only when a record has it (not in the paper)


def _glue_columns() -> list[Column]:
    spec = [("CoLA", "cola", "matthews_correlation"), ("SST-2", "sst2", "accuracy"), ("MRPC acc", "mrpc", "accuracy"),
            ("MRPC F1", "mrpc", "f1"), ("STS-B P", "stsb", "pearson"), ("STS-B S", "stsb", "spearmanr"),
            ("QQP acc", "qqp", "accuracy"), ("QQP F1", "qqp", "f1"), ("MNLI-m", "mnli", "accuracy"),
            ("QNLI", "qnli", "accuracy"), ("RTE", "rte", "accuracy")]
    return [Column(h, t, m, "matched/accuracy" if t == "mnli" else m, t) for h, t, m in spec]


def _table2_columns() -> list[Column]:
    columns = [Column(f"{name} {short}", task, metric, metric, task)
               for task, name in (("squad", "SQuAD1.1"), ("squad_v2", "SQuAD2.0"))
               for short, metric in (("EM", "exact_match"), ("F1", "f1"))]
    # The paper's R-L may be rougeL or rougeLsum: its number stands beside both of ours.
    for task, name in (("xsum", "XSum"), ("cnn_dailymail", "CNN/DM")):
        columns += [Column(f"{name} {short}", task, paper_metric, key, task)
                    for short, paper_metric, key in (("R-1", "rouge1", "rouge1"), ("R-2", "rouge2", "rouge2"),
                                                     ("R-L", "rougeL", "rougeL"), ("R-Lsum", "rougeL", "rougeLsum"))]
    return columns


COMMONSENSE = ["boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"]
ARITHMETIC = ["MultiArith", "gsm8k", "AddSub", "SingleEq", "SVAMP"]
EXTRA_ARITHMETIC = ["AQuA", "mawps"]  # in our arithmetic task, not in the paper's Table 3


def _table3_columns() -> list[Column]:
    return ([Column(d, d, "accuracy", f"{d}/accuracy", "commonsense") for d in COMMONSENSE]
            + [Column(d + (" †" if d in CONTAMINATED else ""), d, "accuracy", f"{d}/accuracy", "arithmetic")
               for d in ARITHMETIC]
            + [Column(d, d, "accuracy", f"{d}/accuracy", "arithmetic", optional=True) for d in EXTRA_ARITHMETIC])


TABLES: dict[str, dict[str, Any]] = {
    "table1": {"title": "Table 1: GLUE (validation), RoBERTa", "columns": _glue_columns(), "average": True,
               "counts": "records+meta"},
    "table2": {"title": "Table 2: SQuAD (EM / F1, DeBERTaV3-base) and summarisation (ROUGE, BART-large)",
               "columns": _table2_columns(), "counts": "records+meta"},
    "table3": {"title": "Table 3: commonsense and arithmetic reasoning accuracy", "columns": _table3_columns(),
               "by_family": "reasoning"},
    "table5": {"title": "Table 5: Propulsion on each layer type (RoBERTa-base, accuracy)", "counts": "records",
               "columns": [Column(t.upper().replace("SST2", "SST-2"), t, "accuracy", "accuracy", t)
                           for t in ("sst2", "mrpc", "qqp", "qnli", "rte")]},
}
# What a table's row means beyond the method preset (overrides of conf/method/<name>.yaml), and fill-command extras.
TABLE_SETTINGS = {"table3": {"propulsion": {"num_vectors": 5}}}  # paper §4.3: 5 Propulsion vectors per layer
NOTES = {
    "table1": ["BitFit's paper #TPs (0.086M / 0.225M) equal Propulsion's and match no BitFit configuration "
               "(roberta-base has 102,144 non-head biases); ours is all biases + the head.",
               "Avg.: mean of each task's first metric over the 8 tasks (MNLI: matched) / mean of the MRPC, "
               "STS-B, QQP second metrics — the rule that reproduces the paper's own Avg. column.",
               "MNLI-m is MNLI matched; our records also hold mismatched/accuracy."],
    "table2": ["The paper's ROUGE-L is not specified as rougeL or rougeLsum: its number stands beside both of "
               "ours (R-L = rougeL, R-Lsum = rougeLsum, sentences split onto lines).",
               "R-Lsum's sentences are split by a regular expression (propulsion/metrics.py; works offline), which "
               "also breaks after abbreviations such as 'U.S.'; HF's run_summarization uses nltk's punkt, so R-Lsum "
               "can differ from numbers computed that way (R-1, R-2 and R-L do not split)."],
    "table3": ["† AddSub, MultiArith and SingleEq are subsets of MAWPS, which the math_10k training set contains: "
               "contaminated. mawps (and AQuA) appear when runs report them; they are not in the paper.",
               "Paper LLM setup (§4.3): degree 15, 5 Propulsion vectors per layer, dropout 0.1, L2 regularisation; "
               "`make experiment NAME=table3_reasoning` runs the grid with them (model.dropout=0.1, "
               "trainer.weight_decay=0.01, trainer.precision=bf16) and LLM-Adapters' 100 warm-up steps with "
               "linear decay.",
               "The parallel-adapter rows are the paper's only: the `adapters` package (1.3.0, the newest) requires "
               "transformers ~=4.57 and this suite runs on transformers 5."],
    "table5": ["attn = K+Q+V (qkv on fused architectures). The paper's K+Q+V row differs from its own Table 1 "
               "Propulsion(Attn) row on SST-2, QQP and QNLI; its All row equals Table 1 Propulsion(All)."],
}


def group_identity(config: dict[str, Any]) -> dict[str, Any]:
    """What a run computes, seed excluded: the runner's identity (records.run_identity) less the seed."""
    return {k: v for k, v in records.run_identity(config).items() if k != "seed"}


def group_key(config: dict[str, Any]) -> str:
    return records.config_fingerprint(group_identity(config))


@functools.cache
def preset(method: str) -> dict[str, Any]:
    """The method's settings as conf/method/<method>.yaml sets them ({} when there is no such file)."""
    path = METHOD_CONF_DIR / f"{method}.yaml"
    if not path.exists():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in loaded.items() if k not in NOT_SETTINGS}


def deviations(config: dict[str, Any], table: str = "", ignore: tuple[str, ...] = ()) -> list[str]:
    """Method settings of a record that differ from the table's setting for its method."""
    method = config.get("method") or {}
    wanted = {**beside_task(preset(str(method.get("name"))), config.get("task")),
              **TABLE_SETTINGS.get(table, {}).get(str(method.get("name")), {})}
    return sorted(k for k, v in wanted.items() if k not in ignore and method.get(k, v) != v)


def beside_task(settings: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    """A conf/ file's settings as Hydra composes them next to a record's task: method and trainer files read
    task values through ${oc.select:task...} (reasoning: LLM-Adapters' LoRA and schedule)."""
    from omegaconf import OmegaConf

    composed = OmegaConf.create({"task": task or {}, "settings": settings})
    return OmegaConf.to_container(composed, resolve=True)["settings"]


@functools.cache
def paper_trainer(table: str = "") -> dict[str, Any]:
    """The trainer settings a table's runs use: conf/trainer/paper.yaml (null = the task's paper value), with the
    table's sweep's own trainer settings on top."""
    settings = yaml.safe_load(TRAINER_CONF.read_text()) or {}
    if table in TABLE_EXPERIMENT:
        sweep = yaml.safe_load((EXPERIMENTS_DIR / f"{TABLE_EXPERIMENT[table]}.yaml").read_text()) or {}
        settings.update(sweep.get("trainer") or {})
    return {k: v for k, v in settings.items() if k not in NOT_PROTOCOL}


def protocol_deviations(config: dict[str, Any], table: str = "") -> list[str]:
    """How a record's run departs from the paper's protocol: evaluation protocol, data, trainer settings."""
    out = []
    if config.get("protocol", "paper") != "paper":
        out.append(f"protocol={config.get('protocol')}")
    task = config.get("task") or {}
    if task.get("source") == "sample":
        out.append("task.source=sample")
    out += [f"task.{cap}" for cap in ("max_train_samples", "max_eval_samples") if task.get(cap) is not None]
    trainer = config.get("trainer") or {}
    wanted = beside_task(paper_trainer(table), task)
    out += [f"trainer.{k}" for k, v in sorted(wanted.items()) if trainer.get(k, v) != v]
    return out


def at_paper_degree(config: dict[str, Any]) -> bool:
    if (config.get("method") or {}).get("kind") != "propulsion":
        return True
    return config.get("degree") == (config.get("task") or {}).get("degree")


def _finished(runs: list[dict[str, Any]]) -> int:
    return max(int(re.sub(r"\D", "", str(r.get("finished_at") or "")) or 0) for r in runs)


def choose(groups: dict[str, list[dict[str, Any]]], table: str = "", ignore: tuple[str, ...] = (),
           prefer=None) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The group that fills a cell (rule in the module docstring) and the groups set aside. ``ignore``: settings
    a figure sweeps; ``prefer``: a rank put first (curves: most evaluation points)."""
    def rank(item):
        key, runs = item
        config = runs[0].get("config") or {}
        first = prefer(runs) if prefer else 0
        return (first, bool(deviations(config, table, ignore)), bool(protocol_deviations(config, table)),
                -len({r.get("seed") for r in runs}), not at_paper_degree(config) and "degree" not in ignore,
                -_finished(runs), key)

    ordered = [runs for _key, runs in sorted(groups.items(), key=rank)]
    return ordered[0], ordered[1:]


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two (identity) configs."""
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += config_diff(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(prefix + key)
    return out


def row_method(record: dict[str, Any], table: str) -> str:
    """The row a record belongs to in a table ("" = none)."""
    method_config = (record.get("config") or {}).get("method") or {}
    if table == "table5":
        targets = method_config.get("targets")
        if method_config.get("kind") != "propulsion" or not isinstance(targets, str):
            return ""
        return f"propulsion:{'attn' if targets == 'qkv' else targets}"
    method = str(record.get("method"))
    wanted = preset(method).get("targets")
    if method_config.get("kind") == "propulsion" and wanted is not None and method_config.get("targets") != wanted:
        return ""
    return method


def load(root: str | Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Completed run records under root, and (path, reason) for everything skipped."""
    good, skipped = [], []
    for path in records.find_records(root):
        try:
            record = records.read_record(path)
        except (OSError, ValueError, json.JSONDecodeError) as error:
            skipped.append((str(path), f"unreadable: {str(error).splitlines()[0][:120]}"))
            continue
        if record.get("status") != "completed":
            skipped.append((str(path), f"status {record.get('status')!r}: {record.get('error') or 'unfinished'}"))
        elif record.get("family") in ("ntk", "bench"):
            continue
        elif not isinstance(record.get("metrics"), dict) or not isinstance(record.get("config"), dict):
            skipped.append((str(path), "completed but without metrics or config"))
        else:
            record["_path"] = str(path)
            good.append(record)
    return good, skipped


def scaled(record: dict[str, Any], key: str) -> float | None:
    """A metric in the tables' units (percent), None when absent or not finite."""
    value = (record.get("metrics") or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return 100.0 * value if record.get("family") in FRACTION_FAMILIES else float(value)


def _belongs(record: dict[str, Any], column: Column, table: str) -> bool:
    family = TABLES[table].get("by_family")
    if family:  # Table 3: any reasoning run that scored this test set
        return record.get("family") == family and column.record_key in (record.get("metrics") or {})
    return record.get("task") == column.task and column.record_key in (record.get("metrics") or {})


def _matches(record: dict[str, Any], column: Column, table: str) -> bool:
    return _belongs(record, column, table) and scaled(record, column.record_key) is not None


def one_per_seed(group: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The newest record of each seed (by finish time, then path), and how many older duplicates were dropped."""
    newest: dict[Any, dict[str, Any]] = {}
    for record in sorted(group, key=lambda r: (_finished([r]), str(r.get("_path")))):
        newest[record.get("seed")] = record
    kept = sorted(newest.values(), key=lambda r: (str(r.get("seed")), str(r.get("_path"))))
    return kept, len(group) - len(kept)


def columns_of(name: str, runs: list[dict[str, Any]]) -> list[Column]:
    return [c for c in TABLES[name]["columns"] if not c.optional or any(_matches(r, c, name) for r in runs)]


def _std(values: list[float]) -> float | None:
    return float(pd.Series(values).std()) if len(values) > 1 else (0.0 if values else None)


def build_table(name: str, runs: list[dict[str, Any]], paper: pd.DataFrame
                ) -> tuple[pd.DataFrame, list[str], dict[tuple[str, str], list[dict]]]:
    """Long format: one row per (model, method, column) with ours (mean, std, n), the paper's value, the gap.
    Also the notes and the records chosen per (model, method) row (for parameter counts)."""
    columns = columns_of(name, runs)
    cells: dict[tuple[str, str, str], dict[str, list[dict]]] = {}
    set_aside_notes = set()
    for record in runs:
        method = row_method(record, name)
        if not method:
            continue
        for column in columns:
            key = (str(record.get("model")), method, column.header)
            if _matches(record, column, name):
                cells.setdefault(key, {}).setdefault(group_key(record["config"]), []).append(record)
            elif _belongs(record, column, name):
                set_aside_notes.add(f"{key[0]} / {key[1]}: {column.header} of run {record.get('run_id')} is not a "
                                    f"finite number; left out.")
    chosen: dict[tuple[str, str, str], list[dict]] = {}
    ignore = ("targets",) if name == "table5" else ()  # Table 5's rows are the targets
    for key, groups in sorted(cells.items()):
        group, others = choose(groups, name, ignore)
        chosen[key], duplicates = one_per_seed(group)
        if duplicates:
            set_aside_notes.add(f"{key[0]} / {key[1]}: {duplicates} older duplicate run(s) of the same config and "
                                f"seed for {key[2]} not counted (the newest is).")
        off = protocol_deviations(group[0]["config"], name)
        if off:
            set_aside_notes.add(f"{key[0]} / {key[1]}: {key[2]} comes from runs off the paper's protocol "
                                f"({', '.join(off[:6])}).")
        if others:
            chosen_identity = group_identity(group[0]["config"])
            differ = sorted({k for g in others for k in config_diff(chosen_identity, group_identity(g[0]["config"]))})
            set_aside_notes.add(f"{key[0]} / {key[1]}: {len(others)} other config(s) for {key[2]} not shown "
                                f"(differ in {', '.join(differ[:6]) or 'nothing recorded'}).")
    paper_rows = {(r.model, r.method, r.task, r.metric): r.value for r in paper.itertuples()} if len(paper) else {}
    row_keys = sorted({(m, me) for (m, me, _t, _x) in paper_rows} | {(m, me) for (m, me, _c) in chosen})
    out, by_row = [], {}
    for model, method in row_keys:
        for column in columns:
            group = chosen.get((model, method, column.header), [])
            by_row.setdefault((model, method), []).extend(group)
            values = [v for v in (scaled(r, column.record_key) for r in group) if v is not None]
            mean = sum(values) / len(values) if values else None
            theirs = paper_rows.get((model, method, column.task, column.metric))
            out.append({"table": name, "model": model, "method": method, "column": column.header,
                        "task": column.task, "metric": column.record_key, "ours_mean": mean,
                        "ours_std": _std(values), "n": len(values), "paper": theirs,
                        "diff": None if mean is None or theirs is None else mean - theirs})
    return pd.DataFrame(out), list(NOTES.get(name, [])) + sorted(set_aside_notes), by_row


AVERAGE_FIRST = ["CoLA", "SST-2", "MRPC acc", "STS-B P", "QQP acc", "MNLI-m", "QNLI", "RTE"]
AVERAGE_SECOND = ["MRPC F1", "STS-B S", "QQP F1"]


def paper_average(cells: dict[str, float]) -> tuple[float, float]:
    """The paper's Avg. pair from one row's cells keyed by column header (the rule in the module docstring)."""
    return (sum(cells[c] for c in AVERAGE_FIRST) / len(AVERAGE_FIRST),
            sum(cells[c] for c in AVERAGE_SECOND) / len(AVERAGE_SECOND))


def add_average(frame: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Table 1's Avg. column pair: ours by the paper's rule (on our seed means), theirs as printed."""
    printed = {(r.model, r.method, r.metric): r.value for r in paper.itertuples() if r.task == "average"}
    rows = []
    for (model, method), part in frame.groupby(["model", "method"], sort=True):
        by = part.set_index("column")
        for header, columns, paper_metric in (("Avg.", AVERAGE_FIRST, "accuracy"),
                                              ("Avg. 2nd", AVERAGE_SECOND, "f1")):
            ours = by.loc[columns, "ours_mean"]
            mean = float(ours.mean()) if ours.notna().all() else None
            theirs = printed.get((model, method, paper_metric))
            rows.append({"table": "table1", "model": model, "method": method, "column": header, "task": "average",
                         "metric": header, "ours_mean": mean, "ours_std": None,
                         "n": int(by.loc[columns, "n"].min()), "paper": theirs,
                         "diff": None if mean is None or theirs is None else mean - theirs})
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def cell_text(row: pd.Series) -> str:
    """"ours ± std (n=…) / paper [ours − paper]"; "–" where either side has no number."""
    if _missing(row["ours_mean"]):
        ours = "–"
    else:
        spread = f" ± {_fmt(row['ours_std'])}" if row["n"] > 1 else ""
        ours = f"{_fmt(row['ours_mean'])}{spread} (n={int(row['n'])})"
    gap = "" if _missing(row["diff"]) else f" [{row['diff']:+.2f}]"
    return f"{ours} / {_fmt(row['paper'])}{gap}"


def wide(frame: pd.DataFrame, headers: list[str], counts: dict[tuple[str, str], str]) -> pd.DataFrame:
    table = frame.assign(text=frame.apply(cell_text, axis=1)).pivot(index=["model", "method"], columns="column",
                                                                     values="text")
    table = table[headers].reset_index()
    if counts:
        rows = zip(table.model, table.method, strict=True)
        table.insert(2, "#TPs ours / paper", [counts.get(row, "–") for row in rows])
    return table


@functools.cache
def meta_count(model: str, method: str, task: str) -> int | None:
    """Trainable parameters of model × method × task counted on the meta device, None when that cannot be done
    (the counter is missing, or the model or method has no config)."""
    counters = []
    try:
        from propulsion.run import parameter_count

        counters.append(parameter_count)
    except ImportError:
        pass
    try:
        from propulsion.adapt import count_parameters_on_meta

        counters.append(count_parameters_on_meta)
    except ImportError:
        pass
    for counter in counters:
        try:
            counted = counter(model, method, task)
        except Exception:  # wrong signature, unknown name, missing config: try the next, else "–"
            continue
        return int(counted["trainable"] if isinstance(counted, dict) else counted.trainable)
    return None


def parameter_counts(frame: pd.DataFrame, by_row: dict[tuple[str, str], list[dict]], paper: pd.DataFrame,
                     use_meta: bool) -> dict[tuple[str, str], str]:
    """"ours / paper" per row: ours from the chosen records (a range when task heads differ), else on meta."""
    theirs = {}
    if "params" in paper:
        theirs = {(r.model, r.method): r.params for r in paper.itertuples() if isinstance(r.params, str)}
    counts = {}
    for (model, method), part in frame[frame.task != "average"].groupby(["model", "method"], sort=True):
        found = sorted({int(r["params"]["trainable"]) for r in by_row.get((model, method), [])
                        if isinstance(r.get("params"), dict) and r["params"].get("trainable") is not None})
        ours = f"{found[0]:,}" if len(found) == 1 else (f"{found[0]:,}–{found[-1]:,}" if found else "–")
        if not found and use_meta and method in OUR_METHODS:
            # The head depends on the task: count with the row's first paper task (SQuAD for DeBERTa, XSum for BART).
            with_paper = part[part.paper.notna()]
            task = (with_paper if len(with_paper) else part).task.iloc[0]
            count = meta_count(model, method, task)
            ours = f"{count:,}" if count is not None else "–"
        counts[(model, method)] = f"{ours} / {theirs.get((model, method)) or '–'}"
    return counts


def fill_commands(frame: pd.DataFrame, name: str) -> list[str]:
    """Commands that would fill the paper's empty cells of the methods we implement."""
    run_task = {c.header: c.run_task for c in TABLES[name]["columns"]}
    wanted: dict[tuple[str, str, str, str], list[str]] = {}
    for (model, method), part in frame[frame.task != "average"].groupby(["model", "method"], sort=True):
        base, _, targets = method.partition(":")
        if base not in OUR_METHODS:
            continue
        missing = ",".join(sorted({run_task[c] for c in part[part.ours_mean.isna() & part.paper.notna()].column}))
        if missing:
            extra = " ".join(f"method.{k}={v}" for k, v in sorted(TABLE_SETTINGS.get(name, {}).get(base, {}).items()))
            if name in TABLE_EXPERIMENT:  # the table's sweep sets them for every method
                extra = ""
            wanted.setdefault((model, missing, base if targets else "", extra), []).append(targets or base)
    commands = []
    experiment = TABLE_EXPERIMENT.get(name)
    for (model, tasks, base, extra), choices in sorted(wanted.items()):
        sweep = f"method={base} method.targets={','.join(choices)}" if base else f"method={','.join(choices)}"
        if experiment:  # the table's own sweep: its settings and seeds, narrowed to the missing cells
            commands.append(f"python -m propulsion.run --config-dir experiments --config-name {experiment} "
                            f"model={model} {sweep} task={tasks}")
            continue
        command = f"python -m propulsion.run -m model={model} {sweep} task={tasks} seed=0,1,2"
        commands.append(f"{command} {extra}".rstrip())
    return commands


def write(name: str, frame: pd.DataFrame, table: pd.DataFrame, notes: list[str], commands: list[str],
          out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    numbers = ["ours_mean", "ours_std", "paper", "diff"]
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in numbers})
    frame.sort_values(["model", "method", "column"]).to_csv(out / f"{name}.csv", index=False, float_format="%.4f",
                                                            lineterminator="\n")
    lines = [f"# {TABLES[name]['title']}", "",
             "Each cell: ours (mean ± sample std over seeds, n) / paper [ours − paper]; – = no number.", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    lines += [""] + [f"- {note}" for note in notes]
    if commands:
        lines += ["", "Commands that fill the empty cells of the methods we implement:", "", "```"] + commands + ["```"]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.tex").write_text(table.to_latex(index=False, escape=True))


def make_table(name: str, runs: list[dict[str, Any]], paper_dir: Path, out: Path, use_meta: bool) -> bool:
    """One table's .csv/.md/.tex; False when neither the paper nor a record has a row for it."""
    paper_file = paper_dir / f"{name}.csv"
    paper = pd.read_csv(paper_file) if paper_file.exists() else pd.DataFrame()
    frame, notes, by_row = build_table(name, runs, paper)
    if frame.empty:
        return False
    headers = [c.header for c in columns_of(name, runs)]
    if TABLES[name].get("average"):
        frame = add_average(frame, paper)
        headers += ["Avg.", "Avg. 2nd"]
    mode = TABLES[name].get("counts")
    counts = parameter_counts(frame, by_row, paper, use_meta and mode == "records+meta") if mode else {}
    write(name, frame, wide(frame, headers, counts), notes, fill_commands(frame, name), out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paper tables and figures from run records, ours beside the "
                                                 "paper's (make tables).")
    parser.add_argument("--runs", default="results/runs", help="folder searched for record.json files")
    parser.add_argument("--out", default="results", help="tables go to OUT/tables, figures to OUT/figures")
    parser.add_argument("--paper", default=str(PAPER_DIR), help="folder of the paper's numbers (CSV)")
    parser.add_argument("--no-offline-counts", action="store_true",
                        help="do not count parameters on the meta device for rows without a record")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    runs, skipped = load(args.runs)
    tables = Path(args.out) / "tables"
    made = [name for name in TABLES
            if make_table(name, runs, Path(args.paper), tables, not args.no_offline_counts)]
    tables.mkdir(parents=True, exist_ok=True)
    lines = ["# Skipped records", ""] + [f"- {path}: {reason}" for path, reason in skipped]
    (tables / "skipped.md").write_text("\n".join(lines) + "\n")
    print(f"{len(runs)} completed records, {len(skipped)} skipped; tables in {tables}: {', '.join(made)}")
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}")
    if not args.no_figures:
        from propulsion import figures

        drawn, notes = figures.make_all(runs, Path(args.out) / "figures", bench=figures.load_bench(args.runs),
                                        paper_dir=Path(args.paper))
        print(f"figures in {Path(args.out) / 'figures'}: {', '.join(drawn) or 'none'}")
        for note in notes:
            print(f"  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
