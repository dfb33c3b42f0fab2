"""`pytest -q` (docs/install.md) shows the pass count: pyproject's addopts must not add a second -q (issue 24)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_pytest_q_prints_the_pass_count(tmp_path):
    (tmp_path / "test_two.py").write_text("def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             f"--rootdir={REPO}", "-c", str(REPO / "pyproject.toml"), str(tmp_path / "test_two.py")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("2 passed"), result.stdout
