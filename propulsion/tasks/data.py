"""Raw data for a task (hub, local files, or the built-in sample) and the evaluation protocols."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from propulsion.specs import TaskSpec, UserError

HELDOUT_DEV_ROWS = 1000  # large tasks: rows of train held out as the dev set (ProPETL protocol)
LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
PEEK_ROWS = 100  # rows of each local split read before a run folder exists: columns and label types


@dataclass
class Splits:
    """Raw splits after the protocol: train, dev (model selection) and test (reported)."""

    train: datasets.Dataset
    dev: dict[str, datasets.Dataset]
    test: dict[str, datasets.Dataset] = field(default_factory=dict)  # empty: report the dev evaluation
    notes: dict[str, Any] = field(default_factory=dict)  # sizes and choices, copied into the record


def load_raw(task: TaskSpec, sample_splits=None, seed: int = 0) -> datasets.DatasetDict:
    """All splits the task names, from the hub, local files, or the family's sample generator."""
    wanted = [task.train_split, *task.eval_splits.values()]
    if task.source == "sample":
        rows = sample_splits(task, seed=0)  # the sample set is fixed; the run's seed shuffles it
        return datasets.DatasetDict({name: datasets.Dataset.from_list(rows[name]) for name in wanted})
    if task.source == "files":
        return _load_files(task, wanted)
    try:
        loaded = datasets.load_dataset(task.dataset, task.dataset_config, revision=task.dataset_revision)
    except Exception as error:  # the datasets library raises several types for "not reachable"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "scripts are no longer supported" in first:  # datasets >= 4 runs no loading scripts
            raise UserError(
                f"dataset {task.dataset!r} is a loading script, which datasets >= 4 does not run ({first}); the hub "
                f"keeps a converted copy: task.dataset_revision=refs/convert/parquet, or use local files "
                f"(task.data_files=...)"
            ) from None
        raise UserError(
            f"could not load dataset {task.dataset!r} ({task.dataset_config}) from the hub ({first}); "
            f"point at local files with task.data_files={{train: ..., {', '.join(task.eval_splits.values())}: ...}} "
            f"(json/jsonl/csv/parquet)"
        ) from None
    missing = [name for name in wanted if name not in loaded]
    if missing:
        raise UserError(f"dataset {task.dataset!r} has no split(s) {missing}; it has {list(loaded)}")
    return loaded


def task_files(task: TaskSpec, wanted: list[str]) -> dict[str, str]:
    """split -> path or URL, from task.data_files or task.data_dir (<split>.jsonl/.json/.csv/.parquet); a family
    that lays its files out its own way answers itself (its ``split_files``: reasoning, LLM-Adapters' tree)."""
    from propulsion.tasks import get_family

    own_layout = getattr(get_family(task.family), "split_files", None)
    if own_layout is not None:
        return own_layout(task, wanted)
    files = dict(task.data_files or {})
    if task.data_dir and not Path(task.data_dir).is_dir():
        raise UserError(f"task.data_dir={task.data_dir} is not a directory; it should hold <split>.jsonl/.json/"
                        f".csv/.parquet for the splits {', '.join(wanted)}")
    if task.data_dir:
        for split in wanted:
            found = [Path(task.data_dir) / f"{split}{suffix}" for suffix in LOCAL_FORMATS]
            files.setdefault(split, next((str(p) for p in found if p.exists()), str(found[0])))
    missing = [name for name in wanted if name not in files]
    if missing:
        raise UserError(f"task.data_files lacks split(s) {missing}; it names {sorted(files)}")
    return {split: str(files[split]) for split in wanted}


def file_provenance(task: TaskSpec, locations: dict[str, str] | None = None) -> dict[str, dict[str, Any]] | None:
    """For local files: split -> {path, bytes, sha256}, so a record names the exact data it was trained and
    scored on (a URL gets its address only). None for hub and sample data (the hub id and revision say it).
    ``locations``: split -> path where a family lays its files out its own way (reasoning: LLM-Adapters' tree)."""
    if task.source != "files":
        return None
    if locations is None:
        locations = task_files(task, [task.train_split, *task.eval_splits.values()])
    return describe_files(locations)


def describe_files(locations: dict[str, str]) -> dict[str, dict[str, Any]]:
    """split -> {path, bytes, sha256} of local files (a URL: its address only)."""
    provenance: dict[str, dict[str, Any]] = {}
    for split, location in locations.items():
        if "://" in location:
            provenance[split] = {"path": location, "bytes": None, "sha256": None}
            continue
        path = Path(location)
        provenance[split] = {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return provenance


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_files(task: TaskSpec, wanted: list[str]) -> datasets.DatasetDict:
    """Splits from task.data_files (split -> path or URL) or task.data_dir (<split>.jsonl/.json/.csv/.parquet)."""
    files = task_files(task, wanted)
    loaded = {}
    for split in wanted:
        location = str(files[split])
        is_url = "://" in location
        if not is_url and not Path(location).exists():
            raise UserError(f"no file for split {split!r}: {location!r} does not exist")
        suffix = Path(location.split("?")[0]).suffix
        builder = LOCAL_FORMATS.get(suffix)
        if builder is None:
            valid = ", ".join(LOCAL_FORMATS)
            raise UserError(f"split {split!r}: unknown file format {suffix!r} ({location}); valid: {valid}")
        loaded[split] = datasets.load_dataset(builder, data_files=location, split="train")
    return datasets.DatasetDict(loaded)


def check_files(task: TaskSpec, columns: dict[str, str], label: str | None = None) -> None:
    """A task's local files, before a run folder exists: each split's file exists, has rows, has ``columns``
    (column -> the key that names it, e.g. {"sentence": "task.text_fields"}), and, for ``label`` "class" or
    "number", a label of that type in its first rows. Hub and sample data are not read here."""
    if task.source != "files":
        return
    wanted = [task.train_split, *task.eval_splits.values()]
    for split, location in task_files(task, wanted).items():
        if "://" in location:
            continue  # a URL is read at load time
        path = Path(location)
        if not path.is_file():
            if task.data_dir and split not in (task.data_files or {}):
                raise UserError(f"task.data_dir={task.data_dir} has no {split} file; valid names: "
                                f"{', '.join(split + suffix for suffix in LOCAL_FORMATS)}")
            raise UserError(f"task.data_files: the {split} file {location} does not exist")
        rows = peek_rows(path)
        if rows is None:  # a layout this check does not read (e.g. JSON with a top-level field): the load decides
            continue
        if not rows:
            raise UserError(f"split {split!r} has no rows: {location} is empty")
        present = list(rows[0])
        for column, key in columns.items():
            if column not in present:
                raise UserError(f"split {split!r} ({location}) has no column {column!r} ({key}); its columns: "
                                f"{', '.join(present)}")
        if label is not None:
            _check_labels(task, split, location, rows, columns, label)


def _check_labels(task: TaskSpec, split: str, location: str, rows: list[dict], columns: dict[str, str],
                  label: str) -> None:
    column = next(name for name, key in columns.items() if key == "task.label_field")
    for number, row in enumerate(rows, start=1):
        value = row.get(column)
        if label == "number":
            try:
                float(value)
                continue
            except (TypeError, ValueError):
                raise UserError(f"split {split!r} ({location}) row {number}: {column} {value!r} is not a number "
                                f"(task.num_labels=1: a regression score)") from None
        try:  # CSV cells are strings: "1" is class 1
            class_id = int(value) if not isinstance(value, bool | float) or float(value).is_integer() else None
        except (TypeError, ValueError):
            class_id = None
        if class_id is None or not 0 <= class_id < task.num_labels:
            raise UserError(f"split {split!r} ({location}) row {number}: {column} {value!r} is not a class id; "
                            f"task.num_labels={task.num_labels} takes integers 0..{task.num_labels - 1}")


def peek_rows(path: Path, n: int = PEEK_ROWS) -> list[dict[str, Any]] | None:
    """The first ``n`` rows of a local data file as dicts; None for a JSON layout other than rows."""
    suffix = path.suffix
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            return [row for _, row in zip(range(n), reader, strict=False)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
        return batch.to_pylist() if batch is not None else []
    with open(path, encoding="utf-8") as handle:  # .jsonl, or .json as JSON lines or one array of rows
        text = handle.read(1 << 20).lstrip()
    if not text:
        return []
    if text.startswith("["):
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        return [row for row in rows[:n] if isinstance(row, dict)] if isinstance(rows, list) else None
    rows = []
    for line in text.splitlines()[:n]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return rows or None  # a line cut at the 1 MiB read, or a pretty-printed object
        if not isinstance(row, dict):
            return None
        rows.append(row)
    return rows


def apply_protocol(task: TaskSpec, raw: datasets.DatasetDict, protocol: str, seed: int) -> Splits:
    """paper: select and report on validation. heldout: small tasks split validation 50/50 into dev and
    test; large tasks hold out 1,000 training rows as dev and report on validation."""
    train = raw[task.train_split]
    evals = {alias: raw[split] for alias, split in task.eval_splits.items()}
    if protocol == "paper":
        splits = Splits(train=train, dev=evals, notes={"selection": "validation", "report": "validation"})
    elif task.size == "small":
        dev, test = {}, {}
        for alias, data in evals.items():
            halves = data.train_test_split(test_size=0.5, seed=seed, shuffle=True)
            dev[alias], test[alias] = halves["train"], halves["test"]
        splits = Splits(train=train, dev=dev, test=test,
                        notes={"selection": "validation half (seeded)", "report": "other validation half"})
    else:
        held = train.train_test_split(test_size=min(HELDOUT_DEV_ROWS, len(train) // 2), seed=seed, shuffle=True)
        splits = Splits(train=held["train"], dev={"dev": held["test"]}, test=evals,
                        notes={"selection": f"{len(held['test'])} held-out train rows", "report": "validation"})
    return _cap(splits, task, seed)


def _cap(splits: Splits, task: TaskSpec, seed: int) -> Splits:
    if task.max_train_samples:
        splits.train = splits.train.shuffle(seed=seed).select(range(min(task.max_train_samples, len(splits.train))))
    if task.max_eval_samples:
        cap = task.max_eval_samples
        splits.dev = {k: v.select(range(min(cap, len(v)))) for k, v in splits.dev.items()}
        splits.test = {k: v.select(range(min(cap, len(v)))) for k, v in splits.test.items()}
    splits.notes["sizes"] = {
        "train": len(splits.train),
        **{f"dev/{k}": len(v) for k, v in splits.dev.items()},
        **{f"test/{k}": len(v) for k, v in splits.test.items()},
    }
    return splits
