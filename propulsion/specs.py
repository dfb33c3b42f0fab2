"""Typed specs of a run. ``run.py`` builds them from the Hydra config; the library only sees these.

Field names mirror the YAML keys in conf/, so ``Spec(**section)`` is the whole conversion and a key
that is misspelt in a config fails loudly here instead of being ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass
from typing import Any

from propulsion.method.config import PropulsionConfig  # plain dataclasses: no torch

PROTOCOLS = ("paper", "heldout")
SOURCES = ("hub", "files", "sample")
PRECISIONS = ("no", "fp16", "bf16")
# transformers.get_scheduler names that need nothing but warm-up and total steps, and step() without a metric.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
SELECT_ON = ("metric", "loss", "final")  # best by the task's metric, by dev loss (HF's default), or the last
# What a mid-training evaluation computes (task.evaluation.during): the family's whole evaluation on every dev row,
# the dev loss only, or the family's evaluation with cheaper generation settings on a fixed subset of dev rows.
EVALUATE_DURING = ("full", "loss", "generate")


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, never as a traceback."""


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; valid choices: {', '.join(choices)}")


MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit


def _integer(what: str, value: Any, minimum: int, maximum: int | None = None, optional: bool = False) -> None:
    """``what`` is an integer in [minimum, maximum] (or null where ``optional``): one line naming it otherwise."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None
                                                                                      and value > maximum):
        valid = f"an integer in [{minimum}, {maximum}]" if maximum is not None else f"an integer >= {minimum}"
        raise UserError(f"{what} must be {valid}{' or null' if optional else ''}, got {value!r}")


@dataclass
class ModelSpec:
    name: str
    name_or_path: str | None = None
    tiny: str | None = None
    dtype: str = "float32"
    revision: str | None = None
    trust_remote_code: bool = False
    architecture: dict[str, Any] | None = None  # config sizes for offline parameter counts
    dropout: float | None = None  # hidden and attention dropout of the backbone; None keeps the checkpoint's
    # Modules re-initialised at random (the run's seed) after loading, e.g. [bert.pooler]: RoBERTa's classifier.dense,
    # which the paper's runs start from random, is BERT's pretrained pooler; null (the default) keeps every weight.
    reinit: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.name_or_path and not self.tiny:
            raise UserError(f"model {self.name!r} needs model.name_or_path (a hub id or a local directory)")
        if self.name_or_path and self.tiny:  # it would be silently ignored: the tiny model is built from a config
            raise UserError(f"model.name_or_path={self.name_or_path} is given for the built-in tiny model "
                            f"{self.name!r}, which loads no weights; drop it, or choose a real model (e.g. "
                            f"model=roberta-base model.name_or_path={self.name_or_path})")
        if self.dropout is not None and not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise UserError(f"model.dropout must be a number in [0, 1) or null, got {self.dropout!r}")
        if self.reinit is not None and (isinstance(self.reinit, str) or not all(isinstance(name, str) and name
                                                                                 for name in self.reinit)):
            raise UserError(f"model.reinit must be a list of module names (e.g. [bert.pooler]), got {self.reinit!r}")


@dataclass
class EvaluationSpec:
    """When and how a run evaluates while it trains (``task.evaluation``). A generation task selects its checkpoint
    on a cheap signal and runs its full generation evaluation (the paper's beams and lengths) once, on the selected
    model, at the end; a classification task evaluates everything every time (``full``, the default)."""

    during: str = "full"        # full | loss (dev loss; selects on it) | generate (`generation` on `rows` dev rows)
    rows: int | None = None     # dev rows evaluated during training: a fixed subset (seeded by subset_seed); null: all
    subset_seed: int = 0        # the subset is the same for every seed of a sweep, so runs select on the same rows
    generation: dict[str, Any] = field(default_factory=dict)  # over task.options.generation (during=generate only)
    group_by_length: bool = True  # generation batches of rows of similar length (generation families only)

    def __post_init__(self) -> None:
        _choice("task.evaluation.during", self.during, EVALUATE_DURING)
        if self.rows is not None and (isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1):
            raise UserError(f"task.evaluation.rows must be an integer >= 1 or null, got {self.rows!r}")


@dataclass
class TaskSpec:
    name: str
    family: str
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_revision: str | None = None  # a hub branch, tag or commit; e.g. refs/convert/parquet for script datasets
    source: str = "hub"
    data_files: dict[str, Any] | None = None
    data_dir: str | None = None
    text_fields: list[str] = field(default_factory=list)
    label_field: str = "label"
    num_labels: int = 2
    train_split: str = "train"
    eval_splits: dict[str, str] = field(default_factory=lambda: {"validation": "validation"})
    size: str = "large"
    main_metric: str = "accuracy"
    # What the family reports on every evaluation, for a family that lets the task choose (GLUE: the YAML's list);
    # empty: the family's fixed set (QA, summarization, reasoning).
    metrics: list[str] = field(default_factory=list)
    degree: int | None = None
    max_length: int = 512
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    paper: dict[str, Any] = field(default_factory=dict)
    # Family-specific settings (QA strides, generation lengths, test sets, ...) live here.
    options: dict[str, Any] = field(default_factory=dict)
    # Per-method settings of the task's source (conf/method/*.yaml read them via oc.select); informational here.
    baselines: dict[str, Any] | None = None
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)

    def __post_init__(self) -> None:
        if isinstance(self.evaluation, dict):
            try:
                self.evaluation = EvaluationSpec(**self.evaluation)
            except TypeError as error:
                raise UserError(f"bad task.evaluation: {error}") from None
        if self.data_files or self.data_dir:
            self.source = "files"
        _choice("task.source", self.source, SOURCES)
        if self.size not in ("small", "large"):
            raise UserError(f"unknown task.size {self.size!r}; valid choices: small, large")
        _integer("task.num_labels", self.num_labels, 1)
        _integer("task.max_length", self.max_length, 1)
        _integer("task.max_train_samples", self.max_train_samples, 1, optional=True)
        _integer("task.max_eval_samples", self.max_eval_samples, 1, optional=True)
        if self.metrics and self.main_metric.split("/")[-1] not in self.metrics:  # "matched/accuracy" -> accuracy
            raise UserError(f"task.main_metric {self.main_metric!r} is not one of task.metrics; valid choices: "
                            f"{', '.join(self.metrics)}")

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1


def _propulsion_settings() -> list[tuple[str, str, Any]]:
    """Propulsion's settings are declared once, as PropulsionConfig's fields (with their help and checks); a method
    YAML sets them as ``method.<field>``. ``degree`` defaults to None here: a method without one takes no degree
    (Propulsion's YAMLs set it to the run's ``${degree}``)."""
    return [(f.name, f.type, field(default=None if f.name == "degree" else f.default, metadata=f.metadata))
            for f in fields(PropulsionConfig)]


# degree, targets, head, bias, num_vectors, pooling, init, init_scale, architecture (targets and head serve the
# PEFT methods and BitFit too). Keyword-only, so MethodSpec's own fields below may come without defaults.
PropulsionSettings = make_dataclass("PropulsionSettings", _propulsion_settings(), kw_only=True)


@dataclass
class MethodSpec(PropulsionSettings):
    name: str
    kind: str
    # PEFT baselines
    peft_type: str | None = None
    peft_config: dict[str, Any] = field(default_factory=dict)
    tinit_ratio: float = 0.1
    tfinal_ratio: float = 0.2
    # Our adapter baselines (propulsion.baselines.BaselineConfig fields)
    baseline: dict[str, Any] = field(default_factory=dict)
    # `kind` picks the entry of the method registry (propulsion.adapt), which checks it and the settings it reads.

    def __post_init__(self) -> None:
        _integer("method.num_vectors", self.num_vectors, 1)
        if isinstance(self.init_scale, bool) or not isinstance(self.init_scale, int | float):
            raise UserError(f"method.init_scale must be a number, got {self.init_scale!r}")


@dataclass
class TrainerSpec:
    name: str = "paper"
    preset: str = "paper"  # the trainer preset chosen (paper | authors | quick | ...): the tables tell protocols apart
    lr: float | None = None
    batch_size: int | None = None
    eval_batch_size: int = 64
    epochs: float | None = None
    max_steps: int | None = None
    weight_decay: float | None = None
    decay_norm_and_bias: bool = False  # False: the HF Trainer's rule (biases and norm weights undecayed)
    warmup_steps: int = 0
    warmup_ratio: float | None = None  # if set, warm-up = ceil(ratio x a round's steps), as HF's warmup_ratio
    scheduler: str = "linear"
    optimizer: str = "adamw"
    max_grad_norm: float | None = 1.0
    gradient_accumulation_steps: int = 1
    precision: str = "no"
    gradient_checkpointing: bool = False
    eval_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoint: bool = False
    num_workers: int = 0
    restarts: int = 0  # rounds after the first, each from the previous round's best model (Trainer.train() again)
    restart_optimizer: str = "keep"  # keep: AdamW's state carries into a restart, as in HF | fresh: a new AdamW
    select_on: str = "metric"  # metric: the task's main metric | loss: dev loss, lower is better | final: no choice

    def __post_init__(self) -> None:
        _choice("trainer.precision", self.precision, PRECISIONS)
        _choice("trainer.optimizer", self.optimizer, ("adamw",))
        _choice("trainer.scheduler", self.scheduler, SCHEDULERS)
        _choice("trainer.select_on", self.select_on, SELECT_ON)
        _choice("trainer.restart_optimizer", self.restart_optimizer, ("keep", "fresh"))
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) or self.restarts < 0:
            raise UserError(f"trainer.restarts must be an integer >= 0, got {self.restarts!r}")
        for key in ("eval_every", "checkpoint_every", "gradient_accumulation_steps", "eval_batch_size"):
            if int(getattr(self, key)) < 1:
                raise UserError(f"trainer.{key} must be >= 1, got {getattr(self, key)!r}")
        # null takes the task's paper value (with_task_defaults); a given value must make sense.
        for key, minimum, strict in (("lr", 0, True), ("batch_size", 1, False), ("epochs", 0, True),
                                     # max_steps 0: no training, the untrained model evaluated (a zero-shot row)
                                     ("max_steps", 0, False), ("weight_decay", 0, False), ("warmup_steps", 0, False),
                                     ("max_grad_norm", 0, False),  # max_grad_norm 0 or null: no clipping
                                     ("warmup_ratio", 0, False)):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise UserError(f"trainer.{key} must be a number, got {value!r}")
            if value is not None and (value <= minimum if strict else value < minimum):
                raise UserError(f"trainer.{key} must be {'>' if strict else '>='} {minimum}, got {value!r}")

    def with_task_defaults(self, task: TaskSpec) -> TrainerSpec:
        """Fill the null fields from the task's paper settings (authors' notebooks)."""
        filled = asdict(self)
        defaults = {"lr": 1e-4, "batch_size": 32, "epochs": 3, "weight_decay": 0.0} | dict(task.paper)
        for key in ("lr", "batch_size", "epochs", "weight_decay"):
            if filled[key] is None:
                filled[key] = defaults[key]
        return TrainerSpec(**filled)


@dataclass
class LoggerSpec:
    name: str = "none"
    project: str = "propulsion"
    entity: str | None = None
    mode: str = "auto"
    dir: str = "results"
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _choice("logger", self.name, ("wandb", "tensorboard", "none"))


@dataclass
class RunSpec:
    model: ModelSpec
    task: TaskSpec
    method: MethodSpec
    trainer: TrainerSpec
    logger: LoggerSpec
    seed: int = 0
    protocol: str = "paper"
    degree: int | None = None
    output_root: str = "results/runs"
    run_name: str | None = None
    skip_completed: bool = True
    resume: bool = True
    save_adapter: bool = True

    def __post_init__(self) -> None:
        _choice("protocol", self.protocol, PROTOCOLS)
        _integer("seed", self.seed, 0, MAX_SEED)
        for key in ("skip_completed", "resume", "save_adapter"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"{key} must be true or false, got {getattr(self, key)!r}")

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> RunSpec:
        config = dict(config)
        try:
            return cls(
                model=ModelSpec(**config.pop("model")),
                task=TaskSpec(**config.pop("task")),
                method=MethodSpec(**config.pop("method")),
                trainer=TrainerSpec(**config.pop("trainer")),
                logger=LoggerSpec(**config.pop("logger")),
                **config,
            )
        except TypeError as error:  # an unknown or missing key in a config file
            raise UserError(f"bad config: {error}") from None
