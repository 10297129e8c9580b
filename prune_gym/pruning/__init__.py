"""The pruning core: layers, masks, costs, importance scores and allocations (no RL here)."""

from prune_gym.pruning.allocate import MaskBuilder, erk_densities, uniform_densities
from prune_gym.pruning.cost import Budget, CostModel, count_costs, measure_latency
from prune_gym.pruning.export import export_channel_pruned
from prune_gym.pruning.layers import ChannelStructure, prunable_layers
from prune_gym.pruning.masks import MaskSet
from prune_gym.pruning.scores import available_metrics, compute_scores, register_metric

__all__ = [
    "Budget",
    "ChannelStructure",
    "CostModel",
    "MaskBuilder",
    "MaskSet",
    "available_metrics",
    "compute_scores",
    "count_costs",
    "erk_densities",
    "export_channel_pruned",
    "measure_latency",
    "prunable_layers",
    "register_metric",
    "uniform_densities",
]
