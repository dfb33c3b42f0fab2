"""ProPETL (Zeng et al. 2023, "One Network, Many Masks"): one prototype shared by every layer, a binary mask per layer.

Each layer owns real-valued mask scores; its binary mask keeps the ``density`` fraction of entries with the largest
|score| (ties broken by position), and the gradient reaches the scores straight through the thresholding, as in the
authors' GetSubnet. The prototype lives once, at the model root (``baseline_prototypes``); layers reach it through a
plain reference, so ``state_dict`` holds one copy. A saved adapter keeps the binary masks as packed bits.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F

from propulsion.baselines.layers import Bottleneck
from propulsion.method.wrapping import Wrapper

MASK_NAME = re.compile(r"\.(down_scores|up_scores|lora_A_scores|lora_B_scores|mask_scores\.\d+)$")
PROTOTYPES = "baseline_prototypes"  # the root ModuleDict holding the shared prototypes


def ones_count(numel: int, density: float) -> int:
    """How many mask entries are 1: the authors' GetSubnet zeroes int((1 - k) * numel) entries."""
    return numel - int((1 - density) * numel)


class _TopK(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: torch.Tensor, ones: int) -> torch.Tensor:
        mask = torch.zeros_like(scores)
        flat = mask.view(-1)
        order = torch.argsort(scores.reshape(-1), descending=True, stable=True)
        flat[order[:ones]] = 1
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None  # straight through


def binary_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """The layer's 0/1 mask from its scores (differentiable straight through)."""
    return _TopK.apply(scores.abs(), ones_count(scores.numel(), density))


def new_scores(shape, device) -> nn.Parameter:
    scores = torch.empty(shape, dtype=torch.float32, device=device)
    if scores.device.type != "meta":
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5))  # the authors' init of the mask scores
    return nn.Parameter(scores)


class _Ref:
    """A plain reference to the shared prototype (not a submodule: state_dict must hold it once)."""

    def __init__(self, module: nn.Module):
        self.module = module


class MaskedAdapterLayer(Wrapper):
    """A frozen Linear followed by the shared adapter prototype, its weights masked by this layer's masks."""

    def __init__(self, base_layer: nn.Module, prototype: Bottleneck, density: float):
        super().__init__()
        self.base_layer = base_layer
        self._prototype = _Ref(prototype)
        self.density = density
        device = prototype.down.weight.device
        self.down_scores = new_scores(prototype.down.weight.shape, device)
        self.up_scores = new_scores(prototype.up.weight.shape, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        adapter = self._prototype.module(h, binary_mask(self.down_scores, self.density),
                                         binary_mask(self.up_scores, self.density))
        return h + adapter.to(h.dtype)



class LoraPrototype(nn.Module):
    """The shared LoRA pair: A (r x in, kaiming) and B (out x r, zeros), as the authors' LoRA init."""

    def __init__(self, in_features: int, out_features: int, rank: int, device):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, dtype=torch.float32, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, dtype=torch.float32, device=device))
        if self.lora_A.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))


class MaskedLoraLayer(Wrapper):
    """W x + (alpha / r) (B ⊙ M_B)(A ⊙ M_A) x with the shared A, B and this layer's masks."""

    def __init__(self, base_layer: nn.Linear, prototype: LoraPrototype, density: float, scaling: float):
        super().__init__()
        self.base_layer = base_layer
        self._prototype = _Ref(prototype)
        self.density = density
        self.scaling = scaling
        device = prototype.lora_A.device
        self.lora_A_scores = new_scores(prototype.lora_A.shape, device)
        self.lora_B_scores = new_scores(prototype.lora_B.shape, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        proto = self._prototype.module
        a = proto.lora_A * binary_mask(self.lora_A_scores, self.density)
        b = proto.lora_B * binary_mask(self.lora_B_scores, self.density)
        return h + (F.linear(F.linear(x.float(), a), b) * self.scaling).to(h.dtype)



class MaskedPrefixEncoder(nn.Module):
    """Drop-in for PEFT's PrefixEncoder: one reparameterised prefix (embedding -> Linear -> tanh -> Linear) of
    width 2 x kv-width, shared by every layer and masked per layer; output (batch, tokens, layers x 2 x kv-width)
    in PEFT's layer-major order (the authors' SharePrefixTuning.extend_prefix)."""

    def __init__(self, tokens: int, token_dim: int, hidden: int, layers: int, per_layer: int, density: float,
                 device):
        super().__init__()
        kwargs = {"device": device, "dtype": torch.float32}
        self.embedding = nn.Embedding(tokens, token_dim, **kwargs)
        self.transform = nn.Sequential(nn.Linear(token_dim, hidden, **kwargs), nn.Tanh(),
                                       nn.Linear(hidden, per_layer, **kwargs))
        self.layers = layers
        self.density = density
        # One mask per layer, each at the density on its own (the authors' PrefixSubnet thresholds layer by layer).
        self.mask_scores = nn.ParameterList([new_scores((tokens, per_layer), device) for _ in range(layers)])

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        base = self.transform(self.embedding(prefix))  # (batch, tokens, per_layer)
        return torch.cat([base * binary_mask(scores, self.density) for scores in self.mask_scores], dim=-1)


def mask_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every ProPETL mask-score parameter by name."""
    return {name: p for name, p in model.named_parameters() if MASK_NAME.search(name)}


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 tensor as uint8, eight entries a byte (most significant bit first), flattened and zero-padded."""
    flat = mask.reshape(-1).to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 8)).view(-1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    return (flat * weights).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, shape) -> torch.Tensor:
    numel = math.prod(shape)
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != (numel + 7) // 8:
        raise ValueError(f"packed mask must be {(numel + 7) // 8} uint8 bytes for shape {tuple(shape)}, "
                         f"got {packed.numel()} {packed.dtype}")
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
    bits = (packed.view(-1, 1) >> shifts) & 1
    return bits.reshape(-1)[:numel].reshape(shape).float()


def scores_from_mask(name: str, mask: torch.Tensor, density: float) -> torch.Tensor:
    """Scores that reproduce ``mask`` exactly (the mask itself: its ones are the top entries); a mask that is not
    0/1, or whose count of ones is not the one ``density`` gives, is one clear error."""
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"mask {name!r} is not binary: it holds values other than 0 and 1")
    expected = ones_count(mask.numel(), density)
    ones = int(mask.sum())
    if ones != expected:
        raise ValueError(f"mask {name!r} keeps {ones} of {mask.numel()} entries but density {density} keeps "
                         f"{expected}: saved with another density?")
    return mask.float()
