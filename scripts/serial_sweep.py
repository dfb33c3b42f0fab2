"""Run an experiments/NAME.yaml sweep one job per process, in the YAML's order (first key slowest).

    python scripts/serial_sweep.py small_scale model.name_or_path=DIR 'task.data_dir=GLUE/${task.name}'
    python scripts/serial_sweep.py small_scale --dry-run        # print the jobs, run nothing

Hydra's multirun runs every job in one process, whose peak resident memory only grows: a record's peak memory
would be the largest of all jobs before it. One process per job makes it that job's own. Completed runs are
skipped by the entrypoint (skip_completed), so a relaunch resumes the sweep. A KEY=V1,V2 argument replaces the
YAML's sweep values for KEY; any other KEY=VALUE is passed to every job. A job whose completed record is already
there is skipped here, without starting its process (the entrypoint's own rule, checked in this process), so a
relaunch of a mostly finished sweep takes seconds, not a process start per finished job.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "experiments"


def sweep_params(name: str) -> dict[str, list[str]]:
    """The sweep's keys and values in order, following the experiment's `defaults` to a base experiment: the base's
    keys first, then this file's in its own order (so a derived experiment sets its own slowest key)."""
    path = EXPERIMENTS / f"{name}.yaml"
    if not path.exists():
        valid = ", ".join(sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
        raise ValueError(f"unknown experiment {name!r}; valid choices: {valid}")
    config = OmegaConf.to_container(OmegaConf.load(path))
    params: dict[str, list[str]] = {}
    for base in config.get("defaults") or []:  # a base experiment's sweep first; this file's keys replace its
        if isinstance(base, str) and (EXPERIMENTS / f"{base}.yaml").exists():
            params.update(sweep_params(base))
    for key, values in ((config.get("hydra") or {}).get("sweeper") or {}).get("params", {}).items():
        params.pop(key, None)  # this file's keys in this file's order, after the keys only its base sweeps
        params[key] = split_values(key, str(values))
    return params


def split_values(key: str, values: str) -> list[str]:
    if any(mark in values for mark in "[]{}()"):
        raise ValueError(f"{key}={values}: only plain comma-separated sweep values are supported here")
    return [value.strip() for value in values.split(",")]


def jobs(name: str, overrides: list[str]) -> list[list[str]]:
    """Each job's overrides: the product of the sweep values (first key slowest), then the fixed overrides."""
    params = sweep_params(name)
    fixed = []
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key in params:
            params[key] = split_values(key, value)
        else:
            fixed.append(override)
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, combo, strict=True)] + fixed
            for combo in itertools.product(*(params[k] for k in keys))]


def already_completed(name: str, job: list[str]) -> Path | None:
    """The job's run folder if it holds a completed record of this very configuration (the entrypoint's skip rule,
    experiment.completed_record); None otherwise."""
    if str(REPO) not in sys.path:  # this checkout's package, as the jobs get through PYTHONPATH
        sys.path.insert(0, str(REPO))
    from propulsion.compose import compose_spec
    from propulsion.training.one_run import completed_record, run_location

    try:
        spec, config = compose_spec(job, config_name=name, config_dir=EXPERIMENTS)
        run_id, run_dir = run_location(spec, config)
        run_dir = run_dir if run_dir.is_absolute() else REPO / run_dir  # the jobs run in REPO
        return run_dir if completed_record(spec, run_id, run_dir) is not None else None
    except Exception:  # noqa: BLE001 - only a shortcut: the job's own process runs and reports the problem
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="experiments/NAME.yaml")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE (KEY=V1,V2 replaces a swept key's values)")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs and run nothing")
    args = parser.parse_intermixed_args(argv)
    try:
        planned = jobs(args.name, args.overrides)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = 0
    # The jobs import this checkout's package (and record its git commit), whatever is installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for number, job in enumerate(planned, 1):
        command = [sys.executable, "-m", "propulsion.run", "--config-dir", str(EXPERIMENTS),
                   "--config-name", args.name, "hydra.mode=RUN", *job]
        print(f"[{time.strftime('%H:%M:%S')}] job {number}/{len(planned)}: {' '.join(job)}", flush=True)
        if args.dry_run:
            continue
        finished = already_completed(args.name, job)
        if finished:
            print(f"skip: {finished} already completed", flush=True)
            continue
        code = subprocess.run(command, cwd=REPO, env=env).returncode
        if code != 0:  # the record says why; the sweep goes on with the next job
            failed += 1
            print(f"job {number} exited with {code}", flush=True)
    print(f"{len(planned)} jobs, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
