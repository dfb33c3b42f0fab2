"""Which records fill a table cell, a figure's point or line, or a study's cell: the one rule all of them share.

The engine (tables), ``figures`` and ``study`` all import this module; a declaration (``declarations``) carries
the ``Protocol`` the rule reads. The rule:
- Runs whose configs differ only by seed form one group (``group_key``): the identity the runner skips finished
  runs by (``records.run_identity``), less the seed. Different configs are never averaged together.
- Several groups for one cell: the first by (1) method settings equal to the table's setting for that method
  (conf/method/<name>.yaml; Table 3's Propulsion: 5 vectors, paper §4.3), (2) the paper's protocol:
  protocol=paper, the task's hub data uncapped (no sample data, no max_*_samples) and an on-protocol trainer
  (below), (3) the declaration's preferred trainer preset for rows whose method has a degree (Table 1: ``authors``
  before ``paper`` for Propulsion), (4) most seeds, (5) the task's paper degree, (6) newest finish time,
  (7) smallest group key. A study runs its own protocol (``Protocol(paper_first=False)``): (4), (6), (7) only.
- On-protocol trainer. A record that names its preset (``config.trainer.preset``) is on protocol when the preset
  is one the table accepts (Table 1: ``authors``, the notebooks' settings that produced the paper's Table 1 as far
  as the notebooks show, and ``paper``, §4.2's text; other tables: ``paper``) and its settings equal
  conf/trainer/<preset>.yaml where that file exists. A record without the key is compared with
  conf/trainer/paper.yaml (plus, for Table 3, its sweep's trainer settings, experiments/table3_reasoning.yaml).
- One record per seed in a group: where a config and seed ran more than once, the newest counts. Newest: the
  latest ``finished_at`` read as a time (a record without one is oldest), then the greater path.
- Footnotes (``footnotes``): older duplicates dropped, other configs set aside (and what they differ in), a cell
  filled off the paper's protocol (and how), the trainer preset that filled it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from propulsion import records, resources

PAPER_DIR = resources.PAPER_DIR  # the checkout's results/paper, or the installed package's copy
METHOD_CONF_DIR = resources.CONF_DIR / "method"
TRAINER_CONF_DIR = resources.CONF_DIR / "trainer"
EXPERIMENTS_DIR = resources.EXPERIMENTS_DIR
FRACTION_FAMILIES = ("glue",)  # metrics stored in [0, 1], shown ×100
NOT_SETTINGS = ("name", "kind", "degree")  # preset keys that are not a method setting (degree ranked apart)
# Trainer keys that change how a run is executed or written, not the number it reports (and the preset's name).
NOT_PROTOCOL = ("name", "preset", "eval_batch_size", "gradient_checkpointing", *records.TRAINER_NOT_IDENTITY)


@dataclass(frozen=True)
class Protocol:
    """What a declaration counts as the paper's protocol, and how its groups of seeds rank (module docstring)."""
    presets: tuple[str, ...] = ("paper",)  # trainer presets that are on protocol
    preferred_preset: str | None = None  # ranked first among them, for rows whose method has a degree
    # What a row means beyond conf/method/<name>.yaml, per method (Table 3: Propulsion's 5 vectors).
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    trainer_sweep: str | None = None  # experiments/<sweep>.yaml whose trainer settings are the protocol's
    paper_first: bool = True  # False: a study's own protocol; groups rank by seeds and finish time only

    def __hash__(self) -> int:  # cached per protocol (trainer_settings); the dict field is never mutated
        return hash((self.presets, self.preferred_preset, self.trainer_sweep, self.paper_first,
                     repr(sorted(self.method_settings.items()))))


ANY = Protocol()  # no table's: the paper preset, conf/ settings as they are (the figures' ablation filter)


def has_degree(method: dict[str, Any]) -> bool:
    """Whether the degree applies to a record's method: only Propulsion's method configs carry one
    (conf/method/*.yaml), so the record says it itself."""
    return method.get("degree") is not None


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


def deviations(config: dict[str, Any], protocol: Protocol = ANY, ignore: tuple[str, ...] = ()) -> list[str]:
    """Method settings of a record that differ from the declaration's setting for its method."""
    method = config.get("method") or {}
    wanted = {**beside_task(preset(str(method.get("name"))), config.get("task")),
              **protocol.method_settings.get(str(method.get("name")), {})}
    return sorted(k for k, v in wanted.items() if k not in ignore and method.get(k, v) != v)


TASK_READ = re.compile(r"\$\{oc\.select:task\.([\w.]+)(?:,(.*))?\}")


def beside_task(settings: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    """A conf/ file's settings as Hydra composes them next to a record's task: method and trainer files read task
    values as ``${oc.select:task.<path>,<default>}`` (reasoning: LLM-Adapters' LoRA and schedule; GLUE: the
    defaults). Resolved here by that one rule, so the reports need no OmegaConf: only run.py and compose.py may
    import it (tests/test_imports.py), and OmegaConf would also need the whole composed config to resolve one
    value. studies/bench.py uses it too."""
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
def trainer_settings(protocol: Protocol = ANY, name: str = "paper") -> dict[str, Any] | None:
    """The protocol's trainer settings: conf/trainer/<name>.yaml (null = the task's value), with the protocol's
    sweep's own trainer settings on top (Table 3); None when there is no such preset file."""
    path = TRAINER_CONF_DIR / f"{name}.yaml"
    if not path.exists():
        return None
    settings = yaml.safe_load(path.read_text()) or {}
    if protocol.trainer_sweep is not None:
        sweep = yaml.safe_load((EXPERIMENTS_DIR / f"{protocol.trainer_sweep}.yaml").read_text()) or {}
        settings.update(sweep.get("trainer") or {})
    # A value read from the task (${oc.select:task...}) is resolved beside each record's task (beside_task).
    return {k: v for k, v in settings.items() if k not in NOT_PROTOCOL}


def protocol_deviations(config: dict[str, Any], protocol: Protocol = ANY) -> list[str]:
    """How a record's run departs from the table's protocol: evaluation protocol, data, trainer preset/settings."""
    out = []
    if config.get("protocol", "paper") != "paper":
        out.append(f"protocol={config.get('protocol')}")
    task = config.get("task") or {}
    if task.get("source") == "sample":
        out.append("task.source=sample")
    out += [f"task.{cap}" for cap in ("max_train_samples", "max_eval_samples") if task.get(cap) is not None]
    named = trainer_preset(config)
    if named is not None and named not in protocol.presets:
        return out + [f"trainer.preset={named}"]
    wanted = beside_task(trainer_settings(protocol, named or "paper") or {}, task)  # no file for the preset: its name
    trainer = config.get("trainer") or {}
    return out + [f"trainer.{k}" for k, v in sorted(wanted.items()) if trainer.get(k, v) != v]


def at_paper_degree(config: dict[str, Any]) -> bool:
    """The task's §4.2 degree (a method without a degree has none to be at; the authors' preset sets its own)."""
    if not has_degree(config.get("method") or {}) or trainer_preset(config) == "authors":
        return True
    return config.get("degree") == (config.get("task") or {}).get("degree")


def finish_time(record: dict[str, Any]) -> float:
    """A record's ``finished_at`` as seconds since the epoch (any ISO 8601 offset, "Z" too); 0 when it has none."""
    try:
        return datetime.fromisoformat(str(record.get("finished_at")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def finished(runs: list[dict[str, Any]]) -> float:
    """The newest finish time of some records (0 when none says)."""
    return max(finish_time(r) for r in runs)


def choose(groups: dict[str, list[dict[str, Any]]], protocol: Protocol = ANY, ignore: tuple[str, ...] = (),
           prefer: Callable[[list[dict[str, Any]]], Any] | None = None
           ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The group that fills a cell (rule in the module docstring) and the groups set aside. ``ignore``: settings
    a figure sweeps or a table's rows are made of; ``prefer``: a rank put after the method settings and the
    protocol, before the rest (curves: most evaluation points), so a figure too takes the paper's protocol first."""
    paper = protocol.paper_first

    def rank(item):
        key, runs = item
        config = runs[0].get("config") or {}
        first = prefer(runs) if prefer else 0
        wanted = protocol.preferred_preset if has_degree(config.get("method") or {}) else None
        return (paper and bool(deviations(config, protocol, ignore)),
                paper and bool(protocol_deviations(config, protocol)),
                paper and wanted is not None and trainer_preset(config) != wanted, first,
                -len({r.get("seed") for r in runs}),
                paper and not at_paper_degree(config) and "degree" not in ignore, -finished(runs), key)

    ordered = [runs for _key, runs in sorted(groups.items(), key=rank)]
    return ordered[0], ordered[1:]


def one_per_seed(group: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The newest record of each seed (by finish time, then path), and how many older duplicates were dropped."""
    newest: dict[Any, dict[str, Any]] = {}
    for record in sorted(group, key=lambda r: (finish_time(r), str(r.get("_path")))):
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


def pick(groups: dict[str, list[dict[str, Any]]], protocol: Protocol = ANY, ignore: tuple[str, ...] = (),
         prefer: Callable[[list[dict[str, Any]]], Any] | None = None) -> Choice:
    """``choose`` then ``one_per_seed``: what fills the cell, with what the footnotes need."""
    group, others = choose(groups, protocol, ignore, prefer)
    runs, duplicates = one_per_seed(group)
    return Choice(runs, others, duplicates, protocol_deviations(group[0].get("config") or {}, protocol))


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


def protocol_label(config: dict[str, Any], protocol: Protocol = ANY) -> str:
    """A short name for the protocol a run followed, for figure legends and titles."""
    off = protocol_deviations(config, protocol)
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


# Row rules: the row a record fills in a table ("" = none); a declaration names one.
def rows_by_method(record: dict[str, Any]) -> str:
    """A row per method. A method with a degree (Propulsion) fills its row only at its preset's targets, so an
    ablation on one layer type never fills the Propulsion(All) row."""
    method_config = (record.get("config") or {}).get("method") or {}
    method = str(record.get("method"))
    wanted = preset(method).get("targets")
    if has_degree(method_config) and wanted is not None and method_config.get("targets") != wanted:
        return ""
    return method


def rows_by_targets(record: dict[str, Any]) -> str:
    """A row per set of Propulsion targets (Table 5): ``propulsion:<targets>``, ``qkv`` counted as ``attn``."""
    method_config = (record.get("config") or {}).get("method") or {}
    targets = method_config.get("targets")
    if not has_degree(method_config) or not isinstance(targets, str):
        return ""
    return f"propulsion:{'attn' if targets == 'qkv' else targets}"
