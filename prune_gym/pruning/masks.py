"""Per-layer boolean pruning masks, applied in the ``torch.nn.utils.prune`` convention.

A ``MaskSet`` maps prunable layer names to weight-shaped boolean masks (True = kept).
Applying it re-parametrises each layer as ``weight = weight_orig * weight_mask`` with a
forward pre-hook, exactly as ``torch.nn.utils.prune`` does, so a model masked here can be
handled by PyTorch's pruning utilities and vice versa.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from prune_gym.checks import check_choice

STRUCTURES = ("unstructured", "channel")


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    """Whether ``module.<name>`` is re-parametrised as ``<name>_orig * <name>_mask``."""
    return hasattr(module, f"{name}_mask") and hasattr(module, f"{name}_orig")


def trainable_weight(module: nn.Module) -> nn.Parameter:
    """The parameter an optimizer updates: ``weight_orig`` when masked, else ``weight``."""
    return module.weight_orig if is_masked(module) else module.weight


def effective_weight(module: nn.Module) -> torch.Tensor:
    """The weight the forward pass uses (masked entries are zero), without autograd history."""
    if is_masked(module):
        return (module.weight_orig * module.weight_mask).detach()
    return module.weight.detach()


def clone_model(model: nn.Module) -> nn.Module:
    """Deep copy of ``model`` that also works when it is masked.

    A masked module's ``weight`` attribute is ``weight_orig * weight_mask`` with autograd
    history after a forward pass, which ``copy.deepcopy`` refuses; it is detached first
    (the forward pre-hook recomputes it anyway).
    """
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                with torch.no_grad():
                    setattr(module, hook._tensor_name, hook.apply_mask(module))
    return copy.deepcopy(model)


def check_structure(structure: str) -> str:
    """Validate a structure name, returning it."""
    return check_choice(structure, "structure", STRUCTURES)


class MaskSet:
    """Boolean keep-masks for the prunable layers of one model (True = weight kept).

    ``masks`` maps prunable layer names to weight-shaped boolean tensors. With
    ``structure="channel"`` every output channel is kept or removed whole, and
    ``extra_masks`` (parameter path -> boolean mask) also zeroes the layer's bias and the
    affine parameters of the BatchNorm it feeds, so that a removed channel outputs exactly
    zero and physical removal (``export_channel_pruned``) does not change the outputs.
    Build one with ``from_ratios`` / ``global_threshold`` (``prune_gym.pruning.allocate``
    caches score orders when many masks are built from the same scores).
    """

    def __init__(
        self,
        masks: dict[str, torch.Tensor],
        structure: str = "unstructured",
        extra_masks: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.structure = check_structure(structure)
        self.masks = {name: mask.to(torch.bool) for name, mask in masks.items()}
        self.extra_masks = {path: m.to(torch.bool) for path, m in (extra_masks or {}).items()}

    # construction -------------------------------------------------------------------
    @classmethod
    def from_ratios(
        cls,
        model: nn.Module,
        ratios: dict[str, float],
        scores: dict[str, torch.Tensor] | None = None,
        structure: str = "unstructured",
        example_input: torch.Tensor | None = None,
    ) -> MaskSet:
        """Remove exactly ``round(ratio * n)`` lowest-score weights (or channels) per layer.

        Scores default to weight magnitude. Layers missing from ``ratios`` stay dense.
        ``structure="channel"`` needs ``example_input`` to trace channel dependencies.
        """
        from prune_gym.pruning.allocate import MaskBuilder

        builder = MaskBuilder(model, scores, structure=structure, example_input=example_input)
        return builder.from_ratios(ratios)

    @classmethod
    def global_threshold(
        cls,
        model: nn.Module,
        sparsity: float,
        scores: dict[str, torch.Tensor] | None = None,
        structure: str = "unstructured",
        example_input: torch.Tensor | None = None,
    ) -> MaskSet:
        """Remove the ``round(sparsity * N)`` lowest-score weights over all layers at once."""
        from prune_gym.pruning.allocate import MaskBuilder

        builder = MaskBuilder(model, scores, structure=structure, example_input=example_input)
        return builder.global_threshold(sparsity)

    @classmethod
    def semi_structured(
        cls,
        model: nn.Module,
        n: int = 2,
        m: int = 4,
        scores: dict[str, torch.Tensor] | None = None,
    ) -> MaskSet:
        """N:M masks: ``n`` of every ``m`` consecutive inputs of each output row kept, the
        highest-scoring ones (``allocate.semi_structured_masks``); 2:4 by default."""
        from prune_gym.pruning.allocate import semi_structured_masks

        return semi_structured_masks(model, n, m, scores)

    @classmethod
    def from_model(cls, model: nn.Module) -> MaskSet:
        """Read the masks a model carries (ours or ``torch.nn.utils.prune``'s); dense if none."""
        from prune_gym.pruning.layers import prunable_layers

        masks = {}
        for name, module in prunable_layers(model):
            if is_masked(module):
                masks[name] = module.weight_mask.detach().to(torch.bool).cpu()
            else:
                masks[name] = torch.ones_like(module.weight, dtype=torch.bool, device="cpu")
        return cls(masks)

    @classmethod
    def dense(cls, model: nn.Module) -> MaskSet:
        """All-True masks for every prunable layer of ``model``."""
        from prune_gym.pruning.layers import prunable_layers

        return cls(
            {
                name: torch.ones_like(m.weight, dtype=torch.bool, device="cpu")
                for name, m in prunable_layers(model)
            }
        )

    # statistics ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.masks[name]

    def __iter__(self):
        return iter(self.masks)

    def __repr__(self) -> str:
        return (
            f"MaskSet(layers={len(self.masks)}, structure={self.structure!r}, "
            f"sparsity={self.sparsity():.4f})"
        )

    def num_kept(self) -> int:
        """Number of kept prunable weights."""
        return int(sum(int(m.sum()) for m in self.masks.values()))

    def num_weights(self) -> int:
        """Number of prunable weights covered by the masks."""
        return int(sum(m.numel() for m in self.masks.values()))

    def sparsity(self) -> float:
        """Fraction of prunable weights removed."""
        return 1.0 - self.num_kept() / self.num_weights()

    def densities(self) -> dict[str, float]:
        """Fraction of weights kept, per layer."""
        return {name: float(m.float().mean()) for name, m in self.masks.items()}

    def channel_densities(self) -> dict[str, float]:
        """Fraction of output channels with at least one kept weight, per layer."""
        return {
            name: float(m.reshape(m.shape[0], -1).any(dim=1).float().mean())
            for name, m in self.masks.items()
        }

    def digest(self) -> str:
        """A hash of every mask (names, shapes, bits) and the structure: equal iff equal masks."""
        hasher = hashlib.blake2b(self.structure.encode(), digest_size=20)
        for kind, masks in (("weight", self.masks), ("extra", self.extra_masks)):
            for name in sorted(masks):
                mask = masks[name].detach().cpu()
                hasher.update(f"{kind}:{name}:{tuple(mask.shape)};".encode())
                hasher.update(np.packbits(mask.numpy().reshape(-1)).tobytes())
        return hasher.hexdigest()

    def ratios(self) -> dict[str, float]:
        """Per-layer pruning ratio: fraction of weights removed (of channels, for channel)."""
        kept = self.channel_densities() if self.structure == "channel" else self.densities()
        return {name: 1.0 - density for name, density in kept.items()}

    # model surgery ------------------------------------------------------------------
    def _targets(self, model: nn.Module):
        """Yield ``(module, param_name, mask)`` for every parameter this set masks."""
        modules = dict(model.named_modules())
        for name, mask in self.masks.items():
            if name not in modules:
                raise ValueError(
                    f"mask for layer {name!r} does not match the model: it has no such module"
                )
            yield modules[name], "weight", mask
        for path, mask in self.extra_masks.items():
            module_name, _, param = path.rpartition(".")
            yield modules[module_name], param, mask

    def apply(self, model: nn.Module) -> nn.Module:
        """Mask ``model`` in place (``weight_orig * weight_mask``); re-applying updates masks."""
        for module, param, mask in self._targets(model):
            current = getattr(module, f"{param}_orig", None)
            if current is None:
                current = getattr(module, param)
            if mask.shape != current.shape:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not fit {param} of shape "
                    f"{tuple(current.shape)} in {type(module).__name__}"
                )
            if is_masked(module, param):
                buffer = getattr(module, f"{param}_mask")
                buffer.copy_(mask)
                with torch.no_grad():
                    setattr(module, param, getattr(module, f"{param}_orig") * buffer)
            else:
                prune.custom_from_mask(module, param, mask.to(current.device))
        return model

    def remove(self, model: nn.Module) -> nn.Module:
        """Make the masks permanent: masked weights become plain parameters with zeros."""
        for module, param, _ in self._targets(model):
            if is_masked(module, param):
                prune.remove(module, param)
        return model

    @torch.no_grad()
    def enforce(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero pruned entries of the trainable weights and of the optimizer's buffers.

        Call after every optimizer step: momentum and weight decay would otherwise revive
        pruned weights (in ``weight_orig``, or in ``weight`` for an unmasked model).
        """
        for module, param, mask in self._targets(model):
            tensor = getattr(module, f"{param}_orig", None)
            if tensor is None:
                tensor = getattr(module, param)
            keep = mask.to(device=tensor.device, dtype=tensor.dtype)
            tensor.mul_(keep)
            if optimizer is None:
                continue
            for buffer in optimizer.state.get(tensor, {}).values():
                if torch.is_tensor(buffer) and buffer.shape == tensor.shape:
                    buffer.mul_(keep)
