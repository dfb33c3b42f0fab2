"""What a run or sweep will cost, before it is launched: no weights, no data, seconds.

    python -m propulsion.studies.plan --config-name table2_summarization --gpu h100-80gb
    python -m propulsion.studies.plan task=rte,mrpc method=propulsion,lora seed=0,1,2      # a command line's sweep

Every job of the sweep is composed exactly as the entrypoint would compose it (``run.expand_jobs``). Per job it
counts optimizer steps and evaluation passes with the training loop's own rules, training tokens, generated
tokens, trainable and total parameters (the model built on the meta device), the peak memory of training, and
the GPU-hours on a GPU class. Step and evaluation counts are exact (tested against real runs); tokens, memory
and time rest on the assumptions printed with every plan.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from propulsion import adapt  # the method registry: light, no torch until an entry runs
from propulsion.specs import RunSpec, UserError
from propulsion.studies import cost

GPUS = cost.GPU_PEAKS  # the GPU classes a plan prices (vendor peaks and memory); --device cpu prices CPU cores
GENERATE_UTILISATION_RATIO = 0.08 / 0.35  # decoding's share of the peak relative to training's (memory-bound)

# Hub datasets' split sizes (rows), so nothing is downloaded. GLUE, SQuAD, XSum and CNN/DM from their hub cards;
# the reasoning sets from reference.md (commonsense_170k and math_10k are approximate there, marked so).
HUB_SIZES: dict[tuple[str, str | None], dict[str, int]] = {
    ("nyu-mll/glue", "cola"): {"train": 8551, "validation": 1043},
    ("nyu-mll/glue", "sst2"): {"train": 67349, "validation": 872},
    ("nyu-mll/glue", "mrpc"): {"train": 3668, "validation": 408},
    ("nyu-mll/glue", "qqp"): {"train": 363846, "validation": 40430},
    ("nyu-mll/glue", "stsb"): {"train": 5749, "validation": 1500},
    ("nyu-mll/glue", "mnli"): {"train": 392702, "validation_matched": 9815, "validation_mismatched": 9832},
    ("nyu-mll/glue", "qnli"): {"train": 104743, "validation": 5463},
    ("nyu-mll/glue", "rte"): {"train": 2490, "validation": 277},
    ("rajpurkar/squad", None): {"train": 87599, "validation": 10570},
    ("rajpurkar/squad_v2", None): {"train": 130319, "validation": 11873},
    ("EdinburghNLP/xsum", None): {"train": 204045, "validation": 11332},
    ("abisee/cnn_dailymail", "3.0.0"): {"train": 287113, "validation": 13368},
    ("AGI-Edgerunners/LLM-Adapters", None): {
        "commonsense_170k": 170000, "math_10k": 10000, "boolq": 3270, "piqa": 1838, "social_i_qa": 1954,
        "hellaswag": 10042, "winogrande": 1267, "ARC-Easy": 2376, "ARC-Challenge": 1172, "openbookqa": 500,
        "MultiArith": 600, "gsm8k": 1319, "AddSub": 395, "SingleEq": 508, "SVAMP": 1000, "AQuA": 254, "mawps": 238},
}
APPROXIMATE = {"commonsense_170k", "math_10k"}
# Mean tokens per example (input; target for generation tasks), an assumption: roughly what RoBERTa's / BART's /
# LLaMA's tokenizers give on these sets. Only tokens, memory and time depend on them.
MEAN_TOKENS = {"cola": 11, "sst2": 13, "mrpc": 53, "qqp": 30, "stsb": 31, "mnli": 39, "qnli": 50, "rte": 69,
               "squad": 180, "squad_v2": 180, "xsum": 480, "cnn_dailymail": 780, "commonsense": 110,
               "arithmetic": 160}
MEAN_TARGET_TOKENS = {"xsum": 27, "cnn_dailymail": 62, "commonsense": 4, "arithmetic": 90}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class JobPlan:
    overrides: list[str]
    model: str
    task: str
    method: str
    seed: int
    train_rows: int
    steps: int
    evaluation_passes: int
    eval_rows: int  # rows in one mid-training evaluation (every dev split; a subset under task.evaluation.rows)
    report_rows: int  # rows evaluated once, in full, at the end (test splits, or all of dev after a cheap schedule)
    during: str  # task.evaluation.during
    train_tokens: int
    generated_tokens: int
    trainable: int
    total: int
    memory_gb: dict[str, float]
    hours: float  # on the planned device, times the processes of a data-parallel job
    seconds: dict[str, float]  # one process's wall time by term: setup, train, evaluate, generate
    padded_length: float  # tokens per row of a training batch after padding (the batch's expected longest)
    device: str
    fits: bool
    launch: str
    approximate_sizes: bool
    work: dict[str, float]  # steps, FLOPs, evaluation batches, ... (cost.price turns them into seconds)
    precision: str  # fp32 | bf16: the throughput the matmuls run at


def split_sizes(spec: RunSpec) -> tuple[dict[str, int], bool]:
    """Rows per split the task names, without downloading: the sample generator's, local files' line counts,
    or the hub cards' sizes. The flag says whether any size is approximate."""
    from propulsion.tasks import get_family

    task = spec.task
    wanted = [task.train_split, *task.eval_splits.values()]
    if task.source == "sample":
        rows = get_family(task.family).sample_splits(task, seed=0)
        return {name: len(rows[name]) for name in wanted}, False
    if task.source == "files":
        from propulsion.tasks.data import task_files  # the loader's own rule for where a split's file is

        return {name: _rows_in_file(Path(location)) for name, location in task_files(task, wanted).items()}, False
    known = HUB_SIZES.get((task.dataset, task.dataset_config))
    missing = [name for name in wanted if not known or name not in known]
    if missing:
        raise UserError(f"no known sizes for {task.dataset!r} ({task.dataset_config}) split(s) {missing}; "
                        f"point the task at local files (task.data_dir=...) to plan it")
    return {name: known[name] for name in wanted}, any(name in APPROXIMATE for name in wanted)


def _rows_in_file(path: Path) -> int:
    if not path.exists():
        raise UserError(f"no file {str(path)!r} to count rows in; check task.data_dir / task.data_files")
    if path.suffix == ".jsonl":
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    if path.suffix == ".json":
        return len(json.loads(path.read_text()))
    raise UserError(f"plan counts rows of .jsonl/.json files only, got {path}")


def protocol_sizes(spec: RunSpec, sizes: dict[str, int]) -> tuple[int, int, int]:
    """(train rows, dev rows per mid-training evaluation, rows of the one full evaluation at the end) after the
    run's protocol and evaluation schedule, computed by the task family's own protocol code on index-only splits of
    the right sizes and by :mod:`propulsion.training.evaluation_schedule` (so no rule is written twice)."""
    import datasets

    from propulsion.tasks import data as task_data
    from propulsion.tasks import get_family
    from propulsion.training import evaluation_schedule

    raw = datasets.DatasetDict({name: datasets.Dataset.from_dict({"idx": list(range(n))}) for name, n in sizes.items()})
    apply_protocol = getattr(get_family(spec.task.family), "apply_protocol", task_data.apply_protocol)
    splits = apply_protocol(spec.task, raw, spec.protocol, spec.seed)
    schedule = spec.task.evaluation
    during = evaluation_schedule.rows_during({alias: len(d) for alias, d in splits.dev.items()}, schedule)
    final = evaluation_schedule.final_split(bool(splits.test), schedule)
    final_rows = {"test": sum(map(len, splits.test.values())), "dev": sum(map(len, splits.dev.values()))}.get(final, 0)
    return len(splits.train), sum(during.values()), final_rows


def evaluation_passes(steps: int, eval_every: int, has_dev: bool) -> int:
    """The loop evaluates on dev every eval_every optimizer steps of a round and always at its last step."""
    if not has_dev:
        return 0
    return steps // eval_every + (steps % eval_every != 0)


_META_COUNTS: dict[str, tuple[int, int, int, object]] = {}


def meta_counts(spec: RunSpec) -> tuple[int, int, int, object]:
    """(trainable, total, non-embedding parameters, model config) of the model built on the meta device; a sweep's
    seeds share one count."""
    key = json.dumps([asdict(spec.model), asdict(spec.task), asdict(spec.method)], sort_keys=True, default=str)
    if key not in _META_COUNTS:
        _META_COUNTS[key] = _count_on_meta(spec)
    return _META_COUNTS[key]


def _count_on_meta(spec: RunSpec) -> tuple[int, int, int, object]:
    import torch

    from propulsion import backbones
    from propulsion.tasks import get_family

    family = get_family(spec.task.family)
    config = backbones.load_config(spec.model, **family.model_overrides(spec.task))
    with torch.device("meta"):
        model = backbones.auto_class(family.MODEL_KIND).from_config(config)
        embedding = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)
                        for p in m.parameters(recurse=False))
        prepared = adapt.apply_method(model, spec.method, family.MODEL_KIND, total_steps=1000)
    counts = adapt.count(prepared.model)
    return counts["trainable"], counts["total"], counts["total"] - embedding, config


def plan_job(overrides: list[str], spec: RunSpec, device: cost.Device | str = "h100-80gb",
             num_gpus: int = 1, calibration: dict | None = None) -> JobPlan:
    from propulsion.tasks import get_family
    from propulsion.training import loop

    if isinstance(device, str):
        device = cost.default_device(device)
    trainer = spec.trainer.with_task_defaults(spec.task)
    sizes, approximate = split_sizes(spec)
    train_rows, dev_rows, report_rows = protocol_sizes(spec, sizes)
    rounds = 1 + trainer.restarts  # each restart is one more Trainer.train()-like round of the same length
    round_steps = loop.total_steps(train_rows, trainer, num_gpus)
    steps = round_steps * rounds
    passes = evaluation_passes(round_steps, trainer.eval_every, dev_rows > 0) * rounds
    schedule = spec.task.evaluation
    trainable, total, non_embedding, config = meta_counts(spec)

    task = spec.task.name
    mean_tokens = min(MEAN_TOKENS.get(task, spec.task.max_length), spec.task.max_length)
    target_tokens = MEAN_TARGET_TOKENS.get(task, 0)
    rows_per_step = trainer.batch_size * trainer.gradient_accumulation_steps  # a step is accumulated micro-batches
    examples_seen = steps * rows_per_step * num_gpus
    train_tokens = examples_seen * (mean_tokens + target_tokens)
    generating = bool(getattr(get_family(spec.task.family), "GENERATES", False))  # the family's own flag
    generation = dict((spec.task.options or {}).get("generation") or {})
    beams = int(generation.get("num_beams", 1) or 1)  # the full evaluation's
    # Mid-training evaluations generate unless they measure the loss (with their own, cheaper settings).
    beams_during = int((generation | dict(schedule.generation)).get("num_beams", 1) or 1)
    rows_generated_during = passes * dev_rows if generating and schedule.during != "loss" else 0
    generated = (rows_generated_during * beams_during + report_rows * beams) * target_tokens if generating else 0

    full = adapt.method_entry(spec.method.kind).trains_whole_model
    device = calibrated_for(device, calibration, spec)
    shape = cost.Shape(non_embedding, cost.config_int(config, "num_hidden_layers", "num_layers"),
                       cost.config_int(config, "hidden_size", "d_model"), full)
    precision = cost.precision_of(trainer.precision, spec.model.dtype)
    padding = "static" if (spec.task.options or {}).get("padding") == "max_length" else "dynamic"
    train_length = cost.padded_length(task, mean_tokens, trainer.batch_size, spec.task.max_length,
                                      padding) + target_tokens
    eval_length = cost.padded_length(task, mean_tokens, trainer.eval_batch_size, spec.task.max_length,
                                     padding) + target_tokens
    # A generating pass reads each row once per beam (its encoder, or its prompt), then decodes; a loss pass once.
    reads_during, reads_final = (beams_during if rows_generated_during else 1), (beams if generating else 1)
    work = cost.add_work(
        cost.training_work(shape, steps, rows_per_step, train_length, trainable),  # padded per micro-batch
        cost.evaluation_work(shape, passes, dev_rows * reads_during, trainer.eval_batch_size, eval_length),
        cost.evaluation_work(shape, 1, report_rows * reads_final, trainer.eval_batch_size, eval_length),
        cost.generation_work(shape, rows_generated_during, trainer.eval_batch_size, beams_during, target_tokens,
                             eval_length),
        cost.generation_work(shape, report_rows if generating else 0, trainer.eval_batch_size, beams,
                             target_tokens, eval_length))
    seconds = cost.price(work, device, precision, GENERATE_UTILISATION_RATIO)
    memory = training_memory_gb(spec, trainer, config, trainable, total, mean_tokens + target_tokens)
    capacity = GPUS[device.name]["memory_gb"] if device.name in GPUS else float("inf")
    fits, launch = placement(memory, capacity)
    return JobPlan(overrides, spec.model.name, task, spec.method.name, spec.seed, train_rows, steps, passes,
                   dev_rows, report_rows, schedule.during, train_tokens, generated, trainable, total, memory,
                   sum(seconds.values()) * num_gpus / 3600, seconds, train_length, device.name, fits, launch,
                   approximate, work, precision)


calibration_path = cost.calibration_path


def load_calibration(path: Path | None, device_name: str) -> dict | None:
    """The calibration file for this device (an explicit path, else results/plan/calibration-<device>.json), or
    None when there is none. Its ``entries`` map "model/method" to measured constants."""
    explicit = path is not None
    path = Path(path) if explicit else calibration_path(device_name)
    if not path.exists():
        if explicit:
            raise UserError(f"no calibration file {str(path)!r}; write one with --calibrate")
        return None
    data = json.loads(path.read_text())
    if data.get("device") != device_name:
        raise UserError(f"calibration {str(path)!r} was measured on {data.get('device')!r}, not {device_name!r}; "
                        f"valid: a file measured on {device_name}")
    return {**data, "path": str(path)}


def calibrated_for(device: cost.Device, calibration: dict | None, spec: RunSpec) -> cost.Device:
    """The device with the constants measured on this job's model and method when the calibration has them,
    else on the same model, else its first entry (each says so in its source)."""
    if not calibration or not calibration.get("entries"):
        return device
    entries = calibration["entries"]
    key = f"{spec.model.name}/{spec.method.name}"
    same_model = [k for k in entries if k.split("/")[0] == spec.model.name]
    chosen = key if key in entries else (same_model[0] if same_model else next(iter(entries)))
    return cost.with_measured(device, entries[chosen], f"measured ({calibration['path']}, {chosen}, "
                                                       f"{calibration.get('measured_at', '?')})")


def training_memory_gb(spec: RunSpec, trainer, config, trainable: int, total: int, tokens: int) -> dict[str, float]:
    """Weights at their load dtype; AdamW's two float32 moments and a float32 gradient per trainable parameter;
    activations by Korthikanti et al. (2022): s·b·h·(34 + 5·a·s/h) bytes per layer in 16-bit, twice in float32,
    at a padded length of twice the mean (capped by max_length)."""
    weights = total * BYTES.get(spec.model.dtype, 4)
    optimizer = trainable * (4 + 4 + 4)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", 0)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", 0)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "encoder_attention_heads", 1)
    length = min(2 * tokens, spec.task.max_length)
    scale = 1 if trainer.precision in ("bf16", "fp16") else 2
    activations = layers * length * trainer.batch_size * hidden * (34 + 5 * heads * length / max(hidden, 1)) * scale
    gb = {"weights": weights / 1e9, "optimizer+grads": optimizer / 1e9, "activations": activations / 1e9}
    gb["total"] = sum(gb.values())
    return gb


def placement(memory: dict[str, float], capacity: float) -> tuple[bool, str]:
    """Whether one GPU holds the job (10% kept free), else the sharded launch that does."""
    if memory["total"] <= 0.9 * capacity:
        return True, "python -m propulsion.run ..."
    for gpus in (2, 4, 8):
        sharded = (memory["weights"] + memory["optimizer+grads"]) / gpus + memory["activations"]
        if sharded <= 0.9 * capacity:
            return False, f"accelerate launch --num_processes {gpus} --config_file scripts/accelerate/fsdp.yaml"
    return False, "does not fit 8 GPUs: lower trainer.batch_size and raise gradient_accumulation_steps"


DEVICE_CHOICES = (*GPUS, "cpu")


def resolve_device(name: str, cores: int | None = None) -> cost.Device:
    """A device's default constants by name (a GPU class, or cpu with its core count; default: this machine's)."""
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown --device {name!r}; valid choices: {', '.join(DEVICE_CHOICES)}")
    if name == "cpu":
        import os

        cores = cores or len(os.sched_getaffinity(0))
    return cost.default_device(name, cores)


def plan(overrides: list[str], config_name: str = "config", config_dir: str | None = None,
         gpu: str = "h100-80gb", num_gpus: int = 1, cores: int | None = None,
         calibration: Path | str | None = None, use_calibration: bool = True,
         ) -> tuple[list[JobPlan], list[tuple[list[str], str]]]:
    """The plan of every job, and the jobs that would stop before training (overrides, the one-line reason).
    `gpu` names the device (a GPU class or "cpu"); its constants come from the calibration file when there is
    one (`calibration`, else results/plan/calibration-<device>.json), else the defaults of
    :mod:`propulsion.studies.cost`."""
    from propulsion.compose import expand_jobs

    if gpu not in DEVICE_CHOICES:
        raise UserError(f"unknown --gpu {gpu!r}; valid choices: {', '.join(DEVICE_CHOICES)}")
    device = resolve_device(gpu, cores)
    measured = load_calibration(calibration, device.name) if use_calibration else None
    jobs, broken = [], []
    for job_overrides, spec, _ in expand_jobs(overrides, config_name, config_dir):
        try:
            jobs.append(plan_job(job_overrides, spec, device, num_gpus, measured))
        except (UserError, ValueError) as error:  # the run itself would stop on this, before training
            broken.append((job_overrides, str(error).splitlines()[0]))
    return jobs, broken


def report(jobs: list[JobPlan], device: cost.Device | str, calibration: dict | None = None) -> str:
    if isinstance(device, str):
        device = resolve_device(device)
    hours = f"hours ({device.name})"
    header = ("| model | task | method | seed | steps | eval passes | padded tokens/row | train tokens "
              f"| generated tokens | trainable | total | peak GB (weights + optimizer + activations) | {hours} "
              "| fits one GPU |")
    lines = [header, "|" + "---|" * 14]
    for job in jobs:
        lines.append(f"| {job.model} | {job.task} | {job.method} | {job.seed} | {job.steps:,} | "
                     f"{job.evaluation_passes} | {job.padded_length:.0f} | {job.train_tokens:,.0f} | "
                     f"{job.generated_tokens:,.0f} | {job.trainable:,} | {job.total:,} | "
                     f"{_memory_text(job.memory_gb)} | {job.hours:.3f} | {'yes' if job.fits else job.launch} |")
    parts = {term: sum(j.seconds[term] for j in jobs) / 3600 for term in ("setup", "train", "evaluate", "generate")}
    totals = {
        "runs": len(jobs),
        "optimizer steps": f"{sum(j.steps for j in jobs):,}",
        "evaluation passes": f"{sum(j.evaluation_passes for j in jobs):,}",
        "training tokens": f"{sum(j.train_tokens for j in jobs):,.0f}",
        "generated tokens": f"{sum(j.generated_tokens for j in jobs):,.0f}",
        hours: f"{sum(j.hours for j in jobs):,.1f} ("
               + ", ".join(f"{term} {value:,.1f}" for term, value in parts.items()) + ")",
        "jobs that need more than one GPU": sum(not j.fits for j in jobs),
    }
    lines += ["", "Totals:"] + [f"- {key}: {value}" for key, value in totals.items()]
    if any(j.approximate_sizes for j in jobs):
        lines.append("- some training set sizes are approximate (commonsense_170k ~170k, math_10k ~10k rows)")
    lines += ["", "Assumptions:"] + assumptions(device, calibration)
    return "\n".join(lines)


def assumptions(device: cost.Device, calibration: dict | None) -> list[str]:
    if calibration:
        constants = (f"- device constants: measured by --calibrate ({calibration['path']}, "
                     f"{calibration.get('measured_at', '?')}; per model/method: {', '.join(calibration['entries'])}); "
                     "a job whose model/method was not measured uses its model's entry, else the first")
    else:
        constants = f"- device constants: {device.source} (no {calibration_path(device.name)}: run --calibrate)"
    devices = ([cost.with_measured(device, entry, key) for key, entry in calibration["entries"].items()]
               if calibration else [device])
    return [
        "- steps and evaluation passes: the training loop's own rules (exact); training tokens: steps × batch × "
        "mean tokens per example (input + target; table MEAN_TOKENS in propulsion/studies/plan.py)",
        "- time per optimizer step = per-step overhead + FLOPs / throughput; FLOPs = batch × padded length × "
        "(2 with frozen weights, 3 for full fine-tuning) × (2N + 4·layers·length·hidden: attention's s² term), "
        "N = non-embedding parameters",
        "- padded length: dynamic padding pads each batch to its longest row: the expected maximum of `batch` "
        "lengths from the task's length quantiles (propulsion/studies/cost.py LENGTH_QUANTILES), else a "
        f"log-normal with the task's mean and σ(log) {cost.LOG_LENGTH_SPREAD}; capped at task.max_length",
        "- evaluation: per pass an overhead (metrics, checkpoint), per batch an overhead + forward FLOPs; "
        "generation: one forward per new token and batch (KV cache), at "
        f"{GENERATE_UTILISATION_RATIO:.0%} of the training throughput (memory-bound)",
        "- precision: bf16/fp16 autocast or 16-bit weights run at the bf16 throughput, else fp32 "
        "(the loop leaves TF32 off)",
        *(_constants_line(d, d.source if calibration else "") for d in devices),
        constants,
        "- memory: weights at load dtype + AdamW (2 float32 moments + float32 grad per trainable parameter) + "
        "activations by Korthikanti et al. 2022 at twice the mean length; 10% of the GPU kept free",
    ]


def _constants_line(device: cost.Device, label: str) -> str:
    flops = ", ".join(f"{p} {v / 1e9:,.1f}" for p, v in device.throughput.items())
    return (f"- {device.name}{f' ({label})' if label else ''}: throughput (GFLOP/s effective) {flops}; overheads: "
            f"step {device.step_overhead_s * 1e3:.1f} ms, AdamW {device.optimizer_s_per_param * 1e9:.3f} ns a "
            f"parameter, eval batch {device.eval_batch_overhead_s * 1e3:.1f} ms, eval pass "
            f"{device.eval_pass_overhead_s:.1f} s, run setup {device.run_overhead_s:.0f} s")


def _memory_text(gb: dict[str, float]) -> str:
    return f"{gb['total']:.1f} ({gb['weights']:.1f} + {gb['optimizer+grads']:.1f} + {gb['activations']:.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the same overrides as a run (a=x,y sweeps)")
    parser.add_argument("--config-name", default="config", help="an experiments/ file name, e.g. table3_reasoning")
    parser.add_argument("--config-dir", default=None, help="default: experiments/ when --config-name is not config")
    parser.add_argument("--device", default=None, help=f"one of {', '.join(DEVICE_CHOICES)} (default: --gpu)")
    parser.add_argument("--gpu", default="h100-80gb", help=f"one of {', '.join(GPUS)} (same as --device)")
    parser.add_argument("--cores", type=int, default=None, help="CPU cores of --device cpu (default: this machine's)")
    parser.add_argument("--num-gpus", type=int, default=1, help="data-parallel processes per job")
    parser.add_argument("--calibration", default=None,
                        help="a calibration file (default: results/plan/calibration-<device>.json when present)")
    parser.add_argument("--defaults", action="store_true", help="ignore any calibration file: the default constants")
    parser.add_argument("--calibrate", action="store_true",
                        help="first time a few real steps of each planned model/method on this machine and write "
                             "the calibration file (the device is this machine's)")
    args = parser.parse_args(argv)
    config_dir = args.config_dir
    if config_dir is None and args.config_name != "config":
        from propulsion.resources import EXPERIMENTS_DIR  # the checkout's experiments/, or the packaged copy

        config_dir = str(EXPERIMENTS_DIR)
    name = args.device or args.gpu
    try:
        if name not in DEVICE_CHOICES:
            option = "--device" if args.device else "--gpu"
            raise UserError(f"unknown {option} {name!r}; valid choices: {', '.join(DEVICE_CHOICES)}")
        if args.calibrate:
            from propulsion.studies import calibrate

            name, path = calibrate.calibrate_sweep(args.overrides, args.config_name, config_dir, args.calibration,
                                                   cores=args.cores)
            print(f"calibration written to {path}", file=sys.stderr)
            args.calibration = path
            if name.startswith("cpu-"):  # this machine's CPU: cpu-<threads> -> --device cpu --cores <threads>
                name, args.cores = "cpu", int(name.split("-")[1])
        device = resolve_device(name, args.cores)
        calibration = None if args.defaults else load_calibration(args.calibration, device.name)
        jobs, broken = plan(args.overrides, args.config_name, config_dir, name, args.num_gpus, args.cores,
                            args.calibration, use_calibration=not args.defaults)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(report(jobs, device, calibration))
    if broken:
        print(f"\n{len(broken)} job(s) would stop before training:")
        for job_overrides, reason in broken:
            print(f"- {' '.join(job_overrides)}: {reason}")
        sys.exit(1)


if __name__ == "__main__":
    main()
