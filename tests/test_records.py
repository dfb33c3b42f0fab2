"""Records are written whole and readable like any other file."""

from __future__ import annotations

import json
import os
import stat

from propulsion import records


def test_atomic_write_leaves_one_complete_file_readable_by_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        path = records.write_json_atomic(tmp_path / "run" / "record.json", {"status": "completed", "value": 1.5})
    finally:
        os.umask(previous)
    assert json.loads(path.read_text()) == {"status": "completed", "value": 1.5}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # mkstemp alone gives 0600: unreadable to a team
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temporary file left


def test_git_state_counts_new_code_but_not_scratch_files(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "propulsion").mkdir()
    (tmp_path / "propulsion" / "a.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    commit, dirty = records.git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "notes.txt").write_text("scratch\n")  # outside the run's code and configs
    assert records.git_state(tmp_path)[1] is False
    (tmp_path / "propulsion" / "b.py").write_text("y = 2\n")  # new code a run may import
    assert records.git_state(tmp_path)[1] is True
    (tmp_path / "propulsion" / "b.py").unlink()
    (tmp_path / "propulsion" / "a.py").write_text("x = 3\n")  # a tracked change
    assert records.git_state(tmp_path)[1] is True
