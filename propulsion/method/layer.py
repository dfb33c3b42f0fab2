"""A Propulsion-wrapped layer: the frozen base layer, its Propulsion vectors, and merge/unmerge."""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from propulsion.method import scaling
from propulsion.method.config import PropulsionConfig
from propulsion.method.scaling import apply_scale, compute_scale, scaled_embedding, scaled_linear


def output_features(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.Embedding):
        return layer.embedding_dim
    if isinstance(layer, Conv1D):  # GPT-2 style: weight is (in, out)
        return layer.nf
    raise TypeError(f"Propulsion wraps nn.Linear, nn.Embedding and Conv1D, not {type(layer).__name__}")


def initial_vectors(config: PropulsionConfig, features: int, device) -> torch.Tensor:
    shape = (config.num_vectors, features)
    if config.init == "ones":
        return torch.ones(shape, dtype=torch.float32, device=device)
    if config.init == "zeros":
        return torch.zeros(shape, dtype=torch.float32, device=device)
    vectors = torch.empty(shape, dtype=torch.float32, device=device)
    if config.init == "normal":
        return vectors.normal_(1.0, config.init_scale)
    return vectors.uniform_(1.0 - config.init_scale, 1.0 + config.init_scale)


class PropulsionLayer(nn.Module):
    """Output V of ``base_layer`` becomes V ⊙ pool(z_i ** degree); z is float32, one entry per output feature."""

    def __init__(self, base_layer: nn.Module, config: PropulsionConfig):
        super().__init__()
        self.base_layer = base_layer
        self.degree = config.degree
        self.pooling = config.pooling
        weight = base_layer.weight
        self.propulsion = nn.Parameter(initial_vectors(config, output_features(base_layer), weight.device))
        self.merged = False
        self.lean = True  # the memory-lean backward (scaling.py); off where the model edits the output in place
        self.scale_range: tuple[float, float] | None = None  # |s| range for one model forward (check_scales)

    def scale(self) -> torch.Tensor:
        return compute_scale(self.propulsion, self.degree, self.pooling)

    @torch.no_grad()
    def range_source(self) -> tuple[torch.Tensor, int]:
        """(b, power) with s = b ** power elementwise, for ``scaling.scale_ranges``: z itself and the degree
        when there is one vector (no s is built), else the pooled s and 1."""
        if self.propulsion.shape[0] == 1:
            return self.propulsion.view(-1), self.degree
        return self.scale(), 1

    def own_scale_range(self) -> tuple[float, float]:
        """|s|'s range read by this layer alone (one host sync), by the same computation as check_scales."""
        base, power = self.range_source()
        return scaling.scale_ranges([base], [power])[0]

    def _scale_range(self):
        # Known for this forward (check_scales), else read only if a lean node asks for it.
        return self.scale_range if self.scale_range is not None else self.own_scale_range

    def forward(self, *args, **kwargs):
        base = self.base_layer
        if not self.merged and len(args) == 1 and not kwargs and not (base._forward_hooks or base._forward_pre_hooks):
            # A plain Linear / lookup (not a subclass, not a forward replaced by hooks: BART's embeddings add
            # offsets and scales) is computed with its scale in one lean step (scaling.py), same values.
            forward = getattr(base.forward, "__func__", None)
            if forward is nn.Linear.forward:
                return scaled_linear(args[0], base.weight, base.bias, self.scale(), lean=self.lean,
                                     scale_range=self._scale_range())
            if forward is nn.Embedding.forward and base.max_norm is None and not base.weight.requires_grad:
                return scaled_embedding(args[0], base.weight, self.scale(), lean=self.lean)
        output = base(*args, **kwargs)
        if self.merged:
            return output
        return apply_scale(output, self.scale(), lean=self.lean, scale_range=self._scale_range())

    def __getattr__(self, name: str):
        # weight, bias, in_features, padding_idx, ...: code that inspects the layer sees the base layer's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16) casts everything; the Propulsion vectors stay float32 (z**k needs the range).
        # Casting back after the fact would keep only bf16's 8 bits of z (a trained 1.0012 becomes 1.0, and
        # z**15 moves by 2%), so the float32 values from before are restored, on the new device.
        before = self.propulsion.data
        super()._apply(fn, recurse)
        if self.propulsion.dtype != torch.float32:
            self.propulsion.data = before.to(self.propulsion.device)
            grad = self.propulsion.grad
            if grad is not None:
                self.propulsion.grad = grad.float()
        return self

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the scale into the base weights: (Wx + b) ⊙ s = (diag(s) W) x + b ⊙ s, exactly.
        New tensors are made, not edited in place, so a weight tied to another module is left intact."""
        if self.merged:
            return
        self._rescale(self.scale())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        scale = self.scale()
        if bool((scale == 0).any()):
            raise ValueError("cannot unmerge: a Propulsion scale is exactly 0, so the base weights are lost")
        self._rescale(1.0 / scale)
        self.merged = False

    def _rescale(self, scale: torch.Tensor) -> None:
        layer = self.base_layer
        weight = layer.weight
        s = scale.to(device=weight.device)
        if isinstance(layer, nn.Linear):
            new_weight = weight.float() * s[:, None]
        else:  # Embedding rows and Conv1D columns are both indexed by output feature on the last dim
            new_weight = weight.float() * s[None, :]
        layer.weight = nn.Parameter(new_weight.to(weight.dtype), requires_grad=weight.requires_grad)
        bias = getattr(layer, "bias", None)
        if bias is not None:
            layer.bias = nn.Parameter((bias.float() * s).to(bias.dtype), requires_grad=bias.requires_grad)

    def extra_repr(self) -> str:
        return f"degree={self.degree}, num_vectors={self.propulsion.shape[0]}, pooling={self.pooling}"


def check_scales(root: nn.Module, args) -> None:
    """Forward pre-hook on a model holding Propulsion layers: every lean layer's |s| range in one host sync per
    device, so that no layer syncs on its own during the forward (scaling.py). Gradient-free forwards need no
    ranges; layers whose z is sharded (FSDP's DTensor) or inside torch.func transforms keep their own check."""
    if not torch.is_grad_enabled() or scaling.IMPLEMENTATION != "lean" or scaling._transformed():
        return
    layers = [m for m in root.modules() if isinstance(m, PropulsionLayer) and m.lean and not m.merged
              and m.propulsion.requires_grad and type(m.propulsion.data) is torch.Tensor]
    if not layers:
        return
    bases, powers = zip(*(layer.range_source() for layer in layers), strict=True)
    ranges = scaling.scale_ranges(list(bases), list(powers))
    for layer, scale_range in zip(layers, ranges, strict=True):
        layer.scale_range = scale_range


def forget_scales(root: nn.Module, args, output) -> None:
    """Forward hook (run even when the forward raises): the ranges held only for that forward. A layer run
    later (gradient checkpointing's recomputation, a direct call) checks its own z again."""
    for module in root.modules():
        if isinstance(module, PropulsionLayer):
            module.scale_range = None


def install_scale_checks(root: nn.Module) -> None:
    """Once per model; module-level functions, so a deep copy of the model checks its own layers."""
    if check_scales not in root._forward_pre_hooks.values():
        root.register_forward_pre_hook(check_scales)
        root.register_forward_hook(forget_scales, always_call=True)


def remove_scale_checks(root: nn.Module) -> None:
    for hooks in (root._forward_pre_hooks, root._forward_hooks):
        for key in [key for key, hook in hooks.items() if hook in (check_scales, forget_scales)]:
            del hooks[key]
            root._forward_hooks_always_called.pop(key, None)  # what always_call=True registered
