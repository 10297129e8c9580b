"""The base class of the pruning environments: settings, budgets, costs, episode-end info.

Subclasses decide what an action means; this class validates actions, maps actions in
[-1, 1] to pruning ratios, prices masks against the budget, and assembles the ``info``
dict (see docs/design.md, Environments), so every environment reports costs the same way.
It also answers, through overridable hooks, what fixed policies and wrappers ask of an
env: which fixed policies it supports (``fixed_policies``), the action that acts an
allocation or a metric mix (``allocation_action``, ``mix_action``) and how an action is
projected onto the budget (``project_to_budget``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from prune_gym.checks import check_fraction
from prune_gym.envs.allocations import least_feasible, scaled_toward_max
from prune_gym.envs.context import PruningContext, get_context, release_context
from prune_gym.envs.observations import (
    BUDGET_FEATURES,
    STATIC_FEATURES,
    budget_features,
    metric_feature_names,
    metric_table,
    static_table,
)
from prune_gym.envs.policy_names import RANDOM, RANDOM_WEIGHTS, RATIO_METHODS
from prune_gym.envs.settings import PruningSettings, renamed_settings, settings_table
from prune_gym.pruning import Budget, MaskBuilder, MaskSet
from prune_gym.pruning.cost import TOLERANCE, BudgetRange


class PruningEnv(gym.Env):
    """Common settings and bookkeeping of every prune-gym environment.

    (See docs/design.md, Environments.) Every setting (the Arguments below, the fields of
    ``SETTINGS``) is checked when the env is made, before the model is built where the
    check allows; ``env.settings`` holds them, checked, and is all that pickling ships.

    A latency budget is measured on the exported channel-pruned model, which cannot
    have a layer without channels: where actions set per-layer ratios, ``max_ratio``
    must leave every controlled layer at least one channel.

    ``step`` takes a real-valued numeric array of the action space's shape (a string,
    bool or complex array is a ``TypeError``) and, once it has returned
    ``terminated=True``, raises ``RuntimeError`` until ``reset()`` starts a new episode.

    A family subclasses this class: its settings are a ``PruningSettings`` subclass named
    by ``SETTINGS``, its setup is ``_setup`` (called with the checked settings when the env
    is made and when it is unpickled; never define ``__init__``), one step is ``_act``.
    The defaults of the hooks fit a one-step env whose action is every layer's ratio
    (``action_to_ratios``); a family that acts otherwise overrides them.
    """

    #: the settings dataclass of this family (its fields are the env's keyword arguments).
    SETTINGS: ClassVar[type[PruningSettings]] = PruningSettings
    #: the registered env id whose agent defaults and hyperparameters (``prune-gym
    #: train``) envs of this class get; a family deriving from ``PruningEnv`` alone trains
    #: like GlobalRatio-v0, whose one-step per-layer ratio actions the default hooks fit.
    FAMILY_ID: ClassVar[str] = "prune_gym/GlobalRatio-v0"
    #: the render modes and fps, served as ``metadata``.
    RENDER_METADATA: ClassVar[dict[str, Any]] = {
        "render_modes": list(PruningSettings.RENDER_MODES),
        "render_fps": 1,
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check a family's declaration and add its Arguments table to its docstring."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} defines __init__, which unpickling (SubprocVecEnv) never "
                "calls: declare its settings as fields of a PruningSettings subclass named by "
                f"{cls.__name__}.SETTINGS, and set the env up in _setup(settings)"
            )
        parents = [base for base in cls.__bases__ if issubclass(base, PruningEnv)]
        if not all(issubclass(cls.SETTINGS, parent.SETTINGS) for parent in parents):
            raise TypeError(
                f"{cls.__name__}.SETTINGS={cls.SETTINGS.__name__} must derive from its parent "
                f"env's {[parent.SETTINGS.__name__ for parent in parents]}"
            )
        cls.__doc__ = document_settings(cls)

    @property
    def metadata(self) -> dict[str, Any]:
        """Gymnasium's metadata (``RENDER_METADATA``), read on the env, not on its class.

        ``gymnasium.make`` reads a class's ``metadata`` dict and, for a mode it lacks,
        ``"human"``, makes the env with ``"rgb_array"`` and shows it through pygame
        (``HumanRendering``). A property is skipped there, so the env itself gets
        ``render_mode="human"`` and refuses it when made, naming the modes it has.
        """
        return self.RENDER_METADATA

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        settings = renamed_settings(settings)
        self.SETTINGS.check_names(settings, type(self).__name__)
        self._setup(self.SETTINGS(**settings))

    def _setup(self, settings: PruningSettings) -> None:
        """Set the env up from its checked settings (subclasses extend it, this one first).

        Overridable methods called from here may read ``self.settings`` and nothing a
        subclass sets up after this method returns.
        """
        self.settings = settings
        self.render_mode = settings.render_mode
        self.structure = settings.structure
        self.budget = self.initial_budget()
        self._layer_tables: dict[tuple, np.ndarray] = {}
        self.reward_kind = settings.reward
        self.reward_finetune_steps = settings.reward_finetune_steps
        self.min_ratio, self.max_ratio = settings.min_ratio, settings.max_ratio
        self.metrics = settings.metrics
        self.context = get_context(
            settings.task,
            settings.structure,
            settings.metrics,
            settings.rank_by,
            settings.reward_samples,
            settings.device,
            settings.weights,
        )
        self.layer_names = self.context.layer_names
        self.num_layers = len(self.layer_names)
        self.last_info: dict[str, Any] = {}
        #: the masks of the last finished episode (for re-evaluation, e.g. on test).
        self.last_masks: MaskSet | None = None
        #: whether the last step ended the episode (``step`` then waits for ``reset``).
        self._episode_over = False
        tightest = self.tightest_masks()
        self._check_budget_reachable(tightest)
        self._check_latency_measurable(tightest)

    def initial_budget(self) -> Budget:
        """The budget the env starts with: the ``budget`` setting (a range's tightest)."""
        budget = self.settings.budget
        return budget.tightest if isinstance(budget, BudgetRange) else budget

    def episode_budget(self, options: Mapping[str, Any]) -> Budget:
        """The next episode's budget: ``options["budget"]`` (checked, for that episode
        only), else one drawn from the ``budget`` range with the env's RNG, else the
        ``budget`` setting."""
        if "budget" in options:
            budget = Budget(options["budget"])
            if "latency" in budget.limits and self.structure != "channel":
                raise ValueError(
                    f'options budget {budget.limits}: latency needs structure="channel"'
                )
            self._check_budget_reachable(self.tightest_masks(), budget)
            return budget
        if isinstance(self.settings.budget, BudgetRange):
            return self.settings.budget.sample(self.np_random)
        return self.initial_budget()

    # pickling for SubprocVecEnv: ship the settings, rebuild the context on arrival ------
    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["settings"])

    # the shared per-task state -----------------------------------------------------------
    @property
    def context(self) -> PruningContext:
        """The per-task state this env shares with others of the same settings."""
        if self._context is None:
            raise RuntimeError(f"{type(self).__name__} was closed; make a new env to use it")
        return self._context

    @context.setter
    def context(self, context: PruningContext) -> None:
        self._context = context

    def close(self) -> None:
        """Release the shared per-task state (freed once no other env uses it)."""
        if getattr(self, "_context", None) is not None:
            release_context(self._context)
            self._context = None
        super().close()

    # what fixed policies and wrappers ask of an env ---------------------------------------
    @property
    def prunes_to_budget(self) -> bool:
        """Whether every action meets the budget by construction (no projection needed)."""
        return False

    def fixed_policies(self) -> tuple[str, ...]:
        """The fixed policies (``prune_gym.baselines``) that can act on this env.

        Default: random actions and every per-layer allocation (``allocation_action``).
        """
        return (RANDOM, RANDOM_WEIGHTS, *RATIO_METHODS)

    def allocation_action(self, ratios: Sequence[float], metric: str | None = None) -> np.ndarray:
        """The action that prunes every layer to its ratio in ``ratios`` (over ``layer_names``).

        ``metric`` ranks the weights inside each layer where the action chooses the
        ranking (None: every metric alike); the default ranks by ``rank_by`` and ignores it.
        """
        return self.ratios_to_action(ratios)

    def mix_action(self, weights: Sequence[float]) -> np.ndarray:
        """The action that ranks weights by the mix ``weights`` of ``metrics``.

        ``TypeError`` here: the default action is per-layer ratios, not a mix.
        """
        raise TypeError(f"{type(self).__name__}'s actions are per-layer ratios, not metric mixes")

    def project_to_budget(self, action: Any) -> np.ndarray:
        """``action`` (checked, float32) changed as little as needed to meet the budget.

        Default: passed unchanged where ``prunes_to_budget``; otherwise its ratios move
        towards ``max_ratio`` by the smallest common fraction that meets the budget.
        """
        action = self.check_action(action)
        if self.prunes_to_budget:
            return action.astype(np.float32)
        return self.ratios_to_action(self.scaled_to_budget(self.action_to_ratios(action)))

    def scaled_to_budget(self, ratios: np.ndarray) -> np.ndarray:
        """``ratios + f * (max_ratio - ratios)`` with the least f in [0, 1] meeting the budget.

        Each candidate is sent through a float32 action and back, exactly as a step will
        see it, so rounding cannot tip a boundary case over the budget.
        """

        def meets_as_action(candidate: np.ndarray) -> bool:
            return self.fits_ratios(self.action_to_ratios(self.ratios_to_action(candidate)))

        return scaled_toward_max(self, ratios, meets_as_action)

    # budget reachability -----------------------------------------------------------------
    def tightest_masks(self) -> MaskSet:
        """The masks of the most pruning action: every controlled layer at ``max_ratio``."""
        return self.context.builder().from_ratios(dict.fromkeys(self.layer_names, self.max_ratio))

    def _check_budget_reachable(self, tightest: MaskSet, budget: Budget | None = None) -> None:
        """Raise ``ValueError`` if no action can meet the params or flops ``budget``
        (default the env's): not even the ``tightest`` masks. A latency budget is measured
        per episode, not here.
        """
        budget = self.budget if budget is None else budget
        used = self.used_fractions(tightest)
        unreachable = {
            r: used[r]
            for r, limit in budget.limits.items()
            if r in used and used[r] > limit + TOLERANCE
        }
        if unreachable:
            floor = ", ".join(f"{r} >= {value:.4g}" for r, value in unreachable.items())
            raise ValueError(
                f"budget {budget.limits} cannot be met by {type(self).__name__}: even its "
                f"most pruning action (every layer at max_ratio={self.max_ratio:g}, structure="
                f"{self.structure!r}) keeps {floor} of the dense network. Loosen the budget to "
                "at least that, or raise max_ratio."
            )

    @property
    def acts_by_ratios(self) -> bool:
        """Whether actions set per-layer ratios in [min_ratio, max_ratio]."""
        return True

    def _check_latency_measurable(self, tightest: MaskSet) -> None:
        """Raise ``ValueError`` if, under a latency budget, an action can empty a layer.

        Latency is measured on the exported channel-pruned model, and a layer left
        without channels cannot be exported: ``max_ratio`` must keep one channel in
        every controlled layer (``round(max_ratio * channels) < channels``).
        """
        if "latency" not in self.budget.limits or not self.acts_by_ratios:
            return
        ratios = tightest.ratios()
        emptied = [name for name in self.layer_names if ratios[name] >= 1.0]
        if emptied:
            builder = self.context.builder()
            fewest = min(builder.unit_count(name) for name in self.layer_names)
            raise ValueError(
                f"max_ratio={self.max_ratio:g} lets an action remove every channel of "
                f"{emptied}, and a latency budget is measured on the exported channel-pruned "
                "model, which needs at least one channel in every layer: use max_ratio <= "
                f"{1 - 1 / fewest:.4g} (all but one of the {fewest} channels of the smallest "
                "layer)"
            )

    # observation table ------------------------------------------------------------------
    @property
    def layer_feature_names(self) -> tuple[str, ...]:
        """Names of the columns of ``layer_table`` (one row per controlled layer)."""
        return STATIC_FEATURES + metric_feature_names(self.metrics)

    @property
    def budget_key(self) -> tuple[tuple[str, float], ...]:
        """This episode's budget as a hashable key (what per-budget caches are keyed by)."""
        return tuple(sorted(self.budget.limits.items()))

    @property
    def layer_table(self) -> np.ndarray:
        """Static and per-metric features of every controlled layer at this episode's
        budget, computed once per budget."""
        if self.budget_key not in self._layer_tables:
            self._layer_tables[self.budget_key] = self._compute_layer_table()
        return self._layer_tables[self.budget_key]

    def _compute_layer_table(self) -> np.ndarray:
        """``layer_table`` at the current budget."""
        cost_model = self.context.cost_model
        static = static_table(self.context.layers, cost_model.params_dense, cost_model.macs_dense)
        kept = {
            metric: self.budget_masks(self.context.builder(metric)).densities()
            for metric in self.metrics
        }
        scores = {m: self.context.scores[m] for m in self.metrics}
        per_metric = metric_table(
            {m: {n: s[n] for n in self.layer_names} for m, s in scores.items()},
            self.layer_names,
            kept,
        )
        return np.hstack([static, per_metric])

    def budget_observation(self) -> np.ndarray:
        """Budget features of an untouched network (limits, all of them remaining)."""
        return budget_features(self.budget, 1.0, 1.0)

    def table_observation(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """The whole layer table at this episode's budget, flattened, then the budget
        features, with their names (``table_feature_names``): what the one-step envs
        observe."""
        observation = np.concatenate([self.layer_table.reshape(-1), self.budget_observation()])
        return np.clip(observation, -1.0, 1.0).astype(np.float32), self.table_feature_names

    @cached_property
    def table_feature_names(self) -> tuple[str, ...]:
        """Names of ``table_observation``'s entries, layer by layer, then the budget's."""
        names = tuple(
            f"{name}:{feature}" for name in self.layer_names for feature in self.layer_feature_names
        )
        return names + self.global_feature_names

    @property
    def global_feature_names(self) -> tuple[str, ...]:
        """Names of the budget features appended to observations."""
        return BUDGET_FEATURES

    # actions <-> ratios -----------------------------------------------------------------
    def check_action(self, action: Any) -> np.ndarray:
        """The action as float64, type-, shape- and finite-checked, clipped to [-1, 1].

        ``TypeError`` for entries that are not real numbers (strings, bools, complex).
        """
        array = np.asarray(action)
        expected = self.action_space.shape
        if array.dtype.kind not in "fiu":
            raise TypeError(
                f"action of dtype {array.dtype} is not accepted; expected a real-valued "
                f"numeric array (float or int) of shape {expected}"
            )
        array = array.astype(np.float64)
        if array.shape != expected:
            raise ValueError(f"action of shape {array.shape} does not match {expected}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"action {array.tolist()} has NaN or infinite entries")
        return np.clip(array, -1.0, 1.0)

    def action_to_ratios(self, action: Any) -> np.ndarray:
        """Ratios in [min_ratio, max_ratio] for actions in [-1, 1] (elementwise, clipped)."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return self.min_ratio + (action + 1.0) / 2.0 * (self.max_ratio - self.min_ratio)

    def ratios_to_action(self, ratios: Any) -> np.ndarray:
        """Inverse of ``action_to_ratios`` (ratios clipped into [min_ratio, max_ratio])."""
        if isinstance(ratios, dict):
            ratios = [ratios[name] for name in self.layer_names]
        ratios = np.clip(np.asarray(ratios, dtype=np.float64), self.min_ratio, self.max_ratio)
        span = self.max_ratio - self.min_ratio
        if span == 0:
            return np.zeros_like(ratios, dtype=np.float32)
        return (2.0 * (ratios - self.min_ratio) / span - 1.0).astype(np.float32)

    # costs ------------------------------------------------------------------------------
    def used_fractions(self, masks: MaskSet) -> dict[str, float]:
        """Fraction of the dense params and MACs that ``masks`` keep (structural for channels)."""
        return self.context.cost_model.used_fractions(masks, self.structure == "channel")

    @property
    def budget(self) -> Budget:
        """This episode's budget; setting it also sets the ``proxy_budget`` it implies."""
        return self._budget

    @budget.setter
    def budget(self, budget: Budget) -> None:
        limits = {"params": 1.0, "flops": 1.0}
        for resource, limit in budget.limits.items():
            key = "flops" if resource == "latency" else resource
            limits[key] = min(limits[key], limit)
        self._budget = budget
        #: limits on the MAC and param fractions; a latency limit acts on MACs (its proxy).
        self.proxy_budget = Budget(limits)

    def proxy_limits(self) -> dict[str, float]:
        """``proxy_budget``'s limits: params and MACs, a latency limit acting on MACs."""
        return self.proxy_budget.limits

    def fits(self, masks: MaskSet) -> bool:
        """Whether ``masks`` meet every budget (a latency limit through its MAC proxy).

        ``fits_removal`` and ``fits_ratios`` ask the same of removal counts and ratios;
        all three judge used fractions by ``Budget.is_met``.
        """
        return self._fits_used(self.used_fractions(masks))

    def fits_removal(self, removed: dict[str, int]) -> bool:
        """``fits`` of unstructured masks removing ``removed[name]`` weights per layer,
        priced from the counts alone (``CostModel.fractions_removing``)."""
        return self._fits_used(self.context.cost_model.fractions_removing(removed))

    def fits_ratios(self, ratios: Any) -> bool:
        """``fits`` of the masks of per-layer ``ratios`` (over ``layer_names``), exactly.

        Unstructured masks are priced from the weights they remove, ``round(ratio *
        weights)`` per layer as ``MaskBuilder.from_ratios`` removes them, without building
        them (``fits_removal``): budget searches ask this many times per action.
        """
        ratios = np.asarray(ratios, dtype=np.float64)
        if ratios.shape != (self.num_layers,):
            raise ValueError(f"got {ratios.shape} ratios for the {self.num_layers} layers")
        if self.structure != "unstructured":
            by_name = dict(zip(self.layer_names, ratios, strict=True))
            return self.fits(self.context.builder().from_ratios(by_name))
        outside = ~((ratios >= 0.0) & (ratios <= 1.0))  # NaN included
        if outside.any():
            name = self.layer_names[int(np.argmax(outside))]
            check_fraction(ratios[outside][0], f"ratio of layer {name!r}")  # raises
        removed = np.round(ratios * self._unit_counts).astype(np.int64)
        return self.fits_removal(dict(zip(self.layer_names, removed.tolist(), strict=True)))

    @cached_property
    def _unit_counts(self) -> np.ndarray:
        """Weights (or channels) of each controlled layer, in ``layer_names`` order."""
        builder = self.context.builder()
        return np.array([builder.unit_count(name) for name in self.layer_names])

    def _fits_used(self, used: dict[str, float]) -> bool:
        """Whether used params/MAC fractions meet ``proxy_budget`` (up to round-off)."""
        return self.proxy_budget.is_met(used)

    def budget_masks(self, builder: MaskBuilder) -> MaskSet:
        """The global-threshold masks of ``builder`` that just meet every budget.

        Unstructured: the fewest lowest-ranked weights whose removal fits, found in one
        pass (``MaskBuilder.least_removal`` priced by ``fits_removal``). These are the
        masks a bisection on the global sparsity finds: it ends on the least feasible
        count of whole weights (below 2**30 weights its steps are finer than one).
        Channels: that bisection (structural costs are not a sum over channels). A
        latency budget is approached through its MAC proxy, since measuring is done per
        episode.
        """
        if builder.structure == "unstructured":
            return builder.least_removal(self.fits_removal)
        sparsity = least_feasible(lambda s: self.fits(builder.global_threshold(s)), 0.0, 1.0)
        return builder.global_threshold(sparsity)

    def episode_info(self, masks: MaskSet, evaluation: dict[str, float]) -> dict[str, Any]:
        """The episode-end entries of ``info`` (see docs/design.md, Environments)."""
        used = self.used_fractions(masks)
        info: dict[str, Any] = {
            "accuracy": evaluation["accuracy"],
            "loss": evaluation["loss"],
            "sparsity": masks.sparsity(),
            "params_ratio": used["params"],
            "macs_ratio": used["flops"],
            "ratios": {
                name: ratio for name, ratio in masks.ratios().items() if name in self.layer_names
            },
        }
        if "latency" in self.budget.limits:
            info["latency_ratio"] = self.context.latency_ratio(masks)
        used_by_resource = {
            "params": info["params_ratio"],
            "flops": info["macs_ratio"],
            "latency": info.get("latency_ratio", 0.0),
        }
        violation = self.budget.violation(used_by_resource)
        info["budget_violation"] = violation
        info["feasible"] = violation <= 0.0
        info["used"] = {r: used_by_resource[r] for r in self.budget.limits}
        self.last_info, self.last_masks = info, masks
        return info

    def cost_info(self, shares: dict[str, float]) -> dict[str, Any]:
        """``costs`` / ``cost`` / ``cost_limits`` for one step, over the budgeted resources."""
        costs = {resource: float(shares.get(resource, 0.0)) for resource in self.budget.limits}
        return {
            "costs": costs,
            "cost": float(sum(costs.values())),
            "cost_limits": dict(self.budget.limits),
        }

    def episode_reward(self, info: dict[str, Any]) -> float:
        """The final step's reward: ``info["accuracy"]``, or ``-info["loss"]`` (``reward``)."""
        return float(-info["loss"] if self.reward_kind == "loss" else info["accuracy"])

    def reward_metrics(self, masks: MaskSet, finetune_steps: int | None = None) -> dict[str, float]:
        """Reward-sample accuracy/loss under ``masks``, fine-tuned ``finetune_steps`` first
        (default ``reward_finetune_steps``).

        Fine-tuning always draws from the task's seed, so a mask's reward depends on the
        mask alone: equal allocations get equal rewards, and the context's cache holds.
        """
        steps = self.reward_finetune_steps if finetune_steps is None else finetune_steps
        return self.context.reward_metrics(masks, steps, seed=self.context.task.seed)

    def reward_metrics_many(self, masks: Sequence[MaskSet]) -> list[dict[str, float]]:
        """``reward_metrics`` of several mask sets, computed together (stacked copies)."""
        return self.context.reward_metrics_many(
            masks, self.reward_finetune_steps, seed=self.context.task.seed
        )

    def reward_masks(self, action: Any) -> MaskSet | None:
        """The masks that the step taking ``action`` will be rewarded on; None if none.

        Read-only: ``PruningVectorEnv`` asks every sub-env first and computes their
        rewards together (``reward_metrics_many``) before stepping them. Default None
        (the step computes whatever reward it gives); a family overrides it to be batched.
        """
        return None

    @classmethod
    def reward_train_steps(cls, settings: dict[str, Any]) -> int:
        """Optimizer steps one episode's reward trains the pruned net, under env ``settings``.

        ``settings`` are keyword arguments of the env (as a ``run.json`` holds them).
        """
        return cls.SETTINGS(**renamed_settings(settings)).reward_train_steps

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Seed the env's RNG and start an episode at its budget (``episode_budget``;
        what depends on the budget is cached per budget); subclasses return its first
        observation."""
        super().reset(seed=seed)
        self._episode_over = False
        self.budget = self.episode_budget(options or {})
        return None

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """One step with the checked action (``check_action``, then the subclass's ``_act``).

        ``RuntimeError`` once the episode has ended, until ``reset()`` starts another.
        """
        if self._episode_over:
            raise RuntimeError("episode is over: call reset() before step()")
        result = self._act(self.check_action(action))
        self._episode_over = result[2] or result[3]
        return result

    def _act(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """One step of the episode for a checked action: the subclass's dynamics."""
        raise NotImplementedError

    def render(self) -> str | np.ndarray | None:
        """Per-layer ratios of the last finished episode (zeros before one has ended).

        ``"ansi"``: a text table; ``"rgb_array"``: a bar chart as an RGB array.
        """
        if self.render_mode is None:
            return None
        from prune_gym.envs.rendering import ratios_chart, ratios_text

        ratios = self.last_info.get("ratios", dict.fromkeys(self.layer_names, 0.0))
        if self.render_mode == "ansi":
            return ratios_text(ratios, self.last_info)
        return ratios_chart(ratios, self.last_info, title=type(self).__name__)


def document_settings(env_class: type[PruningEnv]) -> str:
    """``env_class``'s own docstring followed by its settings' Arguments table."""
    own = inspect.cleandoc(env_class.__dict__.get("__doc__") or "")
    return f"{own}\n\n## Arguments\n\n{settings_table(env_class.SETTINGS)}\n"


PruningEnv.__doc__ = document_settings(PruningEnv)
