"""Wrappers for budgets: project actions onto the feasible set, sum costs, price violations."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from prune_gym.checks import check_number
from prune_gym.envs.allocations import scaled_toward_max
from prune_gym.envs.global_ratio import GlobalRatioEnv
from prune_gym.envs.layer_ratio import LayerRatioEnv
from prune_gym.envs.metric_mix import MetricMixEnv
from prune_gym.envs.panning import PanningEnv


class BudgetProjection(gym.ActionWrapper):
    """Project every action so that the final network always meets the budget (AMC-style).

    LayerRatio: each ratio is raised to the least that still lets the budget be met if
    every later layer prunes at ``max_ratio``. GlobalRatio and MetricMix's joint mode:
    ratios move towards ``max_ratio`` by the smallest common fraction that meets the
    budget (found by bisection on the exact costs). Envs whose actions always meet the
    budget (``prunes_to_budget``: MetricMix's global mode, Panning, GlobalRatio's
    ``action="logits"``) pass unchanged. Every budget an env accepts is reachable (envs
    refuse the others when made), so a projection always exists.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, (LayerRatioEnv, GlobalRatioEnv, MetricMixEnv, PanningEnv)):
            raise TypeError(f"BudgetProjection wraps prune-gym envs, not {type(base).__name__}")
        self.base = base

    def meets_budget(self, ratios: np.ndarray) -> bool:
        """Whether per-layer ``ratios`` meet the budget on the exact cost model.

        The ratios are first sent through a float32 action and back, exactly as the env
        will see them, so rounding cannot tip a boundary case over the budget.
        """
        base = self.base
        return base.meets_budget(base.action_to_ratios(base.ratios_to_action(ratios)))

    def action(self, action: Any) -> np.ndarray:
        """The projected action (same shape, float32)."""
        base = self.base
        action = base.check_action(action)
        if base.prunes_to_budget:
            return action.astype(np.float32)
        if isinstance(base, LayerRatioEnv):
            return self._project_layer(action)
        if isinstance(base, GlobalRatioEnv):
            return base.ratios_to_action(self.scale_up(base.action_to_ratios(action)))
        if isinstance(base, MetricMixEnv) and base.mode == "joint":
            ratios = self.scale_up(base.action_to_ratios(action[: base.num_layers]))
            return np.concatenate([base.ratios_to_action(ratios), action[base.num_layers :]])
        return action.astype(np.float32)

    def _project_layer(self, action: np.ndarray) -> np.ndarray:
        """Raise this layer's ratio to what the budget needs, given what later layers can do."""
        base: LayerRatioEnv = self.base
        t = base.step_index
        ratio = float(base.action_to_ratios(action)[0])
        kept = base.kept_so_far()
        shares = {"flops": base.macs_share, "params": base.params_share}
        for resource, limit in self.base.proxy_limits().items():
            share = shares[resource]
            later_floor = share[t + 1 :].sum() * (1.0 - base.max_ratio)
            if share[t] > 0:
                needed = 1.0 - (limit - kept[resource] - later_floor) / share[t]
                ratio = max(ratio, needed)
        ratio = min(ratio, base.max_ratio)
        units = base.context.builder().unit_count(base.layer_names[t])
        # round up to whole weights/channels, with a margin that survives float32 actions
        ratio = min((math.ceil(ratio * units - 1e-9) + 0.25) / units, base.max_ratio)
        return base.ratios_to_action(np.array([ratio]))

    def scale_up(self, ratios: np.ndarray) -> np.ndarray:
        """``ratios + f * (max_ratio - ratios)`` with the least f in [0, 1] meeting the budget."""
        return scaled_toward_max(self.base, ratios, self.meets_budget)


class CostMonitor(gym.Wrapper):
    """Sum each resource's per-step cost over the episode into ``info["episode"]``.

    Adds ``cost`` (all resources) and ``cost_<resource>`` next to SB3 ``Monitor``'s r/l/t;
    wrap it around the Monitor (``CostMonitor(Monitor(env))``) or use it alone.
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
