"""PropulsionConfig: what to wrap and how the Propulsion vectors behave."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PRESETS = ("all", "attn", "qkv", "query", "key", "value", "mlp", "embedding")
HEAD_POLICIES = ("propulsion", "full")
BIAS_POLICIES = ("none", "all")
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
        metadata={"help": "A preset (all, attn, qkv, query, key, value, mlp, embedding) resolved per architecture, "
                          "or a list of module-name patterns (regex full match, or a '.'-suffix of the name)."},
    )
    head: str = field(
        default="propulsion",
        metadata={"help": "propulsion: head weights frozen, their outputs steered by z (the paper's counts); "
                          "full: head modules trained in full and not wrapped (as PEFT baselines do)."},
    )
    bias: str = field(default="none", metadata={"help": "none: biases frozen (paper counts); all: biases train."})
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

    def __post_init__(self) -> None:
        degree = self.degree
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            # Hydra/JSON may hand over 15.0; an integral float is accepted, anything else is not.
            if isinstance(degree, float) and degree.is_integer() and degree >= 1:
                self.degree = int(degree)
            else:
                raise ValueError(f"degree must be an integer >= 1, got {degree!r}")
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
        _check("head", self.head, HEAD_POLICIES)
        _check("bias", self.bias, BIAS_POLICIES)
        _check("pooling", self.pooling, POOLINGS)
        _check("init", self.init, INITS)
        if isinstance(self.num_vectors, bool) or not isinstance(self.num_vectors, int) or self.num_vectors < 1:
            raise ValueError(f"num_vectors must be an integer >= 1, got {self.num_vectors!r}")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {self.init_scale!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PropulsionConfig:
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PropulsionConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def _check(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")
