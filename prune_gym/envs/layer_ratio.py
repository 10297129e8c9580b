"""LayerRatio-v0: AMC-style, one step per prunable layer, the action is that layer's ratio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from prune_gym.envs.base import PruningEnv
from prune_gym.envs.observations import LAYER_DYNAMIC_FEATURES, budget_features
from prune_gym.envs.settings import PruningSettings
from prune_gym.pruning import MaskSet


class LayerRatioEnv(PruningEnv):
    """Prune the network layer by layer in forward order, as AMC does.

    Observation at step t: layer t's row of the layer table (static and per-metric
    features), then the dynamic features (MACs and params removed so far, left in later
    layers, the previous ratio) and the budget features (limits and what remains).
    Action: ``(1,)`` in [-1, 1], this layer's ratio. Reward: 0 until the last layer, then
    the pruned network's accuracy on the fixed reward samples. Each step's
    ``info["costs"]`` is the layer's kept share of the dense params/MACs; the last step
    adds whatever coupling between layers changed (channel structure), so the episode
    sum equals the final used fraction.
    """

    FAMILY_ID = "prune_gym/LayerRatio-v0"

    def _setup(self, settings: PruningSettings) -> None:
        super()._setup(settings)
        layers = self.context.layers
        cost_model = self.context.cost_model
        #: each layer's share of the dense MACs and params.
        self.macs_share = np.array([layer.macs for layer in layers]) / cost_model.macs_dense
        self.params_share = np.array([layer.params for layer in layers]) / cost_model.params_dense
        self._macs_later = np.concatenate([np.cumsum(self.macs_share[::-1])[::-1][1:], [0.0]])
        self._params_later = np.concatenate([np.cumsum(self.params_share[::-1])[::-1][1:], [0.0]])
        self.feature_names = self.layer_feature_names + LAYER_DYNAMIC_FEATURES
        self.feature_names += self.global_feature_names
        size = len(self.feature_names)
        self.observation_space = spaces.Box(-1.0, 1.0, (size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._ratios = np.zeros(self.num_layers)
        self._step = 0
        self._spent = {"flops": 0.0, "params": 0.0}

    def _observation(self) -> np.ndarray:
        """Row of the current layer plus dynamic and budget features."""
        t = min(self._step, self.num_layers - 1)
        kept = self.kept_so_far()
        kept_macs, kept_params = kept["flops"], kept["params"]
        dynamic = [
            self.macs_share[: self._step].sum() - kept_macs,
            self.params_share[: self._step].sum() - kept_params,
            self._macs_later[t],
            self._params_later[t],
            self._ratios[t - 1] if t > 0 else 0.0,
        ]
        row = np.concatenate(
            [self.layer_table[t], dynamic, budget_features(self.budget, kept_macs, kept_params)]
        )
        return np.clip(row, -1.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start at the first layer with nothing pruned."""
        super().reset(seed=seed, options=options)
        self._ratios = np.zeros(self.num_layers)
        self._step = 0
        self._spent = {"flops": 0.0, "params": 0.0}
        return self._observation(), {}

    @property
    def step_index(self) -> int:
        """Index of the layer the next action prunes (``num_layers`` once the episode ends)."""
        return self._step

    def kept_so_far(self) -> dict[str, float]:
        """Fractions of the dense MACs and params kept by the layers already pruned."""
        t = self._step
        return {
            "flops": float(self.macs_share[:t] @ (1.0 - self._ratios[:t])),
            "params": float(self.params_share[:t] @ (1.0 - self._ratios[:t])),
        }

    @property
    def current_layer(self) -> str:
        """Name of the layer the next action prunes."""
        return self.layer_names[min(self._step, self.num_layers - 1)]

    def allocation_action(self, ratios: Sequence[float], metric: str | None = None) -> np.ndarray:
        """The action that prunes the current layer to its ratio in ``ratios``."""
        t = min(self._step, self.num_layers - 1)
        return self.ratios_to_action(np.asarray(ratios, dtype=np.float64)[t : t + 1])

    def project_to_budget(self, action: Any) -> np.ndarray:
        """Raise this layer's ratio to the least that still lets the budget be met if every
        later layer prunes at ``max_ratio``."""
        t = self._step
        ratio = float(self.action_to_ratios(self.check_action(action))[0])
        kept = self.kept_so_far()
        shares = {"flops": self.macs_share, "params": self.params_share}
        for resource, limit in self.proxy_limits().items():
            share = shares[resource]
            later_floor = share[t + 1 :].sum() * (1.0 - self.max_ratio)
            if share[t] > 0:
                needed = 1.0 - (limit - kept[resource] - later_floor) / share[t]
                ratio = max(ratio, needed)
        ratio = min(ratio, self.max_ratio)
        units = self.context.builder().unit_count(self.layer_names[t])
        # round up to whole weights/channels, with a margin that survives float32 actions
        ratio = min((math.ceil(ratio * units - 1e-9) + 0.25) / units, self.max_ratio)
        return self.ratios_to_action(np.array([ratio]))

    def _pruned_ratio(self, action: np.ndarray) -> float:
        """The current layer's ratio for ``action``, rounded to what its mask removes."""
        requested = float(self.action_to_ratios(action)[0])
        units = self.context.builder().unit_count(self.layer_names[self._step])
        return round(requested * units) / units

    def _final_masks(self, ratios: np.ndarray) -> MaskSet:
        """The masks of every layer at ``ratios`` (the episode's, once all are set)."""
        return self.context.builder().from_ratios(dict(zip(self.layer_names, ratios, strict=True)))

    def reward_masks(self, action: Any) -> MaskSet | None:
        """The pruned net's masks if ``action`` sets the last layer; None before."""
        if self._episode_over or self._step != self.num_layers - 1:
            return None
        ratios = self._ratios.copy()
        ratios[self._step] = self._pruned_ratio(self.check_action(action))
        return self._final_masks(ratios)

    def _act(self, action: np.ndarray):
        """Set the current layer's ratio; evaluate the pruned net after the last layer."""
        t = self._step
        self._ratios[t] = self._pruned_ratio(action)
        shares = {
            "flops": self.macs_share[t] * (1.0 - self._ratios[t]),
            "params": self.params_share[t] * (1.0 - self._ratios[t]),
        }
        self._step += 1
        if self._step < self.num_layers:
            for resource in self._spent:
                self._spent[resource] += shares[resource]
            return self._observation(), 0.0, False, False, self.cost_info(shares)
        masks = self._final_masks(self._ratios)
        info = self.episode_info(masks, self.reward_metrics(masks))
        final = {r: used - self._spent.get(r, 0.0) for r, used in info["used"].items()}
        info |= self.cost_info(final)
        return self._observation(), self.episode_reward(info), True, False, info
