"""A Gymnasium vector env seen as a Stable-Baselines3 ``VecEnv``.

SB3 takes its own ``VecEnv`` API, not Gymnasium's ``VectorEnv`` (DLR-RM/stable-baselines3
#1608): ``reset`` returns observations only, ``step`` returns ``dones`` and a list of
per-env info dicts, and an ending env's last observation is in
``info["terminal_observation"]``. ``VectorEnvAdapter`` translates a same-step autoreset
vector env (``PruningVectorEnv``, or ``SyncVectorEnv(..., autoreset_mode=SAME_STEP)``),
whose semantics map one to one onto SB3's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn


class VectorEnvAdapter(VecEnv):
    """SB3's ``VecEnv`` API over a Gymnasium ``VectorEnv`` with same-step autoreset.

    Seeds given through ``seed()`` and options through ``set_options()`` reach the next
    ``reset``, as in SB3's own vector envs: sub-env i gets ``seed + i``. Attribute and
    method access (``get_attr``, ``env_method``, ``env_is_wrapped``) reach the sub-envs
    when the vector env exposes them as ``envs``, as ``PruningVectorEnv`` and
    ``SyncVectorEnv`` do.
    """

    def __init__(self, venv: VectorEnv) -> None:
        if not isinstance(venv, VectorEnv):
            raise TypeError(f"VectorEnvAdapter wraps a gymnasium VectorEnv, got {venv!r}")
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"VectorEnvAdapter needs autoreset_mode=AutoresetMode.SAME_STEP (SB3's "
                f"semantics); {type(venv).__name__} has {mode!r}"
            )
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self.metadata = venv.metadata
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        """Reset every sub-env (with the pending seeds and options); the observations."""
        seeds = None if all(seed is None for seed in self._seeds) else list(self._seeds)
        options = self._options[0]
        if any(other != options for other in self._options):
            raise ValueError(
                f"a gymnasium VectorEnv resets with one options dict; got {self._options}"
            )
        observations, infos = self.venv.reset(seed=seeds, options=options or None)
        self.reset_infos = [_info_of(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step the vector env; an ending sub-env's info is its last step's, with
        ``terminal_observation`` (its reset info goes to ``reset_infos``)."""
        observations, rewards, terminations, truncations, infos = self.venv.step(self._actions)
        dones = terminations | truncations
        step_infos = []
        for i in range(self.num_envs):
            info = _info_of(infos, i)
            if dones[i]:
                self.reset_infos[i] = info
                info = _info_of(infos["final_info"], i)
                info["terminal_observation"] = infos["final_obs"][i]
                info["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
            step_infos.append(info)
        return observations, rewards.astype(np.float32), dones, step_infos

    def close(self) -> None:
        self.venv.close()

    # the sub-envs ---------------------------------------------------------------------
    def _sub_envs(self, indices: VecEnvIndices) -> list[gym.Env]:
        """The sub-envs at ``indices``; ``TypeError`` if the vector env hides them."""
        envs = getattr(self.venv, "envs", None)
        if envs is None:
            raise TypeError(f"{type(self.venv).__name__} does not expose its sub-envs as envs")
        return [envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [env.get_wrapper_attr(attr_name) for env in self._sub_envs(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._sub_envs(indices):
            env.set_wrapper_attr(attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        return [
            env.get_wrapper_attr(method_name)(*method_args, **method_kwargs)
            for env in self._sub_envs(indices)
        ]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [is_wrapped(env, wrapper_class) for env in self._sub_envs(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.venv.render() or [None] * self.num_envs)


def _info_of(infos: dict[str, Any], index: int) -> dict[str, Any]:
    """Sub-env ``index``'s info dict, from a vector env's dict of arrays and ``_key`` masks.

    The same-step ``final_obs`` / ``final_info`` entries are left to the caller.
    """
    info: dict[str, Any] = {}
    for key, value in infos.items():
        present = infos.get(f"_{key}")
        if present is None or not present[index] or key in ("final_obs", "final_info"):
            continue
        if isinstance(value, dict):
            info[key] = _info_of(value, index)
        else:
            item = value[index]
            info[key] = item.item() if isinstance(item, np.generic) else item
    return info
