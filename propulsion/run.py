"""The suite's entrypoint: the only ``@hydra.main``. Composition lives in :mod:`propulsion.compose`.

    python -m propulsion.run task=sst2 method=propulsion degree=15
    python -m propulsion.run -m task=sst2,rte degree=1,15,55 seed=0,1,2

Compose the config -> typed specs -> :func:`propulsion.training.one_run.run_experiment` -> the optimised metric.
A multirun ends with a summary (completed / failed / skipped, each failed job's folder and first error line) and
exits 1 when a job failed; ``--allow-failures`` (before or after the overrides) keeps the exit status 0.
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

ALLOW_FAILURES = "--allow-failures"  # ours, not Hydra's: taken out of argv before Hydra parses it
# One entry per job this process ran in a multirun: (status, run folder or None, first error line or None).
# A launcher that runs jobs in other processes (submitit) reports them in their own logs and records.
SWEEP_OUTCOMES: list[tuple[str, str | None, str | None]] = []


def first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def sweep_summary(outcomes: list[tuple[str, str | None, str | None]]) -> str:
    """The lines printed at the end of a multirun."""
    counts = {status: sum(1 for s, _, _ in outcomes if s == status) for status in ("completed", "failed", "skipped")}
    lines = [f"sweep: {len(outcomes)} jobs: {counts['completed']} completed, {counts['failed']} failed, "
             f"{counts['skipped']} skipped (already completed)"]
    lines += [f"  failed: {folder or '(no run folder: refused before it started)'}: {error}"
              for status, folder, error in outcomes if status == "failed"]
    return "\n".join(lines)


def sweep_exit_status(outcomes: list[tuple[str, str | None, str | None]], allow_failures: bool) -> int:
    return 1 if any(status == "failed" for status, _, _ in outcomes) and not allow_failures else 0


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")  # the checkout's or the packaged
def main(cfg: DictConfig) -> float:
    from propulsion.records import metric_value
    from propulsion.training.one_run import result_table, run_experiment

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    record = None
    try:
        spec, config = to_spec(cfg)
        record = run_experiment(spec, config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        if multirun:
            SWEEP_OUTCOMES.append(("failed", None, f"error: {first_line(str(error))}"))
            return math.nan
        sys.exit(2)
    except Exception as error:  # the record already says "failed"; a sweep goes on with the next job
        if not multirun:
            raise
        print(f"job failed (recorded, sweep continues): {type(error).__name__}: {error}", file=sys.stderr)
        folder = _failed_run_dir()
        SWEEP_OUTCOMES.append(("failed", folder, f"{type(error).__name__}: {first_line(str(error))}"))
        return math.nan
    if multirun:
        SWEEP_OUTCOMES.append(("skipped" if record.get("skipped") else "completed", record.get("run_dir"), None))
    if int(os.environ.get("RANK", "0")) == 0:  # one table under `accelerate launch` / torchrun
        print(result_table(record))
    metrics = record.get("metrics") or {}
    main_metric = record.get("main_metric")
    value = metric_value(metrics, main_metric)
    return float(value) if value is not None else math.nan


def _failed_run_dir() -> str | None:
    """The folder of the job that just failed: run_experiment's record there says "failed" with the error."""
    from propulsion.training.one_run import LAST_RUN_DIR

    return str(LAST_RUN_DIR[0]) if LAST_RUN_DIR else None


def cli() -> None:
    """The ``propulsion-run`` console script (and ``python -m propulsion.run``)."""
    allow_failures = ALLOW_FAILURES in sys.argv[1:]
    argv, problem = expand_experiment([arg for arg in sys.argv[1:] if arg != ALLOW_FAILURES])
    problem = problem or check_choices(argv)
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = argv  # Hydra reads sys.argv
    main()
    if SWEEP_OUTCOMES:  # a multirun ran here
        print(sweep_summary(SWEEP_OUTCOMES), file=sys.stderr)
        status = sweep_exit_status(SWEEP_OUTCOMES, allow_failures)
        if status:
            print(f"exit status {status}: a job failed ({ALLOW_FAILURES} keeps 0)", file=sys.stderr)
        sys.exit(status)


if __name__ == "__main__":
    cli()
