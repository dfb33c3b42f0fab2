"""Where a run's model and data come from, checked in seconds before a run folder or a tracker run exists.

A local path that does not exist is refused with its name. Offline (``HF_HUB_OFFLINE=1``, or the hub's host not
answering within a few seconds) a hub model or dataset that is not in the local cache is refused with the local
options, instead of the libraries' retries (about a minute) and a failed run folder. When the hub is found
unreachable, the libraries are switched to offline mode for the rest of the process, so a cached model loads
without retries.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from propulsion.specs import ModelSpec, TaskSpec, UserError

PROBE_TIMEOUT_S = 3.0
SHARED_DATA = Path("..") / "shared" / "data"  # where this project's machines keep real data next to a checkout


def looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id: absolute, home- or dot-relative (hub ids are ``name`` or ``owner/name``)."""
    return name_or_path.startswith(("/", "~", "./", "../")) or name_or_path in (".", "..") or name_or_path.count(
        "/") > 1 or Path(name_or_path).expanduser().exists()


@cache
def offline_reason() -> str | None:
    """Why the hub cannot be used ("HF_HUB_OFFLINE=1", "huggingface.co unreachable: ..."), or None when it answers."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE=1"
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        _go_offline()
        return f"{host} unreachable: {error}"
    return None


def _go_offline() -> None:
    """No retries for the rest of the process: the hub libraries read these flags at call time."""
    import datasets
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True


def model_in_cache(spec: ModelSpec) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(spec.name_or_path, "config.json", revision=spec.revision)
    return isinstance(found, str)


def check_model(spec: ModelSpec) -> None:
    """A local model directory exists; a hub model is reachable or cached."""
    if spec.tiny:
        return
    if looks_local(spec.name_or_path):
        path = Path(spec.name_or_path).expanduser()
        if path.suffix == ".gguf" and path.is_file():  # a GGUF file, converted once (propulsion/gguf_weights.py)
            return
        if not path.is_dir():
            raise UserError(f"model.name_or_path={spec.name_or_path} does not exist (a local model directory or "
                            f".gguf file, or a hub id such as FacebookAI/roberta-base)")
        if not (path / "config.json").is_file():
            raise UserError(f"model.name_or_path={spec.name_or_path} has no config.json; point it at the folder "
                            f"that save_pretrained wrote")
        return
    reason = offline_reason()
    if reason and not model_in_cache(spec):
        raise UserError(f"model {spec.name_or_path!r} is not in the local cache and the hub cannot be used "
                        f"({reason}); pass a local copy: model.name_or_path=/path/to/{spec.name_or_path.split('/')[-1]}"
                        f", or model=tiny-roberta to try the suite offline")


def dataset_in_cache(task: TaskSpec) -> bool:
    """Offline mode: datasets resolves from its cache or fails at once."""
    import datasets

    try:
        datasets.load_dataset_builder(task.dataset, task.dataset_config, revision=task.dataset_revision)
    except Exception:  # noqa: BLE001 - any failure here means "not usable offline"
        return False
    return True


def local_data_hint(task: TaskSpec) -> str:
    """``task.data_dir=...`` with this project's copy of the task's data where there is one."""
    shared = SHARED_DATA
    for folder in (shared / "glue" / task.name, shared / task.name):
        if folder.is_dir():
            return f"task.data_dir={folder} (a local copy)"
    where = f"; ../shared/data holds {', '.join(sorted(p.name for p in shared.iterdir() if p.is_dir()))}" if (
        shared.is_dir()) else ""
    return f"task.data_dir=/path/to/{task.name} (<split>.jsonl/.json/.csv/.parquet){where}"


def check_dataset(task: TaskSpec) -> None:
    """A hub dataset is reachable or cached; a local dataset path exists."""
    if task.source != "hub" or not task.dataset:
        return
    if looks_local(task.dataset):
        if not Path(task.dataset).expanduser().exists():
            raise UserError(f"task.dataset={task.dataset} does not exist; for local files use "
                            f"{local_data_hint(task)}")
        return
    reason = offline_reason()
    if reason and not dataset_in_cache(task):
        raise UserError(f"dataset {task.dataset!r} ({task.dataset_config}) is not in the local cache and the hub "
                        f"cannot be used ({reason}); use local files: {local_data_hint(task)}, or "
                        f"task.source=sample to try the suite offline")


def check_sources(model: ModelSpec, task: TaskSpec | None) -> None:
    """check_model and check_dataset (``task`` None: the family loads its own data) as one line: offline, a user
    learns about the model and the data at once, not one after the other."""
    problems = []
    for check, spec in ((check_model, model), (check_dataset, task)):
        if spec is None:
            continue
        try:
            check(spec)
        except UserError as error:
            problems.append(str(error))
    if problems:
        raise UserError("; and ".join(problems))
