"""Sparse topologies for dynamic sparse training: random initial masks, prune-and-regrow.

Shared by RigL (fixed density) and GraNet (gradual pruning plus regrowth). Both keep the
number of kept weights exact: initial masks hit the global count to the weight, and every
prune-and-regrow swaps as many weights in as it takes out, per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from prune_gym.baselines.methods.schedule import stream_seed
from prune_gym.checks import check_choice
from prune_gym.pruning.allocate import erk_densities, uniform_densities
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet, effective_weight
from prune_gym.pruning.scores import compute_scores

#: Per-layer density allocations of the initial random masks.
DISTRIBUTIONS: dict[str, Callable[[nn.Module, float], dict[str, float]]] = {
    "erk": erk_densities,
    "uniform": uniform_densities,
}


def exact_counts(densities: dict[str, float], sizes: dict[str, int], total: int) -> dict[str, int]:
    """Per-layer kept counts close to ``density * size`` that sum to exactly ``total``.

    Largest-remainder rounding: floor every layer, then add the missing weights one per layer
    to those with the largest fractional parts (earlier layers first on ties), never above
    their size; a float round-off excess is taken back from the smallest fractional parts.
    """
    if not 0 <= total <= sum(sizes.values()):
        raise ValueError(f"cannot keep {total} weights in layers of sizes {sizes}")
    wanted = {name: densities[name] * sizes[name] for name in sizes}
    counts = {name: min(math.floor(value), sizes[name]) for name, value in wanted.items()}
    order = sorted(sizes, key=lambda name: counts[name] - wanted[name])
    missing = total - sum(counts.values())
    change = 1 if missing > 0 else -1
    while missing:
        for name in order if change > 0 else reversed(order):
            if missing and 0 <= counts[name] + change <= sizes[name]:
                counts[name] += change
                missing -= change
    return counts


def random_masks(model: nn.Module, sparsity: float, distribution: str, seed: int) -> MaskSet:
    """Seeded random masks removing exactly ``round(sparsity * N)`` weights.

    Per-layer densities come from ``distribution`` (``"erk"`` as in RigL and GraNet, or
    ``"uniform"``); counts are rounded so that the global count is exact.
    """
    check_choice(distribution, "distribution", sorted(DISTRIBUTIONS))
    sizes = {name: module.weight.numel() for name, module in prunable_layers(model)}
    total = sum(sizes.values())
    kept = exact_counts(
        DISTRIBUTIONS[distribution](model, sparsity), sizes, total - round(sparsity * total)
    )
    ratios = {name: 1.0 - kept[name] / sizes[name] for name in sizes}
    scores = compute_scores(model, "random", None, seed=stream_seed(seed, "masks"))
    return MaskSet.from_ratios(model, ratios, scores=scores)


def prune_and_regrow(
    model: nn.Module,
    masks: MaskSet,
    gradients: dict[str, torch.Tensor],
    fraction: float,
    rounding: Callable[[float], int] = math.ceil,
) -> MaskSet:
    """Per layer, drop ``rounding(fraction * kept)`` smallest-|w| kept weights, regrow as many.

    Regrown positions are those with the largest |gradient| among the weights not kept
    after the drop (RigL, GraNet): a just-dropped weight may come straight back, keeping its
    value; others start at 0. Densities are unchanged. Ties break by position (stable sort).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1]")
    modules = dict(prunable_layers(model))
    new_masks = {}
    for name, mask in masks.masks.items():
        kept = mask.reshape(-1).clone()
        count = min(int(rounding(fraction * int(kept.sum()))), int(kept.sum()))
        if count > 0:
            magnitude = effective_weight(modules[name]).abs().reshape(-1).cpu()
            drop_order = torch.argsort(magnitude.masked_fill(~kept, math.inf), stable=True)
            kept[drop_order[:count]] = False
            growth = gradients[name].detach().abs().reshape(-1).cpu()
            grow_order = torch.argsort(
                growth.masked_fill(kept, -math.inf), descending=True, stable=True
            )
            kept[grow_order[:count]] = True
        new_masks[name] = kept.view(mask.shape)
    return MaskSet(new_masks)
