"""`make calibrate`: measure the plan's device constants by timing a few real training steps on this machine.

For each model/method of a sweep, the model is built from its config (random weights: time does not depend on
their values, and nothing is downloaded), the method applied as a run applies it, and full optimizer steps
(forward, backward, gradient clipping, AdamW, zero_grad) are timed at the planned batch size and three padded
lengths (AdamW's step alone too, for the record), and one-row evaluation forwards. A least-squares fit of
``time = overhead + FLOPs / throughput`` (FLOPs by :mod:`propulsion.studies.cost`, attention's s² term included)
gives the per-step overhead and the throughput; an evaluation forward's overhead is what a one-row forward
takes beyond its FLOPs. The constants go to ``results/plan/calibration-<device>.json`` (one entry per
"model/method"; machine-specific, so git ignores the folder), which `make plan` then uses and names. Run setup
and evaluation-pass overheads are not timed here; they keep their defaults (the file says so).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from propulsion.specs import RunSpec
from propulsion.studies import cost

CUDA_NAMES = {"H100": "h100-80gb", "H200": "h200", "A100": "a100-80gb"}  # torch.cuda.get_device_name -> class
REPEATS = 3  # timed steps per point (after one warm-up); the median is kept


def device_name(cores: int | None = None) -> str:
    """This machine's plan device: the GPU class of CUDA device 0, else cpu-<threads torch uses>."""
    import torch

    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        return next((name for key, name in CUDA_NAMES.items() if key in gpu), gpu.lower().replace(" ", "-"))
    return f"cpu-{cores or torch.get_num_threads()}"


def fit_overhead_and_throughput(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of seconds = overhead + flops / throughput over (flops, seconds) points; the overhead is kept
    at 0 or more (then the throughput is refitted through the origin)."""
    n = len(points)
    mean_f = sum(f for f, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    slope = (sum((f - mean_f) * (t - mean_t) for f, t in points)
             / max(sum((f - mean_f) ** 2 for f, _ in points), 1e-30))
    overhead = mean_t - slope * mean_f
    if overhead < 0 or slope <= 0:
        overhead, slope = 0.0, sum(f * t for f, t in points) / sum(f * f for f, _ in points)
    return overhead, 1.0 / slope


def measure(spec: RunSpec, lengths: tuple[int, ...] | None = None, batch: int | None = None,
            cores: int | None = None) -> dict:
    """The constants of one model/method on this machine (see the module's docstring)."""
    import torch

    from propulsion import adapt, backbones
    from propulsion.tasks import get_family

    family = get_family(spec.task.family)
    trainer = spec.trainer.with_task_defaults(spec.task)
    batch = batch or trainer.batch_size
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    config = backbones.load_config(spec.model, **family.model_overrides(spec.task))
    torch.manual_seed(0)
    model = backbones.auto_class(family.MODEL_KIND).from_config(config)
    embedding = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)
                    for p in m.parameters(recurse=False))
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding  # the backbone's, as the plan counts
    prepared = adapt.apply_method(model, spec.method, family.MODEL_KIND, total_steps=1000)
    model = prepared.model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    shape = cost.Shape(non_embedding, cost.config_int(config, "num_hidden_layers", "num_layers"),
                       cost.config_int(config, "hidden_size", "d_model"),
                       adapt.method_entry(spec.method.kind).trains_whole_model)
    precision = cost.precision_of(trainer.precision, spec.model.dtype)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else torch.autocast(device.type, enabled=False))
    vocab = int(getattr(config, "vocab_size", 1000))
    maximum = min(spec.task.max_length, int(getattr(config, "max_position_embeddings", 512) or 512) - 2)
    lengths = lengths or tuple(sorted({min(8, maximum), min(48, maximum), min(128, maximum)}))

    def inputs(rows: int, length: int) -> dict:
        ids = torch.randint(5, vocab, (rows, length), device=device)
        batch_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if family.MODEL_KIND == "question-answering":
            zeros = torch.zeros(rows, dtype=torch.long, device=device)
            return batch_inputs | {"start_positions": zeros, "end_positions": zeros}
        if family.MODEL_KIND in ("seq2seq", "causal-lm"):
            return batch_inputs | {"labels": ids}
        if getattr(config, "problem_type", None) == "regression":
            return batch_inputs | {"labels": torch.zeros(rows, device=device)}
        return batch_inputs | {"labels": torch.zeros(rows, dtype=torch.long, device=device)}

    # On a GPU: wall time, synchronised. On a CPU: the CPU time of one thread, which neighbours on a shared machine
    # do not inflate (wall time with several threads there measures OpenMP threads waiting for descheduled peers:
    # 20x on a loaded 2-core box); the throughput is then scaled to the planned cores (cost.CPU_PARALLEL_EFFICIENCY).
    clock = time.perf_counter if cuda else time.process_time
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)

    def timed(work) -> float:
        work()  # warm-up
        times = []
        for _ in range(REPEATS):
            if cuda:
                torch.cuda.synchronize()
            started = clock()
            work()
            if cuda:
                torch.cuda.synchronize()
            times.append(clock() - started)
        return statistics.median(times)

    def train_step(length: int):
        data = inputs(batch, length)

        def work():
            with autocast:
                loss = model(**data).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return work

    steps = []
    for length in lengths:
        flops = batch * length * cost.training_multiplier(shape) * cost.forward_flops_per_token(shape, length)
        steps.append((length, flops, timed(train_step(length))))
    # AdamW alone (gradients left in place), for the record: an entry is per model/method, so its step overhead
    # keeps AdamW's time (per tensor more than per parameter on small models) and the per-parameter term is 0.
    with autocast:
        model(**inputs(batch, lengths[0])).loss.backward()
    optimizer_s = timed(optimizer.step)
    optimizer.zero_grad(set_to_none=True)
    n_trainable = sum(p.numel() for p in trainable)
    overhead, throughput = fit_overhead_and_throughput([(f, t) for _, f, t in steps])

    model.eval()
    small = inputs(1, lengths[0])
    with torch.no_grad():
        def forward():
            with autocast:
                model(**small)
        one_row = timed(forward)
    eval_overhead = max(0.0, one_row - lengths[0] * cost.forward_flops_per_token(shape, lengths[0]) / throughput)
    if not cuda:
        torch.set_num_threads(threads)
        one_thread, throughput = throughput, throughput * cost.cpu_scaling(cores or threads)
    return {
        "throughput": {p: throughput for p in ("fp32", "tf32", "bf16")} if not cuda else {precision: throughput},
        "step_overhead_s": round(overhead, 6),
        "eval_batch_overhead_s": round(eval_overhead, 6),
        "optimizer_s_per_param": 0.0,
        "measured": {"batch": batch, "precision": precision, "repeats": REPEATS,
                     "steps": [{"length": length, "flops": flops, "seconds": round(seconds, 6)}
                               for length, flops, seconds in steps],
                     "one_row_forward_s": round(one_row, 6), "optimizer_step_s": round(optimizer_s, 6),
                     "trainable": n_trainable,
                     "clock": "wall (cuda synchronised)" if cuda else "process CPU time, 1 thread",
                     **({} if cuda else {"one_thread_flops_per_s": one_thread, "cores": cores or threads}),
                     "not_measured": ["eval_pass_overhead_s", "run_overhead_s"]},
    }


def write(path: Path, name: str, entries: dict[str, dict]) -> Path:
    """Add entries to the device's calibration file (entries measured earlier for other model/methods stay)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("device") not in (None, name):
        data = {}  # another device's file at this path: replaced, not mixed
    data.update({"device": name, "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "torch": torch.__version__, "entries": {**data.get("entries", {}), **entries}})
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def calibrate_sweep(overrides: list[str], config_name: str = "config", config_dir: str | None = None,
                    path: str | Path | None = None, cores: int | None = None,
                    most: int = 6) -> tuple[str, Path]:
    """Measure each distinct model/method of the sweep (at its first job's task and trainer; at most `most`)
    and write the calibration file; returns (device name, path)."""
    import torch

    from propulsion.compose import expand_jobs

    name = device_name(cores if not torch.cuda.is_available() else None)
    firsts: dict[str, RunSpec] = {}
    for _, spec, _ in expand_jobs(overrides, config_name, config_dir):
        firsts.setdefault(f"{spec.model.name}/{spec.method.name}", spec)
    entries = {key: measure(spec, cores=cores) for key, spec in list(firsts.items())[:most]}
    target = Path(path) if path else cost.calibration_path(name)
    return name, write(target, name, entries)
