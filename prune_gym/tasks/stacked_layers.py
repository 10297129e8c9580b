"""Layers holding N copies' parameters, run on the copies' activations side by side.

``widened(model, copies, masks)`` copies ``model`` and replaces each ``Linear``, ``Conv1d``
/ ``Conv2d`` / ``Conv3d`` and ``BatchNorm1d`` / ``2d`` / ``3d`` by its stacked form: copy
i's features or channels sit in block i of the feature or channel dimension, so one
batched matmul (``baddbmm``), one grouped convolution or one batch norm serves every
copy, and parameter-free modules (activations, pooling, flattening) act on all blocks at
once. A layer fed the model's (shared) input reads it once for every copy. Whether a
model's own ``forward`` keeps the blocks apart (it does unless it mixes channels, e.g.
a concatenation or a softmax over them) is checked by ``MaskedCopies`` against the
general ``vmap`` path before these layers are used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

CONVOLUTIONS: dict[type[nn.Module], Callable[..., torch.Tensor]] = {
    nn.Conv1d: F.conv1d,
    nn.Conv2d: F.conv2d,
    nn.Conv3d: F.conv3d,
}
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _StackedLayer(nn.Module):
    """Stacked parameters ``(copies, *shape)`` of one layer, each times its mask if any."""

    def __init__(self, layer: nn.Module, copies: int, masks: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.copies = copies
        for name, tensor in layer.named_parameters(recurse=False):
            stacked = tensor.detach().unsqueeze(0).expand(copies, *tensor.shape).clone()
            mask = masks.get(name)
            if mask is not None:
                stacked = stacked * mask
            self.register_parameter(name, nn.Parameter(stacked, tensor.requires_grad))
            self.register_buffer(f"{name}_mask", mask)

    def masked(self, name: str) -> torch.Tensor | None:
        """Parameter ``name`` of every copy, times its mask (None if the layer lacks it)."""
        tensor, mask = getattr(self, name, None), getattr(self, f"{name}_mask", None)
        return tensor if tensor is None or mask is None else tensor * mask

    def shared(self, x: torch.Tensor, width: int, dim: int) -> bool:
        """Whether ``x`` is the same input for every copy (``width`` wide at ``dim``)."""
        return self.copies > 1 and x.shape[dim] == width


class StackedLinear(_StackedLayer):
    """``nn.Linear`` for every copy: features ``(..., copies * in)`` -> ``(..., copies * out)``."""

    def __init__(self, layer: nn.Linear, copies: int, masks: dict[str, torch.Tensor]) -> None:
        super().__init__(layer, copies, masks)
        self.in_features, self.out_features = layer.in_features, layer.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.masked("weight"), self.masked("bias")
        n, width, out = self.copies, self.in_features, self.out_features
        if self.shared(x, width, -1):  # one matmul with every copy's rows
            flat_bias = None if bias is None else bias.reshape(n * out)
            return F.linear(x, weight.reshape(n * out, width), flat_bias)
        lead = x.shape[:-1]
        blocks = x.reshape(-1, n, width).transpose(0, 1)
        if bias is None:
            y = torch.bmm(blocks, weight.transpose(1, 2))
        else:
            y = torch.baddbmm(bias.unsqueeze(1), blocks, weight.transpose(1, 2))
        return y.transpose(0, 1).reshape(*lead, n * out)


class StackedConv(_StackedLayer):
    """A convolution for every copy: one grouped convolution over the copies' channels."""

    def __init__(self, layer: nn.Module, copies: int, masks: dict[str, torch.Tensor]) -> None:
        super().__init__(layer, copies, masks)
        self.convolve = CONVOLUTIONS[type(layer)]
        self.in_channels, self.out_channels = layer.in_channels, layer.out_channels
        self.stride, self.padding = layer.stride, layer.padding
        self.dilation, self.groups = layer.dilation, layer.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.masked("weight"), self.masked("bias")
        n = self.copies
        weight = weight.reshape(n * self.out_channels, *weight.shape[2:])
        bias = None if bias is None else bias.reshape(-1)
        groups = self.groups * n
        if self.shared(x, self.in_channels, 1):
            if self.groups == 1:  # every copy's filters over the one input
                groups = 1
            else:
                x = x.repeat(1, n, *[1] * (x.dim() - 2))
        return self.convolve(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class StackedBatchNorm(_StackedLayer):
    """A batch norm for every copy: its statistics and affine map per copy and channel."""

    def __init__(self, layer: nn.Module, copies: int, masks: dict[str, torch.Tensor]) -> None:
        super().__init__(layer, copies, masks)
        self.num_features, self.eps, self.momentum = layer.num_features, layer.eps, layer.momentum
        self.track_running_stats = layer.track_running_stats
        for name in ("running_mean", "running_var"):
            buffer = getattr(layer, name)
            stacked = None if buffer is None else buffer.unsqueeze(0).repeat(copies, 1)
            self.register_buffer(name, stacked)
        self.register_buffer("num_batches_tracked", copy.deepcopy(layer.num_batches_tracked))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared(x, self.num_features, 1):
            x = x.repeat(1, self.copies, *[1] * (x.dim() - 2))
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative average, as nn.BatchNorm computes it
                factor = 1.0 / float(self.num_batches_tracked)
        use_running = not self.training or self.track_running_stats
        mean, var = (self.running_mean, self.running_var) if use_running else (None, None)
        weight, bias = self.masked("weight"), self.masked("bias")
        return F.batch_norm(
            x,
            None if mean is None else mean.view(-1),
            None if var is None else var.view(-1),
            None if weight is None else weight.reshape(-1),
            None if bias is None else bias.reshape(-1),
            self.training or mean is None,
            factor,
            self.eps,
        )


def stacked_form(module: nn.Module) -> type[_StackedLayer] | None:
    """The stacked class of ``module``; None for a type without one."""
    if type(module) is nn.Linear:
        return StackedLinear
    if type(module) in CONVOLUTIONS and module.padding_mode == "zeros":
        return StackedConv
    if type(module) in BATCH_NORMS:
        return StackedBatchNorm
    return None


def widened(model: nn.Module, copies: int, masks: dict[str, torch.Tensor]) -> nn.Module | None:
    """A copy of ``model`` whose layers hold ``copies`` copies each (``masks`` by parameter
    name, stacked); None if a module with parameters or buffers has no stacked form."""
    wide = copy.deepcopy(model)
    replacements: dict[int, nn.Module] = {}
    for name, module in wide.named_modules():
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        if not own:
            continue
        form = stacked_form(module)
        if form is None:
            return None
        prefix = f"{name}." if name else ""
        own_masks = {
            key.removeprefix(prefix): mask
            for key, mask in masks.items()
            if key.startswith(prefix) and "." not in key.removeprefix(prefix)
        }
        replacements[id(module)] = form(module, copies, own_masks)
    if id(wide) in replacements:  # the model itself is one layer
        return replacements[id(wide)]
    for parent in list(wide.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in replacements:
                setattr(parent, child_name, replacements[id(child)])
    return wide
