"""BaselineConfig: which of our baselines, and the numbers it is built with (bottleneck, scaling, masks, ...)."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

METHODS = ("adapter_s", "parallel", "mam", "propetl_adapter", "propetl_lora", "propetl_prefix")
PLACEMENTS = ("attn_ffn", "ffn", "ffn_linears")
NONLINEARITIES = ("relu", "gelu", "tanh")
INITS = ("bert", "lora", "houlsby")
HEAD_POLICIES = ("full", "frozen")
# Families whose causal-LM checkpoints take the `causal_lm` overrides (LLM-Adapters' settings).
CAUSAL_LM_FAMILIES = ("llama", "mistral", "bloom", "gptj")


@dataclass
class BaselineConfig:
    method: str = field(metadata={"help": f"one of {', '.join(METHODS)}"})
    placement: str = field(
        default="attn_ffn",
        metadata={"help": "attn_ffn: after the attention output and the FFN output (Houlsby); ffn: one adapter "
                          "beside the whole FFN block (He et al.); ffn_linears: one beside each FFN Linear "
                          "(LLM-Adapters' Parallel)."},
    )
    bottleneck: int = field(default=64, metadata={"help": "adapter bottleneck size (hidden // reduction factor)"})
    reduction_factor: int | None = field(
        default=None, metadata={"help": "if set, bottleneck = hidden // reduction_factor (adapter-transformers)"}
    )
    scaling: float = field(default=1.0, metadata={"help": "s in h + s * up(f(down(x)))"})
    nonlinearity: str = field(default="relu", metadata={"help": "relu | gelu | tanh"})
    init: str = field(
        default="bert",
        metadata={"help": "bert: N(0, init_std) weights, zero biases; lora: kaiming down, zero up (exact identity); "
                          "houlsby: truncated N(0, init_std) at 2 std (near identity)"},
    )
    init_std: float = field(default=0.02, metadata={"help": "std of the bert / houlsby inits"})
    adapter_bias: bool = field(default=True, metadata={"help": "biases in the down and up projections"})
    attn_layer_norm: bool = field(default=False, metadata={"help": "a LayerNorm on the attention adapter's input"})
    layer_norms: bool = field(default=False, metadata={"help": "train the backbone's LayerNorms (Houlsby)"})
    head: str = field(default="full", metadata={"help": "full: the task head trains | frozen"})
    # MAM and ProPETL prefix
    prefix_length: int = field(default=30, metadata={"help": "virtual tokens per layer (prefix methods)"})
    prefix_hidden: int = field(default=800, metadata={"help": "width of the prefix reparameterisation MLP"})
    # ProPETL
    density: float = field(
        default=0.5, metadata={"help": "fraction of each binary mask that is 1 (ProPETL's --sparsity flag)"}
    )
    rank: int = field(default=32, metadata={"help": "LoRA rank of the ProPETL LoRA prototype"})
    alpha: float = field(default=48.0, metadata={"help": "LoRA alpha: the update is scaled by alpha / rank"})
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"],
                                    metadata={"help": "logical targets of the ProPETL LoRA prototypes"})
    causal_lm: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": f"overrides for causal-LM families ({', '.join(CAUSAL_LM_FAMILIES)})"},
    )

    def __post_init__(self) -> None:
        _check("method", self.method, METHODS)
        _check("placement", self.placement, PLACEMENTS)
        _check("nonlinearity", self.nonlinearity, NONLINEARITIES)
        _check("init", self.init, INITS)
        _check("head", self.head, HEAD_POLICIES)
        for name in ("bottleneck", "prefix_length", "prefix_hidden", "rank"):
            setattr(self, name, _positive_int(name, getattr(self, name)))
        if self.reduction_factor is not None:
            self.reduction_factor = _positive_int("reduction_factor", self.reduction_factor)
        for name in ("scaling", "init_std", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        density = self.density
        if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0 < density <= 1:
            raise ValueError(f"density must be a number in (0, 1], got {density!r}")
        self.lora_targets = list(self.lora_targets)
        if not self.lora_targets or not all(isinstance(t, str) and t for t in self.lora_targets):
            raise ValueError(f"lora_targets must be a non-empty list of names, got {self.lora_targets!r}")
        allowed = {f.name for f in fields(self)} - {"method", "causal_lm"}
        unknown = sorted(set(self.causal_lm) - allowed)
        if unknown:
            raise ValueError(f"unknown causal_lm override(s) {unknown}; valid: BaselineConfig fields other than "
                             f"method and causal_lm")
        if self.causal_lm:
            replace(self, causal_lm={}, **self.causal_lm)  # the overrides must make a valid config too

    def for_model_type(self, model_type: str | None) -> BaselineConfig:
        """The config as applied to a model type: causal-LM families take the ``causal_lm`` overrides."""
        if model_type in CAUSAL_LM_FAMILIES and self.causal_lm:
            return replace(self, causal_lm={}, **self.causal_lm)
        return self

    def bottleneck_for(self, hidden: int) -> int:
        """The bottleneck on a model of this width: ``hidden // reduction_factor`` when one is set."""
        if self.reduction_factor is None:
            return self.bottleneck
        if hidden < self.reduction_factor:
            raise ValueError(f"reduction_factor {self.reduction_factor} leaves no bottleneck on hidden size {hidden}")
        return hidden // self.reduction_factor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BaselineConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BaselineConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def _check(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid choices: {', '.join(choices)}")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value)
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
