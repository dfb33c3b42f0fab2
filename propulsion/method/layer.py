"""A Propulsion-wrapped layer: the frozen base layer, its Propulsion vectors, and merge/unmerge."""

from __future__ import annotations

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from propulsion.method import scaling
from propulsion.method.config import PropulsionConfig
from propulsion.method.scaling import apply_scale, compute_scale, scaled_embedding, scaled_linear
from propulsion.method.wrapping import Wrapper

DEFAULT_ADAPTER = "default"  # PEFT's name for the first adapter
BASE = "__base__"  # in a mixed batch's adapter_names: this example runs the base model (PEFT's convention)


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


class PropulsionLayer(Wrapper):
    """Output V of ``base_layer`` becomes V ⊙ pool(z_i ** degree); z is float32, one entry per output feature.

    Named adapters (PEFT's LoRA layout): the first adapter's vectors are ``propulsion`` (so a one-adapter model
    has the parameter names it always had), further ones ``propulsion_extra[name]``; each keeps its own degree
    and pooling. ``active_adapter`` None runs the base layer; ``batch_adapters`` (set by PropulsionModel for
    one forward) gives each example of the batch its own adapter."""

    def __init__(self, base_layer: nn.Module, config: PropulsionConfig, adapter_name: str = DEFAULT_ADAPTER):
        super().__init__()
        self.base_layer = base_layer
        weight = base_layer.weight
        self.propulsion = nn.Parameter(initial_vectors(config, output_features(base_layer), weight.device))
        self.propulsion_extra = nn.ParameterDict()
        self.settings: dict[str, tuple[int, str]] = {adapter_name: (config.degree, config.pooling)}
        self.active_adapter: str | None = adapter_name
        self.batch_adapters: list[str] | None = None
        self.merged = False
        self.merged_adapter: str | None = None
        self.lean = True  # the memory-lean backward (scaling.py); off where the model edits the output in place
        self.scale_range: tuple[float, float] | None = None  # |s| range for one model forward (check_scales)

    @property
    def first_adapter(self) -> str:
        return next(iter(self.settings))

    @property
    def degree(self) -> int:
        return self.settings[self.active_adapter or self.first_adapter][0]

    @property
    def pooling(self) -> str:
        return self.settings[self.active_adapter or self.first_adapter][1]

    def vectors(self, name: str | None = None) -> nn.Parameter:
        """The named adapter's z (the active one's by default)."""
        name = name or self.active_adapter or self.first_adapter
        return self.propulsion if name == self.first_adapter else self.propulsion_extra[name]

    def all_vectors(self) -> list[nn.Parameter]:
        return [self.propulsion, *self.propulsion_extra.values()]

    def add_adapter(self, name: str, config: PropulsionConfig) -> None:
        """New vectors for ``name``, frozen until PropulsionModel.set_adapter makes them the trained ones."""
        vectors = initial_vectors(config, output_features(self.base_layer), self.propulsion.device)
        self.propulsion_extra[name] = nn.Parameter(vectors, requires_grad=False)
        self.settings[name] = (config.degree, config.pooling)

    def delete_adapter(self, name: str) -> None:
        del self.propulsion_extra[name]
        del self.settings[name]

    def scale(self, name: str | None = None) -> torch.Tensor:
        name = name or self.active_adapter or self.first_adapter
        degree, pooling = self.settings[name]
        return compute_scale(self.vectors(name), degree, pooling)

    @torch.no_grad()
    def range_source(self) -> tuple[torch.Tensor, int]:
        """(b, power) with s = b ** power elementwise, for ``scaling.scale_ranges``: z itself and the degree
        when there is one vector (no s is built), else the pooled s and 1."""
        vectors = self.vectors()
        if vectors.shape[0] == 1:
            return vectors.view(-1), self.degree
        return self.scale(), 1

    def own_scale_range(self) -> tuple[float, float]:
        """|s|'s range read by this layer alone (one host sync), by the same computation as check_scales."""
        base, power = self.range_source()
        return scaling.scale_ranges([base], [power])[0]

    def _scale_range(self):
        # Known for this forward (check_scales), else read only if a lean node asks for it.
        return self.scale_range if self.scale_range is not None else self.own_scale_range

    def mixed_scale(self, output: torch.Tensor) -> torch.Tensor:
        """V ⊙ s_b with example b's own adapter: one (rows, features) scale, broadcast over the middle dims.
        generate() repeats each example (beams, num_return_sequences) in place, so rows may be a multiple of the
        names, each name repeated alike (repeat_interleave, as transformers expands a batch)."""
        names = self.batch_adapters
        rows = output.shape[0]
        if rows % len(names):
            raise ValueError(f"adapter_names has {len(names)} entries but a layer saw a batch of {rows}")
        unique = list(dict.fromkeys(names))
        scales = torch.stack([torch.ones_like(self.propulsion[0], dtype=torch.float32) if name == BASE
                              else self.scale(name) for name in unique])
        index = torch.tensor([unique.index(name) for name in names], device=scales.device)
        per_row = scales.index_select(0, index).repeat_interleave(rows // len(names), 0)
        shape = (rows,) + (1,) * (output.dim() - 2) + (per_row.shape[-1],)
        return output * per_row.to(output.dtype).view(shape)

    def forward(self, *args, **kwargs):
        base = self.base_layer
        if not self.merged and self.batch_adapters is not None:
            return self.mixed_scale(base(*args, **kwargs))
        if not self.merged and self.active_adapter is None:  # disable_adapter()
            return base(*args, **kwargs)
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
        if not isinstance(output, torch.Tensor):  # a Linear subclass that post-processes (Llama 4's router)
            raise TypeError(f"a Propulsion layer wraps modules that return one tensor; this {type(base).__name__} "
                            f"returns {type(output).__name__}: leave it out of targets (presets.NOT_WRAPPED)")
        return apply_scale(output, self.scale(), lean=self.lean, scale_range=self._scale_range())

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16) casts everything; the Propulsion vectors stay float32 (z**k needs the range).
        # Casting back after the fact would keep only bf16's 8 bits of z (a trained 1.0012 becomes 1.0, and
        # z**15 moves by 2%), so the float32 values from before are restored, on the new device.
        before = [vectors.data for vectors in self.all_vectors()]
        super()._apply(fn, recurse)
        for vectors, data in zip(self.all_vectors(), before, strict=True):
            if vectors.dtype != torch.float32:
                vectors.data = data.to(vectors.device)
                if vectors.grad is not None:
                    vectors.grad = vectors.grad.float()
        return self

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the scale into the base weights: (Wx + b) ⊙ s = (diag(s) W) x + b ⊙ s, exactly.
        New tensors are made, not edited in place, so a weight tied to another module is left intact."""
        if self.merged:
            return
        if self.active_adapter is None:
            raise ValueError("cannot merge inside disable_adapter(): no adapter is active")
        self._rescale(self.scale())
        self.merged = True
        self.merged_adapter = self.active_adapter

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        scale = self.scale(self.merged_adapter)
        if bool((scale == 0).any()):
            raise ValueError("cannot unmerge: a Propulsion scale is exactly 0, so the base weights are lost")
        self._rescale(1.0 / scale)
        self.merged = False
        self.merged_adapter = None

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
        adapters = f", adapters={list(self.settings)}" if len(self.settings) > 1 else ""
        return f"degree={self.degree}, num_vectors={self.vectors().shape[0]}, pooling={self.pooling}{adapters}"


def check_scales(root: nn.Module, args) -> None:
    """Forward pre-hook on a model holding Propulsion layers: every lean layer's |s| range in one host sync per
    device, so that no layer syncs on its own during the forward (scaling.py). Gradient-free forwards need no
    ranges; layers whose z is sharded (FSDP's DTensor) or inside torch.func transforms keep their own check."""
    if not torch.is_grad_enabled() or scaling.IMPLEMENTATION != "lean" or scaling._transformed():
        return
    layers = [m for m in root.modules() if isinstance(m, PropulsionLayer) and m.lean and not m.merged
              and m.active_adapter is not None and m.batch_adapters is None
              and m.vectors().requires_grad and type(m.vectors().data) is torch.Tensor]
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
