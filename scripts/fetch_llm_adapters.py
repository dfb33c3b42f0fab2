"""Download the LLM-Adapters training and test files (paper Table 3), pinned and checked, into a folder.

    python scripts/fetch_llm_adapters.py                                   # everything, into the runs' cache
    python scripts/fetch_llm_adapters.py --out data/llm-adapters --only math_10k gsm8k
    python -m propulsion.run model=llama-7b task=arithmetic task.data_dir=data/llm-adapters

A run downloads what it needs by itself (into ``~/.cache/propulsion/llm-adapters/<commit>``); this script is for
a machine that reaches GitHub preparing files for one that does not. Files come from the commit the suite pins
(``propulsion.tasks.llm_adapters_files.COMMIT``), are checked against that commit's git blob hashes, fields and row
counts, and are laid out as ``<out>/ft-training_set/<train>.json`` and ``<out>/dataset/<name>/test.json``.
Existing files are kept.
"""

from __future__ import annotations

import argparse
import sys

from propulsion.specs import UserError
from propulsion.tasks import llm_adapters_files as files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder to write the layout into (default: the runs' cache)")
    parser.add_argument("--only", nargs="+", choices=tuple(files.PINNED), help="these files only (default: all)")
    parser.add_argument("--base-url", default=files.PINNED_URL,
                        help="raw-file root (default: the pinned commit; another one is checked for shape only)")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or tuple(files.PINNED):
        try:
            print(f"ok       {files.cached(name, args.base_url, args.out)}")
        except UserError as error:
            failed.append(name)
            print(f"failed   {name}: {error}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} file(s) not fetched: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
