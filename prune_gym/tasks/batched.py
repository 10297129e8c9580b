"""Many masked copies of one model trained and evaluated together, as one module.

The rewards of a batch of masks are the same short fine-tune of each masked copy, on the
same minibatches (one seed). ``MaskedCopies`` stacks the copies' weights along a leading
dimension and runs them in one forward pass: ``torch.func.functional_call`` under
``vmap``, so any architecture the task builds works, BatchNorm statistics included.
The training loop, the task's optimizer (element-wise, so exact per copy on the stacked
tensors) and the evaluation are the ones a single model gets (``run_steps``,
``evaluate_copies``), so a copy's numbers equal those of ``Task.finetune`` on that mask
up to floating-point round-off. Chosen by measurement (``benchmarks/env_speed.py``):
one graph for all copies removes the per-mask optimizer, hooks and restore.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from prune_gym.pruning import MaskSet


class MaskedCopies(nn.Module):
    """``len(masks)`` copies of ``model``, copy i under ``masks[i]``, stacked into one module.

    ``forward(x)`` gives every copy's outputs on the same inputs, shaped ``(batch,
    classes, copies)``; ``loss`` sums the copies' mean cross-entropies, so each copy's
    gradient is the one it would get alone. A copy's masked entries start at zero and
    stay there: the mask multiplies the weight in the forward pass, so their gradient is
    zero, and (from zero) neither momentum nor weight decay moves them. ``model`` is only
    read: the copies start from its current parameters and buffers.
    """

    def __init__(self, model: nn.Module, masks: Sequence[MaskSet]) -> None:
        super().__init__()
        if not masks:
            raise ValueError("MaskedCopies needs at least one MaskSet, got none")
        self.copies = len(masks)
        # the architecture the functional calls run; not a submodule, so not a parameter
        self._template = (model,)
        named = dict(model.named_parameters())
        self._names = list(named)
        self._masks = _stacked_masks(masks, named)
        self.stacked = nn.ParameterList(
            nn.Parameter(
                _stacked(tensor.detach(), self.copies, self._masks.get(name)),
                tensor.requires_grad,
            )
            for name, tensor in named.items()
        )
        buffers = dict(model.named_buffers())
        self._buffer_names = list(buffers)
        self._buffers_stacked = [_stacked(b.detach(), self.copies) for b in buffers.values()]

    @property
    def template(self) -> nn.Module:
        """The module whose architecture every copy runs."""
        return self._template[0]

    def train(self, mode: bool = True) -> MaskedCopies:
        """Set train/eval mode (BatchNorm, dropout) for every copy."""
        self.template.train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every copy's outputs on ``x``: ``(batch, classes, copies)``."""
        outputs = vmap(self._copy_outputs, in_dims=(0, 0, 0, None), randomness="different")(
            list(self.stacked), self._buffers_stacked, self._masks, x
        )
        return outputs.movedim(0, -1)

    def _copy_outputs(
        self,
        params: list[torch.Tensor],
        buffers: list[torch.Tensor],
        masks: dict[str, torch.Tensor],
        x: torch.Tensor,
    ) -> torch.Tensor:
        """One copy's outputs: its parameters times its masks, and its buffers."""
        weights = {
            name: tensor * masks[name] if name in masks else tensor
            for name, tensor in zip(self._names, params, strict=True)
        }
        buffer_map = dict(zip(self._buffer_names, buffers, strict=True))
        return functional_call(self.template, (weights, buffer_map), (x,))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum over copies of each copy's mean cross-entropy on ``targets``."""
        expanded = targets.unsqueeze(1).expand(-1, self.copies)
        return F.cross_entropy(outputs, expanded, reduction="sum") / len(targets)


def _stacked(tensor: torch.Tensor, copies: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``copies`` copies of ``tensor`` along a new first dimension (times ``mask``)."""
    stacked = tensor.unsqueeze(0).expand(copies, *tensor.shape).clone()
    return stacked if mask is None else stacked * mask


def _stacked_masks(
    masks: Sequence[MaskSet], params: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Parameter name -> the copies' masks stacked (1 where a copy's set leaves it whole)."""
    paths: set[str] = set()
    for mask_set in masks:
        paths |= {f"{name}.weight" for name in mask_set.masks} | set(mask_set.extra_masks)
    unknown = sorted(paths - set(params))
    if unknown:
        raise ValueError(f"masks name parameters {unknown} that the model does not have")
    stacked = {}
    for path in sorted(paths):
        tensor = params[path]
        per_copy = []
        for mask_set in masks:
            layer, _, param = path.rpartition(".")
            mask = mask_set.masks.get(layer) if param == "weight" else None
            mask = mask_set.extra_masks.get(path, mask)
            per_copy.append(
                torch.ones_like(tensor) if mask is None else mask.to(tensor.device, tensor.dtype)
            )
        stacked[path] = torch.stack(per_copy)
    return stacked
