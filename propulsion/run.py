"""The suite's entrypoint, and the only module that knows Hydra.

    python -m propulsion.run task=sst2 method=propulsion degree=15
    python -m propulsion.run -m task=sst2,rte degree=1,15,55 seed=0,1,2

Compose the config -> typed specs -> :func:`propulsion.experiment.run_experiment` -> the optimised metric.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from propulsion.resources import CONF_DIR, EXPERIMENTS_DIR
from propulsion.specs import RunSpec, UserError

CHECKED_GROUPS = ("model", "task", "method", "trainer", "logger")


def group_choices(group: str, extra_dirs: list[str] = ()) -> list[str]:
    """The YAML files of a config group: shipped, and in the user's ``--config-dir`` folders."""
    folders = [CONF_DIR, *(Path(d) for d in extra_dirs)]
    return sorted({path.stem for folder in folders for path in (folder / group).glob("*.yaml")})


def config_dirs(argv: list[str]) -> list[str]:
    """The folders given with --config-dir / -cd (Hydra's flag for the user's own configs)."""
    found = []
    for index, argument in enumerate(argv):
        if argument in ("--config-dir", "-cd") and index + 1 < len(argv):
            found.append(argv[index + 1])
        elif argument.startswith("--config-dir="):
            found.append(argument.partition("=")[2])
    return found


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


def to_spec(cfg: DictConfig) -> tuple[RunSpec, dict]:
    config = OmegaConf.to_container(cfg, resolve=True)
    return RunSpec.from_dict(config), config


def compose_spec(overrides: list[str]) -> tuple[RunSpec, dict]:
    """The spec a command line would give, without running anything (tables, parameter counts)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_spec(compose(config_name="config", overrides=overrides))


def parameter_count(model: str, method: str, task: str) -> dict:
    """Trainable / total parameters of model × method × task on the meta device: no download, no training."""
    from propulsion import adapt, models
    from propulsion.tasks import get_family

    spec, _ = compose_spec([f"model={model}", f"method={method}", f"task={task}"])
    family = get_family(spec.task.family)
    config = models.load_config(spec.model, **family.model_overrides(spec.task))
    return adapt.count_parameters_on_meta(config, spec.method, family.MODEL_KIND)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")  # the checkout's or the packaged
def main(cfg: DictConfig) -> float:
    from propulsion.experiment import result_table, run_experiment
    from propulsion.records import metric_value

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        spec, config = to_spec(cfg)
        record = run_experiment(spec, config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if multirun:
            return math.nan
        sys.exit(2)
    except Exception as error:  # the record already says "failed"; a sweep goes on with the next job
        if not multirun:
            raise
        print(f"job failed (recorded, sweep continues): {type(error).__name__}: {error}", file=sys.stderr)
        return math.nan
    if int(os.environ.get("RANK", "0")) == 0:  # one table under `accelerate launch` / torchrun
        print(result_table(record))
    metrics = record.get("metrics") or {}
    main_metric = record.get("main_metric")
    value = metric_value(metrics, main_metric)
    return float(value) if value is not None else math.nan


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


def cli() -> None:
    """The ``propulsion-run`` console script (and ``python -m propulsion.run``)."""
    argv, problem = expand_experiment(sys.argv[1:])
    problem = problem or check_choices(argv)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = argv  # Hydra reads sys.argv
    main()


if __name__ == "__main__":
    cli()
