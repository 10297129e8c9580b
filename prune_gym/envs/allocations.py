"""Per-layer ratio allocations that just meet an env's budget, and the one bisection behind them.

Every function returns ratios over ``env.layer_names`` and judges feasibility with the
env's exact costs (``env.fits_ratios``), so an allocation that meets the budget here
meets it in the episode. They are the fixed policies' allocations and the reference
allocations of ``GlobalRatio-v0``'s ``action="logits"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from prune_gym.pruning import erk_densities
from prune_gym.pruning.allocate import outlier_density, owl_sparsities

if TYPE_CHECKING:
    from prune_gym.envs.base import PruningEnv

#: bisection steps: the answer is within 2**-30 of the interval's width.
BISECTION_STEPS = 30
REFERENCES = ("global", "erk", "uniform")


def least_feasible(
    feasible: Callable[[float], bool], low: float, high: float, steps: int = BISECTION_STEPS
) -> float:
    """The smallest ``x`` in ``[low, high]`` with ``feasible(x)``, to ``(high - low) / 2**steps``.

    ``feasible`` must be monotone (false below some point, true above it) and true at
    ``high``; the value returned is always one at which it was true (or ``high``).
    """
    if feasible(low):
        return low
    for _ in range(steps):
        middle = (low + high) / 2
        if feasible(middle):
            high = middle
        else:
            low = middle
    return high


def scaled_toward_max(
    env: PruningEnv, ratios: np.ndarray, fits_ratios: Callable[[np.ndarray], bool] | None = None
) -> np.ndarray:
    """``ratios + f * (max_ratio - ratios)`` with the least ``f`` in [0, 1] meeting the budget.

    ``fits_ratios`` defaults to the env's exact check (``BudgetProjection`` passes one
    that also sends the ratios through a float32 action first).
    """
    fits_ratios = env.fits_ratios if fits_ratios is None else fits_ratios
    ratios = np.asarray(ratios, dtype=np.float64)
    gap = env.max_ratio - ratios
    f = least_feasible(lambda f: fits_ratios(ratios + f * gap), 0.0, 1.0)
    return ratios + f * gap


def uniform_ratios(env: PruningEnv) -> np.ndarray:
    """The same ratio in every layer, the least that meets the budget."""
    return scaled_toward_max(env, np.full(env.num_layers, env.min_ratio))


def erk_ratios(env: PruningEnv) -> np.ndarray:
    """Erdos-Renyi-Kernel ratios (RigL) at the least global sparsity that meets the budget."""
    model = env.context.model

    def ratios_at(sparsity: float) -> np.ndarray:
        densities = erk_densities(model, sparsity)
        ratios = [1.0 - densities[name] for name in env.layer_names]
        return np.clip(ratios, env.min_ratio, env.max_ratio)

    return ratios_at(least_feasible(lambda s: env.fits_ratios(ratios_at(s)), 0.0, 1.0 - 1e-9))


def global_ratios(env: PruningEnv, metric: str) -> np.ndarray:
    """Per-layer ratios of one global threshold on ``metric`` that just meets the budget."""
    ratios = env.budget_masks(env.context.builder(metric)).ratios()
    return np.array([ratios[name] for name in env.layer_names])


#: OWL's outlier factor M and sparsity band lambda: the values of the authors' README
#: commands for 70% sparsity (their code's default M is 3).
OWL_OUTLIER_FACTOR = 5.0
OWL_LAMBDA = 0.08


def layer_block(name: str) -> str:
    """The block a layer belongs to: its name up to the first numbered module
    (``blocks.1.attention.q`` -> ``blocks.1``), else the layer itself (``fc1``)."""
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: index + 1])
    return name


def owl_ratios(
    env: PruningEnv, factor: float = OWL_OUTLIER_FACTOR, lam: float = OWL_LAMBDA
) -> np.ndarray:
    """OWL (Yin et al., 2024): per-block sparsities from the blocks' Wanda outliers.

    Blocks (``layer_block``) whose Wanda scores hold more outliers are pruned less
    (``owl_sparsities`` around the uniform ratio that meets the budget); every layer of
    a block gets its block's sparsity, and the densities are then rescaled by the one
    factor that just meets the budget, which keeps OWL's mean where blocks are of equal
    size (a transformer's) and makes it exact for any other net and resource.
    """
    scores = env.context.metric_scores("wanda")
    blocks: dict[str, list[str]] = {}
    for name in env.layer_names:
        blocks.setdefault(layer_block(name), []).append(name)
    densities = [outlier_density([scores[n] for n in names], factor) for names in blocks.values()]
    target = float(uniform_ratios(env).mean())
    sparsity = dict(zip(blocks, owl_sparsities(densities, target, lam), strict=True))
    kept = [1.0 - sparsity[layer_block(name)] for name in env.layer_names]
    return rescaled_to_budget(env, np.asarray(kept))


def reference_ratios(env: PruningEnv, reference: str) -> np.ndarray:
    """The allocation named ``reference``: ``global`` (threshold on ``rank_by``), ``erk``,
    ``uniform``."""
    if reference == "global":
        return global_ratios(env, env.context.rank_by)
    if reference == "erk":
        return erk_ratios(env)
    if reference == "uniform":
        return uniform_ratios(env)
    raise ValueError(f"reference={reference!r} is not one of {REFERENCES}")


def rescaled_to_budget(env: PruningEnv, densities: np.ndarray) -> np.ndarray:
    """Ratios from ``densities`` times the largest common factor that meets the budget.

    Densities stay within ``[1 - max_ratio, 1 - min_ratio]``; at the smallest factor
    every layer is at ``max_ratio``, which the env guarantees to meet its budget.
    """
    densities = np.maximum(np.asarray(densities, dtype=np.float64), 1e-12)
    low, high = 1.0 - env.max_ratio, 1.0 - env.min_ratio

    def ratios_at(log_factor: float) -> np.ndarray:
        return 1.0 - np.clip(densities * math.exp(log_factor), low, high)

    # scan factors from largest (all at 1 - min_ratio) down to smallest (all at max_ratio)
    largest = math.log(high / densities.min())
    smallest = math.log(max(low, 1e-12) / densities.max())
    shrink = least_feasible(
        lambda x: env.fits_ratios(ratios_at(largest - x)), 0.0, largest - smallest
    )
    return ratios_at(largest - shrink)
