"""Hydra configs composed into typed specs, without running anything: the API that the entrypoint (run.py), the
plan, the tables and scripts/serial_sweep.py share. Only this module and run.py know Hydra exists."""

from __future__ import annotations

import itertools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, MissingMandatoryValue

from propulsion.resources import CONF_DIR, EXPERIMENTS_DIR
from propulsion.specs import RunSpec, UserError

CHECKED_GROUPS = ("model", "task", "method", "trainer", "logger")


def group_choices(group: str, config_dirs: tuple[str | Path, ...] = ()) -> list[str]:
    """The options of a config group: conf/<group>/*.yaml plus <dir>/<group>/*.yaml of each --config-dir."""
    folders = [CONF_DIR / group, *(Path(folder) / group for folder in config_dirs)]
    return sorted({path.stem for folder in folders for path in folder.glob("*.yaml")})


def config_dirs(argv: list[str]) -> tuple[str, ...]:
    """The folders named by --config-dir/-cd (Hydra adds them to the search path: experiments, a user's tasks)."""
    found = []
    for position, argument in enumerate(argv):
        if argument in ("--config-dir", "-cd") and position + 1 < len(argv):
            found.append(argv[position + 1])
        elif argument.startswith("--config-dir="):
            found.append(argument.partition("=")[2])
    return tuple(found)


def check_choices(argv: list[str]) -> str | None:
    """One line for an unknown model/task/method/... name, before Hydra prints its multi-line report."""
    extra = config_dirs(argv)
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key.lstrip("+~") not in CHECKED_GROUPS:
            continue
        group = key.lstrip("+~")
        valid = group_choices(group, extra)
        for choice in value.split(","):  # a sweep lists several
            if choice and choice not in valid:
                return f"error: unknown {group} {choice!r}; valid choices: {', '.join(valid)}"
    return None


VARS_KEY = "vars"  # an experiment's own values for interpolation (e.g. one lr per method); not part of a run


def to_spec(cfg: DictConfig) -> tuple[RunSpec, dict]:
    """The typed spec and the resolved config the record stores. ``vars`` only feeds interpolations (say
    ``trainer.lr: ${vars.lr.${method.name}}``); its resolved effect is in the config, so it is dropped there."""
    try:  # a ??? key (e.g. in conf/_glue_task.yaml) that the task's YAML left unset is one line, not a traceback
        config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as error:
        raise UserError(f"{error.full_key} must be set (it has no default); add it to the config or the "
                        f"command line") from None
    except InterpolationKeyError as error:  # an experiment's table lacks the swept choice: vars.lr.<method>
        missing = str(error).split("'")[1] if str(error).count("'") >= 2 else ""
        table = OmegaConf.select(cfg, missing.rpartition(".")[0], default=None) if "." in missing else None
        valid = f"; valid choices: {', '.join(map(str, table.keys()))}" if isinstance(table, DictConfig) else ""
        raise UserError(f"{error.full_key} reads {missing or 'a key'}, which the config does not set{valid}") from None
    config.pop(VARS_KEY, None)
    return RunSpec.from_dict(config), config


def compose_spec(overrides: list[str], config_name: str = "config",
                 config_dir: str | Path | None = None) -> tuple[RunSpec, dict]:
    """The spec a command line would give (one job: a config's own sweep values play no part), without running
    anything (tables, parameter counts, a sweep's skip check). ``config_dir``: an experiments folder, with conf/
    on the search path as the entrypoint's --config-dir has it."""
    from hydra import compose, initialize_config_dir

    search_path = [f"hydra.searchpath=[file://{CONF_DIR}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(Path(config_dir or CONF_DIR).resolve()), version_base="1.3"):
        return to_spec(compose(config_name=config_name, overrides=search_path + list(overrides)))


def expand_jobs(overrides: list[str], config_name: str = "config",
                config_dir: str | Path | None = None) -> list[tuple[list[str], RunSpec, dict]]:
    """Every job a run or sweep would launch, composed into specs: nothing loaded, nothing written.

    The sweep's values are the config's ``hydra.sweeper.params`` with the command line's own ``a=x,y`` on top, and
    the jobs are their product in the basic sweeper's order (the first key varies slowest). A search sweeper's
    distributions (optuna) are not jobs that can be listed: one line says so."""
    from hydra.errors import HydraException

    folder = Path(config_dir or CONF_DIR)
    if not (folder / f"{config_name}.yaml").exists():
        valid = sorted(path.stem for path in folder.glob("*.yaml"))
        raise UserError(f"unknown config {config_name!r} in {folder}; valid choices: {', '.join(valid)}")
    problem = check_choices([*overrides, *(["--config-dir", str(config_dir)] if config_dir else [])])
    if problem:
        raise UserError(problem.removeprefix("error: "))
    try:
        return _compose_jobs(overrides, config_name, config_dir)
    except HydraException as error:  # a key the config lacks, a malformed override: Hydra's first line
        # (a composition error may carry its message only on its cause: an interpolation OmegaConf cannot parse)
        text = str(error).strip() or str(error.__cause__ or "").strip() or type(error).__name__
        raise UserError(text.splitlines()[0]) from None


def _compose_jobs(overrides: list[str], config_name: str, config_dir: str | Path | None):
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    search_path = [f"hydra.searchpath=[file://{CONF_DIR}]"] if config_dir else []
    with initialize_config_dir(config_dir=str(Path(config_dir or CONF_DIR).resolve()), version_base="1.3"):
        fixed = [o for o in overrides if not parser.parse_override(o).is_sweep_override()]
        base = compose(config_name=config_name, overrides=search_path + fixed, return_hydra_config=True)
        declared = base.hydra.sweeper.get("params")
        params = dict(OmegaConf.to_container(declared, resolve=False)) if declared else {}
        for raw in overrides:
            if parser.parse_override(raw).is_sweep_override():
                key, _, values = raw.partition("=")
                params[key] = values
        axes = []
        for key, values in params.items():
            parsed = parser.parse_override(f"{key}={values}")
            if parsed.is_sweep_override() and not parsed.is_choice_sweep() and not parsed.is_range_sweep():
                raise UserError(f"{key}={values} is a search space, not a list of jobs; give explicit values")
            choices = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else [str(values)]
            axes.append([f"{key}={choice}" for choice in choices])
        jobs = []
        for combination in itertools.product(*axes):
            job_overrides = fixed + list(combination)
            cfg = compose(config_name=config_name, overrides=search_path + job_overrides)
            spec, config = to_spec(cfg)
            jobs.append((job_overrides, spec, config))
    return jobs


def parameter_count(model: str, method: str, task: str, overrides: tuple[str, ...] = ()) -> dict:
    """Trainable / total parameters of model × method × task (plus any overrides, e.g. trainer=authors) on the
    meta device: no download, no training."""
    from propulsion import adapt, backbones
    from propulsion.tasks import get_family

    spec, _ = compose_spec([f"model={model}", f"method={method}", f"task={task}", *overrides])
    family = get_family(spec.task.family)
    config = backbones.load_config(spec.model, **family.model_overrides(spec.task))
    return adapt.count_parameters_on_meta(config, spec.method, family.MODEL_KIND)


def trainable_count(model: str, method: str, task: str, overrides: tuple[str, ...] = ()) -> int | None:
    """The tables' #TPs for a row no record fills (``reports.cli``); None when model, method or task
    has no config here (a record's model given by path): the table shows "–"."""
    for group, name in (("model", model), ("method", method), ("task", task)):
        if name not in group_choices(group):
            return None
    return int(parameter_count(model, method, task, overrides)["trainable"])


def expand_experiment(argv: list[str]) -> tuple[list[str], str | None]:
    """``--experiment NAME`` (a paper sweep, experiments/NAME.yaml, shipped with the package) becomes Hydra's
    ``--config-dir <experiments> --config-name NAME``; (argv, error line)."""
    out, index = [], 0
    while index < len(argv):
        argument = argv[index]
        if argument == "--experiment" or argument.startswith("--experiment="):
            name = argument.partition("=")[2] if "=" in argument else (argv[index + 1] if index + 1 < len(argv)
                                                                       else "")
            index += 1 if "=" in argument else 2
            valid = sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))
            if name not in valid:
                return argv, f"error: unknown experiment {name!r}; valid choices: {', '.join(valid)}"
            out += ["--config-dir", str(EXPERIMENTS_DIR), "--config-name", name]
            continue
        out.append(argument)
        index += 1
    return out, None
