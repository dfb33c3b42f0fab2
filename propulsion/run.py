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

from propulsion.specs import RunSpec, UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
CHECKED_GROUPS = ("model", "task", "method", "trainer", "logger")


def group_choices(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def check_choices(argv: list[str]) -> str | None:
    """One line for an unknown model/task/method/... name, before Hydra prints its multi-line report."""
    for argument in argv:
        key, sep, value = argument.partition("=")
        if not sep or key.lstrip("+~") not in CHECKED_GROUPS:
            continue
        group = key.lstrip("+~")
        valid = group_choices(group)
        for choice in value.split(","):  # a sweep lists several
            if choice and choice not in valid:
                return f"error: unknown {group} {choice!r}; valid choices: {', '.join(valid)}"
    return None


VARS_KEY = "vars"  # an experiment's own values for interpolation (e.g. one lr per method); not part of a run


def to_spec(cfg: DictConfig) -> tuple[RunSpec, dict]:
    """The typed spec and the resolved config the record stores. ``vars`` only feeds interpolations (say
    ``trainer.lr: ${vars.lr.${method.name}}``); its resolved effect is in the config, so it is dropped there."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop(VARS_KEY, None)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
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


def cli() -> None:
    problem = check_choices(sys.argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
