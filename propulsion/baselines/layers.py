"""Bottleneck adapters and the wrappers that put them after, or beside, a frozen Linear.

Adapters hold float32 weights and compute in float32 (a bf16 LLM's adapter output is cast back to the layer's
dtype, as LLM-Adapters does); the wrapped layer is left untouched, so removing the wrapper gives the base model.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from propulsion.baselines.config import BaselineConfig
from propulsion.method.wrapping import Wrapper

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}


class Bottleneck(nn.Module):
    """up(f(down(LN?(x)))) * scaling: the adapter of Houlsby et al. / He et al. / LLM-Adapters, without residual."""

    def __init__(self, in_features: int, out_features: int, config: BaselineConfig, device=None,
                 layer_norm: bool = False):
        super().__init__()
        bias = config.adapter_bias
        kwargs = {"device": device, "dtype": torch.float32}
        self.layer_norm = nn.LayerNorm(in_features, **kwargs) if layer_norm else None
        bottleneck = config.bottleneck_for(in_features)
        self.down = nn.Linear(in_features, bottleneck, bias=bias, **kwargs)
        self.up = nn.Linear(bottleneck, out_features, bias=bias, **kwargs)
        self.nonlinearity = config.nonlinearity
        self.scaling = float(config.scaling)
        if device is None or torch.device(device).type != "meta":
            initialise(self, config)

    def forward(self, x: torch.Tensor, down_mask=None, up_mask=None) -> torch.Tensor:
        h = x.float()
        if self.layer_norm is not None:
            h = self.layer_norm(h)
        down = self.down.weight if down_mask is None else self.down.weight * down_mask
        h = ACTIVATIONS[self.nonlinearity](F.linear(h, down, self.down.bias))
        up = self.up.weight if up_mask is None else self.up.weight * up_mask
        return F.linear(h, up, self.up.bias) * self.scaling

    def extra_repr(self) -> str:
        return f"nonlinearity={self.nonlinearity}, scaling={self.scaling}"


@torch.no_grad()
def initialise(adapter: Bottleneck, config: BaselineConfig) -> None:
    if config.init == "lora":  # He et al. `lora` init: the up-projection starts at zero, so the adapter adds 0
        nn.init.kaiming_uniform_(adapter.down.weight, a=math.sqrt(5))
        nn.init.zeros_(adapter.up.weight)
    elif config.init == "houlsby":  # adapter-bert: truncated normal at 2 std, so the output is near the input
        for linear in (adapter.down, adapter.up):
            nn.init.trunc_normal_(linear.weight, std=config.init_std, a=-2 * config.init_std, b=2 * config.init_std)
    else:  # bert: N(0, init_std), He et al.'s and LLM-Adapters' default
        for linear in (adapter.down, adapter.up):
            nn.init.normal_(linear.weight, std=config.init_std)
    for linear in (adapter.down, adapter.up):
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


class Slot:
    """Carries a tensor from one module's forward to another's; plain object, so no module is registered twice."""

    value: torch.Tensor | None = None


class AdapterLayer(Wrapper):
    """A frozen Linear with an adapter after it (``sequential``: h + adapter(h)) or beside it (``parallel``:
    h + adapter(x), x being this layer's input or, with a ``source`` slot, another module's input)."""

    def __init__(self, base_layer: nn.Module, adapter: Bottleneck, mode: str, source: Slot | None = None):
        super().__init__()
        if mode not in ("sequential", "parallel"):
            raise ValueError(f"unknown adapter mode {mode!r}; valid choices: sequential, parallel")
        self.base_layer = base_layer
        self.adapter = adapter
        self.mode = mode
        self._source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        if self.mode == "sequential":
            return h + self.adapter(h).to(h.dtype)
        if self._source is None:
            inputs = x
        else:
            inputs, self._source.value = self._source.value, None  # read once: no activation kept past its use
            if inputs is None:
                raise RuntimeError("parallel adapter: the FFN input was not recorded before its output layer ran")
        return h + self.adapter(inputs).to(h.dtype)


    def extra_repr(self) -> str:
        return f"mode={self.mode}, from_ffn_input={self._source is not None}"


class InputTap(Wrapper):
    """A frozen Linear that records its input for the parallel adapter at the end of its block."""

    def __init__(self, base_layer: nn.Module, slot: Slot):
        super().__init__()
        self.base_layer = base_layer
        self._slot = slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._slot.value = x
        return self.base_layer(x)

