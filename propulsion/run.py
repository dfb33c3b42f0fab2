"""The suite's entrypoint: the only ``@hydra.main``. Composition lives in :mod:`propulsion.compose`.

    python -m propulsion.run task=sst2 method=propulsion degree=15
    python -m propulsion.run -m task=sst2,rte degree=1,15,55 seed=0,1,2

Compose the config -> typed specs -> :func:`propulsion.training.one_run.run_experiment` -> the optimised metric.
"""

from __future__ import annotations

import math
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from propulsion.compose import CHECKED_GROUPS, check_choices, config_dirs, expand_experiment, group_choices, to_spec
from propulsion.resources import CONF_DIR
from propulsion.specs import UserError


def help_groups() -> str:
    """--help's list of the groups a user chooses from (Hydra's $APP_CONFIG_GROUPS would also list the groups the
    presets select themselves: trainer_task, trainer_method, trainer_task_method, task/baselines)."""
    dirs = config_dirs(sys.argv)
    return "\n".join(f"{group}: {', '.join(group_choices(group, dirs))}" for group in CHECKED_GROUPS)


OmegaConf.register_new_resolver("propulsion_help_groups", help_groups, replace=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")  # the checkout's or the packaged
def main(cfg: DictConfig) -> float:
    from propulsion.records import metric_value
    from propulsion.training.one_run import result_table, run_experiment

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
