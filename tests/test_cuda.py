"""What only a GPU can check (skipped without CUDA; ``make device-check`` runs them, then the benchmark): bf16
gradients of the lean scaling against float32, the host syncs a training forward costs, the benchmark's CUDA
memory columns, and a bf16 run through the real entrypoint. The same code runs on CPU in the other tests."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from propulsion import PropulsionConfig, get_propulsion_model
from propulsion.studies import bench
from tests.method.tiny_models import batch, roberta_classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make device-check)")
DEVICE = "cuda"


def _inputs(size: int = 8) -> dict[str, torch.Tensor]:
    return {key: value.to(DEVICE) for key, value in batch(size=size).items()}


def test_bf16_lean_gradients_on_cuda_match_float32_as_well_as_the_plain_version_does():
    from tests.method.test_scaling import assert_bf16_gradients_match_float32_as_well_as_the_plain_version_does

    assert_bf16_gradients_match_float32_as_well_as_the_plain_version_does(DEVICE)


def _synchronizations(run) -> int:
    """Host syncs during ``run()``, as CUDA's sync debug mode reports them."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(warning.message) for warning in caught)


def test_a_training_step_costs_one_host_sync_beyond_the_base_model():
    # Whether V'/s recovers V is decided on the host from every layer's |s| range, read once per forward
    # (about 85 reads for roberta-base if each layer read its own). The backward adds none.
    base = roberta_classifier().to(DEVICE).train()
    wrapped = get_propulsion_model(copy.deepcopy(base), PropulsionConfig(degree=15)).train()
    inputs = _inputs(4)
    counts = {}
    for name, model in (("base", base), ("propulsion", wrapped)):
        def step(model=model):
            model(**inputs).logits.float().sum().backward()

        step()  # warm-up: library initialisation syncs once
        counts[name] = _synchronizations(step)
    assert counts["propulsion"] - counts["base"] == 1, counts
    with torch.no_grad():  # inference keeps nothing, so it checks nothing
        assert _synchronizations(lambda: wrapped(**inputs)) == _synchronizations(lambda: base(**inputs))


def test_benchmark_reports_cuda_peak_memory_in_bf16():
    result = bench.measure(size="tiny", rounds=2, warmup=1, threads=None, device=DEVICE, inference_rounds=2)
    assert result["precision"] == "bf16" and result["notes"] == []
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == set(bench.METHODS)
    for row in rows.values():
        assert row["peak_memory_kind"] == "cuda_step_peak_plus_resident" and row["peak_memory_bytes"] > 0
        assert row["tokens_per_s"] > 0
    assert rows["propulsion"]["saved_activation_bytes"] < rows["propulsion_simple"]["saved_activation_bytes"]
    assert result["inference"]["max_abs_output_difference"] < 5e-2


def test_bf16_training_through_the_entrypoint_learns_the_sample_task(tmp_path):
    from tests.suite.helpers import records_under, run_cli  # the suite's dependencies (hydra, datasets) only here

    result = run_cli("model=tiny-roberta", "task=sst2", "task.source=sample", "trainer=quick", "logger=none",
                     "trainer.precision=bf16", f"output_root={tmp_path}", "skip_completed=false", "resume=false")
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = records_under(tmp_path)
    assert record["peak_memory_kind"] == "cuda_max_allocated" and record["peak_memory_bytes"] > 0
    assert record["metrics"]["accuracy"] >= 0.8  # as in float32 on CPU (make demo: 0.906); chance is 0.5
