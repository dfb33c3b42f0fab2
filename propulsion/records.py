"""Run records: one JSON file per run, written atomically, read back by aggregation.

A record is the only output the tables are built from, so it carries everything needed to
interpret a number: the resolved config, every evaluation, parameter counts, time, memory, seed,
package versions and the git commit. Folder names carry no meaning; aggregation globs for
``record.json`` and reads the fields.

Schema (``schema_version`` 1), top-level keys:
    run_id, status ("completed" | "failed" | "running"), error (str | None),
    model, task, family, method, degree (int | None), seed, protocol,
    metrics (the reported numbers), main_metric, best {step, value}, final (metrics at the last step),
    evaluations [{step, epoch, split, metrics}], train_loss [{step, loss}],
    params {trainable, total, percent}, wall_time_s, cpu_time_s, cpu_threads, peak_memory_bytes, peak_memory_kind,
    config (the resolved config), versions, git_commit, git_dirty, started_at, finished_at.
Metric keys are flat: ``accuracy`` for one evaluation split, ``<split>/<metric>`` when a task
reports several (MNLI ``matched/accuracy`` and ``mismatched/accuracy``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_NAME = "record.json"
# Beside a record: the final evaluation's per-example predictions (every task family writes this one name)
PREDICTIONS_NAME = "predictions.jsonl"
STATUSES = ("completed", "failed", "running")

# Packages whose versions move results; recorded in every run.
TRACKED_PACKAGES = (
    "torch", "transformers", "datasets", "peft", "accelerate", "evaluate", "hydra-core",
    "omegaconf", "tokenizers", "safetensors", "numpy", "scipy", "scikit-learn", "rouge-score",
    "pandas", "wandb", "propulsion",
)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(cwd: str | Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package; (None, None) outside git."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        # Tracked changes anywhere, and new files where a run reads code or configs (a scratch notebook elsewhere
        # does not make a run's code differ from the commit).
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, check=True, timeout=10,
        ).stdout
        untracked = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "--", *RUN_INPUTS],
            cwd=_repo_root(where), capture_output=True, text=True, check=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, bool(status.strip() or untracked.strip())


RUN_INPUTS = ("propulsion", "conf", "experiments")  # folders of the repository a run's behaviour comes from


def _repo_root(where: Path) -> Path:
    return Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True,
                               check=True, timeout=10).stdout.strip())


# What a run computes is its resolved config less where and how it is written and executed.
NOT_IDENTITY = ("logger", "output_root", "run_name", "skip_completed", "resume", "save_adapter")
TRAINER_NOT_IDENTITY = ("checkpoint_every", "keep_checkpoint", "num_workers")
# Which metrics are reported beside the main one changes neither what is trained nor which checkpoint is chosen
# (task.main_metric does); runs recorded before tasks listed their metrics keep their identity.
TASK_NOT_IDENTITY = ("metrics",)


def metric_value(metrics: dict[str, Any] | None, name: str) -> Any:
    """``metrics[name]``, or its last path part: a held-out dev set carries one alias, so MNLI's
    "matched/accuracy" is found as "accuracy" there. None when neither is present. The one copy of this rule."""
    metrics = metrics or {}
    name = str(name)
    return metrics[name] if name in metrics else metrics.get(name.split("/")[-1])


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides a run's numbers: the runner's skip/resume key and, less the
    seed, the tables' grouping. Only a method whose config carries the degree (Propulsion's ``degree: ${degree}``)
    reads it: a LoRA run at degree 1 and 15 is one run."""
    identity = {k: v for k, v in config.items() if k not in NOT_IDENTITY}
    if isinstance(identity.get("trainer"), dict):
        identity["trainer"] = {k: v for k, v in identity["trainer"].items() if k not in TRAINER_NOT_IDENTITY}
    if isinstance(identity.get("task"), dict):
        identity["task"] = {k: v for k, v in identity["task"].items() if k not in TASK_NOT_IDENTITY}
    if (identity.get("method") or {}).get("degree") is None:
        identity.pop("degree", None)
    return identity


def config_fingerprint(identity: dict[str, Any]) -> str:
    """Stable short hash of the parts of a config that define a run (canonical JSON)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_readable(path: str | Path) -> None:
    """The permissions a file created here would have (0666 less the umask): results a team can read."""
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write JSON so that readers only ever see a complete file: temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=_json_default)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        make_readable(tmp)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_default(value: Any) -> Any:
    # numpy / torch scalars and paths end up in metrics and configs; store them as plain values.
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(path: str | Path) -> dict[str, Any]:
    with open(path) as handle:
        record = json.load(handle)
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a schema-{SCHEMA_VERSION} run record")
    return record


def find_records(root: str | Path) -> list[Path]:
    """Every record file under root, in a deterministic order."""
    return sorted(Path(root).rglob(RECORD_NAME))


# Records of a study (``make ntk``, ``make bench``): another schema (no metrics of a run), never a table's run.
STUDY_FAMILIES = ("ntk", "bench")


@dataclass(frozen=True)
class Skipped:
    """A record file set aside by ``load_records``: its path, its status as written ("unreadable" when the file
    cannot be read as a record) and its error (for an unreadable file the first line of why; None when none)."""
    path: str
    status: Any
    error: Any = None

    @property
    def reason(self) -> str:
        """Why, for a reader: an unreadable file's whole first line of error (never cut to a length: the message
        starts with the path), a failed run's error as recorded."""
        if self.status == "unreadable":
            return f"unreadable: {self.error}"
        if self.status == "completed":  # completed, yet without what a run's record holds
            return "completed but without metrics or config"
        return f"status {self.status!r}: {self.error or 'unfinished'}"


def load_records(root: str | Path, completed_only: bool = True) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """The one record loader: every ``record.json`` under root, in path order, each record with ``_path`` added,
    and a ``Skipped`` for each file set aside. A file that cannot be read (not JSON, not a schema-1 record) is
    always set aside; with ``completed_only`` so is a run that did not complete and a completed run record without
    a metrics and a config mapping (a study's record, ``STUDY_FAMILIES``, keeps its own schema and is returned)."""
    found, skipped = [], []
    for path in find_records(root):
        try:
            record = read_record(path)
        except (OSError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            skipped.append(Skipped(str(path), "unreadable", str(error).splitlines()[0]))
            continue
        if completed_only and record.get("status") != "completed":
            skipped.append(Skipped(str(path), record.get("status"), record.get("error")))
            continue
        if (completed_only and record.get("family") not in STUDY_FAMILIES
                and not (isinstance(record.get("metrics"), dict) and isinstance(record.get("config"), dict))):
            skipped.append(Skipped(str(path), "completed"))
            continue
        record["_path"] = str(path)
        found.append(record)
    return found, skipped


def new_record(**fields: Any) -> dict[str, Any]:
    """A record with the provenance fields filled in; callers add the rest."""
    commit, dirty = git_state()
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "versions": package_versions(),
        "git_commit": commit,
        "git_dirty": dirty,
        "started_at": utc_now(),
        "finished_at": None,
    }
    record.update(fields)
    return record


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): CUDA peak allocated when a GPU was used, else the process's peak resident set size."""
    import resource

    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_peak_rss"


@contextmanager
def recording(record: dict[str, Any], path: str | Path, write: bool = True) -> Iterator[dict[str, Any]]:
    """Run the body, then mark the record completed or failed (with the error), add wall time, CPU time, peak
    memory and the finish time, and write it atomically — also when the body raises (the error is re-raised).

    ``cpu_time_s`` (this process's user + system time, all threads) beside ``wall_time_s`` and ``cpu_threads``
    (torch's intra-op threads) tells an idle machine from a shared one: on a shared one the wall time grows and
    the CPU time does not, so a cost model is checked against runs that had the machine to themselves."""
    import torch

    started, cpu_started = time.time(), time.process_time()
    try:
        yield record
        record["status"] = "completed"
    except BaseException as error:
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc(limit=8)
        raise
    finally:
        record["wall_time_s"] = round(time.time() - started, 3)
        record["cpu_time_s"] = round(time.process_time() - cpu_started, 3)
        record["cpu_threads"] = torch.get_num_threads()
        record["peak_memory_bytes"], record["peak_memory_kind"] = peak_memory()
        record["finished_at"] = utc_now()
        if write:
            write_json_atomic(path, record)


NO_DEGREE = "-"  # load's degree for methods without one (LoRA, BitFit, ...): a group-by key, where NaN is dropped
# The columns of ``load``, in order; metrics follow as ``metric.<name>`` (``metric.matched/accuracy``).
FRAME_COLUMNS = (
    "run_id", "status", "error", "model", "task", "family", "method", "degree", "seed", "protocol",
    "main_metric", "main_value", "params_trainable", "params_total", "params_percent", "wall_time_s",
    "cpu_time_s", "peak_memory_bytes", "peak_memory_kind", "started_at", "finished_at", "git_commit", "path",
)


def flat_row(record: dict[str, Any], path: str | Path | None = None) -> dict[str, Any]:
    """One record as one flat row: identity, status, every reported metric, counts, time, memory."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    params = record.get("params") if isinstance(record.get("params"), dict) else {}
    main = record.get("main_metric")
    row = {key: record.get(key) for key in FRAME_COLUMNS}
    row.update(main_value=metric_value(metrics, main) if main else None, params_trainable=params.get("trainable"),
               params_total=params.get("total"), params_percent=params.get("percent"),
               path=str(path) if path is not None else None)
    if row["degree"] is None:
        row["degree"] = NO_DEGREE
    row.update({f"metric.{name}": value for name, value in sorted(metrics.items())})
    return row


def load(runs_dir: str | Path):
    """Every run record under ``runs_dir`` as a pandas DataFrame, one row per record file (any status; a file
    that cannot be read is a row with status "unreadable" and the reason in ``error``), ordered by path.
    Columns: FRAME_COLUMNS, then ``metric.<name>`` for every metric any run reported (NaN where a run has none).
    ``degree`` is NO_DEGREE ("-") for a method without one, so a group-by on it keeps every method.

        >>> frame = load("results/runs")
        >>> frame[frame.status == "completed"].groupby(["task", "method"])["main_value"].mean()
    """
    import pandas as pd  # here, not at the top: records is imported by light modules and by every run

    found, unreadable = load_records(runs_dir, completed_only=False)
    rows = [flat_row(record, record["_path"]) for record in found]
    rows += [{"status": "unreadable", "error": skip.error, "path": skip.path} for skip in unreadable]
    rows.sort(key=lambda row: Path(row["path"]))  # find_records' order: unreadable files among the others
    frame = pd.DataFrame(rows)
    metric_columns = sorted(c for c in frame.columns if c.startswith("metric."))
    return frame.reindex(columns=[*FRAME_COLUMNS, *metric_columns])
