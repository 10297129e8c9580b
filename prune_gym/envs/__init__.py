"""The pruning environments (see docs/design.md, Environments), one module per family."""

import importlib
import inspect
import sys
from collections.abc import Callable

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from prune_gym.checks import did_you_mean
from prune_gym.envs.base import PruningEnv
from prune_gym.envs.global_ratio import GlobalRatioEnv, GlobalRatioSettings
from prune_gym.envs.layer_ratio import LayerRatioEnv
from prune_gym.envs.metric_mix import MetricMixEnv, MetricMixSettings
from prune_gym.envs.multi_task import MultiTaskEnv
from prune_gym.envs.panning import PanningEnv, PanningSettings
from prune_gym.envs.settings import PruningSettings, doc
from prune_gym.ids import ENV_IDS, VECTOR_ENTRY_POINTS


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


def env_creator(env_id: str) -> Callable[..., gym.Env]:
    """The class (or function) that ``gymnasium.make(env_id)`` calls."""
    name = check_env_id(env_id).rpartition(":")[2]
    entry_point = gym.spec(name).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


def prune_gym_env_class(env_id: str) -> type[PruningEnv]:
    """The ``PruningEnv`` subclass ``env_id`` makes; ``ValueError`` if it makes another env."""
    env_class = env_creator(env_id)
    if not (isinstance(env_class, type) and issubclass(env_class, PruningEnv)):
        raise ValueError(
            f"env id {env_id!r} makes {getattr(env_class, '__name__', env_class)!r}, which is "
            f"not a prune-gym env; agents train on {list(ENV_IDS)} or other PruningEnv "
            "subclasses"
        )
    return env_class


def registered_pruning_env_ids() -> list[str]:
    """Every id ``gymnasium.make`` knows that makes a ``PruningEnv``: prune-gym's own and
    those registered by imported modules (``--import``), sorted.

    An id whose entry point names a module not imported yet is skipped: loading it would
    import (or fail to import) packages that have nothing to do with pruning.
    """
    ids = []
    for env_id, spec in gym.registry.items():
        entry_point = spec.entry_point
        if isinstance(entry_point, str):
            if entry_point.partition(":")[0] not in sys.modules:
                continue
            entry_point = load_env_creator(entry_point)
        if isinstance(entry_point, type) and issubclass(entry_point, PruningEnv):
            ids.append(env_id)
    return sorted(ids)


def env_settings_names(env_id: str) -> set[str]:
    """The keyword arguments ``gymnasium.make(env_id, ...)`` accepts (a prune-gym env's).

    The fields of the env's settings class (``SETTINGS``) and ``gymnasium.make``'s own
    (``max_episode_steps``, ...).
    """
    names = set(inspect.signature(gym.make).parameters) - {"id", "kwargs"}
    return names | set(prune_gym_env_class(env_id).SETTINGS.names())


def family_env_id(env_id: str) -> str:
    """The registered env id whose agent defaults and hyperparameters ``env_id`` trains with.

    The env class's ``FAMILY_ID``: a prune-gym family's own id, inherited by its
    subclasses; a family deriving from ``PruningEnv`` alone gets GlobalRatio-v0's unless
    it sets ``FAMILY_ID``. ``ValueError`` if the env is not a prune-gym env.
    """
    family = prune_gym_env_class(env_id).FAMILY_ID
    if family not in ENV_IDS:
        raise ValueError(f"env id {env_id!r}: FAMILY_ID={family!r} is not one of {list(ENV_IDS)}")
    return family


__all__ = [
    "ENV_IDS",
    "VECTOR_ENTRY_POINTS",
    "GlobalRatioEnv",
    "GlobalRatioSettings",
    "LayerRatioEnv",
    "MetricMixEnv",
    "MetricMixSettings",
    "MultiTaskEnv",
    "PanningEnv",
    "PanningSettings",
    "PruningEnv",
    "PruningSettings",
    "check_env_id",
    "doc",
    "env_creator",
    "env_settings_names",
    "family_env_id",
    "prune_gym_env_class",
    "registered_pruning_env_ids",
]
