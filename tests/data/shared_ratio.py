"""An env family defined outside the package: one pruning ratio shared by every layer.

It derives from ``PruningEnv`` alone, adds a setting and answers the hooks that fixed
policies and ``BudgetProjection`` ask; registered as ``shared_ratio/SharedRatio-v0`` on
import (``--import tests/data/shared_ratio.py``).
"""

import dataclasses
from collections.abc import Sequence
from dataclasses import field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prune_gym.checks import check_fraction
from prune_gym.envs import PruningEnv, PruningSettings, doc
from prune_gym.envs.allocations import least_feasible


@dataclasses.dataclass(frozen=True, kw_only=True)
class SharedRatioSettings(PruningSettings):
    """The common settings and the least ratio the shared one is raised to."""

    floor: float = field(default=0.0, metadata=doc("least shared ratio, in [0, 1]"))

    def __post_init__(self) -> None:
        self._set("floor", check_fraction(self.floor, "floor"))
        super().__post_init__()


class SharedRatioEnv(PruningEnv):
    """One step: the action's one entry is the pruning ratio of every layer."""

    SETTINGS = SharedRatioSettings

    def _setup(self, settings: SharedRatioSettings) -> None:
        super()._setup(settings)
        self._observation, self.feature_names = self.table_observation()
        self.observation_space = spaces.Box(-1.0, 1.0, self._observation.shape, np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def fixed_policies(self) -> tuple[str, ...]:
        return ("random", "uniform")

    def allocation_action(self, ratios: Sequence[float], metric: str | None = None) -> np.ndarray:
        return self.ratios_to_action([max(ratios)])

    def shared_ratio(self, action: Any) -> float:
        """The ratio of every layer an action means (at least ``floor``)."""
        return max(float(self.action_to_ratios(action)[0]), self.settings.floor)

    def project_to_budget(self, action: Any) -> np.ndarray:
        def feasible(ratio: float) -> bool:
            shared = self.shared_ratio(self.ratios_to_action([ratio]))
            return self.fits_ratios(np.full(self.num_layers, shared))

        start = self.shared_ratio(self.check_action(action))
        return self.ratios_to_action([least_feasible(feasible, start, self.max_ratio)])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        return self._observation.copy(), {}

    def _act(self, action: np.ndarray):
        ratios = dict.fromkeys(self.layer_names, self.shared_ratio(action))
        masks = self.context.builder().from_ratios(ratios)
        info = self.episode_info(masks, self.reward_metrics(masks)) | {"floor": self.settings.floor}
        info |= self.cost_info(info["used"])
        return self._observation.copy(), self.episode_reward(info), True, False, info


if "shared_ratio/SharedRatio-v0" not in gym.registry:
    gym.register(id="shared_ratio/SharedRatio-v0", entry_point=SharedRatioEnv)
