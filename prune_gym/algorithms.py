"""SB3 algorithm classes by name: the one table used wherever an agent is built or loaded.

SB3's own algorithms are here from the start; ``agents`` registers ``ppo-lag``
(``PPOLagrangian``) when imported, as the RL Zoo patches its ``ALGOS`` table. Model zips
are SB3 save files, which are pickle: load only files you trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from prune_gym.checks import did_you_mean
from prune_gym.envs import PruningEnv, env_creator

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3}
#: the file ``prune-gym train`` keeps in its folder while a run is unfinished: present
#: after an interrupted or failed run, whose ``model.zip`` is then missing or stale.
INCOMPLETE_MARKER = "INCOMPLETE"


def check_finished_run(model_path: str | Path) -> None:
    """``ValueError`` if ``model_path`` lies in the folder of a ``prune-gym train`` run that
    did not finish (``INCOMPLETE_MARKER`` beside it)."""
    marker = Path(model_path).with_name(INCOMPLETE_MARKER)
    if marker.exists():
        raise ValueError(
            f"{Path(model_path).parent} holds an unfinished prune-gym train run ({marker}: "
            f"{marker.read_text().strip()}); run train again to finish it"
        )


def register_algorithm(name: str, cls: type[BaseAlgorithm]) -> None:
    """Make ``cls`` known as ``name`` (re-registering the same class is a no-op)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        raise TypeError(f"algorithm {name!r} must be an SB3 BaseAlgorithm subclass, got {cls!r}")
    if ALGORITHMS.get(name, cls) is not cls:
        raise ValueError(f"algorithm name {name!r} is taken by {ALGORITHMS[name].__name__}")
    ALGORITHMS[name] = cls


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The class registered as ``name``, or a ``ValueError`` listing the known names."""
    if name not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)} (import agents for "
            "'ppo-lag')" + did_you_mean(name, ALGORITHMS)
        )
    return ALGORITHMS[name]


@dataclass(frozen=True)
class SavedRun:
    """How a trained policy acts, from the ``run.json`` that ``prune-gym train`` writes.

    ``run.json`` (``agents.run_config.RunConfig``) has, among its keys, ``algorithm``
    (the name its ``model.zip`` loads with), ``env`` (the env id) and ``env_kwargs``
    (every env setting but task and budget).
    """

    algorithm: str
    env: str
    env_kwargs: dict[str, Any]
    #: optimizer steps the agent's training spent training pruned nets for its rewards:
    #: ``timesteps`` times what one episode's reward trains (``reward_train_steps`` of the
    #: env class: ``reward_finetune_steps``, or Panning's ``train_steps``). At most: an episode
    #: ends at most once per env step, and rewards of masks seen before are cached.
    train_steps: int = 0

    @classmethod
    def beside(cls, model_path: str | Path) -> SavedRun | None:
        """The run saved next to ``model_path`` (``run.json``), or None if there is none;
        ``ValueError`` if that run did not finish (``check_finished_run``)."""
        check_finished_run(model_path)
        path = Path(model_path).with_name("run.json")
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            env_kwargs = dict(raw["env_kwargs"])
            env_class = env_creator(raw["env"])
            if not (isinstance(env_class, type) and issubclass(env_class, PruningEnv)):
                raise ValueError(f"env {raw['env']!r} is not a prune-gym env")
            per_episode = env_class.reward_train_steps(env_kwargs)
            steps = int(raw.get("timesteps", 0)) * per_episode
            return cls(raw["algorithm"], raw["env"], env_kwargs, steps)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a run.json of prune-gym train (algorithm, env, env_kwargs): "
                f"{type(error).__name__}: {error}"
            ) from error


def load_model(path: str | Path, algorithm: str) -> BaseAlgorithm:
    """A trained model from its SB3 zip on the CPU (pickle inside: load only trusted files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model zip at {path}")
    return algorithm_class(algorithm).load(path, device="cpu")
