"""MultiTaskEnv: one env whose episodes run on several tasks, to train one policy for all.

A policy whose observation describes each layer (LayerRatio's AMC-style rows) does not
depend on the network it prunes, so it can be trained on some tasks and act on another
that it never saw. This env gives an agent that training: each episode runs on one of its
envs, drawn from the env's RNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from prune_gym.checks import check_int


class MultiTaskEnv(gym.Env):
    """Each episode runs on one of ``envs`` (e.g. LayerRatio-v0 on different tasks).

    The envs are drawn uniformly per episode from this env's RNG, so every task gets
    about the same share of the training episodes; ``reset(options={"task_index": i})``
    fixes env ``i`` for one episode. The envs must share their observation and action
    spaces (a ``ValueError`` names the first that does not). ``reset(seed=s)`` seeds env
    ``i`` with ``s + i`` at its next episode, so a seeded run draws the same tasks and
    episodes. ``budget`` (read by PPO-Lagrangian) is the current env's.
    """

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        if not envs:
            raise ValueError("MultiTaskEnv needs at least one env, got none")
        first = envs[0]
        for index, env in enumerate(envs[1:], start=1):
            for space in ("observation_space", "action_space"):
                if getattr(env, space) != getattr(first, space):
                    raise ValueError(
                        f"env {index} has {space} {getattr(env, space)}, env 0 has "
                        f"{getattr(first, space)}; a MultiTaskEnv's envs must share both spaces"
                    )
        self.envs = list(envs)
        self.observation_space = first.observation_space
        self.action_space = first.action_space
        self.metadata = first.metadata
        self.task_index = 0
        self._pending_seeds: dict[int, int] = {}

    @property
    def active(self) -> gym.Env:
        """The env the current episode runs on."""
        return self.envs[self.task_index]

    @property
    def budget(self) -> Any:
        """The current env's budget."""
        return self.active.unwrapped.budget

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the episode's env (or take ``options["task_index"]``) and reset it."""
        super().reset(seed=seed)
        if seed is not None:
            self._pending_seeds = {index: seed + index for index in range(len(self.envs))}
        options = dict(options or {})
        if "task_index" in options:
            index = options.pop("task_index")
            self.task_index = check_int(index, "task_index", 0, len(self.envs) - 1)
        else:
            self.task_index = int(self.np_random.integers(len(self.envs)))
        observation, info = self.active.reset(
            seed=self._pending_seeds.pop(self.task_index, None), options=options or None
        )
        return observation, info | {"task_index": self.task_index}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One step of the current episode's env."""
        return self.active.step(action)

    def close(self) -> None:
        """Close every env."""
        for env in self.envs:
            env.close()
