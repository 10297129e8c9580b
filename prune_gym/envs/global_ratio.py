"""GlobalRatio-v0: one step, one pruning ratio per layer (or density logits around a reference)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import numpy as np
from gymnasium import spaces

from prune_gym.checks import check_choice, check_fraction, check_number
from prune_gym.envs.allocations import REFERENCES, reference_ratios, rescaled_to_budget
from prune_gym.envs.base import PruningEnv
from prune_gym.envs.settings import PruningSettings, doc
from prune_gym.pruning import MaskSet

ACTIONS = ("ratios", "logits")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GlobalRatioSettings(PruningSettings):
    """GlobalRatio-v0's settings: the common ones and what an action means."""

    action: str = field(
        default="ratios",
        metadata=doc(
            "`'ratios'`: each entry a layer's ratio; `'logits'`: density offsets from "
            "`reference`, rescaled onto the budget"
        ),
    )
    reference: str | Mapping[str, float] = field(
        default="global",
        metadata=doc(
            "with logits, the allocation at offset 0: `'global'`, `'erk'`, `'uniform'` or a "
            "mapping layer name -> ratio"
        ),
    )
    density_factor: float = field(
        default=4.0,
        metadata=doc("with logits, a layer's density scales by `density_factor ** a`; > 1"),
    )

    def __post_init__(self) -> None:
        check_choice(self.action, "action", ACTIONS)
        if isinstance(self.reference, Mapping):
            ratios = {n: check_fraction(r, f"reference[{n!r}]") for n, r in self.reference.items()}
            self._set("reference", ratios)
        else:
            check_choice(self.reference, "reference", REFERENCES)
        factor = check_number(self.density_factor, "density_factor", 1.0, low_open=True)
        self._set("density_factor", factor)
        super().__post_init__()


class GlobalRatioEnv(PruningEnv):
    """Choose every layer's pruning ratio at once; rewarded with the pruned net's accuracy.

    Observation: the whole layer table (``layer_feature_names`` per layer, flattened in
    layer order) followed by the budget features. Action: ``(L,)`` in [-1, 1]. The
    episode is one step.

    ``action="ratios"`` (default): each entry maps to a ratio in [min_ratio, max_ratio]
    (``action_to_ratios``); any allocation can be expressed, including infeasible ones,
    which ``info["feasible"]`` reports (or ``BudgetProjection`` prevents). The reward does
    not price the budget, so an unconstrained agent (plain PPO, SAC) learns to overspend:
    train a Lagrangian agent, or wrap the env in ``BudgetProjection`` or
    ``LagrangianReward``, or use ``action="logits"``. ``prune-gym train`` uses
    ``action="logits"`` with the best fixed policy as ``reference`` and ``max_ratio=1.0``
    (``agents.run_config.ENV_DEFAULTS``; README, "Environments").

    ``action="logits"``: feasible by construction and starting from a strong allocation.
    Entry l scales layer l's density in the ``reference`` allocation at the budget
    (``"global"``: one threshold on ``rank_by`` scores; ``"erk"``; ``"uniform"``; or a
    mapping layer name -> ratio, such as the best fixed policy's allocation) by
    ``density_factor ** a_l``; all densities are then multiplied by the one factor that
    puts params/flops exactly on the tightest budget. The zero action is the reference
    (its ratios clipped into [min_ratio, max_ratio]) scaled onto the budget: itself up to
    a weight when unstructured; a channel reference stops at whole channels and may leave
    budget over, which the zero action shares out in proportion to its densities. Use it
    when the budget must hold in every episode and the question is how to share it
    between layers; a latency budget may still need a Lagrangian agent, since only its MAC
    proxy is rescaled.
    """

    SETTINGS = GlobalRatioSettings
    FAMILY_ID = "prune_gym/GlobalRatio-v0"

    def _setup(self, settings: GlobalRatioSettings) -> None:
        super()._setup(settings)
        observation, self.feature_names = self.table_observation()
        self.observation_space = spaces.Box(-1.0, 1.0, observation.shape, np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (self.num_layers,), np.float32)
        self._last_masks_of: tuple[tuple, MaskSet] | None = None
        self._references: dict[tuple, np.ndarray] = {}
        self.reference_densities  # noqa: B018  (computed now: a bad reference raises here)

    @property
    def reference_densities(self) -> np.ndarray | None:
        """With logits, the reference's densities at this episode's budget (computed once
        per budget; a reference given layer by layer is the same at every budget)."""
        if self.settings.action != "logits":
            return None
        if self.budget_key not in self._references:
            ratios = np.clip(self._reference_ratios(), self.min_ratio, self.max_ratio)
            self._references[self.budget_key] = 1.0 - ratios
        return self._references[self.budget_key]

    def _reference_ratios(self) -> np.ndarray:
        """The reference allocation over ``layer_names``, named or given layer by layer."""
        reference = self.settings.reference
        if not isinstance(reference, Mapping):
            return reference_ratios(self, reference)
        if set(reference) != set(self.layer_names):
            raise ValueError(
                f"reference ratios name layers {sorted(reference)}; this env controls "
                f"{self.layer_names}"
            )
        return np.array([reference[name] for name in self.layer_names])

    @property
    def prunes_to_budget(self) -> bool:
        """Density logits are rescaled onto the budget; plain ratios are not."""
        return self.settings.action == "logits"

    def action_to_ratios(self, action: Any) -> np.ndarray:
        """The per-layer ratios an action means (elementwise map, or logits rescaled)."""
        if self.settings.action == "ratios":
            return super().action_to_ratios(action)
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        factors = self.settings.density_factor**action
        return rescaled_to_budget(self, self.reference_densities * factors)

    def ratios_to_action(self, ratios: Any) -> np.ndarray:
        """An action for ``ratios``; with logits, exact for ratios that meet the budget exactly.

        Logits are the log-densities relative to the reference (clipped to the action
        box), so an allocation with budget to spare is scaled up onto it.
        """
        if self.settings.action == "ratios":
            return super().ratios_to_action(ratios)
        if isinstance(ratios, dict):
            ratios = [ratios[name] for name in self.layer_names]
        densities = np.maximum(1.0 - np.asarray(ratios, dtype=np.float64), 1e-12)
        logits = np.log(densities / self.reference_densities)
        logits /= math.log(self.settings.density_factor)
        return np.clip(logits, -1.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode; the observation describes the dense network and the budget."""
        super().reset(seed=seed, options=options)
        return self.table_observation()[0], {}

    def reward_masks(self, action: Any) -> MaskSet:
        """The masks of ``action``: every layer pruned at the ratio it means.

        The last action's masks are kept, so the step after ``PruningVectorEnv`` asked
        for them does not rescale the same action onto the same budget again.
        """
        action = self.check_action(action)
        key = (action.tobytes(), self.budget_key)
        if self._last_masks_of is None or self._last_masks_of[0] != key:
            ratios = dict(zip(self.layer_names, self.action_to_ratios(action), strict=True))
            self._last_masks_of = (key, self.context.builder().from_ratios(ratios))
        return self._last_masks_of[1]

    def _act(self, action: np.ndarray):
        """Prune every layer at its ratio, evaluate, and end the episode."""
        masks = self.reward_masks(action)
        info = self.episode_info(masks, self.reward_metrics(masks))
        info |= self.cost_info(info["used"])
        return self.table_observation()[0], self.episode_reward(info), True, False, info
