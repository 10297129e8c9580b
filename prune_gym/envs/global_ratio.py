"""GlobalRatio-v0: one step, one pruning ratio per layer."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from prune_gym.envs.base import PruningEnv


class GlobalRatioEnv(PruningEnv):
    """Choose every layer's pruning ratio at once; rewarded with the pruned net's accuracy.

    Observation: the whole layer table (``layer_feature_names`` per layer, flattened in
    layer order) followed by the budget features. Action: ``(L,)`` in [-1, 1], mapped to
    ratios in [min_ratio, max_ratio] (``action_to_ratios``). The episode is one step.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observation, self.feature_names = self.table_observation()
        self.observation_space = spaces.Box(-1.0, 1.0, self._observation.shape, np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.num_layers,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; the observation describes the dense network and the budget."""
        super().reset(seed=seed, options=options)
        return self._observation.copy(), {}

    def step(self, action: Any):
        """Prune every layer at its ratio, evaluate, and end the episode."""
        ratios = self.action_to_ratios(self.check_action(action))
        masks = self.context.builder().from_ratios(dict(zip(self.layer_names, ratios, strict=True)))
        info = self.episode_info(masks, self.evaluate_masks(masks))
        info |= self.cost_info(info["used"])
        return self._observation.copy(), float(info["accuracy"]), True, False, info
