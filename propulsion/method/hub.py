"""The Hugging Face Hub side of an adapter: where a saved adapter comes from, its model card, its upload.

Only ``huggingface_hub`` is used (imported when needed): ``hf_hub_download`` resolves ``org/name`` at a
revision through the standard cache (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` honoured), ``HfApi`` uploads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "propulsion_config.json"
MODEL_CARD = "README.md"
TRAINER_WEIGHTS = "model.safetensors"  # transformers.Trainer's save_model(): the state_dict, its payload inside
# The hub's repo id: "name" or "namespace/name" (letters, digits, '-', '_', '.'; 96 characters at most).
REPO_ID = re.compile(r"(?:[A-Za-z0-9][\w.\-]{0,95}/)?[A-Za-z0-9][\w.\-]{0,95}")


def resolve(source: str | Path, revision: str | None = None, subfolder: str | None = None,
            token: str | bool | None = None, cache_dir: str | Path | None = None) -> Path:
    """The local folder holding ``propulsion_config.json`` and the weights: ``source`` itself when it is a
    folder, else the hub snapshot of repo ``source`` at ``revision`` (a branch, tag or commit; default main),
    downloaded or, offline, read from the cache."""
    path = Path(source)
    if path.is_dir():
        folder = path / subfolder if subfolder else path
        if not (folder / ADAPTER_CONFIG).exists() and not (folder / TRAINER_WEIGHTS).exists():
            raise ValueError(f"{folder} holds no Propulsion adapter: {ADAPTER_CONFIG} is missing")
        return folder
    name = str(source)
    if path.is_absolute() or name.startswith(".") or not REPO_ID.fullmatch(name):
        raise ValueError(f"{source} holds no Propulsion adapter: {ADAPTER_CONFIG} is missing (no such folder, and "
                         f"not a hub repo id 'org/name')")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled

    files = []
    try:
        for filename in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            files.append(hf_hub_download(name, filename, subfolder=subfolder, revision=revision, token=token,
                                         cache_dir=cache_dir))
    except (EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled) as error:
        where = f"hub repo {name!r} at revision {revision or 'main'}" + (f", folder {subfolder}" if subfolder else "")
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"no Propulsion adapter found in {where}: {reason} (for a local folder, pass its path)") \
            from None
    return Path(files[0]).parent


def model_card(payload: dict[str, Any], trainable: int, total: int, wrapped: int,
               metrics: dict[str, Any] | None = None, repo_id: str | None = None) -> str:
    """README.md beside an adapter: what it adapts and how, in the hub's card format (YAML front matter)."""
    config = payload["propulsion_config"]
    base = payload.get("base_model_name_or_path")
    revision = payload.get("base_model_revision")
    targets = config["targets"]
    front = ["---", "library_name: propulsion", "tags:", "- propulsion", "- peft"]
    if base and REPO_ID.fullmatch(base) and not Path(base).exists():  # a hub id, not a local path
        front.append(f"base_model: {base}")
    front.append("---")
    rows = [
        ("Base model", f"`{base}`" + (f" at revision `{revision}`" if revision else "") if base else "unknown"),
        ("Architecture", payload.get("base_model_type") or "unknown"),
        ("Targets", (f"preset `{targets}`" if isinstance(targets, str) else ", ".join(f"`{t}`" for t in targets))
         + f": {wrapped} modules wrapped"),
        ("Degree k", str(config["degree"])),
        ("Vectors per layer, pooling", f"{config['num_vectors']}, {config['pooling']}"),
        ("Head / bias policy", f"{config['head']} / {config['bias']}"),
        ("Trainable parameters", f"{trainable:,} of {total:,} ({100.0 * trainable / total:.4f}%)" if total
         else f"{trainable:,}"),
        ("Saved frozen parameters", _frozen_note(payload.get("frozen_saved"))),
        ("Propulsion version", payload.get("propulsion_version") or "unknown"),
    ]
    lines = [*front, "", "# Propulsion adapter" + (f" for {base}" if base else ""), "",
             "A [Propulsion](https://arxiv.org/abs/2409.10927) adapter: the frozen base model's chosen layers have "
             "their outputs multiplied element-wise by trainable vectors z raised to the power k.", "",
             "| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)]
    if metrics:
        lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_number(value)} |" for key, value in sorted(metrics.items())]
    source = repo_id or "path/to/this/folder"
    lines += ["", "## Use", "", "```python", "from transformers import AutoModel  # the base model's Auto class",
              "from propulsion import PropulsionModel", "",
              f"base = AutoModel.from_pretrained({base!r})" if base else "base = ...  # the base model",
              f"model = PropulsionModel.from_pretrained(base, {source!r})", "```", ""]
    return "\n".join(lines)


def _frozen_note(frozen: dict[str, Any] | None) -> str:
    if not frozen or not frozen.get("tensors"):
        return "none (every frozen tensor comes from the base checkpoint)"
    return (f"{frozen['parameters']:,} in {len(frozen['tensors'])} tensors the base checkpoint does not hold (the "
            f"task head, initialised at random when the base is built; frozen, not counted as trainable), saved so "
            f"the adapter reproduces its outputs on any fresh base")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def upload(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
           revision: str | None = None, commit_message: str | None = None, create_pr: bool = False, api=None):
    """Create ``repo_id`` if needed and upload ``folder`` as one commit; returns huggingface_hub's CommitInfo.
    ``api``: an ``HfApi`` (another endpoint, a token already set); by default ``HfApi(token=token)``."""
    if not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"repo_id {repo_id!r} is not a hub repo id ('org/name' or 'name')")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                             commit_message=commit_message or "Upload Propulsion adapter", create_pr=create_pr)
