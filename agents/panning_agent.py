"""The Panning agent: TD3 learns which metric mix to prune with at each iteration.

After Kang et al., "Neural Network Panning" (ACCV 2022): TD3 with the authors' defaults
on ``prune_gym/Panning-v0``. The target sparsity is drawn per episode, so one trained
agent serves many budgets, and its 7 observation features do not depend on the network,
so ``prune`` can apply it to any task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import TD3
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.checks import check_fraction
from prune_gym.envs.panning import PANNING_METRICS
from prune_gym.pruning import MaskSet
from prune_gym.tasks import Task

#: the Panning code's TD3 settings (its warm-up is 2,000 random steps of 50,000).
PAPER_DEFAULTS = {
    "learning_rate": 2e-4,
    "batch_size": 256,
    "gamma": 0.99,
    "tau": 0.01,
    "exploration_noise": 0.1,
    "learning_starts": 2000,
}
ENV_ID = "prune_gym/Panning-v0"


class PanningAgent:
    """TD3 on Panning-v0; ``learn`` trains it, ``prune(task, target)`` uses it.

    ``env_kwargs`` go to the environment (``iterations``, ``target_range``, ``metrics``,
    ``reward``...); ``learning_starts`` is the random warm-up in steps (the paper's 2,000
    suits its 50,000-step runs; shorter runs want fewer).
    """

    def __init__(
        self,
        task: str | Task = "digits-mlp",
        *,
        learning_rate: float = PAPER_DEFAULTS["learning_rate"],
        batch_size: int = PAPER_DEFAULTS["batch_size"],
        gamma: float = PAPER_DEFAULTS["gamma"],
        tau: float = PAPER_DEFAULTS["tau"],
        exploration_noise: float = PAPER_DEFAULTS["exploration_noise"],
        learning_starts: int = PAPER_DEFAULTS["learning_starts"],
        seed: int = 0,
        env_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
    ) -> None:
        if exploration_noise < 0:
            raise ValueError(f"exploration_noise={exploration_noise!r} must be >= 0")
        self.env_kwargs = dict(env_kwargs or {})
        if "target" in self.env_kwargs:
            raise ValueError(
                "a PanningAgent learns over a range of targets: give env_kwargs "
                "target_range=(low, high), not target"
            )
        self.env = Monitor(gym.make(ENV_ID, task=task, **self.env_kwargs))
        actions = self.env.action_space.shape[0]
        self.model = TD3(
            "MlpPolicy",
            self.env,
            learning_rate=learning_rate,
            batch_size=batch_size,
            gamma=gamma,
            tau=tau,
            learning_starts=learning_starts,
            action_noise=NormalActionNoise(np.zeros(actions), exploration_noise * np.ones(actions)),
            seed=seed,
            device="cpu",
            tensorboard_log=tensorboard_log,
            verbose=verbose,
        )
        self.model.panning_env_kwargs = self._plain_env_kwargs()  # saved in the zip as JSON

    def _plain_env_kwargs(self) -> dict[str, Any]:
        """The env settings as JSON-friendly values (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in self.env_kwargs.items()
        }

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics the agent mixes, in action order."""
        return tuple(self.env_kwargs.get("metrics", PANNING_METRICS))

    def learn(self, total_timesteps: int, **learn_kwargs: Any) -> PanningAgent:
        """Train for ``total_timesteps`` env steps (SB3 ``learn`` keywords pass through)."""
        self.model.learn(total_timesteps=total_timesteps, **learn_kwargs)
        return self

    def prune(self, task: str | Task, target_sparsity: float, seed: int = 0) -> MaskSet:
        """Masks at ``target_sparsity`` for ``task``'s initialisation, from the learned policy."""
        target = check_fraction(target_sparsity, "target_sparsity")
        kwargs = {k: v for k, v in self.env_kwargs.items() if k != "target_range"}
        env = gym.make(ENV_ID, task=task, target=target, **kwargs)
        observation, _ = env.reset(seed=seed)
        done = False
        while not done:
            action, _ = self.model.predict(observation, deterministic=True)
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        return env.unwrapped.masks

    def save(self, path: str | Path) -> None:
        """Save the TD3 model and the env settings (one SB3 zip)."""
        self.model.save(path)

    @classmethod
    def load(cls, path: str | Path, task: str | Task = "digits-mlp") -> PanningAgent:
        """An agent from ``save``'s zip (SB3 zips are pickle: load only trusted files)."""
        model = TD3.load(path, device="cpu")
        env_kwargs = {
            key: tuple(value) if isinstance(value, list) else value
            for key, value in model.panning_env_kwargs.items()
        }
        agent = cls(task, learning_starts=0, env_kwargs=env_kwargs)
        model.set_env(agent.env)
        agent.model = model
        return agent
