"""The time a run takes, term by term: what `make plan` prices a job with.

A step of a small model on short GLUE batches is not its FLOPs at a fixed share of the peak: it is a per-step
overhead (kernel launches, the optimizer, host syncs, collation) plus the matmuls over the *padded* batch (every
row padded to the batch's longest: the expected maximum of ``batch`` lengths drawn from the task's length
distribution), whose attention adds a term in s². Evaluation passes cost their batches the same way (forward
only), generation one forward per decoded token. The device turns FLOPs into seconds at its throughput for the
precision the run computes in, and adds its overheads; its constants are measured (``make calibrate``,
:mod:`propulsion.studies.calibrate`) or defaults that name their source (:data:`DEFAULTS`).

Every function here is pure arithmetic on its arguments, so each term is tested on hand-computed cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from statistics import NormalDist

# Token lengths per example, as quantiles of the training split (probability -> tokens, input pair included, special
# tokens counted; no truncation), measured with all-MiniLM-L6-v2's WordPiece tokenizer on the GLUE files of
# /work/shared/data/glue (RoBERTa's BPE gives lengths within ~10% on English). Tasks without a table here get a
# log-normal with the task's mean length (plan.MEAN_TOKENS) and LOG_LENGTH_SPREAD.
QUANTILE_PROBS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)
LENGTH_QUANTILES = {
    "rte": (13, 33, 40, 45, 50, 56, 62, 72, 103, 135, 157, 183, 197, 289),
    "mrpc": (19, 36, 41, 45, 50, 53, 57, 61, 64, 70, 74, 79, 83, 103),
    "stsb": (10, 16, 18, 19, 21, 23, 25, 28, 35, 51, 60, 70, 74, 125),
    "cola": (4, 7, 8, 9, 10, 10, 11, 12, 14, 17, 20, 23, 25, 47),
}
# σ of log(length): the four measured tasks have 0.52 (RTE), 0.26 (MRPC), 0.42 (STS-B), 0.33 (CoLA); their mean.
LOG_LENGTH_SPREAD = 0.38
_GRID = 2000  # midpoints for the expected-maximum integral


def quantile(probs: tuple[float, ...], values: tuple[float, ...], u: float) -> float:
    """The piecewise-linear quantile function through (probs, values) at u."""
    for i in range(1, len(probs)):
        if u <= probs[i]:
            lo, hi = probs[i - 1], probs[i]
            return values[i - 1] + (values[i] - values[i - 1]) * (u - lo) / (hi - lo)
    return values[-1]


def lognormal_quantiles(mean: float, spread: float = LOG_LENGTH_SPREAD) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Quantiles of a log-normal with this mean and σ of log; the last probability is 0.9999 (the tail is open)."""
    mu = math.log(mean) - spread ** 2 / 2
    probs = tuple(i / 100 for i in range(1, 100)) + (0.999, 0.9999)
    return (0.0, *probs), (0.0, *(math.exp(mu + spread * NormalDist().inv_cdf(p)) for p in probs))


def expected_batch_max(probs, values, batch: int, cap: float | None = None) -> float:
    """E[max of `batch` independent lengths] = ∫₀¹ Q(u) d(uᵇ), each length capped at `cap` (truncation)."""
    total = 0.0
    for k in range(_GRID):
        lo, hi = k / _GRID, (k + 1) / _GRID
        length = quantile(probs, values, (lo + hi) / 2)
        total += (min(length, cap) if cap else length) * (hi ** batch - lo ** batch)
    return total


def padded_length(task: str, mean_tokens: float, batch: int, max_length: int, padding: str = "dynamic") -> float:
    """Tokens per row of a batch as the model sees it: max_length under static padding; under dynamic padding
    (DataCollatorWithPadding, what the loop and the authors' notebooks use) the batch's longest row."""
    if padding == "static":
        return float(max_length)
    probs, values = ((QUANTILE_PROBS, LENGTH_QUANTILES[task]) if task in LENGTH_QUANTILES
                     else lognormal_quantiles(mean_tokens))
    return expected_batch_max(probs, values, batch, cap=max_length)


CALIBRATION_DIR = Path("results/plan")  # make calibrate writes calibration-<device>.json here (relative to the cwd)


def calibration_path(device_name: str) -> Path:
    return CALIBRATION_DIR / f"calibration-{device_name}.json"


def config_int(config, *names: str) -> int:
    """The first of a model config's size fields that is set (e.g. num_hidden_layers, else num_layers)."""
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return 0


@dataclass(frozen=True)
class Shape:
    """What the FLOPs of a token depend on."""

    non_embedding: int  # parameters outside the embeddings (each costs 2 FLOPs a token forward)
    layers: int
    hidden: int
    full: bool  # every weight trained (backward also computes weight gradients)


def forward_flops_per_token(shape: Shape, length: float) -> float:
    """2N for the matmuls, plus attention's scores and weighted sum: 2·s·h each, per layer (the s² term)."""
    return 2 * shape.non_embedding + 4 * shape.layers * length * shape.hidden


def training_multiplier(shape: Shape) -> int:
    """Forward 1×; backward 1× for the activations' gradients, +1× for the weights' when they are trained."""
    return 3 if shape.full else 2


@dataclass(frozen=True)
class Device:
    """Seconds per FLOP and per unit of work on one device; ``source`` says where the numbers come from."""

    name: str  # h100-80gb, cpu-2, ...
    kind: str  # gpu | cpu
    throughput: dict[str, float]  # effective FLOP/s of training matmuls per precision (fp32, tf32, bf16)
    step_overhead_s: float  # per optimizer step, beyond its FLOPs
    eval_batch_overhead_s: float  # per evaluation (or decoding) forward, beyond its FLOPs
    eval_pass_overhead_s: float  # per evaluation pass: metrics, loaders, the checkpoint saved with it
    run_overhead_s: float  # per run: imports, model load, tokenisation (not in a notebook's train_runtime)
    source: str = ""
    optimizer_s_per_param: float = 0.0  # AdamW's step per trainable parameter (memory-bound: ~28 bytes moved)
    measured: dict = field(default_factory=dict)  # what a calibration timed, for the report

    def flop_seconds(self, flops: float, precision: str) -> float:
        return flops / self.throughput[precision]

    def to_json(self) -> dict:
        return asdict(self)


def precision_of(trainer_precision: str, model_dtype: str) -> str:
    """The math the matmuls run in: bf16/fp16 autocast or 16-bit weights -> bf16 (same peak); else fp32.
    (TF32 only where a run enables it; the loop and the authors' notebooks do not.)"""
    if trainer_precision in ("bf16", "fp16") or model_dtype in ("bfloat16", "float16"):
        return "bf16"
    return "fp32"


def training_work(shape: Shape, steps: int, batch: int, length: float, trainable: int = 0) -> dict[str, float]:
    """Optimizer steps, their FLOPs over padded batches, and the parameters AdamW updates."""
    per_step = batch * length * training_multiplier(shape) * forward_flops_per_token(shape, length)
    return {"steps": steps, "train_flops": steps * per_step, "optimizer_updates": steps * trainable}


def evaluation_work(shape: Shape, passes: int, rows: int, batch: int, length: float) -> dict[str, float]:
    """`passes` passes over `rows` in batches of `batch` (the last one shorter: its FLOPs are pro rata)."""
    if rows <= 0 or passes <= 0:
        return {"eval_passes": 0, "eval_batches": 0, "eval_flops": 0.0}
    return {"eval_passes": passes, "eval_batches": passes * math.ceil(rows / batch),
            "eval_flops": passes * rows * length * forward_flops_per_token(shape, length)}


def generation_work(shape: Shape, rows: int, batch: int, beams: int, new_tokens: float,
                    context: float) -> dict[str, float]:
    """Decoding with a KV cache: one forward per new token for each batch of rows (beams ride in the batch), 2N
    per token and beam (plus attention over the context so far)."""
    if rows <= 0 or new_tokens <= 0:
        return {"decode_forwards": 0, "decode_flops": 0.0}
    return {"decode_forwards": math.ceil(rows / batch) * new_tokens,
            "decode_flops": rows * beams * new_tokens * forward_flops_per_token(shape, context + new_tokens / 2)}


def add_work(*parts: dict[str, float]) -> dict[str, float]:
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0) + value
    return total


def price(work: dict[str, float], device: Device, precision: str, generate_ratio: float = 1.0) -> dict[str, float]:
    """Seconds by term for a run's work on a device: setup, train, evaluate, generate. Decoding runs at
    `generate_ratio` of the training throughput (memory-bound)."""
    get = work.get
    return {
        "setup": device.run_overhead_s,
        "train": (get("steps", 0) * device.step_overhead_s + device.flop_seconds(get("train_flops", 0), precision)
                  + get("optimizer_updates", 0) * device.optimizer_s_per_param),
        "evaluate": (get("eval_passes", 0) * device.eval_pass_overhead_s
                     + get("eval_batches", 0) * device.eval_batch_overhead_s
                     + device.flop_seconds(get("eval_flops", 0), precision)),
        "generate": (get("decode_forwards", 0) * device.eval_batch_overhead_s
                     + device.flop_seconds(get("decode_flops", 0), precision) / generate_ratio),
    }


# Vendor peaks (TFLOP/s, dense, SXM): fp32 on the CUDA cores, tf32 and bf16 on the tensor cores.
GPU_PEAKS = {
    "a100-80gb": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "memory_gb": 80.0},
    "h100-80gb": {"fp32": 67.0, "tf32": 494.0, "bf16": 989.0, "memory_gb": 80.0},
    "h200": {"fp32": 67.0, "tf32": 494.0, "bf16": 989.0, "memory_gb": 141.0},
}
# GPU defaults, fitted (python -m propulsion.studies.plan_validation --fit: most runs within 2x, then least squares
# of log ratios) to the 24 train_runtime values the authors' RoBERTa-base notebooks logged (H100, fp32, HF Trainer;
# docs/plan-validation.md): 13% of the fp32 peak and 20 ms a step. The same share of the peak is assumed for
# tf32/bf16 (unvalidated: no notebook ran them; 7B models' large matmuls likely reach more, so bf16 LLM plans are
# on the slow side).
GPU_UTILISATION = 0.13
GPU_STEP_OVERHEAD_S = 0.020
GPU_EVAL_BATCH_OVERHEAD_S = GPU_STEP_OVERHEAD_S / 3  # a forward only: a third of a step's launches
GPU_EVAL_PASS_OVERHEAD_S = 1.0  # metrics + the HF Trainer's checkpoint save at each evaluation (assumed)
GPU_RUN_OVERHEAD_S = 30.0  # model load and tokenisation (assumed; the notebooks do not log it)
GPU_OPTIMIZER_S_PER_PARAM = 28 / 2.0e12  # ~28 bytes a parameter at 2 TB/s (HBM3, fp32 AdamW)
GPU_SOURCE = "defaults fitted to the authors' notebook runtimes (H100, fp32; docs/plan-validation.md)"

# CPU defaults, fitted the same way to the 72 small-scale records (all-MiniLM-L6-v2, 2 cores), the 7 runs made while
# the machine was shared timed again alone (make plan-reruns): 62.5 GFLOP/s a core (make calibrate measured 43 GFLOP/s
# on one thread of the same machine, by CPU time, while it was shared), no per-step overhead the records can tell
# apart from the FLOPs, 5 s of setup. bf16 on CPU: assumed no faster.
CPU_FLOPS_PER_CORE = 62.5e9
CPU_STEP_OVERHEAD_S = 0.0
CPU_EVAL_BATCH_OVERHEAD_S = 0.0
CPU_EVAL_PASS_OVERHEAD_S = 0.5
CPU_RUN_OVERHEAD_S = 5.0  # imports, model load, tokenising the splits
CPU_OPTIMIZER_S_PER_PARAM = 28 / 10e9  # ~28 bytes a parameter at 10 GB/s (two cores' share of DRAM bandwidth)
CPU_PARALLEL_EFFICIENCY = 0.8  # throughput of n cores = n × 0.8 × one core's, n > 1 (assumed, not measured here)
CPU_SOURCE = "defaults fitted to the 72 small-scale records (all-MiniLM-L6-v2, 2 cores; docs/plan-validation.md)"


def cpu_scaling(cores: int) -> float:
    """How many single cores' throughput `cores` cores give."""
    return 1.0 if cores <= 1 else cores * CPU_PARALLEL_EFFICIENCY


def default_device(name: str, cores: int | None = None) -> Device:
    """The default constants of a device: a GPU of GPU_PEAKS, or ``cpu`` with its core count."""
    if name == "cpu":
        cores = cores or 1
        per = CPU_FLOPS_PER_CORE * cpu_scaling(cores)
        return Device(f"cpu-{cores}", "cpu", {"fp32": per, "tf32": per, "bf16": per}, CPU_STEP_OVERHEAD_S,
                      CPU_EVAL_BATCH_OVERHEAD_S, CPU_EVAL_PASS_OVERHEAD_S, CPU_RUN_OVERHEAD_S, CPU_SOURCE,
                      optimizer_s_per_param=CPU_OPTIMIZER_S_PER_PARAM)
    peaks = GPU_PEAKS[name]
    throughput = {p: peaks[p] * 1e12 * GPU_UTILISATION for p in ("fp32", "tf32", "bf16")}
    return Device(name, "gpu", throughput, GPU_STEP_OVERHEAD_S, GPU_EVAL_BATCH_OVERHEAD_S, GPU_EVAL_PASS_OVERHEAD_S,
                  GPU_RUN_OVERHEAD_S, GPU_SOURCE, optimizer_s_per_param=GPU_OPTIMIZER_S_PER_PARAM)


def with_measured(device: Device, measured: dict, source: str) -> Device:
    """The device with the constants a calibration measured; the others keep their defaults."""
    keys = ("step_overhead_s", "eval_batch_overhead_s", "eval_pass_overhead_s", "run_overhead_s",
            "optimizer_s_per_param")
    throughput = {**device.throughput, **measured.get("throughput", {})}  # a GPU measures its run's precision only
    return replace(device, **{k: measured[k] for k in keys if k in measured}, throughput=throughput, source=source,
                   measured=measured.get("measured", {}))
