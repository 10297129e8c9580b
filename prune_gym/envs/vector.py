"""A native vector env: N episodes of one pruning env stepped at once, rewards batched.

``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point", ...)``
returns one ``PruningVectorEnv`` for the ratio envs (see docs/design.md, Environments).
Each step asks every sub-env which masks its step will be rewarded on
(``PruningEnv.reward_masks``), computes those rewards together as stacked copies
(``reward_metrics_many``: one fine-tune, one forward pass) and then steps each sub-env,
which finds its reward already computed. Sub-envs are ordinary single envs with their
own RNGs, so their observations, rewards and infos are those of N independent envs (the
rewards up to floating-point round-off). Autoreset is same-step, as SB3 expects
(``prune_gym.sb3.VectorEnvAdapter``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from prune_gym.checks import check_int
from prune_gym.envs.base import PruningEnv
from prune_gym.envs.global_ratio import GlobalRatioEnv
from prune_gym.envs.layer_ratio import LayerRatioEnv


class PruningVectorEnv(VectorEnv):
    """``num_envs`` episodes of ``ENV_CLASS`` at once, their rewards computed together.

    ``settings`` are the single env's keyword arguments; every sub-env gets them and
    shares one ``PruningContext``. ``sub_env_wrappers`` wrap each sub-env, innermost
    first (e.g. SB3's ``Monitor``); an ``ActionWrapper`` among them is honoured, since
    the masks are computed from the action that reaches the env. ``reset(seed=s)`` seeds
    sub-env i with ``s + i`` (or with ``seed[i]`` for a list), as ``SyncVectorEnv``
    does. Autoreset is same-step: an ending sub-env's last observation and info are in
    ``infos["final_obs"]`` and ``infos["final_info"]``, and it starts over at once.
    """

    #: the single env class whose episodes this vector env steps.
    ENV_CLASS: ClassVar[type[PruningEnv]] = GlobalRatioEnv

    def __init__(
        self,
        num_envs: int = 1,
        *,
        sub_env_wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
        **settings: Any,
    ) -> None:
        self.num_envs = check_int(num_envs, "num_envs", low=1)
        self.envs: list[gym.Env] = []
        for _ in range(self.num_envs):
            env: gym.Env = self.ENV_CLASS(**settings)
            for wrap in sub_env_wrappers:
                env = wrap(env)
            self.envs.append(env)
        first = self.envs[0]
        self.metadata = dict(first.metadata) | {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = first.unwrapped.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env: seed ``seed + i`` (or ``seed[i]``), the same ``options``."""
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} sub-envs: {seeds}")
        infos: dict[str, Any] = {}
        observations = []
        for i, (env, env_seed) in enumerate(zip(self.envs, seeds, strict=True)):
            observation, info = env.reset(seed=env_seed, options=options)
            observations.append(observation)
            infos = self._add_info(infos, info, i)
        return self._batched(observations), infos

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with its action; the rewards of those that end are computed
        together first."""
        actions = list(iterate(self.action_space, np.asarray(actions)))
        self._compute_rewards_together(actions)
        observations = []
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for i, (env, action) in enumerate(zip(self.envs, actions, strict=True)):
            observation, rewards[i], terminations[i], truncations[i], info = env.step(action)
            if terminations[i] or truncations[i]:
                infos = self._add_info(infos, {"final_obs": observation, "final_info": info}, i)
                observation, info = env.reset()
            observations.append(observation)
            infos = self._add_info(infos, info, i)
        return self._batched(observations), rewards, terminations, truncations, infos

    def _compute_rewards_together(self, actions: list[Any]) -> None:
        """Compute, in one batch, the rewards the coming steps will ask for."""
        masks = []
        for env, action in zip(self.envs, actions, strict=True):
            mask_set = env.unwrapped.reward_masks(_action_reaching_env(env, action))
            if mask_set is not None:
                masks.append(mask_set)
        if masks:
            self.envs[0].unwrapped.reward_metrics_many(masks)

    def _batched(self, observations: list[np.ndarray]) -> np.ndarray:
        """The sub-envs' observations as one fresh batch (callers may keep it)."""
        batch = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, observations, batch)

    def render(self) -> tuple[Any, ...] | None:
        """Every sub-env's rendering (see ``PruningEnv.render``)."""
        return tuple(env.render() for env in self.envs)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call ``name`` on every sub-env (or read it, if it is not callable)."""
        results = []
        for env in self.envs:
            attribute = env.get_wrapper_attr(name)
            results.append(attribute(*args, **kwargs) if callable(attribute) else attribute)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` of every sub-env."""
        return tuple(env.get_wrapper_attr(name) for env in self.envs)

    def set_attr(self, name: str, values: Sequence[Any] | Any) -> None:
        """Set ``name`` on every sub-env: ``values[i]`` on sub-env i, or one value on all."""
        if not isinstance(values, list | tuple):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"got {len(values)} values for {self.num_envs} sub-envs")
        for env, value in zip(self.envs, values, strict=True):
            env.set_wrapper_attr(name, value)

    def close_extras(self, **kwargs: Any) -> None:
        """Close every sub-env (their shared context is freed with the last)."""
        for env in self.envs:
            env.close()


class GlobalRatioVectorEnv(PruningVectorEnv):
    """``PruningVectorEnv`` of ``GlobalRatio-v0`` (its ``vector_entry_point``)."""

    ENV_CLASS = GlobalRatioEnv


class LayerRatioVectorEnv(PruningVectorEnv):
    """``PruningVectorEnv`` of ``LayerRatio-v0`` (its ``vector_entry_point``)."""

    ENV_CLASS = LayerRatioEnv


def _action_reaching_env(env: gym.Env, action: Any) -> Any:
    """``action`` as the wrappers around ``env`` pass it on to the unwrapped env."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.ActionWrapper):
            action = env.action(action)
        env = env.env
    return action
