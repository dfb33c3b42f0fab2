"""Every shipped model × task × method, and every job of every experiment, composes into a typed RunSpec that
the suite accepts (no weights, no data), or is rejected on purpose with a UserError listed below.

Hydra composes each group option once; a combination is assembled from those sections and resolved as Hydra
would (a group writes only its own package; an experiment's own keys merge over the config; swept dotted keys
come last). A sample of combinations and the first job of every experiment are also composed by Hydra itself
and must come out identical, so the shortcut cannot drift from what the entrypoint does. New YAML files in
conf/model, conf/task, conf/method and experiments/ are picked up without touching this file.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from omegaconf import OmegaConf

from propulsion.compose import CONF_DIR, VARS_KEY, group_choices, to_spec
from propulsion.specs import RunSpec, UserError
from propulsion.training import one_run

GROUPS = ("model", "task", "method")
CHOSEN_GROUPS = (*GROUPS, "trainer", "logger")  # groups a sweep may choose (trainer presets specialise)
# Hydra's "specializing configuration" (conf/config.yaml): a trainer preset's values for a method, a task, or both,
# merged in this order after the config's own keys and before an experiment's.
SPECIALIZING = (("trainer_method", ("trainer", "method")), ("trainer_task", ("trainer", "task")),
                ("trainer_task_method", ("trainer", "task", "method")))
EXPERIMENTS_DIR = CONF_DIR.parent / "experiments"
# (model, task, method) -> a part of the one-line message. A combination the suite starts rejecting (or stops
# rejecting) fails the test until it is listed here, on purpose. None today: every shipped model takes every
# shipped task and method at the spec level (what a model cannot build is found when it is built).
EXPECTED_REJECTIONS: dict[tuple[str, str, str], str] = {}


def _options(groups: tuple[str, ...] = GROUPS) -> dict[str, list[str]]:
    return {group: group_choices(group) for group in groups}


def _jobs(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's jobs as {key: value}, values typed as Hydra's override parser types them; an interval (an
    Optuna search space) contributes its two ends."""
    parsed = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    axes = []
    for override in parsed:
        value = override.value()
        if isinstance(value, ChoiceSweep):
            values = list(override.sweep_iterator())
        elif isinstance(value, IntervalSweep):
            values = [value.start, value.end]
        else:
            values = [value]
        axes.append([(override.key_or_group, v) for v in values])
    return [dict(job) for job in itertools.product(*axes)]


@pytest.fixture(scope="module")
def composed() -> dict[str, Any]:
    """Hydra composes a diagonal through the groups (every option of every group appears once): each option's
    section, unresolved (interpolations kept), and each composition's resolved config as the entrypoint gets it."""
    options = _options(CHOSEN_GROUPS)
    diagonal = [{group: names[i % len(names)] for group, names in options.items()}
                for i in range(max(len(names) for names in options.values()))]
    sections: dict[str, dict[str, Any]] = {group: {} for group in CHOSEN_GROUPS}
    references = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for choice in diagonal:
            cfg = compose(config_name="config", overrides=[f"{group}={name}" for group, name in choice.items()])
            for group, name in choice.items():
                if group != "trainer":  # a trainer section is taken below, free of any specialization
                    sections[group][name] = OmegaConf.to_container(cfg[group], resolve=False)
            references.append((choice, to_spec(cfg)[1]))
        for name in options["trainer"]:
            plain = next(c for c in diagonal if not _specialized({**c, "trainer": name}))
            cfg = compose(config_name="config", overrides=[f"{g}={n}" for g, n in {**plain, "trainer": name}.items()])
            sections["trainer"][name] = OmegaConf.to_container(cfg["trainer"], resolve=False)
        cfg = compose(config_name="config")  # the config's own group choices, for a job that names no group
        default = OmegaConf.to_container(cfg, resolve=False)
        references.append(({}, to_spec(cfg)[1]))
    return {"default": default, "sections": sections, "references": references,
            "default_choice": {"trainer": default["trainer"]["name"]}}


def _specialized(choice: dict[str, str]) -> dict[str, Any]:
    """The specializing configs' keys for this trainer × task × method, merged in config.yaml's order."""
    merged: dict[str, Any] = {}
    for folder, groups in SPECIALIZING:
        path = CONF_DIR / folder / ("_".join(choice[group] for group in groups) + ".yaml")
        if path.exists():
            merged = _merge(merged, OmegaConf.to_container(OmegaConf.load(path), resolve=False))
    return merged


INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def _lookup(root: dict[str, Any], path: str) -> Any:
    if ":" in path or path.startswith(".") or "${" in path:  # a resolver, a relative path or a nested interpolation
        raise NotImplementedError(f"{path!r}: OmegaConf resolves this config")  # _assemble falls back to it
    node = root
    for part in path.split("."):
        node = node[part]
    return node


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    """OmegaConf's ${a.b} interpolation on plain containers (thousands of OmegaConf resolutions take minutes)."""
    if isinstance(node, dict):
        return {key: _resolve(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, root) for value in node]
    if isinstance(node, str) and "${" in node:
        whole = INTERPOLATION.fullmatch(node)
        if whole:
            return _resolve(_lookup(root, whole.group(1)), root)
        return INTERPOLATION.sub(lambda match: str(_resolve(_lookup(root, match.group(1)), root)), node)
    return node


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """OmegaConf.merge for plain dicts: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _nested(key: str, value: Any) -> dict[str, Any]:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def _missing(node: Any, path: str = "") -> str | None:
    if isinstance(node, dict):
        return next((found for key, value in node.items()
                     if (found := _missing(value, f"{path}.{key}" if path else key))), None)
    return path if node == "???" else None


def _assemble(composed: dict[str, Any], choice: dict[str, str], body: dict[str, Any] | None = None,
              dotted: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved config of ``choice`` (group -> option), the experiment's own keys merged over it, then the
    swept dotted keys, as Hydra composes them."""
    config = dict(composed["default"])
    for group, name in choice.items():
        config[group] = composed["sections"][group][name]
    full_choice = {"model": config["model"]["name"], "task": config["task"]["name"],
                   "method": config["method"]["name"], **composed["default_choice"], **choice}
    config = _merge(config, _specialized(full_choice))
    config = _merge(config, body or {})
    for key, value in (dotted or {}).items():  # as Hydra: a swept key the config lacks is an error
        _lookup(config, key)
        config = _merge(config, _nested(key, value))
    missing = _missing(config)
    if missing:  # to_spec's rule for a ??? left unset
        raise UserError(f"{missing} must be set (it has no default)")
    try:
        resolved = _resolve(config, config)
    except NotImplementedError:  # oc.select or a relative path: OmegaConf resolves it, as Hydra would (slower)
        resolved = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    resolved.pop(VARS_KEY, None)  # to_spec's rule: an experiment's own interpolation tables leave no trace
    return resolved


def _accept(config: dict[str, Any]) -> RunSpec:
    """What the entrypoint checks before loading anything: the typed specs, then the method and task family."""
    spec = RunSpec.from_dict(config)
    # What the configs say, without reading data files (the hub's are unreachable here) or building each model on
    # the meta device (thousands of builds take minutes); tests/test_reasoning_protocol.py covers those checks.
    one_run.validate(spec, load=False)
    return spec


def test_every_model_task_method_combination(composed):
    options = _options()
    assert {"tiny-roberta", "roberta-base"} <= set(options["model"])  # the loop below is not empty
    rejected, accepted = {}, 0
    for model, task, method in itertools.product(*(options[group] for group in GROUPS)):
        try:
            spec = _accept(_assemble(composed, {"model": model, "task": task, "method": method}))
        except UserError as error:
            rejected[(model, task, method)] = str(error)
            continue
        assert (spec.model.name, spec.task.name, spec.method.name) == (model, task, method)
        if spec.method.kind == "propulsion":  # the task's paper degree reaches the method through ${degree}
            assert spec.method.degree == spec.degree == spec.task.degree, (model, task, method)
        accepted += 1
    assert sorted(rejected) == sorted(EXPECTED_REJECTIONS), rejected
    for combination, part in EXPECTED_REJECTIONS.items():
        assert part in rejected[combination] and "\n" not in rejected[combination], combination
    assert accepted + len(rejected) == len(options["model"]) * len(options["task"]) * len(options["method"])


def _experiment(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    body = {key: value for key, value in raw.items() if key not in ("defaults", "hydra")}
    for base in raw.get("defaults", []):  # an experiment built on another (small_scale_lr_search on small_scale)
        if isinstance(base, str) and (path.parent / f"{base}.yaml").exists():
            body = _merge(_experiment(path.parent / f"{base}.yaml")[0], body)
    params = (raw.get("hydra") or {}).get("sweeper", {}).get("params")
    return body, _jobs(params) if params else []


def _split(job: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    return ({k: v for k, v in job.items() if k in CHOSEN_GROUPS},
            {k: v for k, v in job.items() if k not in CHOSEN_GROUPS})


EXPERIMENTS = sorted(EXPERIMENTS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_job(composed, path):
    body, jobs = _experiment(path)
    assert jobs, path.stem
    seen = set()
    for job in jobs:
        choice, dotted = _split(job)
        config = _assemble(composed, choice, body, dotted)
        _accept(config)
        for key, value in dotted.items():  # each swept value reached the config as given (vars leave none)
            assert key.startswith(f"{VARS_KEY}.") or _lookup(config, key) == value, (path.stem, key)
        seen.add(tuple(sorted(job.items())))
    assert len(seen) == len(jobs)  # no two jobs of a sweep are one job


def test_the_assembled_configs_are_what_hydra_composes(composed):
    # The diagonal (every option of every group once, in some combination) and the config's own defaults.
    assert len(composed["references"]) == max(len(names) for names in _options(CHOSEN_GROUPS).values()) + 1
    for choice, expected in composed["references"]:
        assert _assemble(composed, choice) == expected, choice
    # The first job of every experiment, composed from the experiment file as the entrypoint does.
    with initialize_config_dir(config_dir=str(EXPERIMENTS_DIR), version_base="1.3"):
        for path in EXPERIMENTS:
            body, jobs = _experiment(path)
            choice, dotted = _split(jobs[0])
            overrides = [f"{key}={value}" for key, value in jobs[0].items()]
            cfg = compose(config_name=path.stem, overrides=[*overrides, f"hydra.searchpath=[file://{CONF_DIR}]"])
            assert _assemble(composed, choice, body, dotted) == to_spec(cfg)[1], path.stem


def test_the_shortcut_fails_where_hydra_does(composed):
    with pytest.raises(KeyError):  # a misspelt swept key
        _assemble(composed, {"task": "sst2"}, dotted={"method.num_vector": 3})
    with pytest.raises(UserError, match="task.degree must be set"):
        _assemble(composed, {"task": "sst2"}, dotted={"task.degree": "???"})
    config = _assemble(composed, {"task": "xsum", "method": "propulsion"}, dotted={"task.options.max_target_length": 9})
    assert (config["degree"], config["method"]["degree"], config["task"]["options"]["generation"]["max_new_tokens"]) \
        == (35, 35, 9)
