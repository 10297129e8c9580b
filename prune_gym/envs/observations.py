"""Observation features of the ratio environments, each column named in ``feature_names``.

Static layer features (AMC's layer embedding) and per-metric features are computed once
per environment into a table with one row per controlled layer; dynamic features
(what was removed so far, what is left, the budget) are cheap scalar arithmetic per step.
Every feature lies in [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch

from prune_gym.pruning.allocate import percentile_ranks
from prune_gym.pruning.cost import RESOURCES, Budget, LayerCost

STATIC_FEATURES = (
    "depth",
    "is_conv",
    "is_depthwise",
    "is_linear",
    "log_in_channels",
    "log_out_channels",
    "kernel_size",
    "stride",
    "params_share",
    "macs_share",
)
LAYER_DYNAMIC_FEATURES = (
    "macs_removed",
    "params_removed",
    "macs_later",
    "params_later",
    "previous_ratio",
)
BUDGET_FEATURES = (*(f"limit_{r}" for r in RESOURCES), "remaining_flops", "remaining_params")


def metric_feature_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """Two columns per metric: kept share at the budget, mean score percentile."""
    return tuple(f"{m}_{suffix}" for m in metrics for suffix in ("kept_at_budget", "mean_rank"))


def static_table(layers: list[LayerCost], params_total: int, macs_total: int) -> np.ndarray:
    """One row of ``STATIC_FEATURES`` per layer; sizes min-max normalised across layers."""
    count = len(layers)
    rows = []
    for index, layer in enumerate(layers):
        rows.append(
            [
                index / max(count - 1, 1),
                float(layer.kind in ("conv", "grouped")),
                float(layer.kind == "depthwise"),
                float(layer.kind == "linear"),
                math.log2(layer.in_channels),
                math.log2(layer.out_channels),
                float(layer.kernel_size[0]),
                float(layer.stride[0]),
                layer.params / params_total,
                layer.macs / macs_total,
            ]
        )
    table = np.asarray(rows, dtype=np.float64)
    for column in (4, 5, 6, 7):
        low, high = table[:, column].min(), table[:, column].max()
        table[:, column] = (table[:, column] - low) / (high - low) if high > low else 0.0
    return table


def metric_table(
    scores: dict[str, dict[str, torch.Tensor]],
    layer_names: list[str],
    kept_at_budget: dict[str, dict[str, float]],
) -> np.ndarray:
    """Per layer and metric: share kept under the metric's global threshold, mean rank.

    The mean rank is the layer's average score percentile among all weights (0 = the
    least important weights of the net, 1 = the most), a scale-free score statistic.
    """
    columns = []
    for metric, per_layer in scores.items():
        percentiles = percentile_ranks(per_layer)
        columns.append([kept_at_budget[metric][name] for name in layer_names])
        columns.append([float(percentiles[name].mean()) for name in layer_names])
    if not columns:
        return np.zeros((len(layer_names), 0))
    return np.asarray(columns, dtype=np.float64).T


def budget_features(budget: Budget, used_flops: float, used_params: float) -> np.ndarray:
    """Limits of every resource (1 when unconstrained) and what remains of flops/params."""
    limits = [budget.limits.get(resource, 1.0) for resource in RESOURCES]
    remaining = [
        budget.limits.get("flops", 1.0) - used_flops,
        budget.limits.get("params", 1.0) - used_params,
    ]
    return np.asarray(limits + remaining, dtype=np.float64)
