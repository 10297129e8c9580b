"""Wrappers for budgets: project actions onto the feasible set, sum costs, price violations."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from prune_gym.checks import check_number
from prune_gym.envs.base import PruningEnv


class BudgetProjection(gym.ActionWrapper):
    """Project every action so that the final network always meets the budget (AMC-style).

    The env says how (``PruningEnv.project_to_budget``). LayerRatio: each ratio is raised
    to the least that still lets the budget be met if every later layer prunes at
    ``max_ratio``. GlobalRatio and MetricMix's joint mode: ratios move towards
    ``max_ratio`` by the smallest common fraction that meets the budget (found by
    bisection on the exact costs). Envs whose actions always meet the budget
    (``prunes_to_budget``: MetricMix's global mode, Panning, GlobalRatio's
    ``action="logits"``) pass unchanged. Every budget an env accepts is reachable (envs
    refuse the others when made), so a projection always exists.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, PruningEnv):
            raise TypeError(f"BudgetProjection wraps prune-gym envs, not {type(base).__name__}")
        self.base = base

    def action(self, action: Any) -> np.ndarray:
        """The projected action (same shape, float32)."""
        return self.base.project_to_budget(action)


class CostMonitor(gym.Wrapper):
    """Sum each resource's per-step cost over the episode into ``info["episode"]``.

    Adds ``cost`` (all resources) and ``cost_<resource>`` next to SB3 ``Monitor``'s r/l/t:
    wrap it around the Monitor (``CostMonitor(Monitor(env))``) for an SB3 agent, which
    reads ``r`` and ``l`` from the same dict; alone, it gives the costs only.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._totals: dict[str, float] = {}

    def reset(self, **kwargs: Any):
        self._totals = {}
        return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        for resource, cost in info.get("costs", {}).items():
            self._totals[resource] = self._totals.get(resource, 0.0) + float(cost)
        if terminated or truncated:
            episode = dict(info.get("episode", {}))
            episode["cost"] = float(sum(self._totals.values()))
            episode |= {f"cost_{r}": total for r, total in self._totals.items()}
            info["episode"] = episode
        return obs, reward, terminated, truncated, info


class LagrangianReward(gym.Wrapper):
    """``reward - sum_k lam_k * violation_k``: a fixed-price constraint for unconstrained RL.

    ``lam`` is one price for every budgeted resource or a dict resource -> price;
    violation_k = max(0, used_k - limit_k) at the episode's end (0 on earlier steps).
    """

    def __init__(self, env: gym.Env, lam: float | dict[str, float] = 1.0) -> None:
        super().__init__(env)
        limits = env.unwrapped.budget.limits
        prices = dict.fromkeys(limits, lam) if not isinstance(lam, dict) else dict(lam)
        unknown = set(prices) - set(limits)
        if unknown:
            raise ValueError(f"lam names resources {sorted(unknown)} outside the budget {limits}")
        self.lam = {r: check_number(price, f"lam[{r!r}]", 0.0) for r, price in prices.items()}

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        penalty = 0.0
        if "used" in info:
            limits = info["cost_limits"]
            penalty = sum(
                price * max(0.0, info["used"][r] - limits[r]) for r, price in self.lam.items()
            )
        info["constraint_penalty"] = penalty
        return obs, float(reward) - penalty, terminated, truncated, info
