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
