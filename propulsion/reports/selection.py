"""Which records fill a table cell or a figure's point or line: the one rule tables and figures share.

``aggregate`` (tables) and ``figures`` both import this module and nothing of each other. The rule:
- Runs whose configs differ only by seed form one group (``group_key``): the identity the runner skips finished
  runs by (``records.run_identity``), less the seed. Different configs are never averaged together.
- Several groups for one cell: the first by (1) method settings equal to the table's setting for that method
  (conf/method/<name>.yaml; Table 3's Propulsion: 5 vectors, paper §4.3), (2) the paper's protocol:
  protocol=paper, the task's hub data uncapped (no sample data, no max_*_samples) and an on-protocol trainer
  (below), (3) for Propulsion rows of Table 1, trainer preset ``authors`` before ``paper``, (4) most seeds,
  (5) the task's paper degree, (6) newest finish time, (7) smallest group key.
- On-protocol trainer. A record that names its preset (``config.trainer.preset``) is on protocol when the preset
  is one the table accepts (Table 1: ``authors``, the notebooks' settings that produced the paper's Table 1 as far
  as the notebooks show, and ``paper``, §4.2's text; other tables: ``paper``) and its settings equal
  conf/trainer/<preset>.yaml where that file exists. A record without the key is compared with
  conf/trainer/paper.yaml (plus, for Table 3, its sweep's trainer settings, experiments/table3_reasoning.yaml).
- One record per seed in a group: where a config and seed ran more than once, the newest counts.
- Footnotes (``footnotes``): older duplicates dropped, other configs set aside (and what they differ in), a cell
  filled off the paper's protocol (and how), the trainer preset that filled it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from propulsion import records, resources

PAPER_DIR = resources.PAPER_DIR  # the checkout's results/paper, or the installed package's copy
METHOD_CONF_DIR = resources.CONF_DIR / "method"
TRAINER_CONF_DIR = resources.CONF_DIR / "trainer"
EXPERIMENTS_DIR = resources.EXPERIMENTS_DIR
FRACTION_FAMILIES = ("glue",)  # metrics stored in [0, 1], shown ×100
NOT_SETTINGS = ("name", "kind", "degree")  # preset keys that are not a method setting (degree ranked apart)
# Tables whose sweep (experiments/<name>.yaml) sets settings of its own or runs one seed: their fill commands run
# that sweep, and Table 3's trainer settings are its sweep's.
TABLE_EXPERIMENT = {"table3": "table3_reasoning", "table5": "table5_layers"}
# What a table's row means beyond the method preset (overrides of conf/method/<name>.yaml).
TABLE_SETTINGS = {"table3": {"propulsion": {"num_vectors": 5}}}  # paper §4.3: 5 Propulsion vectors per layer
# Trainer keys that change how a run is executed or written, not the number it reports (and the preset's name).
NOT_PROTOCOL = ("name", "preset", "eval_batch_size", "gradient_checkpointing", *records.TRAINER_NOT_IDENTITY)
# Trainer presets a table counts as its protocol (issue 17): the authors' notebooks produced Table 1's numbers as
# far as the notebooks show; §4.2's text (`paper`) is the other reading. Other tables: `paper` only.
ON_PROTOCOL_PRESETS = {"table1": ("authors", "paper")}
PREFERRED_PRESET = {"table1": "authors"}  # for Propulsion rows


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


TASK_READ = re.compile(r"\$\{oc\.select:task\.([\w.]+)(?:,(.*))?\}")


def beside_task(settings: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    """A conf/ file's settings as Hydra composes them next to a record's task: method and trainer files read task
    values as ``${oc.select:task.<path>,<default>}`` (reasoning: LLM-Adapters' LoRA and schedule; GLUE: the
    defaults). Resolved here by that one rule, so the tables need no OmegaConf (only run.py touches it)."""
    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        match = TASK_READ.fullmatch(value) if isinstance(value, str) else None
        if not match:
            return value
        node: Any = task or {}
        for part in match.group(1).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node if node is not None else yaml.safe_load(match.group(2) or "null")

    return resolve(settings)


def trainer_preset(config: dict[str, Any]) -> str | None:
    """The trainer preset a record names (``config.trainer.preset``), None for records from before the key."""
    value = (config.get("trainer") or {}).get("preset")
    return None if value is None else str(value)


@functools.cache
def trainer_settings(table: str = "", name: str = "paper") -> dict[str, Any] | None:
    """The protocol's trainer settings: conf/trainer/<name>.yaml (null = the task's value), with the table's sweep's
    own trainer settings on top (Table 3); None when there is no such preset file."""
    path = TRAINER_CONF_DIR / f"{name}.yaml"
    if not path.exists():
        return None
    settings = yaml.safe_load(path.read_text()) or {}
    if table in TABLE_EXPERIMENT:
        sweep = yaml.safe_load((EXPERIMENTS_DIR / f"{TABLE_EXPERIMENT[table]}.yaml").read_text()) or {}
        settings.update(sweep.get("trainer") or {})
    # A value read from the task (${oc.select:task...}) is resolved beside each record's task (beside_task).
    return {k: v for k, v in settings.items() if k not in NOT_PROTOCOL}


def protocol_deviations(config: dict[str, Any], table: str = "") -> list[str]:
    """How a record's run departs from the table's protocol: evaluation protocol, data, trainer preset/settings."""
    out = []
    if config.get("protocol", "paper") != "paper":
        out.append(f"protocol={config.get('protocol')}")
    task = config.get("task") or {}
    if task.get("source") == "sample":
        out.append("task.source=sample")
    out += [f"task.{cap}" for cap in ("max_train_samples", "max_eval_samples") if task.get(cap) is not None]
    named = trainer_preset(config)
    if named is not None and named not in ON_PROTOCOL_PRESETS.get(table, ("paper",)):
        return out + [f"trainer.preset={named}"]
    wanted = beside_task(trainer_settings(table, named or "paper") or {}, task)  # no file for the preset: its name
    trainer = config.get("trainer") or {}
    return out + [f"trainer.{k}" for k, v in sorted(wanted.items()) if trainer.get(k, v) != v]


def at_paper_degree(config: dict[str, Any]) -> bool:
    """The task's §4.2 degree (methods other than Propulsion have none; the authors' preset sets its own)."""
    if (config.get("method") or {}).get("kind") != "propulsion" or trainer_preset(config) == "authors":
        return True
    return config.get("degree") == (config.get("task") or {}).get("degree")


def finished(runs: list[dict[str, Any]]) -> int:
    """The newest finish time of some records, as a sortable number (0 when none says)."""
    return max(int(re.sub(r"\D", "", str(r.get("finished_at") or "")) or 0) for r in runs)


def choose(groups: dict[str, list[dict[str, Any]]], table: str = "", ignore: tuple[str, ...] = (),
           prefer: Callable[[list[dict[str, Any]]], Any] | None = None
           ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The group that fills a cell (rule in the module docstring) and the groups set aside. ``ignore``: settings
    a figure sweeps; ``prefer``: a rank put after the method settings and the protocol, before the rest (curves:
    most evaluation points), so a figure too takes the paper's protocol first."""
    def rank(item):
        key, runs = item
        config = runs[0].get("config") or {}
        first = prefer(runs) if prefer else 0
        wanted = PREFERRED_PRESET.get(table) if (config.get("method") or {}).get("kind") == "propulsion" else None
        return (bool(deviations(config, table, ignore)), bool(protocol_deviations(config, table)),
                wanted is not None and trainer_preset(config) != wanted, first,
                -len({r.get("seed") for r in runs}), not at_paper_degree(config) and "degree" not in ignore,
                -finished(runs), key)

    ordered = [runs for _key, runs in sorted(groups.items(), key=rank)]
    return ordered[0], ordered[1:]


def one_per_seed(group: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The newest record of each seed (by finish time, then path), and how many older duplicates were dropped."""
    newest: dict[Any, dict[str, Any]] = {}
    for record in sorted(group, key=lambda r: (finished([r]), str(r.get("_path")))):
        newest[record.get("seed")] = record
    kept = sorted(newest.values(), key=lambda r: (str(r.get("seed")), str(r.get("_path"))))
    return kept, len(group) - len(kept)


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


@dataclass(frozen=True)
class Choice:
    """The records that fill one cell (one per seed) and what was set aside for it."""
    runs: list[dict[str, Any]]
    others: list[list[dict[str, Any]]]  # other configs' groups, not shown
    duplicates: int  # older records of a chosen config and seed, not counted
    off_protocol: list[str]  # how the chosen runs depart from the table's protocol ([] = on it)

    @property
    def preset(self) -> str | None:
        return trainer_preset(self.runs[0].get("config") or {})


def pick(groups: dict[str, list[dict[str, Any]]], table: str = "", ignore: tuple[str, ...] = (),
         prefer: Callable[[list[dict[str, Any]]], Any] | None = None) -> Choice:
    """``choose`` then ``one_per_seed``: what fills the cell, with what the footnotes need."""
    group, others = choose(groups, table, ignore, prefer)
    runs, duplicates = one_per_seed(group)
    return Choice(runs, others, duplicates, protocol_deviations(group[0].get("config") or {}, table))


def footnotes(row: str, column: str, choice: Choice) -> list[str]:
    """What a reader must know about one cell: duplicates dropped, off-protocol runs, other configs set aside."""
    notes = []
    if choice.duplicates:
        notes.append(f"{row}: {choice.duplicates} older duplicate run(s) of the same config and seed for {column} "
                     f"not counted (the newest is).")
    if choice.off_protocol:
        notes.append(f"{row}: {column} comes from runs off the paper's protocol "
                     f"({', '.join(choice.off_protocol[:6])}).")
    if choice.others:
        chosen = group_identity(choice.runs[0]["config"])
        differ = sorted({k for g in choice.others for k in config_diff(chosen, group_identity(g[0]["config"]))})
        notes.append(f"{row}: {len(choice.others)} other config(s) for {column} not shown "
                     f"(differ in {', '.join(differ[:6]) or 'nothing recorded'}).")
    return notes


def protocol_label(config: dict[str, Any], table: str = "") -> str:
    """A short name for the protocol a run followed, for figure legends and titles."""
    off = protocol_deviations(config, table)
    if off:
        return f"off the paper's protocol: {', '.join(off[:3])}{', …' if len(off) > 3 else ''}"
    named = trainer_preset(config)
    return f"paper protocol, trainer={named}" if named else "paper protocol"


def scaled(record: dict[str, Any], key: str) -> float | None:
    """A metric in the tables' units (percent), None when absent or not finite."""
    value = (record.get("metrics") or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return 100.0 * value if record.get("family") in FRACTION_FAMILIES else float(value)


def row_method(record: dict[str, Any], table: str) -> str:
    """The row a record belongs to in a table ("" = none). Table 5's rows are the Propulsion targets (``qkv``
    counts as ``attn``); other tables take a Propulsion record only at its preset's targets, so an ablation on one
    layer type never fills the Propulsion(All) row."""
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
