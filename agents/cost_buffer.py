"""A rollout buffer that also stores per-resource costs, cost values and their own GAE."""

from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecNormalize

from prune_gym.checks import check_int

#: the buffer's arrays of shape (n_steps, n_envs, n_costs), flattened like SB3's in ``get``.
COST_ARRAYS = ("costs", "cost_values", "cost_advantages", "cost_returns")


class CostRolloutBufferSamples(NamedTuple):
    """SB3's ``RolloutBufferSamples`` plus the cost critic's targets, shape (batch, n_costs)."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    old_cost_values: th.Tensor
    cost_advantages: th.Tensor
    cost_returns: th.Tensor


class CostRolloutBuffer(RolloutBuffer):
    """``RolloutBuffer`` with ``n_costs`` costs per step and a separate GAE for them.

    Every step, ``record_costs`` must be called before SB3's ``add`` (``PPOLagrangian``
    does it); ``add`` raises if it was not, so costs can never be misaligned with steps.
    ``compute_cost_returns_and_advantage`` runs GAE with ``cost_gamma``/``cost_gae_lambda``
    (defaults: the reward's ``gamma``/``gae_lambda``).
    """

    costs: np.ndarray
    cost_values: np.ndarray
    cost_advantages: np.ndarray
    cost_returns: np.ndarray

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1,
        gamma: float = 0.99,
        n_envs: int = 1,
        n_costs: int = 1,
        cost_gamma: float | None = None,
        cost_gae_lambda: float | None = None,
    ) -> None:
        self.n_costs = check_int(n_costs, "n_costs", low=1)
        self.cost_gamma = gamma if cost_gamma is None else cost_gamma
        self.cost_gae_lambda = gae_lambda if cost_gae_lambda is None else cost_gae_lambda
        super().__init__(
            buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs
        )

    def reset(self) -> None:
        """Empty the buffer, cost arrays included."""
        shape = (self.buffer_size, self.n_envs, self.n_costs)
        for name in COST_ARRAYS:
            setattr(self, name, np.zeros(shape, dtype=np.float32))
        self._costs_recorded = False
        super().reset()

    def record_costs(self, costs: np.ndarray, cost_values: np.ndarray) -> None:
        """Store this step's costs and cost values, shape (n_envs, n_costs), before ``add``."""
        self.costs[self.pos] = costs
        self.cost_values[self.pos] = cost_values
        self._costs_recorded = True

    def add(self, *args, **kwargs) -> None:
        """SB3's ``add``, after checking that ``record_costs`` filled this step's costs."""
        if not self._costs_recorded:
            raise RuntimeError(
                f"no costs were recorded for step {self.pos}: call record_costs() before add() "
                "(CostRolloutBuffer is filled by PPOLagrangian)"
            )
        self._costs_recorded = False
        super().add(*args, **kwargs)

    def compute_cost_returns_and_advantage(
        self, last_cost_values: np.ndarray, dones: np.ndarray
    ) -> None:
        """GAE advantages and lambda-returns of every cost, as SB3 computes them for rewards.

        ``last_cost_values``: (n_envs, n_costs) cost values of the observation after the last
        step; ``dones``: whether each env's last step ended its episode.
        """
        last_gae = np.zeros((self.n_envs, self.n_costs), dtype=np.float32)
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                non_terminal = 1.0 - np.asarray(dones, dtype=np.float32)
                next_values = last_cost_values
            else:
                non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.cost_values[step + 1]
            non_terminal = non_terminal[:, None]
            delta = (
                self.costs[step]
                + self.cost_gamma * next_values * non_terminal
                - self.cost_values[step]
            )
            last_gae = delta + self.cost_gamma * self.cost_gae_lambda * non_terminal * last_gae
            self.cost_advantages[step] = last_gae
        self.cost_returns = self.cost_advantages + self.cost_values

    def get(self, batch_size: int | None = None) -> Generator[CostRolloutBufferSamples, None, None]:
        """Minibatches of SB3's samples extended with the cost fields (see ``_get_samples``)."""
        if not self.generator_ready:
            for name in COST_ARRAYS:
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> CostRolloutBufferSamples:
        base = super()._get_samples(batch_inds, env)
        extra = (
            self.cost_values[batch_inds],
            self.cost_advantages[batch_inds],
            self.cost_returns[batch_inds],
        )
        return CostRolloutBufferSamples(*base, *map(self.to_torch, extra))
