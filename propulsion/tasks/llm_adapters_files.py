"""The LLM-Adapters data files (paper Table 3), pinned to one commit, downloaded once into a cache and checked.

Every file of AGI-Edgerunners/LLM-Adapters at commit 816657208a (the commit the reasoning protocol was read at) is
known here by its git blob hash and, where known, its row count. A file is fetched from that commit's raw URL
the first time a run needs it, checked (the blob hash: byte-identical to the commit's; a JSON list of rows with
the fields the task reads; the row count) and written atomically into the cache, laid out as the repository lays
it out, so ``task.data_dir=<cache>`` reads the same files. Later runs read the cache and touch no network. The
records hash the cached files (sha256) like any local data file.

The cache: ``task.options.cache_dir``, else ``$PROPULSION_CACHE/llm-adapters/<commit>``, else
``~/.cache/propulsion/llm-adapters/<commit>``. Another ``task.options.base_url`` (a mirror, another commit) is
read the same way into its own cache folder, checked for shape only (no pinned hashes apply to it).

A local mirror (a copy of the commit's tree, e.g. the offline copy /work/shared/data/llm-adapters, or what
``scripts/fetch_llm_adapters.py`` writes): ``task.data_dir=<mirror> task.options.pinned=true`` reads every file in
place (:func:`mirrored`), no network and no copy, each refused in one line unless its git blob is the commit's.
:func:`union` concatenates several pinned train splits into one cached file (the small-scale commonsense training set).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from propulsion.specs import UserError

COMMIT = "816657208af4db747803f87ba40a4c71383fed7a"
REPOSITORY = "AGI-Edgerunners/LLM-Adapters"
PINNED_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}"
TRAIN_SETS = ("commonsense_170k", "math_10k")

# name -> (git blob SHA-1 at COMMIT, rows or None where unknown here). Read from the commit's tree; the row
# counts of the test sets are those of the files (hellaswag's from reference.md: 10,042).
PINNED: dict[str, tuple[str, int | None]] = {
    "commonsense_170k": ("529e426b33d4cdb1d0c4a275a1a7245ad081fd91", None),
    "math_10k": ("27dba77d6ed80aa118d78fbafa5cecd651f6d463", None),
    "boolq": ("6d7edb0a8e8a6566b546ccf0d98d24e48db3fdf3", 3270),
    "piqa": ("f7a1c260692ef31796d4763cb6334f316a754fed", 1838),
    "social_i_qa": ("eadf221799ca394367b144c0f86ee0436db409d2", 1954),
    "hellaswag": ("183c4920415f83ba4b793c4873a33e7e10bd1be5", 10042),
    "winogrande": ("21257263593dd4d00546e1918c88ca0f357b08ad", 1267),
    "ARC-Easy": ("6c0d30aaedaeca148df6bcd7aaacf7c31e6ad70f", 2376),
    "ARC-Challenge": ("9540685439144200b5a7e48dab9ca4655be2af09", 1172),
    "openbookqa": ("a6e69676104bcb77237388c3b5a3f0dcbb81d1e2", 500),
    "MultiArith": ("08e996c6cd8c633cc977f5c50709a8bbfc8fadff", 600),
    "gsm8k": ("57a7a08e10e12e975e1f972d2b8125c0d4c722b1", 1319),
    "AddSub": ("f3996cdf4159b4e1e4b6768865a4db72105f4e2f", 395),
    "SingleEq": ("cce7a868400323e30e2094a15d482c1aa743dbb0", 508),
    "SVAMP": ("98b8f1872db596f8aaff2c95d1d698a9fa13b94f", 1000),
    "AQuA": ("731fbb456f7a93bb4121125de09c4adcf42e5dab", 254),
    "mawps": ("eca473c5b5d398acbae0b84ede833bbbccd63add", 238),
}
TEST_SETS = tuple(name for name in PINNED if name not in TRAIN_SETS)
# Further files of the commit, by repository path: math_data.json (3,260 chain-of-thought problems, math_10k's
# fields) and the LLM-Adapters-formatted train splits of four commonsense tasks (the templates commonsense_170k is
# built from). Full blob hashes of the offline copy, whose README lists their prefixes as the commit's tree has them.
PINNED_FILES: dict[str, tuple[str, int | None]] = {
    "ft-training_set/math_data.json": ("22a588e69121103120d4b5173f1a6ea804d15a44", 3260),
    "dataset/boolq/train.json": ("87a7beee26b49f81c450641ef2ff84f55611321f", 9427),
    "dataset/ARC-Easy/train.json": ("488a8e5e5bbbd7a630ebbfe07a1fd91b7d9d8c9b", 2251),
    "dataset/ARC-Challenge/train.json": ("d7e080b04bff9fd16dd85455fb04481807a088d8", 1119),
    "dataset/openbookqa/train.json": ("75bcd5eb9f5e77a3796c05e6bb38f169d19563fc", 4957),
}


def relative_path(name: str, train: bool | None = None) -> str:
    """Where the repository keeps a file: ft-training_set/<train>.json or dataset/<name>/test.json. ``train``:
    whether ``name`` is a training set (default: one of LLM-Adapters' two)."""
    train = name in TRAIN_SETS if train is None else train
    return f"ft-training_set/{name}.json" if train else f"dataset/{name}/test.json"


def pinned_paths() -> dict[str, tuple[str, int | None]]:
    """Repository path -> (git blob at COMMIT, rows) of every file the suite knows the commit's content of."""
    return {relative_path(name): value for name, value in PINNED.items()} | PINNED_FILES


def cache_base() -> Path:
    return Path(os.environ.get("PROPULSION_CACHE") or Path.home() / ".cache" / "propulsion") / "llm-adapters"


_CHECKED: set[tuple[str, int, int]] = set()  # (path, bytes, mtime) already matched: validation and loading hash once


def mirrored(relative: str, mirror: str | Path) -> Path:
    """The path of one pinned file read in place from a local copy of the commit's tree, once its git blob is the
    commit's; anything else is refused in one line naming the file and both hashes."""
    expected = pinned_paths().get(relative)
    if expected is None:
        raise UserError(f"{relative} is not a file of {REPOSITORY}@{COMMIT[:10]} whose hash the suite pins (pinned: "
                        f"{', '.join(sorted(pinned_paths()))}); set task.options.pinned=false to read it unchecked")
    path = Path(mirror).expanduser() / relative
    if not path.is_file():
        raise UserError(f"the mirror {str(mirror)!r} has no {relative}; point task.data_dir at a copy of "
                        f"{REPOSITORY}@{COMMIT[:10]}'s tree (scripts/fetch_llm_adapters.py --out DIR writes one)")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKED:
        actual = git_blob_sha1(path.read_bytes())
        if actual != expected[0]:
            raise UserError(f"{path} has git blob {actual}, expected {expected[0]} ({relative} at "
                            f"{REPOSITORY}@{COMMIT[:10]}); restore the file, or set task.options.pinned=false to read "
                            f"it unchecked")
        _CHECKED.add(key)
    return path


def union(name: str, parts: Sequence[str | Path], cache_dir: str | None = None) -> Path:
    """One JSON list of the rows of ``parts`` in their order, written once into the cache (keyed by the parts'
    sha256, so a changed part makes a new file) and read from there: one training file a run and ``make plan``
    count and hash like any other."""
    bodies = [Path(part).read_bytes() for part in parts]
    key = hashlib.sha256("".join(hashlib.sha256(body).hexdigest() for body in bodies).encode()).hexdigest()[:16]
    target = (Path(cache_dir).expanduser() if cache_dir else cache_base()) / "unions" / f"{name}-{key}.json"
    if target.exists():
        return target
    rows = [row for body in bodies for row in json.loads(body)]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    partial.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    partial.replace(target)  # atomic: a concurrent run writes the same bytes
    return target


def git_blob_sha1(body: bytes) -> str:
    """The hash git names a file's content by (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def cache_root(base_url: str, cache_dir: str | None = None) -> Path:
    """The folder holding this source's files (one per commit or mirror, never the working tree)."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    root = cache_base()
    if base_url.rstrip("/") == PINNED_URL:
        return root / COMMIT
    return root / hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]


def cached(name: str, base_url: str = PINNED_URL, cache_dir: str | None = None, train: bool | None = None,
           pinned: dict[str, tuple[str, int | None]] | None = None) -> Path:
    """The local path of one file, downloaded and checked into the cache the first time. ``train``: whether
    ``name`` is a training set (default: one of LLM-Adapters' two). ``pinned``: the hashes and row counts to hold
    the download to (default: :data:`PINNED` for the pinned commit's URL, nothing for another source)."""
    train = name in TRAIN_SETS if train is None else train
    relative = relative_path(name, train)
    target = cache_root(base_url, cache_dir) / relative
    if target.exists():
        return target
    if pinned is None:
        pinned = PINNED if base_url.rstrip("/") == PINNED_URL else {}
    url = f"{base_url.rstrip('/')}/{relative}"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            body = response.read()
    except OSError as error:
        raise UserError(f"could not download {url!r} ({error}); where GitHub is unreachable, run "
                        f"`python scripts/fetch_llm_adapters.py --out DIR` on a machine that reaches it, copy DIR here "
                        f"and pass task.data_dir=DIR (or task.options.cache_dir=DIR)") from None
    check(name, url, body, pinned.get(name), train)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(body)
    partial.replace(target)  # a killed download never leaves a truncated file in the cache
    return target


def check(name: str, where: str, body: bytes, expected: tuple[str, int | None] | None, train: bool) -> None:
    """One line for a download that is not the pinned file: another blob, not a list of rows, missing fields, or
    another number of rows."""
    if expected is not None and git_blob_sha1(body) != expected[0]:
        raise UserError(f"{where} is not {name} at {REPOSITORY}@{COMMIT[:10]}: git blob {git_blob_sha1(body)}, "
                        f"expected {expected[0]} (a changed mirror? pass another task.options.base_url to read it "
                        f"unpinned)")
    try:
        rows = json.loads(body)
    except ValueError as error:
        raise UserError(f"{where} is not JSON ({error}); expected a JSON list of rows") from None
    fields = ("instruction", "output") if train else ("instruction", "answer")
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{where} is not a non-empty JSON list of rows")
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or any(key not in row for key in fields):
            raise UserError(f"{where}: row {index} lacks one of {list(fields)}")
    if expected is not None and expected[1] is not None and len(rows) != expected[1]:
        raise UserError(f"{where} holds {len(rows):,} rows; {name} at {COMMIT[:10]} has {expected[1]:,}")
