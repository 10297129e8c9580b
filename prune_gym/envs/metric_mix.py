"""MetricMix-v0: one step; the action weighs importance metrics, the env prunes to the budget."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from prune_gym.checks import check_choice
from prune_gym.envs.base import PruningEnv
from prune_gym.envs.policy_names import GLOBAL_METRIC, RANDOM, RANKING_METRIC, RATIO_METHODS
from prune_gym.envs.settings import PruningSettings, doc
from prune_gym.pruning import MaskSet, prunable_layers
from prune_gym.pruning.allocate import (
    CACHE_CHUNK,
    cache_slices,
    flat_percentile_ranks,
    lowest_kept,
    per_layer,
)
from prune_gym.pruning.layers import weight_shapes
from prune_gym.pruning.masks import effective_weight

MODES = ("global", "joint")


def action_to_mix(action: np.ndarray) -> np.ndarray:
    """Convex weights from actions in [-1, 1]: ``(a + 1) / 2`` normalised to sum 1.

    All-minus-one actions (no weight anywhere) give the uniform mix.
    """
    raw = (np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
    total = raw.sum()
    return raw / total if total > 0 else np.full_like(raw, 1.0 / raw.size)


def mix_to_action(weights: Any) -> np.ndarray:
    """An action whose ``action_to_mix`` is ``weights`` (normalised to sum 1 first)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"mix weights {weights.tolist()} must be nonnegative with a positive sum")
    return (2.0 * weights / weights.sum() - 1.0).astype(np.float32)


def one_hot(metrics: Sequence[str], metric: str) -> np.ndarray:
    """Mix weights over ``metrics`` with all weight on ``metric`` (which must be one of them)."""
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not among this env's metrics {tuple(metrics)}")
    return np.array([float(m == metric) for m in metrics])


def mix_percentiles(
    percentiles: Mapping[str, torch.Tensor], weights: np.ndarray, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Per weight, the weighted sum of every metric's flat percentiles (metrics in dict order).

    Exactly ``w_1 * p_1 + w_2 * p_2 + ...`` in float64, left to right, computed one
    cache-sized slice at a time into ``out`` (float64, the percentiles' length), which a
    caller mixing every step reuses instead of allocating a fresh tensor per mix.
    """
    metrics = list(percentiles)
    if len(metrics) != len(weights):
        raise ValueError(f"{len(weights)} mix weights for {len(metrics)} metrics {metrics}")
    first = percentiles[metrics[0]]
    out = torch.empty(first.numel(), dtype=torch.float64) if out is None else out
    term = torch.empty(min(CACHE_CHUNK, first.numel()), dtype=torch.float64)
    for piece in cache_slices(first.numel()):
        total, scratch = out[piece], term[: piece.stop - piece.start]
        torch.mul(first[piece], float(weights[0]), out=total)
        for metric, weight in zip(metrics[1:], weights[1:], strict=True):
            total.add_(torch.mul(percentiles[metric][piece], float(weight), out=scratch))
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricMixSettings(PruningSettings):
    """MetricMix-v0's settings: the common ones and what an action chooses."""

    mode: str = field(
        default="global",
        metadata=doc(
            "`'global'`: a metric mix, pruned to the budget by one threshold; `'joint'`: "
            "per-layer ratios and the mix ranking weights inside each layer"
        ),
    )

    def __post_init__(self) -> None:
        check_choice(self.mode, "mode", MODES)
        super().__post_init__()
        if not self.metrics:
            raise ValueError("MetricMix needs at least one metric to mix; got metrics=()")


class MetricMixEnv(PruningEnv):
    """Choose how much each importance metric counts; the env ranks weights by the mix.

    Every metric's scores are turned into percentiles over the network (so SynFlow's huge
    values and SNIP's tiny ones weigh alike) and mixed with the convex weights of the
    action. ``mode="global"`` (default): action ``(K,)``; the env prunes with one global
    threshold on the mixed score, to exactly the tightest budget. ``mode="joint"``: action
    ``(L + K,)``: per-layer ratios, then the mix that ranks weights inside each layer.
    Observation: the layer table flattened plus the budget features, as in GlobalRatio.
    """

    SETTINGS = MetricMixSettings
    FAMILY_ID = "prune_gym/MetricMix-v0"

    def _setup(self, settings: MetricMixSettings) -> None:
        super()._setup(settings)
        self._shapes = weight_shapes(self.context.model)
        self._percentiles = {
            metric: flat_percentile_ranks({n: self.context.scores[metric][n] for n in self._shapes})
            for metric in self.metrics
        }
        self._sizes = {name: math.prod(shape) for name, shape in self._shapes.items()}
        self._mix = torch.empty(sum(self._sizes.values()), dtype=torch.float64)
        self._dense_zeros = self._zero_in_dense_net()
        observation, self.feature_names = self.table_observation()
        self.observation_space = spaces.Box(-1.0, 1.0, observation.shape, np.float32)
        width = len(self.metrics) + (self.num_layers if settings.mode == "joint" else 0)
        self.action_space = spaces.Box(-1.0, 1.0, (width,), np.float32)

    @property
    def prunes_to_budget(self) -> bool:
        """Global mode prunes to exactly the tightest budget; joint mode takes ratios."""
        return self.settings.mode == "global"

    @property
    def acts_by_ratios(self) -> bool:
        """Joint mode's actions start with per-layer ratios; global mode's are a mix only."""
        return self.settings.mode == "joint"

    def fixed_policies(self) -> tuple[str, ...]:
        """Global mode: each mixed metric's one-hot mix; joint mode: the per-layer
        allocations whose ranking metric (``RANKING_METRIC``) is mixed, or that have none."""
        if self.settings.mode == "global":
            return (RANDOM, *(n for n, metric in GLOBAL_METRIC.items() if metric in self.metrics))
        mixed = [
            name
            for name in RATIO_METHODS
            if name not in RANKING_METRIC or RANKING_METRIC[name] in self.metrics
        ]
        return (RANDOM, *mixed)

    def allocation_action(self, ratios: Sequence[float], metric: str | None = None) -> np.ndarray:
        """Joint mode: ``ratios``, ranked inside layers by ``metric``'s one-hot mix (None:
        every metric alike). Global mode has no ratios: ``TypeError``."""
        if self.settings.mode == "global":
            raise TypeError('MetricMix with mode="global" acts a metric mix, not per-layer ratios')
        weights = np.ones(len(self.metrics)) if metric is None else one_hot(self.metrics, metric)
        return self.weights_to_action(weights, ratios=ratios)

    def mix_action(self, weights: Sequence[float]) -> np.ndarray:
        """Global mode: the mix ``weights``; joint mode needs ratios too: ``TypeError``."""
        if self.settings.mode == "joint":
            raise TypeError('MetricMix with mode="joint" acts ratios with its mix')
        return mix_to_action(weights)

    def project_to_budget(self, action: Any) -> np.ndarray:
        """Joint mode: the ratios move towards ``max_ratio`` just enough; the mix is kept."""
        action = self.check_action(action)
        if self.prunes_to_budget:
            return action.astype(np.float32)
        ratios = self.scaled_to_budget(self.action_to_ratios(action[: self.num_layers]))
        mix = action[self.num_layers :]
        return np.concatenate([self.ratios_to_action(ratios), mix]).astype(np.float32)

    def tightest_masks(self) -> MaskSet:
        """Global mode prunes by one threshold, so everything removable can go."""
        if self.settings.mode == "global":
            return self.context.builder().global_threshold(1.0)
        return super().tightest_masks()

    def action_to_weights(self, action: Any) -> np.ndarray:
        """The convex metric weights an action means (its last K entries in joint mode)."""
        return action_to_mix(np.asarray(action, dtype=np.float64)[-len(self.metrics) :])

    def weights_to_action(self, weights: Any, ratios: Any = None) -> np.ndarray:
        """An action for the given metric weights (and, in joint mode, layer ratios)."""
        mix = mix_to_action(weights)
        if self.settings.mode == "global":
            return mix
        if ratios is None:
            raise ValueError('mode="joint" needs ratios as well as weights')
        return np.concatenate([self.ratios_to_action(ratios), mix]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; the observation describes the dense network and the budget."""
        super().reset(seed=seed, options=options)
        return self.table_observation()[0], {}

    def _act(self, action: np.ndarray):
        """Rank by the mix, prune (globally to the budget, or per layer), evaluate, end."""
        weights = self.action_to_weights(action)
        mix = mix_percentiles(self._percentiles, weights, out=self._mix)
        if self.settings.mode == "global":
            masks = self._budget_masks_of(mix)
        else:
            builder = self.context.mask_builder(per_layer(mix, self._shapes))
            ratios = self.action_to_ratios(action[: self.num_layers])
            masks = builder.from_ratios(dict(zip(self.layer_names, ratios, strict=True)))
        info = self.episode_info(masks, self.reward_metrics(masks))
        info |= self.cost_info(info["used"])
        info["metric_weights"] = dict(zip(self.metrics, weights.tolist(), strict=True))
        return self.table_observation()[0], self.episode_reward(info), True, False, info

    def _budget_masks_of(self, mix: torch.Tensor) -> MaskSet:
        """``budget_masks`` of a builder ranking by the flat ``mix``, without one if unstructured.

        A ``MaskBuilder`` would copy the mix and find which weights the dense net already
        has at zero; both are known here, so the mix itself (those weights at -inf, as a
        builder ranks them) goes straight to the one-pass budget search.
        """
        if self.structure == "channel":
            return self.budget_masks(self.context.mask_builder(per_layer(mix, self._shapes)))
        mix.index_fill_(0, self._dense_zeros, -math.inf)
        return MaskSet(per_layer(lowest_kept(mix, self._sizes, self.fits_removal), self._shapes))

    def _zero_in_dense_net(self) -> torch.Tensor:
        """Flat positions of the weights that are exactly zero in the dense net (usually none)."""
        model = self.context.model
        self.context.dense_masks.apply(model)
        weights = [effective_weight(module).reshape(-1) for _, module in prunable_layers(model)]
        return torch.cat(weights).eq(0).nonzero().squeeze(1).cpu()
