"""One run, start to finish: specs in, one record out. No Hydra here (run.py is the only Hydra module)."""

from __future__ import annotations

import math
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from propulsion import adapt, backbones, hub_access, records
from propulsion.specs import RunSpec, UserError
from propulsion.tasks import data as task_data
from propulsion.tasks import get_family
from propulsion.training import evaluation_schedule, loop
from propulsion.training.tracking import Tracker

ADAPTER_DIR = "adapter"  # in the run folder: the reported model's trained parameters (adapt.save_trained)
run_identity = records.run_identity  # what a run computes: its skip/resume key
# The folder of the run this process started last (run.py names a failed sweep job's folder from it).
LAST_RUN_DIR: list[Path] = []


def run_dir_for(spec: RunSpec, run_id: str) -> Path:
    degree = f"-k{spec.method.degree}" if adapt.method_entry(spec.method.kind).takes_degree else ""
    name = f"{spec.model.name}-{spec.task.name}-{spec.method.name}{degree}-s{spec.seed}-{run_id[:8]}"
    return Path(spec.output_root) / name


def run_location(spec: RunSpec, config: dict[str, Any]) -> tuple[str, Path]:
    """The run id (a fingerprint of what the run computes) and the run folder it goes in."""
    run_id = records.config_fingerprint(run_identity(config))
    return run_id, run_dir_for(spec, run_id)


def completed_record(spec: RunSpec, run_id: str, run_dir: Path) -> dict[str, Any] | None:
    """The record a rerun is skipped for (skip_completed): this run id's completed record in its folder."""
    record_path = run_dir / records.RECORD_NAME
    if not (spec.skip_completed and record_path.exists()):
        return None
    previous = records.read_record(record_path)
    return previous if previous.get("status") == "completed" and previous.get("run_id") == run_id else None


def validate(spec: RunSpec, load: bool = True):
    """Everything that can be checked before loading weights or writing anything; returns the task family.
    ``load=False``: only what the configs say (no data file read, no model built on the meta device)."""
    adapt.validate(spec.method)
    family = get_family(spec.task.family)
    evaluation_schedule.check(spec.task, family)
    if hasattr(family, "validate"):  # options, test-set names, data files, gold answers (reasoning)
        family.validate(spec.task, read_data=load)
    if not load:
        return family
    # The model and data exist where they are said to be, or can be fetched: a missing local path or an offline
    # hub is one line here, in seconds, before a run folder or a tracker run exists.
    own_loader = getattr(family, "load_raw", None) is not None  # it checks its own sources in family.validate
    hub_access.check_sources(spec.model, None if own_loader else spec.task)
    try:  # target patterns, on the model built from its config on the meta device
        config = backbones.load_config(spec.model, **family.model_overrides(spec.task))
    except UserError:
        return family  # config not reachable offline: the load reports it, and the targets are checked then
    except ValueError as error:  # an unknown tiny family or model_type: the library's one line
        raise UserError(str(error)) from None
    adapt.check_targets(config, spec.method, family.MODEL_KIND)
    return family


def run_experiment(spec: RunSpec, config: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one configuration; returns its record (also written to <run dir>/record.json)."""
    LAST_RUN_DIR.clear()
    family = validate(spec)
    run_id, run_dir = run_location(spec, config)
    record_path = run_dir / records.RECORD_NAME
    previous = completed_record(spec, run_id, run_dir)
    if previous is not None:
        print(f"skip: {run_dir} already completed")
        previous["skipped"] = True
        return previous

    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

    trainer = evaluation_schedule.trainer_for(spec.trainer.with_task_defaults(spec.task), spec.task.evaluation)
    _forget_previous_job_state()
    accelerator = Accelerator(mixed_precision=trainer.precision,
                              gradient_accumulation_steps=trainer.gradient_accumulation_steps)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # before any record: a refused run writes nothing
        raise UserError("DeepSpeed is not supported: its partitioned parameters and optimizer state are not gathered "
                        "for checkpoints and adapters; launch with scripts/accelerate/fsdp.yaml (FSDP2) instead")
    set_seed(spec.seed)
    main = accelerator.is_main_process
    record = records.new_record(
        run_id=run_id, run_name=spec.run_name, model=spec.model.name, task=spec.task.name,
        family=spec.task.family, method=spec.method.name,
        degree=spec.method.degree if adapt.method_entry(spec.method.kind).takes_degree else None,
        seed=spec.seed, protocol=spec.protocol, main_metric=spec.task.main_metric, config=config,
        trainer_resolved=asdict(trainer), run_dir=str(run_dir),
    )
    LAST_RUN_DIR[:] = [run_dir]
    if main:
        records.write_json_atomic(record_path, record)
    tracker = None
    try:
        with records.recording(record, record_path, write=main):  # a tracker that fails to start fails the run
            tracker = Tracker(spec.logger, run_dir.name, config, enabled=main)
            record.update(_train_and_evaluate(spec, trainer, family, accelerator, run_dir, tracker))
    finally:
        if tracker is not None:
            tracker.summary({"status": record["status"], **record.get("metrics", {})})
            tracker.finish(failed=record["status"] != "completed")
    return record


def _forget_previous_job_state() -> None:
    """A Hydra sweep runs its jobs one after another in one process, and accelerate keeps one AcceleratorState
    (mixed precision, ...) and GradientState per process: a job with another precision or accumulation could not
    create its Accelerator. Each job starts from fresh ones; the process group (PartialState) stays."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _train_and_evaluate(spec: RunSpec, trainer, family, accelerator, run_dir: Path, tracker: Tracker) -> dict:
    task = spec.task
    tokenizer = backbones.load_tokenizer(spec.model, padding_side=getattr(family, "PADDING_SIDE", "right"))
    raw = getattr(family, "load_raw", task_data.load_raw)(task, sample_splits=family.sample_splits)
    # A family may define its own split logic (reasoning: no dev set, several test sets).
    apply_protocol = getattr(family, "apply_protocol", task_data.apply_protocol)
    splits = apply_protocol(task, raw, spec.protocol, spec.seed)
    schedule = task.evaluation
    with accelerator.main_process_first():  # one process tokenises and caches, the others reuse it
        train_set = family.tokenize(task, splits.train, tokenizer, train=True)
        dev_sets = {alias: family.tokenize(task, d, tokenizer, train=False) for alias, d in splits.dev.items()}
        test_sets = {alias: family.tokenize(task, d, tokenizer, train=False) for alias, d in splits.test.items()}
        # What the loop evaluates (task.evaluation): every dev row, or a fixed subset of the rows (of questions, for
        # QA, before they become windows).
        during_sets = dev_sets if not schedule.rows else {
            alias: family.tokenize(task, evaluation_schedule.subset(d, schedule), tokenizer, train=False)
            for alias, d in splits.dev.items()}
    grouped = bool(getattr(family, "GENERATES", False) and schedule.group_by_length)
    if grouped:  # generation batches of similar lengths
        dev_sets, test_sets, during_sets = ({alias: evaluation_schedule.by_length(d) for alias, d in sets.items()}
                                            for sets in (dev_sets, test_sets, during_sets))

    overrides = backbones.config_overrides(spec.model, family.model_overrides(task))
    model = backbones.load_model(spec.model, family.MODEL_KIND, overrides)
    total_steps = loop.total_steps(len(train_set), trainer, accelerator.num_processes)
    prepared = adapt.apply_method(model, spec.method, family.MODEL_KIND, total_steps=total_steps)
    params = adapt.count(prepared.model)
    accelerator.print(f"{spec.method.name}: trainable params {params['trainable']:,} of {params['total']:,} "
                      f"({params['percent']:.4f}%)")
    if trainer.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()

    collate = family.collator(tokenizer)
    evaluate = partial(family.evaluate, task=task, tokenizer=tokenizer, accelerator=accelerator)
    # Mid-training evaluations follow task.evaluation: the family's evaluation (with cheaper decoding under
    # `generate`), or the dev loss only (`loss`, which then selects: evaluation_schedule.trainer_for).
    evaluate_during = (partial(evaluate, generation=schedule.generation) if schedule.during == "generate"
                       else evaluate)
    result = loop.train(
        model=prepared.model, train_set=train_set, dev_sets=during_sets, collate=collate, evaluate=evaluate_during,
        main_metric=task.main_metric, spec=trainer, seed=spec.seed, accelerator=accelerator, run_dir=run_dir,
        log=tracker.log, hooks=prepared.hooks, resume=spec.resume,
        dev_metrics=evaluation_schedule.computes_metrics(schedule),
    )
    # From here on the model is the reported one: the best dev checkpoint (the final model where there is none).
    loop.load_trainable_state(accelerator.unwrap_model(prepared.model), result.best_state)
    final = evaluation_schedule.final_split(bool(test_sets), schedule)
    final_sets = {"test": test_sets, "dev": dev_sets}.get(final, {})
    if final:  # the reported model's one full evaluation: the test split(s), or all of dev after a cheap schedule
        # The final evaluation may write per-example predictions next to the record.
        evaluate_final = partial(evaluate, output_dir=run_dir if accelerator.is_main_process else None)
        reported = loop.evaluate_sets(prepared.model, final_sets, collate, evaluate_final, trainer, accelerator)
    else:
        reported = dict(result.best["metrics"])
    method_summary = prepared.hooks.summary() if prepared.hooks.summary else {}  # before saving: PEFT renames keys
    adapter = None
    if spec.save_adapter:  # every process: sharded tensors are gathered; the main one writes
        files = adapt.save_trained(accelerator.unwrap_model(prepared.model), run_dir / ADAPTER_DIR,
                                   metrics=reported, base_model_revision=spec.model.revision,  # for the model card
                                   write=accelerator.is_main_process)
        if accelerator.is_main_process:
            # frozen_saved: the frozen head parameters saved with it (a new head), apart from params.trainable
            adapter = {"dir": ADAPTER_DIR, "files": files, "step": result.best["step"],
                       "frozen_saved": adapt.new_frozen_count(accelerator.unwrap_model(prepared.model))}
    return {
        "metrics": reported,
        "best": {"step": result.best["step"], "value": result.best["value"]},
        "final": result.final,
        "evaluations": result.evaluations,
        "evaluation": evaluation_schedule.describe(
            schedule, trainer, {alias: len(d) for alias, d in during_sets.items()}, final,
            {alias: len(d) for alias, d in final_sets.items()}, task.options.get("generation"), grouped),
        "train_loss": result.train_loss,
        "train": {"steps": result.steps, "total_steps": result.total_steps,
                  "resumed_from_step": result.resumed_from_step, "num_processes": accelerator.num_processes,
                  "distributed_type": str(accelerator.distributed_type.value),
                  "mixed_precision": accelerator.mixed_precision, "device": _device_name(accelerator.device),
                  **result.notes},
        "params": params,
        "adapter": adapter,
        "model_config_overrides": overrides,
        "method_details": {**prepared.details, **method_summary},
        "data": {**splits.notes, "files": getattr(family, "file_provenance", task_data.file_provenance)(task)},
        "model_files": backbones.provenance(spec.model),  # the real checkpoint a number came from
    }


def _device_name(device) -> str:
    """"cpu", or the accelerator's kind with its model name ("cuda: NVIDIA H200"): numbers depend on it."""
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


def result_table(record: dict[str, Any]) -> str:
    """The few lines a person reads after a run."""
    lines = ["| field | value |", "|---|---|"]
    keys = ("model", "task", "method", "degree", "seed", "protocol", "status")
    lines += [f"| {k} | {record.get(k)} |" for k in keys]
    params = record.get("params") or {}
    if params:
        counts = f"{params['trainable']:,} of {params['total']:,} ({params['percent']:.4f}%)"
        lines.append(f"| trainable params | {counts} |")
    for key, value in sorted((record.get("metrics") or {}).items()):
        shown = f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else value
        lines.append(f"| {key} | {shown} |")
    lines.append(f"| wall time | {record.get('wall_time_s')} s |")
    lines.append(f"| record | {record.get('run_dir')}/{records.RECORD_NAME} |")
    return "\n".join(lines)


__all__ = ["UserError", "result_table", "run_experiment", "validate"]
