"""Many masked copies of one model trained and evaluated together, as one module.

The rewards of a batch of masks are the same short fine-tune of each masked copy, on the
same minibatches (one seed). ``MaskedCopies`` stacks the copies' parameters along a
leading dimension and runs them in one forward pass, in one of two ways:

- stacked layers (``stacked_layers.widened``): each Linear, convolution and batch norm
  serves every copy at once (a batched matmul, a grouped convolution), with no per-call
  overhead; used when the model is built from those layers and its ``forward`` keeps
  the copies apart, which is checked once per model against the general way;
- ``torch.func.functional_call`` under ``vmap``: any architecture, at the cost of
  re-binding the parameters and of vmap's batching rules on every call.

The training loop, the task's optimizer (element-wise, so exact per copy on the stacked
tensors) and the evaluation are the ones a single model gets (``run_steps``,
``evaluate_copies``), so a copy's numbers equal those of ``Task.finetune`` on its mask up
to floating-point round-off. Measured in ``benchmarks/env_speed.py --vector``.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from prune_gym.pruning import MaskSet
from prune_gym.tasks.stacked_layers import widened

#: agreement of the two ways on a probe batch before stacked layers are trusted.
CHECK_RTOL, CHECK_ATOL = 1e-4, 1e-5
#: per model: whether its stacked layers compute what vmap computes (checked once).
_STACKS_EXACTLY: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


class MaskedCopies(nn.Module):
    """``len(masks)`` copies of ``model``, copy i under ``masks[i]``, stacked into one module.

    ``forward(x)`` gives every copy's outputs on the same inputs, shaped ``(batch,
    classes, copies)``; ``loss`` sums the copies' mean cross-entropies, so each copy's
    gradient is the one it would get alone. A copy's masked entries start at zero and
    stay there: the mask multiplies the weight in the forward pass, so their gradient is
    zero, and (from zero) neither momentum nor weight decay moves them. ``model`` is only
    read: the copies start from its current parameters and buffers. ``probe``, a batch of
    the model's inputs, lets the stacked layers be checked and used (see the module
    docstring); without it the copies run under ``vmap``.
    """

    def __init__(
        self, model: nn.Module, masks: Sequence[MaskSet], probe: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if not masks:
            raise ValueError("MaskedCopies needs at least one MaskSet, got none")
        self.copies = len(masks)
        stacked_masks = _stacked_masks(masks, dict(model.named_parameters()))
        wide = None
        if probe is not None and _stacks_exactly(model, probe):
            wide = widened(model, self.copies, stacked_masks)
        #: ``"layers"`` (stacked layers) or ``"vmap"``: how the copies run.
        self.mechanism = "vmap" if wide is None else "layers"
        self.net = _VmappedCopies(model, self.copies, stacked_masks) if wide is None else wide

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every copy's outputs on ``x``: ``(batch, classes, copies)``."""
        outputs = self.net(x)
        if self.mechanism == "vmap":
            return outputs.movedim(0, -1)
        return outputs.reshape(outputs.shape[0], self.copies, -1).transpose(1, 2)

    def copy_parameters(self, index: int) -> dict[str, torch.Tensor]:
        """Copy ``index``'s parameters by the model's names (masked entries are zero)."""
        named = (
            self.net.named_stacked() if self.mechanism == "vmap" else self.net.named_parameters()
        )
        return {name: tensor[index] for name, tensor in named}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum over copies of each copy's mean cross-entropy on ``targets`` (labels, or
        sequences of them)."""
        expanded = targets.unsqueeze(-1).expand(*targets.shape, self.copies)
        return F.cross_entropy(outputs, expanded, reduction="sum") / targets.numel()


class _VmappedCopies(nn.Module):
    """The copies as stacked parameters, run through ``model`` under ``vmap``: (copies,
    batch, classes)."""

    def __init__(self, model: nn.Module, copies: int, masks: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._template = (model,)  # the architecture the calls run; not a submodule
        self._masks = masks
        self._names = [name for name, _ in model.named_parameters()]
        self.stacked = nn.ParameterList(
            nn.Parameter(_stacked(tensor.detach(), copies, masks.get(name)), tensor.requires_grad)
            for name, tensor in model.named_parameters()
        )
        buffers = dict(model.named_buffers())
        self._buffer_names = list(buffers)
        self._buffers = [_stacked(buffer.detach(), copies) for buffer in buffers.values()]

    def named_stacked(self) -> list[tuple[str, nn.Parameter]]:
        """The stacked parameters under the model's own names."""
        return list(zip(self._names, self.stacked, strict=True))

    def train(self, mode: bool = True) -> _VmappedCopies:
        self._template[0].train(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return vmap(self._one_copy, in_dims=(0, 0, 0, None), randomness="different")(
            list(self.stacked), self._buffers, self._masks, x
        )

    def _one_copy(
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
        return functional_call(self._template[0], (weights, buffer_map), (x,))


def _stacks_exactly(model: nn.Module, probe: torch.Tensor) -> bool:
    """Whether ``model``'s stacked layers compute what vmap computes (checked once).

    Two copies, the second's parameters perturbed, run one training and one evaluation
    forward both ways on ``probe``; a model whose layers have no stacked form, or whose
    ``forward`` fails or mixes the copies' blocks, is run under vmap.
    """
    if model in _STACKS_EXACTLY:
        return _STACKS_EXACTLY[model]
    wide = widened(model, 2, {})
    agrees = wide is not None
    if agrees:
        general = _VmappedCopies(model, 2, {})
        generator = torch.Generator().manual_seed(0)
        general_parameters = dict(general.named_stacked())
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for name, tensor in wide.named_parameters():  # copy 1 unlike copy 0
                noise = torch.randn(tensor.shape[1:], generator=generator).to(tensor)
                tensor[1].mul_(1 + 0.1 * noise)
                general_parameters[name][1].mul_(1 + 0.1 * noise)
            try:
                for training in (True, False):  # eval also reads the updated statistics
                    wide.train(training)
                    general.train(training)
                    ours = wide(probe).reshape(len(probe), 2, -1)
                    expected = general(probe).transpose(0, 1).reshape(len(probe), 2, -1)
                    agrees &= torch.allclose(ours, expected, CHECK_RTOL, CHECK_ATOL)
            except RuntimeError:  # e.g. a forward that reshapes channels cannot run stacked
                agrees = False
    _STACKS_EXACTLY[model] = agrees
    return agrees


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
