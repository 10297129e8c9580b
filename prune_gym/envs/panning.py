"""Panning-v0: prune a freshly initialised network in T steps, choosing a metric mix each step.

After Kang et al., "Neural Network Panning" (ACCV 2022) and its code: an exponential keep
schedule ``keep_k = (1 - target) ** ((k + 1) / T)``; at every step the agent weighs the
metrics (SynFlow, SNIP, GraSP by default), scores are recomputed on the masked network,
and the weights ranked lowest by the mix are removed down to ``keep_k``. The reward is a
dense proxy (no training inside the episode) unless ``reward="trained_accuracy"``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from prune_gym.checks import check_fraction, check_int, check_number
from prune_gym.envs.base import PruningEnv
from prune_gym.envs.metric_mix import action_to_mix, mix_percentiles, mix_to_action
from prune_gym.envs.policy_names import PANNING_METHODS, RANDOM
from prune_gym.envs.settings import PruningSettings, doc
from prune_gym.pruning import Budget, MaskSet, compute_scores
from prune_gym.pruning.allocate import flat_percentile_ranks, per_layer, whole_weight_sparsity
from prune_gym.pruning.cost import BudgetRange, budget_setting
from prune_gym.pruning.layers import weight_shapes

PANNING_METRICS = ("synflow", "snip", "grasp")
OBSERVATION_FEATURES = (
    "dense_loss",
    "dense_grad_norm",
    "loss_change",
    "grad_norm_change",
    "effective_sparsity",
    "target_sparsity",
    "progress",
)
#: samples per class in the batch the proxies (loss, g^T g) are measured on.
SAMPLES_PER_CLASS = 10


def squash(value: float) -> float:
    """Map a nonnegative quantity to [0, 1) monotonically: ``x / (1 + x)``."""
    return value / (1.0 + value)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PanningSettings(PruningSettings):
    """Panning-v0's settings: the schedule, the target and the reward's training.

    The target is derived once: ``target``, or ``1 - params`` of a ``budget`` (which may
    hold ``params`` only; the two must agree if both are given), or None, drawn per
    episode from ``target_range``.
    """

    REWARDS = ("proxy", "trained_accuracy")
    DEFAULT_BUDGET = None

    budget: Mapping[str, float] | Budget | None = field(
        default=None, metadata=doc('`{"params": p}` means `target = 1 - p`; no other resource')
    )
    metrics: tuple[str, ...] = field(
        default=PANNING_METRICS, metadata=doc("the metrics each step mixes")
    )
    reward: str = field(
        default="proxy",
        metadata=doc(
            "`'proxy'` (dense, per step) or `'trained_accuracy'` (after `train_steps`, at the end)"
        ),
    )
    weights: str = field(
        default="init", metadata=doc("`'init'`: Panning prunes the initialisation")
    )
    iterations: int = field(default=20, metadata=doc("pruning steps per episode"))
    target: float | None = field(
        default=None, metadata=doc("target sparsity in [0, 1); None: drawn per episode")
    )
    target_range: tuple[float, float] = field(
        default=(0.8, 0.99),
        metadata=doc("(low, high) the target is drawn from, 0 <= low <= high < 1"),
    )
    train_steps: int = field(
        default=200, metadata=doc("training of the final net with `'trained_accuracy'`")
    )

    def __post_init__(self) -> None:
        if self.reward_finetune_steps != 0:
            raise ValueError(
                f"reward_finetune_steps={self.reward_finetune_steps!r} is not a Panning "
                "setting: Panning trains the final sparse net from its initialisation for "
                "train_steps (with reward='trained_accuracy'); give train_steps= instead "
                "(reward_finetune_steps may only be 0)"
            )
        if self.structure != "unstructured":
            raise ValueError(
                f"Panning prunes single weights before training; structure="
                f"{self.structure!r} is not supported (only 'unstructured')"
            )
        if self.weights != "init":
            raise ValueError(f"weights={self.weights!r}: Panning prunes the initialisation, 'init'")
        self._set("iterations", check_int(self.iterations, "iterations", low=1))
        pair = self.target_range
        if not isinstance(pair, (tuple, list, np.ndarray)) or len(pair) != 2:
            raise ValueError(
                f"target_range={pair!r} must be a pair (low, high) of target "
                "sparsities with 0 <= low <= high < 1"
            )
        low, high = (check_fraction(v, f"target_range[{i}]") for i, v in enumerate(pair))
        if not low <= high < 1.0:
            raise ValueError(f"target_range={pair!r} must satisfy low <= high < 1")
        self._set("target_range", (low, high))
        self._set("target", self._derived_target())
        if self.target is not None:
            self._set("budget", Budget({"params": max(1.0 - self.target, 1e-9)}))
        self._set("train_steps", check_int(self.train_steps, "train_steps", low=0))
        super().__post_init__()
        if not self.metrics:
            raise ValueError("Panning needs at least one metric to mix; got metrics=()")

    def _derived_target(self) -> float | None:
        """The fixed target sparsity: ``target``, or ``1 - params`` of the budget, or None."""
        target = self.target
        if target is not None:
            target = check_number(target, "target", 0.0, 1.0, high_open=True)
        if self.budget is None:
            return target
        budget = budget_setting(self.budget)
        if isinstance(budget, BudgetRange):
            raise ValueError(
                f"Panning draws its target from target_range, not a budget range "
                f"({budget.label}): give target_range=(low, high) sparsities"
            )
        limits = budget.limits
        if set(limits) != {"params"}:
            raise ValueError(
                f"Panning prunes to a target sparsity: budget={self.budget!r} may only hold "
                '"params" (target = 1 - params); use target= or target_range='
            )
        implied = 1.0 - limits["params"]
        if target is not None and not math.isclose(target, implied, abs_tol=1e-9):
            raise ValueError(
                f"target={target!r} and budget={limits!r} (target {implied:g}) disagree; "
                "give one of them"
            )
        return implied

    @property
    def reward_train_steps(self) -> int:
        """``train_steps`` under ``reward="trained_accuracy"``; the proxy reward trains nothing."""
        return self.train_steps if self.reward == "trained_accuracy" else 0


class PanningEnv(PruningEnv):
    """Iterative pruning before training, one metric mix per iteration.

    Observation (``feature_names``): the dense net's loss (over log C) and gradient norm
    g^T g on a class-balanced batch, the subnet's relative change of both, its effective
    sparsity (weights cut off from the input or output by pruning count as pruned), the
    target and the progress, each squashed into [0, 1]. Action ``(K,)``: metric weights
    (``action_to_weights``). Reward per step: ``-100 * |s_k - effective sparsity| -
    r_loss - r_gtg`` with s_k the scheduled sparsity and r the relative changes (r_gtg
    divided by 5, both capped at 10); a fully disconnected net ends the episode at -100
    per iteration left. ``reward="trained_accuracy"`` instead trains the final sparse net
    for ``train_steps`` and pays its reward-sample accuracy at the end (Panning takes
    ``train_steps``, not ``reward_finetune_steps``, which may only be 0). The target is drawn per
    episode from ``target_range``, a pair (low, high) with 0 <= low <= high < 1, unless
    ``target`` (or ``budget={"params": p}``, meaning target 1 - p) is given.
    """

    SETTINGS = PanningSettings
    FAMILY_ID = "prune_gym/Panning-v0"

    def _setup(self, settings: PanningSettings) -> None:
        super()._setup(settings)
        self.iterations = settings.iterations
        self.feature_names = OBSERVATION_FEATURES
        self.observation_space = spaces.Box(0.0, 1.0, (len(OBSERVATION_FEATURES),), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(self.metrics),), np.float32)
        self._proxy_batch = self.context.task.calibration_batch(
            SAMPLES_PER_CLASS * self.context.task.num_classes,
            seed=self.context.task.seed,
            class_balanced=True,
        )
        self._dense_masks = self.context.dense_masks
        self._shapes = weight_shapes(self.context.model)
        self._dense_loss, self._dense_gtg = self._loss_and_grad_norm(self._dense_masks)
        self._masks = self._dense_masks
        self.target = self._initial_target()
        self._step = 0
        self._effective_sparsity = 0.0

    def _initial_target(self) -> float:
        """The fixed target, or the top of ``target_range`` until an episode draws one."""
        fixed = self.settings.target
        return self.settings.target_range[1] if fixed is None else fixed

    def initial_budget(self) -> Budget:
        """The params budget of the initial target (``1 - target``)."""
        return Budget({"params": max(1.0 - self._initial_target(), 1e-9)})

    def episode_budget(self, options: Mapping[str, Any]) -> Budget:
        """The budget stays until ``reset`` draws the episode's target (``target_range``);
        ``options["budget"]`` is refused: the target sets it."""
        if "budget" in options:
            raise ValueError(
                "Panning's budget is 1 - its target sparsity: give target= or target_range= "
                f"when making the env, not reset options {dict(options)}"
            )
        return self.budget

    @property
    def acts_by_ratios(self) -> bool:
        """Actions are metric mixes; the schedule sets the sparsity."""
        return False

    def fixed_policies(self) -> tuple[str, ...]:
        """Random mixes, each iterative metric and the paper's hand-set stages."""
        return (RANDOM, *PANNING_METHODS)

    def allocation_action(self, ratios: Sequence[float], metric: str | None = None) -> np.ndarray:
        """``TypeError``: the schedule sets the sparsity, an action is a metric mix."""
        raise TypeError("Panning's actions are metric mixes; the schedule sets the sparsity")

    def mix_action(self, weights: Sequence[float]) -> np.ndarray:
        """The action whose metric weights are ``weights``."""
        return self.weights_to_action(weights)

    # the agent's vocabulary ---------------------------------------------------------------
    def action_to_weights(self, action: Any) -> np.ndarray:
        """The convex metric weights an action means."""
        return action_to_mix(action)

    def weights_to_action(self, weights: Any) -> np.ndarray:
        """An action whose metric weights are ``weights``."""
        return mix_to_action(weights)

    def keep_fraction(self, step: int) -> float:
        """Scheduled density after iteration ``step`` (0-based) of this episode."""
        return (1.0 - self.target) ** ((step + 1) / self.iterations)

    # proxies -----------------------------------------------------------------------------
    def _loss_and_grad_norm(self, masks: MaskSet) -> tuple[float, float]:
        """Cross-entropy and squared gradient norm g^T g of the masked net on the proxy batch."""
        model = self.context.model
        masks.apply(model)
        inputs, targets = (t.to(self.context.device) for t in self._proxy_batch)
        params = [p for p in model.parameters() if p.requires_grad]
        loss = F.cross_entropy(model(inputs), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        grad_norm = sum(float(g.pow(2).sum()) for g in grads if g is not None)
        return float(loss.detach()), grad_norm

    def _effective_sparsity_of(self, masks: MaskSet) -> float:
        """Fraction of weights that are pruned or on no input-to-output path (SynFlow = 0)."""
        masks.apply(self.context.model)
        flow = compute_scores(
            self.context.model, "synflow", None, input_shape=self.context.task.input_shape
        )
        alive = sum(int((flow[name] > 0).sum()) for name in masks.masks)
        return 1.0 - alive / masks.num_weights()

    def _observation(self, loss_change: float, grad_change: float) -> np.ndarray:
        """The seven Panning features, each in [0, 1]."""
        features = [
            squash(self._dense_loss / math.log(self.context.task.num_classes)),
            squash(self._dense_gtg),
            squash(loss_change),
            squash(grad_change),
            self._effective_sparsity,
            self.target,
            self._step / self.iterations,
        ]
        return np.clip(np.asarray(features, dtype=np.float32), 0.0, 1.0)

    # episode -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start from the dense initialisation with this episode's target sparsity."""
        super().reset(seed=seed, options=options)
        if self.settings.target is None:  # a fixed target's budget was made with the env
            self.target = float(self.np_random.uniform(*self.settings.target_range))
            self.budget = Budget({"params": max(1.0 - self.target, 1e-9)})
        self._masks = self._dense_masks
        self._step = 0
        self._effective_sparsity = 0.0
        return self._observation(0.0, 0.0), {"target_sparsity": self.target}

    def _act(self, action: np.ndarray):
        """Re-score the masked net, prune by the mix to this step's density, report proxies."""
        weights = self.action_to_weights(action)
        scheduled_sparsity = 1.0 - self.keep_fraction(self._step)
        self._masks = self._prune(weights, scheduled_sparsity)
        self._step += 1
        self._effective_sparsity = self._effective_sparsity_of(self._masks)
        loss, gtg = self._loss_and_grad_norm(self._masks)
        loss_change = abs(loss - self._dense_loss) / max(self._dense_loss, 1e-12)
        grad_change = abs(gtg - self._dense_gtg) / max(self._dense_gtg, 1e-12)
        disconnected = self._effective_sparsity >= 1.0
        terminated = disconnected or self._step == self.iterations
        if self.reward_kind == "proxy":
            reward = (
                -100.0 * abs(scheduled_sparsity - self._effective_sparsity)
                - min(loss_change, 10.0)
                - min(grad_change / 5.0, 10.0)
            )
        else:
            reward = 0.0
        if disconnected:
            reward = -100.0 * (self.iterations - self._step + 1)
        info: dict[str, Any] = {
            "scheduled_sparsity": scheduled_sparsity,
            "effective_sparsity": self._effective_sparsity,
            "metric_weights": dict(zip(self.metrics, weights.tolist(), strict=True)),
        }
        if not terminated:
            info |= self.cost_info({})
            return self._observation(loss_change, grad_change), float(reward), False, False, info
        evaluation = self.reward_metrics(self._masks, self.settings.reward_train_steps)
        if self.reward_kind == "trained_accuracy" and not disconnected:
            reward = evaluation["accuracy"]
        info |= self.episode_info(self._masks, evaluation)
        info |= self.cost_info(info["used"])
        info["target_sparsity"] = self.target
        return self._observation(loss_change, grad_change), float(reward), True, False, info

    def _prune(self, weights: np.ndarray, sparsity: float) -> MaskSet:
        """Masks at ``sparsity`` from the mix of the metrics re-scored on the current subnet.

        The percentiles sort each metric's scores once; the threshold on the mix needs no
        sort (``MaskBuilder.global_threshold`` on an unranked builder).
        """
        self._masks.apply(self.context.model)
        percentiles = {}
        for metric in self.metrics:
            scores = self.context.compute_scores(metric)
            percentiles[metric] = flat_percentile_ranks({n: scores[n] for n in self._shapes})
        mix = per_layer(mix_percentiles(percentiles, weights), self._shapes)
        at_least = whole_weight_sparsity(sparsity, self._masks.num_weights())
        return self.context.mask_builder(mix, self._masks).global_threshold(at_least)

    @property
    def prunes_to_budget(self) -> bool:
        """Every step prunes to its scheduled sparsity, the last to the target."""
        return True

    def tightest_masks(self) -> MaskSet:
        """Everything pruned: one global threshold reaches any target sparsity below 1."""
        return self.context.builder().global_threshold(1.0)

    @property
    def masks(self) -> MaskSet:
        """The masks the episode has reached so far."""
        return self._masks
