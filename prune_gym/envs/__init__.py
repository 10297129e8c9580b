"""The pruning environments (DESIGN §5), one module per family."""

import importlib
import inspect
from collections.abc import Callable

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

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


def env_creator(env_id: str) -> Callable[..., gym.Env]:
    """The class (or function) that ``gymnasium.make(env_id)`` calls."""
    name = check_env_id(env_id).rpartition(":")[2]
    entry_point = gym.spec(name).entry_point
    return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point


def env_settings_names(env_id: str) -> set[str] | None:
    """The keyword arguments ``gymnasium.make(env_id, ...)`` accepts, or None for any.

    The env's own, through every ``__init__`` its ``**kwargs`` pass on to, and
    ``gymnasium.make``'s (``max_episode_steps``, ...).
    """
    creator = env_creator(env_id)
    names = set(inspect.signature(gym.make).parameters) - {"id", "kwargs"}
    functions = (
        [cls.__init__ for cls in creator.__mro__] if isinstance(creator, type) else [creator]
    )
    for function in functions:
        parameters = inspect.signature(function).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names - {"self"}
    return None


def family_env_id(env_id: str) -> str:
    """The prune-gym env id whose class ``env_id``'s env is or derives from.

    A user may register their own id for a prune-gym env (or a subclass of one); agents
    look up defaults and hyperparameters by family, so such an env trains like its
    family's. ``ValueError`` if the env is not a prune-gym env.
    """
    env_class = env_creator(env_id)
    for family, family_entry in ENV_IDS.items():
        if isinstance(env_class, type) and issubclass(env_class, load_env_creator(family_entry)):
            return family
    raise ValueError(
        f"env id {env_id!r} makes {getattr(env_class, '__name__', env_class)!r}, which is not "
        f"a prune-gym env; agents train on {list(ENV_IDS)} or envs derived from them"
    )


__all__ = [
    "ENV_IDS",
    "GlobalRatioEnv",
    "LayerRatioEnv",
    "MetricMixEnv",
    "PanningEnv",
    "PruningEnv",
    "check_env_id",
    "env_creator",
    "env_settings_names",
    "family_env_id",
]
