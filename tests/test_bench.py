"""make bench's machinery on a tiny size: every method measured, one record (no timing asserted)."""

from __future__ import annotations

import json

from propulsion import bench


def test_tiny_benchmark_writes_a_record_with_every_method(tmp_path, capsys):
    out = tmp_path / "bench" / "record.json"
    assert bench.main(["--size", "tiny", "--rounds", "1", "--threads", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["status"] == "completed" and record["family"] == "bench"
    rows = {row["method"]: row for row in record["bench"]}
    assert set(rows) == set(bench.METHODS)
    assert rows["floor"]["trainable"] == 1 and rows["propulsion"]["trainable"] == 578
    assert rows["lora"]["time_vs_lora"] == 1.0 and rows["floor"]["saved_vs_floor"] == 1.0
    # The lean backward keeps less than the plain V * s on the same model.
    assert rows["propulsion"]["saved_activation_bytes"] < rows["propulsion_simple"]["saved_activation_bytes"]
    assert record["bench_inference"]["max_abs_output_difference"] < 1e-5
    assert "| propulsion | 578 |" in capsys.readouterr().out
