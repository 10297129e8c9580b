"""The pruning environments (DESIGN §5), one module per family."""

from prune_gym.envs.base import PruningEnv
from prune_gym.envs.global_ratio import GlobalRatioEnv
from prune_gym.envs.layer_ratio import LayerRatioEnv
from prune_gym.envs.metric_mix import MetricMixEnv
from prune_gym.envs.panning import PanningEnv

#: registered id -> entry point, registered at ``import prune_gym``.
ENV_IDS = {
    "prune_gym/LayerRatio-v0": "prune_gym.envs.layer_ratio:LayerRatioEnv",
    "prune_gym/GlobalRatio-v0": "prune_gym.envs.global_ratio:GlobalRatioEnv",
    "prune_gym/MetricMix-v0": "prune_gym.envs.metric_mix:MetricMixEnv",
    "prune_gym/Panning-v0": "prune_gym.envs.panning:PanningEnv",
}

__all__ = [
    "ENV_IDS",
    "GlobalRatioEnv",
    "LayerRatioEnv",
    "MetricMixEnv",
    "PanningEnv",
    "PruningEnv",
]
