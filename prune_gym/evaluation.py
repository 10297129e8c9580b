"""Assess any policy, learned (an SB3 model) or fixed (a baseline), on a pruning env.

Both speak SB3's ``predict(obs, deterministic=...)``, so one loop serves them: it runs
episodes, sums costs, and re-assesses the final masks on the full validation and test
splits (optionally after the same fine-tuning step count for every method, for fairness).
Selection is never made on test: test accuracy is only reported.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from prune_gym.envs.context import PruningContext
from prune_gym.pruning import MaskSet

#: per-episode fields copied from the final ``info`` into a record.
INFO_FIELDS = (
    "accuracy",
    "sparsity",
    "params_ratio",
    "macs_ratio",
    "latency_ratio",
    "budget_violation",
    "feasible",
    "ratios",
)


class Policy(Protocol):
    """Anything with SB3's ``predict``: ``stable_baselines3`` models and fixed policies."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]: ...


def assess_masks(
    context: PruningContext, masks: MaskSet, finetune_steps: int = 0, seed: int = 0
) -> dict[str, float]:
    """Val and test accuracy of the context's network under ``masks`` (``context.assess``).

    With ``finetune_steps`` > 0 the masked network is trained first; the shared model is
    restored afterwards (``PruningContext.masked``). Results are cached by mask.
    """
    return context.assess(masks, finetune_steps, seed)


def assess_policy(
    policy: Policy,
    env: gym.Env,
    n_episodes: int = 1,
    *,
    deterministic: bool = True,
    seed: int = 0,
    finetune_steps: int = 0,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One record per episode: return, length, costs, the final info, val/test accuracy.

    ``finetune_steps`` fine-tunes every episode's final masks before val/test accuracy
    are measured, the same budget for every policy compared. ``options`` go to every
    ``reset`` (e.g. ``{"budget": {...}}`` for a budget-conditioned env).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes={n_episodes!r} must be >= 1")
    base = env.unwrapped
    records = []
    for episode in range(n_episodes):
        start = time.perf_counter()
        observation, _ = env.reset(seed=seed + episode, options=options)
        total, length, costs, done = 0.0, 0, {}, False
        while not done:
            action, _ = policy.predict(observation, deterministic=deterministic)
            observation, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            for resource, cost in info.get("costs", {}).items():
                costs[resource] = costs.get(resource, 0.0) + cost
            done = terminated or truncated
        record: dict[str, Any] = {"episode": episode, "seed": seed + episode, "return": total}
        record["length"] = length
        record |= {field: info[field] for field in INFO_FIELDS if field in info}
        record |= {f"cost_{resource}": value for resource, value in costs.items()}
        record |= assess_masks(base.context, base.last_masks, finetune_steps, seed + episode)
        record["wall_time"] = time.perf_counter() - start
        records.append(record)
    return records
