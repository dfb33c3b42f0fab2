"""PropulsionConfig: what to wrap and how the Propulsion vectors behave."""

from __future__ import annotations

import numbers
import re
from dataclasses import asdict, dataclass, field
from typing import Any

PRESETS = ("all", "attn", "qkv", "query", "key", "value", "mlp", "ffn", "embedding")  # ffn: another name for mlp
HEAD_POLICIES = ("propulsion", "full", "both")
BIAS_POLICIES = ("none", "all", "linear")
POOLINGS = ("mean", "max", "min", "l2", "prod")
INITS = ("ones", "normal", "uniform", "zeros")


@dataclass
class PropulsionConfig:
    degree: int = field(
        default=15,
        metadata={"help": "k in V ⊙ z^k; an integer >= 1 (paper §2, eq. 3). At init the gradient of z is k times "
                          "that of k = 1, so k acts like a learning-rate multiplier; very high degrees (100+) with "
                          "a large lr can push z^k past float32's range (inf/NaN); z near 1 is safe."},
    )
    targets: str | list[str] = field(
        default="all",
        metadata={"help": "A preset (all, attn, qkv, query, key, value, mlp = ffn, embedding) read from module roles, "
                          "or a list of module-name patterns (regex full match, or a '.'-suffix of the name)."},
    )
    head: str = field(
        default="propulsion",
        metadata={"help": "propulsion: head weights frozen, their outputs steered by z (the paper's counts); "
                          "full: head modules trained in full and not wrapped (as PEFT baselines do); "
                          "both: wrapped with z and trained in full too (the authors' STS-B notebook)."},
    )
    bias: str = field(default="none", metadata={"help": "none: biases frozen (paper counts); all: biases train; "
                                                        "linear: only nn.Linear biases train (the authors' SST-2)."})
    num_vectors: int = field(
        default=1, metadata={"help": "p Propulsion vectors per layer (App. F.1); 1 is the plain method."}
    )
    pooling: str = field(
        default="mean",
        metadata={"help": "How p vectors combine, applied to the p scales z_i^k: mean (equals the paper's mean of "
                          "outputs exactly), max / min (equal the paper's output pooling where V >= 0), l2 (root "
                          "mean square, so ones stay ones), prod (the authors' draft code)."},
    )
    init: str = field(
        default="ones",
        metadata={"help": "ones (paper: identity at init), normal N(1, init_scale), uniform U(1 ± init_scale), zeros "
                          "(Figure 8)."},
    )
    init_scale: float = field(default=0.02, metadata={"help": "std / half-width around 1 for normal / uniform."})
    architecture: str | None = field(
        default=None, metadata={"help": "model_type used to resolve presets; default: model.config.model_type."}
    )
    target_modules: str | list[str] | None = field(
        default=None, compare=False,
        metadata={"help": "PEFT's name for targets (either may be given; both, only if equal). After construction "
                          "it reads the same as targets; to_dict() stores targets only."},
    )

    def __post_init__(self) -> None:
        if self.target_modules is not None:
            given = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
            if self.targets != "all" and self.targets != given:
                raise ValueError(f"targets={self.targets!r} and target_modules={given!r} differ; pass one of them "
                                 f"(target_modules is PEFT's name for targets)")
            self.targets = given
        self.degree = _integer("degree", self.degree)
        if isinstance(self.targets, str):
            if self.targets not in PRESETS:
                raise ValueError(
                    f"unknown targets preset {self.targets!r}; valid presets: {', '.join(PRESETS)} "
                    f"(or pass a list of module-name patterns)"
                )
        else:
            self.targets = list(self.targets)
            if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
                raise ValueError(f"targets must be a preset or a non-empty list of patterns, got {self.targets!r}")
            for pattern in self.targets:  # a typo like 'layer.[0' would otherwise surface as re.error at injection
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise ValueError(f"target pattern {pattern!r} is not a valid regular expression: {error}") from None
        _check("head", self.head, HEAD_POLICIES)
        _check("bias", self.bias, BIAS_POLICIES)
        _check("pooling", self.pooling, POOLINGS)
        _check("init", self.init, INITS)
        self.num_vectors = _integer("num_vectors", self.num_vectors)
        scale = self.init_scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0:
            raise ValueError(f"init_scale must be a number > 0, got {self.init_scale!r}")
        self.target_modules = self.targets  # the alias reads what was resolved

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        del values["target_modules"]  # the alias: saved configs keep one name (targets)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PropulsionConfig:
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PropulsionConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def _integer(name: str, value: Any) -> int:
    """An integer >= 1 as a Python int. numpy integers (a sweep over np.arange) and integral floats (Hydra/JSON may
    hand over 15.0) are accepted; booleans, strings and fractions are not."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _check(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
