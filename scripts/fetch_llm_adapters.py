"""Download the LLM-Adapters training and test files (paper Table 3) into the layout the reasoning tasks read.

    python scripts/fetch_llm_adapters.py --out data/llm-adapters                 # everything (~100 MB)
    python scripts/fetch_llm_adapters.py --out data/llm-adapters --only math_10k gsm8k
    python -m propulsion.run model=llama-7b task=arithmetic task.data_dir=data/llm-adapters

Files are the public raw files of the LLM-Adapters GitHub repository (``--base-url`` to use a mirror or a
pinned commit), written as ``<out>/ft-training_set/<train>.json`` and ``<out>/dataset/<name>/test.json``.
Existing files are kept unless ``--force``. Each file is checked to be a JSON list of rows with an
``instruction`` and an ``answer`` before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

BASE_URL = "https://raw.githubusercontent.com/AGI-Edgerunners/LLM-Adapters/main"
TRAIN_SETS = ("commonsense_170k", "math_10k")
TEST_SETS = ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa",
             "MultiArith", "gsm8k", "AddSub", "SingleEq", "SVAMP", "AQuA", "mawps")


def relative_path(name: str) -> str:
    return f"ft-training_set/{name}.json" if name in TRAIN_SETS else f"dataset/{name}/test.json"


def fetch(name: str, out: Path, base_url: str, force: bool = False) -> str:
    """Download one file; returns a one-line report."""
    target = out / relative_path(name)
    if target.exists() and not force:
        return f"kept     {target}"
    url = f"{base_url.rstrip('/')}/{relative_path(name)}"
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    rows = json.loads(body)
    if not isinstance(rows, list) or not rows or not {"instruction", "answer"} <= set(rows[0]):
        raise ValueError(f"{url} is not a JSON list of {{instruction, input, output, answer}} rows")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".json.part")
    partial.write_bytes(body)
    partial.replace(target)  # a killed download never leaves a truncated file behind
    return f"fetched  {target} ({len(rows):,} rows)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write the LLM-Adapters layout into")
    parser.add_argument("--only", nargs="+", choices=TRAIN_SETS + TEST_SETS, help="these files only (default: all)")
    parser.add_argument("--base-url", default=BASE_URL, help="raw-file root of the repository (a mirror, a commit)")
    parser.add_argument("--force", action="store_true", help="download again over existing files")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or TRAIN_SETS + TEST_SETS:
        try:
            print(fetch(name, args.out, args.base_url, args.force))
        except (OSError, ValueError) as error:
            failed.append(name)
            print(f"failed   {name}: {error}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} file(s) not fetched: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
