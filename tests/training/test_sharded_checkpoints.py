"""Checkpoints and adapters of a sharded (FSDP2) model, with 2 processes on CPU (gloo): the trained tensors and
AdamW's moments are saved whole, each process takes its slice back, and a resumed run ends exactly where the
uninterrupted one does. (accelerate turns FSDP off on CPU, so the worker shards with torch's fully_shard itself:
what accelerate's FSDP2 plugin does on GPUs. Untested here: accelerate's own FSDP preparation and mixed
precision on GPUs, and DeepSpeed ZeRO-3, which needs GPUs.)"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from tests.suite.helpers import REPO

WORKER = REPO / "tests" / "fsdp_resume_worker.py"


def _launch(folder) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
               "--dir", str(folder)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_sharded_run_resumes_as_if_never_interrupted_and_saves_whole_tensors(tmp_path):
    _launch(tmp_path)
    at_stop = load_file(str(tmp_path / "resumed" / "checkpoint" / "trainable.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "final.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "final.safetensors"))
    # Whole tensors in the checkpoint (hidden 32: the head's dense weight is 32 x 32, 16 rows per process).
    dense = next(key for key in at_stop if key.endswith("classifier.dense.base_layer.weight"))
    assert tuple(at_stop[dense].shape) == (32, 32)
    assert set(straight) == set(resumed) == set(at_stop)
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)
    # Training went on after the checkpoint, in both halves of the split matrix.
    moved = (straight[dense] - at_stop[dense]).abs()
    assert moved[:16].max() > 0 and moved[16:].max() > 0
    # The adapter holds the whole tensors the run trained, under the library's names.
    adapter = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    torch.testing.assert_close(adapter[dense], straight[dense], rtol=0, atol=0)
    assert (tmp_path / "straight" / "adapter" / "propulsion_config.json").exists()
