"""The pruning environments (DESIGN §5), one module per family."""

import importlib

import gymnasium as gym

from prune_gym.checks import did_you_mean
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


def check_env_id(env_id: str) -> str:
    """``env_id`` if ``gymnasium.make`` knows it, else a ``ValueError`` suggesting ids.

    ``"module:namespace/Name-v0"`` imports ``module`` first, as ``gymnasium.make`` does.
    """
    if not isinstance(env_id, str):
        raise TypeError(f"env id must be a string, got {env_id!r}")
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(f"env id {env_id!r}: cannot import {module!r} ({error})") from error
    if name not in gym.registry:
        raise ValueError(
            f"unknown env id {name!r}; prune-gym registers {list(ENV_IDS)}"
            + did_you_mean(name, gym.registry)
        )
    return env_id


__all__ = [
    "ENV_IDS",
    "GlobalRatioEnv",
    "LayerRatioEnv",
    "MetricMixEnv",
    "PanningEnv",
    "PruningEnv",
    "check_env_id",
]
