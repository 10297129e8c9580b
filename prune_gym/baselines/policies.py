"""Classical one-shot pruning methods as fixed policies with SB3's ``predict`` interface.

Each policy is bound to one environment and answers every observation with the action
its method implies on that env's budget. The env says which policies it supports and
which action acts an allocation or a metric mix (``PruningEnv.fixed_policies``,
``allocation_action``, ``mix_action``): ratio envs get the per-layer ratios the method
allocates, MetricMix's global mode a one-hot metric mix, Panning the method's mix at
every iteration. Ratio actions go through ``BudgetProjection``, so every policy meets the
budget (it only ever raises ratios that rounding left a weight short).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from prune_gym.checks import did_you_mean
from prune_gym.envs import PruningEnv
from prune_gym.envs.allocations import erk_ratios, global_ratios, owl_ratios, uniform_ratios
from prune_gym.envs.metric_mix import one_hot
from prune_gym.envs.policy_names import (
    GLOBAL_METRIC,
    PANNING_METHODS,
    RANDOM,
    RANDOM_WEIGHTS,
    RANKING_METRIC,
    RATIO_METHODS,
)
from prune_gym.pruning import available_metrics
from prune_gym.wrappers import BudgetProjection

#: the Panning paper's hand-set stages: (pruned fraction up to, [synflow, snip, grasp]).
PANNING_STAGES = (
    (0.80, (0.2, 0.5, 0.3)),
    (0.90, (0.2, 0.4, 0.4)),
    (0.98, (0.2, 0.3, 0.5)),
    (0.99, (0.4, 0.2, 0.4)),
    (1.00, (0.5, 0.0, 0.5)),
)
#: settings a fixed policy needs its env made with: ``random-weights`` needs the env to
#: rank the weights inside each layer by random scores too.
POLICY_ENV_SETTINGS: dict[str, dict[str, str]] = {RANDOM_WEIGHTS: {"rank_by": "random"}}
#: ``<policy>@<metric>``: the policy acting on an env that ranks the weights inside each
#: layer by ``metric`` (``uniform@magnitude``: one threshold per weight matrix by
#: magnitude, the LM papers' magnitude baseline, beside ``uniform`` on a Wanda env).
RANKED_BY = "@"


def split_policy_name(name: str) -> tuple[str, str | None]:
    """``(policy, metric)`` of ``<policy>@<metric>``; ``(name, None)`` without ``@``.

    ``ValueError`` for a malformed name or a metric that is not registered.
    """
    policy, separator, metric = name.partition(RANKED_BY)
    if not separator:
        return name, None
    if not policy or not metric:
        raise ValueError(
            f"policy {name!r}: expected <policy>{RANKED_BY}<metric>, e.g. uniform@wanda"
        )
    if metric not in available_metrics():
        raise ValueError(
            f"policy {name!r}: unknown metric {metric!r}; metrics: {available_metrics()}"
            + did_you_mean(metric, available_metrics())
        )
    return policy, metric


class FixedPolicy:
    """A policy that acts like an SB3 model: ``predict(obs) -> (action, state)``."""

    name = "fixed"

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        self.env: PruningEnv = env.unwrapped
        self.seed = seed

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The action for one (unbatched) observation of the bound env."""
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's signature; a batch of one observation (a one-env VecEnv) gets a batch back."""
        observation = np.asarray(observation)
        single = self.env.observation_space.shape
        if observation.shape == single:
            return self.act(observation), state
        if observation.shape == (1, *single):
            return self.act(observation[0])[None], state
        raise ValueError(
            f"a fixed policy acts on one env: observation of shape {observation.shape}, "
            f"expected {single} or (1, *{single})"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, env={type(self.env).__name__})"


class RatioPolicy(FixedPolicy):
    """A method's per-layer ratios at the env's budget, acted by its ``allocation_action``.

    ``allocate(env)`` gives the ratios at the env's current budget; they are computed
    once per budget, so the policy follows a budget-conditioned env from episode to
    episode. ``metric`` ranks the weights inside each layer where the env's action
    chooses the ranking (MetricMix's joint mode; None: every metric alike).
    """

    def __init__(
        self,
        env: gym.Env,
        name: str,
        allocate: Callable[[PruningEnv], np.ndarray],
        metric: str | None,
        seed: int = 0,
    ) -> None:
        super().__init__(env, seed)
        self.name = name
        self.allocate = allocate
        self.metric = metric
        self.projection = BudgetProjection(self.env)
        self._ratios: dict[tuple, np.ndarray] = {}

    @property
    def ratios(self) -> np.ndarray:
        """The method's per-layer ratios at the env's current budget."""
        key = self.env.budget_key
        if key not in self._ratios:
            self._ratios[key] = np.asarray(self.allocate(self.env), dtype=np.float64)
        return self._ratios[key]

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.projection.action(self.env.allocation_action(self.ratios, self.metric))


class MixPolicy(FixedPolicy):
    """The same metric weights at every step (the env's ``mix_action``)."""

    def __init__(self, env: gym.Env, name: str, mix: np.ndarray, seed: int = 0) -> None:
        super().__init__(env, seed)
        self.name = name
        self.mix = mix

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.env.mix_action(self.mix)


class RandomPolicy(FixedPolicy):
    """Uniformly random actions (seeded), projected onto the budget where ratios are chosen."""

    name = "random"

    def __init__(self, env: gym.Env, seed: int = 0) -> None:
        super().__init__(env, seed)
        self.space = gym.spaces.Box(-1.0, 1.0, self.env.action_space.shape, np.float32, seed=seed)
        self.projection = BudgetProjection(self.env)

    def act(self, observation: np.ndarray) -> np.ndarray:
        return self.projection.action(self.space.sample())


class PanningHandsetPolicy(FixedPolicy):
    """The Panning paper's staged [SynFlow, SNIP, GraSP] weights, by the fraction pruned so far.

    It reads the ``target_sparsity`` and ``progress`` features of the env's observation.
    """

    name = "panning-handset"

    def act(self, observation: np.ndarray) -> np.ndarray:
        env = self.env
        names = list(env.feature_names)
        target = float(observation[names.index("target_sparsity")])
        progress = float(observation[names.index("progress")])
        pruned = 1.0 - (1.0 - target) ** progress  # scheduled sparsity before this step
        weights = next(w for limit, w in PANNING_STAGES if pruned < limit or limit == 1.0)
        by_metric = dict(zip(("synflow", "snip", "grasp"), weights, strict=True))
        return env.mix_action([by_metric[m] for m in env.metrics])


def _ratio_policy(env: PruningEnv, name: str, method: str, seed: int) -> FixedPolicy:
    """A ratio-allocating ``method``, acted through the env's ``allocation_action``."""
    if method in GLOBAL_METRIC:
        allocate = partial(global_ratios, metric=GLOBAL_METRIC[method])
    else:
        allocate = {"erk": erk_ratios, "owl": owl_ratios}.get(method, uniform_ratios)
    return RatioPolicy(env, name, allocate, RANKING_METRIC.get(method), seed)


def policy_env_settings(name: str) -> dict[str, str]:
    """Env settings policy ``name`` needs (merge them into the env's before making it)."""
    policy, metric = split_policy_name(name)
    settings = dict(POLICY_ENV_SETTINGS.get(policy, {}))
    if metric is not None:
        if "rank_by" in settings:
            raise ValueError(
                f"policy {name!r}: {policy!r} ranks by {settings['rank_by']!r} and takes no "
                f"{RANKED_BY}<metric>"
            )
        settings["rank_by"] = metric
    return settings


def is_supported(name: str, env: gym.Env) -> bool:
    """Whether ``make_policy(name, env)`` knows ``name`` (``<policy>[@<metric>]``)."""
    return split_policy_name(name)[0] in supported_policies(env)


def supported_policies(env: gym.Env) -> tuple[str, ...]:
    """The policy names ``make_policy`` accepts for this env (given ``policy_env_settings``).

    The env's answer (``PruningEnv.fixed_policies``); ``TypeError`` for an env that is
    not a prune-gym env.
    """
    base = env.unwrapped
    if not isinstance(base, PruningEnv):
        raise TypeError(f"no fixed policies for {type(base).__name__}; expected a prune-gym env")
    return base.fixed_policies()


def make_policy(name: str, env: gym.Env, seed: int = 0) -> FixedPolicy:
    """The classical method ``name`` as a fixed policy on ``env`` (meets its budget).

    ``<policy>@<metric>`` is ``policy`` on an env that ranks by ``metric`` (made with
    ``policy_env_settings(name)``).
    """
    supported = supported_policies(env)
    method, _ = split_policy_name(name)
    if method not in supported:
        raise ValueError(
            f"policy {name!r} is not available for {type(env.unwrapped).__name__}; "
            f"choose one of {supported}, each optionally as <policy>{RANKED_BY}<metric>"
        )
    base: PruningEnv = env.unwrapped
    needed = policy_env_settings(name)
    if needed.get("rank_by", base.settings.rank_by) != base.settings.rank_by:
        raise ValueError(
            f"policy {name!r} needs an env made with {needed} (see policy_env_settings); "
            f"this one ranks weights by {base.settings.rank_by!r}"
        )
    if method == RANDOM:
        return RandomPolicy(env, seed)
    if method == RANDOM_WEIGHTS:
        return RatioPolicy(env, name, partial(global_ratios, metric="random"), None, seed)
    if method == "panning-handset":
        return PanningHandsetPolicy(env, seed)
    if method.startswith("iterative-"):
        mix = one_hot(base.metrics, method.removeprefix("iterative-"))
        return MixPolicy(env, name, mix, seed)
    if method in GLOBAL_METRIC and not base.acts_by_ratios:  # one threshold: the metric's mix
        return MixPolicy(env, name, one_hot(base.metrics, GLOBAL_METRIC[method]), seed)
    return _ratio_policy(base, name, method, seed)


#: every policy name, for listings.
ALL_POLICIES: tuple[str, ...] = (RANDOM, RANDOM_WEIGHTS, *RATIO_METHODS, *PANNING_METHODS)
