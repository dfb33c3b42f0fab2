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

# Dense tensor-core peaks (TFLOP/s) for 16-bit and TF32 math, and memory (GB), from the vendors' data sheets (SXM).
GPUS = {
    "a100-80gb": {"bf16": 312.0, "tf32": 156.0, "memory_gb": 80.0},
    "h100-80gb": {"bf16": 989.0, "tf32": 494.0, "memory_gb": 80.0},
    "h200": {"bf16": 989.0, "tf32": 494.0, "memory_gb": 141.0},
}
UTILISATION = {"train": 0.35, "forward": 0.35, "generate": 0.08}  # of the peak; decoding is memory-bound

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
    gpu_hours: float
    fits: bool
    launch: str
    approximate_sizes: bool


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


def plan_job(overrides: list[str], spec: RunSpec, gpu: str, num_gpus: int = 1) -> JobPlan:
    from propulsion.tasks import get_family
    from propulsion.training import loop

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
    examples_seen = steps * trainer.batch_size * num_gpus
    train_tokens = examples_seen * (mean_tokens + target_tokens)
    generating = bool(getattr(get_family(spec.task.family), "GENERATES", False))  # the family's own flag
    generation = dict((spec.task.options or {}).get("generation") or {})
    beams = int(generation.get("num_beams", 1) or 1)  # the full evaluation's
    # Mid-training evaluations generate unless they measure the loss (with their own, cheaper settings).
    beams_during = int((generation | dict(schedule.generation)).get("num_beams", 1) or 1)
    rows_generated_during = passes * dev_rows if generating and schedule.during != "loss" else 0
    generated = (rows_generated_during * beams_during + report_rows * beams) * target_tokens if generating else 0

    full = adapt.method_entry(spec.method.kind).trains_whole_model
    flops = train_tokens * (4 + 2 * full) * non_embedding  # forward 2N; backward 2N for inputs, +2N for weights
    # Every evaluated row's input is read once per beam (a loss pass: once).
    reads_during, reads_final = (beams_during if rows_generated_during else 1), (beams if generating else 1)
    flops_eval = (passes * dev_rows * reads_during + report_rows * reads_final) * mean_tokens * 2 * non_embedding
    flops_generate = generated * 2 * non_embedding
    peaks = GPUS[gpu]
    sixteen_bit = trainer.precision in ("bf16", "fp16") or spec.model.dtype != "float32"
    peak = (peaks["bf16"] if sixteen_bit else peaks["tf32"]) * 1e12
    seconds = (flops / UTILISATION["train"] + flops_eval / UTILISATION["forward"]
               + flops_generate / UTILISATION["generate"]) / peak
    memory = training_memory_gb(spec, trainer, config, trainable, total, mean_tokens + target_tokens)
    fits, launch = placement(memory, peaks["memory_gb"])
    return JobPlan(overrides, spec.model.name, task, spec.method.name, spec.seed, train_rows, steps, passes,
                   dev_rows, report_rows, schedule.during, train_tokens, generated, trainable, total, memory,
                   seconds * num_gpus / 3600, fits, launch, approximate)


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


def plan(overrides: list[str], config_name: str = "config", config_dir: str | None = None,
         gpu: str = "h100-80gb", num_gpus: int = 1) -> tuple[list[JobPlan], list[tuple[list[str], str]]]:
    """The plan of every job, and the jobs that would stop before training (overrides, the one-line reason)."""
    from propulsion.compose import expand_jobs

    if gpu not in GPUS:
        raise UserError(f"unknown --gpu {gpu!r}; valid choices: {', '.join(GPUS)}")
    jobs, broken = [], []
    for job_overrides, spec, _ in expand_jobs(overrides, config_name, config_dir):
        try:
            jobs.append(plan_job(job_overrides, spec, gpu, num_gpus))
        except (UserError, ValueError) as error:  # the run itself would stop on this, before training
            broken.append((job_overrides, str(error).splitlines()[0]))
    return jobs, broken


def report(jobs: list[JobPlan], gpu: str) -> str:
    header = ("| model | task | method | seed | steps | eval passes | train tokens | generated tokens | trainable "
              "| total | peak GB (weights + optimizer + activations) | GPU-h | fits one GPU |")
    lines = [header, "|" + "---|" * 13]
    for job in jobs:
        lines.append(f"| {job.model} | {job.task} | {job.method} | {job.seed} | {job.steps:,} | "
                     f"{job.evaluation_passes} | {job.train_tokens:,.0f} | {job.generated_tokens:,.0f} | "
                     f"{job.trainable:,} | {job.total:,} | {_memory_text(job.memory_gb)} | {job.gpu_hours:.3f} | "
                     f"{'yes' if job.fits else job.launch} |")
    totals = {
        "runs": len(jobs),
        "optimizer steps": f"{sum(j.steps for j in jobs):,}",
        "evaluation passes": f"{sum(j.evaluation_passes for j in jobs):,}",
        "training tokens": f"{sum(j.train_tokens for j in jobs):,.0f}",
        "generated tokens": f"{sum(j.generated_tokens for j in jobs):,.0f}",
        f"GPU-hours ({gpu})": f"{sum(j.gpu_hours for j in jobs):,.1f}",
        "jobs that need more than one GPU": sum(not j.fits for j in jobs),
    }
    lines += ["", "Totals:"] + [f"- {key}: {value}" for key, value in totals.items()]
    if any(j.approximate_sizes for j in jobs):
        lines.append("- some training set sizes are approximate (commonsense_170k ~170k, math_10k ~10k rows)")
    lines += ["", "Assumptions:",
              "- steps and evaluation passes: the training loop's own rules (exact); training tokens: steps × batch × "
              "mean tokens per example (input + target; table MEAN_TOKENS in propulsion/studies/plan.py)",
              "- FLOPs per training token: 4N with frozen weights (forward 2N, backward 2N for the activations' "
              "gradients), 6N for full fine-tuning; N = non-embedding parameters; attention's s² terms ignored",
              "- evaluation: 2N per evaluated token (× beams when generating); generation: 2N per generated token "
              "and beam (KV cache), generated length = the mean target length",
              f"- utilisation of the peak: training {UTILISATION['train']:.0%}, forward {UTILISATION['forward']:.0%}, "
              f"generation {UTILISATION['generate']:.0%} (decoding is memory-bound); peaks {GPUS[gpu]}",
              "- memory: weights at load dtype + AdamW (2 float32 moments + float32 grad per trainable parameter) + "
              "activations by Korthikanti et al. 2022 at twice the mean length; 10% of the GPU kept free"]
    return "\n".join(lines)


def _memory_text(gb: dict[str, float]) -> str:
    return f"{gb['total']:.1f} ({gb['weights']:.1f} + {gb['optimizer+grads']:.1f} + {gb['activations']:.1f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="the same overrides as a run (a=x,y sweeps)")
    parser.add_argument("--config-name", default="config", help="an experiments/ file name, e.g. table3_reasoning")
    parser.add_argument("--config-dir", default=None, help="default: experiments/ when --config-name is not config")
    parser.add_argument("--gpu", default="h100-80gb", help=f"one of {', '.join(GPUS)}")
    parser.add_argument("--num-gpus", type=int, default=1, help="data-parallel processes per job")
    args = parser.parse_args(argv)
    config_dir = args.config_dir
    if config_dir is None and args.config_name != "config":
        from propulsion.resources import EXPERIMENTS_DIR  # the checkout's experiments/, or the packaged copy

        config_dir = str(EXPERIMENTS_DIR)
    try:
        jobs, broken = plan(args.overrides, args.config_name, config_dir, args.gpu, args.num_gpus)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(report(jobs, args.gpu))
    if broken:
        print(f"\n{len(broken)} job(s) would stop before training:")
        for job_overrides, reason in broken:
            print(f"- {' '.join(job_overrides)}: {reason}")
        sys.exit(1)


if __name__ == "__main__":
    main()
