"""PPO-Lagrangian on Stable-Baselines3: PPO with one Lagrange multiplier per budget resource.

How it plugs into SB3 (``PPO`` subclass, SB3's loops reused, not copied):

- resources: ``cost_limits`` (constructor) names them, in order; without it they are the
  keys of the env's ``budget`` attribute (prune-gym's ``Budget`` or a plain dict), read
  once at setup, because the cost critic's width must be known before the optimizer is
  built. Limits: ``cost_limits`` when given, else each episode's ``info["cost_limits"]``.
- costs: SB3 calls ``_update_info_buffer(infos, dones)`` once per env step, after
  ``env.step`` and before ``rollout_buffer.add``, while ``self._last_obs`` is still the
  observation the actions were taken in. The override reads ``info["costs"]`` there, adds
  ``cost_gamma * V_c(terminal_obs)`` on ``TimeLimit.truncated`` (as SB3 does for rewards),
  sums undiscounted episode costs, and records costs and cost values in the
  ``CostRolloutBuffer`` (whose ``add`` refuses a step without them). After SB3's
  ``collect_rollouts``, the cost GAE runs from the cost values of the last observation.
- ``train``: multipliers first, then PPO's clipped loss on the Lagrangian advantage plus
  ``cvf_coef`` times the cost critic's MSE.
- saving: multipliers, their history and the update rule's state are plain dicts/lists of
  numbers, so they sit in the zip's JSON ``data`` readable without unpickling.

Why the defaults are what they are (each was needed on one-step bandits whose reward and
cost rise together to the action bound; ``tests/test_ppo_lagrangian.py`` holds them):

- the policy's Gaussian mean is kept inside the action box (``CostActorCriticPolicy``):
  otherwise it runs past the bound, every sample clips, and learning stops for good;
- one scale for both advantages: ``A = (A_r - sum_k lam_k A_c,k) / (1 + sum_k lam_k)``,
  centred, then divided by the reward advantages' std. The multipliers then keep their
  Lagrangian meaning (reward per unit of cost) whatever the exploration noise, and near
  the saddle point the step shrinks with the net gradient instead of being blown up to
  unit size (standardising the sum, or the reward term alone, makes it oscillate);
- a PI controller for the multipliers (``lagrange_update="pid"``, no smoothing): the
  proportional term damps the cycling that plain dual ascent shows when the Lagrangian is
  flat at its optimum (linear reward and cost);
- the controller sees an upper confidence bound of the mean episode cost (mean +
  ``cost_confidence`` standard errors), so the policy settles just inside the limit, not
  around it;
- the policy's std is capped from ``std_cap[0]`` down to ``std_cap[1]`` over training, so
  the deterministic action, which users deploy, has the cost the constraint was
  enforced on; and the learning rate decays linearly to 0 so the last iterate settles.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import LinearSchedule, explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from agents.cost_buffer import CostRolloutBuffer, CostRolloutBufferSamples
from agents.cost_policy import CostActorCriticPolicy
from agents.lagrange import LagrangeRule, PIDLagrange, SGDLagrange
from prune_gym.checks import check_int, check_number

SelfPPOLagrangian = TypeVar("SelfPPOLagrangian", bound="PPOLagrangian")

LAGRANGE_UPDATES = ("sgd", "pid")
#: PPO's learning rate, decayed linearly to 0 over training.
DEFAULT_LEARNING_RATE = LinearSchedule(3e-4, 0.0, 1.0)
#: an episode violates a limit when its cost exceeds it by more than float round-off.
VIOLATION_TOLERANCE = 1e-6


class PPOLagrangian(PPO):
    """PPO-Lagrangian: PPO with a cost critic and one Lagrange multiplier per resource.

    Keyword-only arguments (every other keyword is ``PPO``'s):

    - ``cost_limits``: resource -> limit d_k. Overrides the env's limits and may name a
      subset of its resources. Default: resources from the env's ``budget``, limits from
      each episode's ``info["cost_limits"]``.
    - ``lagrange_update``: ``"pid"`` (PID Lagrangian, ``pid_kp``/``pid_ki``/``pid_kd``/
      ``pid_delay``/``pid_alpha_p``/``pid_alpha_d``; default a PI controller) or ``"sgd"``
      (projected SGD, ``lagrange_lr``); ``lagrange_init`` and ``lagrange_max`` bound both.
      Costs are expected to be O(1) (prune-gym's are fractions of the dense network):
      scale larger ones down, as the gains are per unit of cost.
    - ``cost_window``: finished episodes averaged into Jc.
    - ``cost_confidence``: Jc is the window's mean cost plus this many standard errors.
    - ``std_cap``: (start, end) cap on the policy's std, lowered linearly over training;
      ``None`` leaves the std free.
    - ``cost_gamma``/``cost_gae_lambda``: the cost GAE's (default ``gamma``/``gae_lambda``).
    - ``cvf_coef``: weight of the cost critic's loss.

    ``learning_rate`` defaults to 3e-4 decayed linearly to 0 (PPO's is constant).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": CostActorCriticPolicy}
    rollout_buffer: CostRolloutBuffer
    policy: CostActorCriticPolicy

    def __init__(
        self,
        policy: str | type[CostActorCriticPolicy],
        env: GymEnv | str,
        *,
        cost_limits: dict[str, float] | None = None,
        lagrange_update: str = "pid",
        lagrange_lr: float = 1.0,
        lagrange_init: float = 0.0,
        lagrange_max: float = 100.0,
        pid_kp: float = 5.0,
        pid_ki: float = 2.0,
        pid_kd: float = 0.0,
        pid_delay: int = 1,
        pid_alpha_p: float = 0.0,
        pid_alpha_d: float = 0.0,
        cost_window: int = 100,
        cost_confidence: float = 2.0,
        std_cap: tuple[float, float] | None = (1.0, 0.05),
        cost_gamma: float | None = None,
        cost_gae_lambda: float | None = None,
        cvf_coef: float = 0.5,
        learning_rate: float | Schedule = DEFAULT_LEARNING_RATE,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            policy, env, learning_rate=learning_rate, _init_setup_model=False, **kwargs
        )
        self.cost_limits = _check_cost_limits(cost_limits)
        if lagrange_update not in LAGRANGE_UPDATES:
            raise ValueError(
                f"lagrange_update={lagrange_update!r} is not supported; expected one of "
                f"{LAGRANGE_UPDATES}"
            )
        self.lagrange_update = lagrange_update
        self.lagrange_lr = check_number(lagrange_lr, "lagrange_lr", 0.0)
        self.lagrange_init = lagrange_init
        self.lagrange_max = lagrange_max
        self.pid_kp, self.pid_ki, self.pid_kd = pid_kp, pid_ki, pid_kd
        self.pid_delay, self.pid_alpha_p, self.pid_alpha_d = pid_delay, pid_alpha_p, pid_alpha_d
        self._make_rule()  # validates the rule's settings now, not at the first update
        self.cost_window = check_int(cost_window, "cost_window", low=1)
        self.cost_confidence = check_number(cost_confidence, "cost_confidence", 0.0)
        if std_cap is not None:
            if not (isinstance(std_cap, (tuple, list)) and len(std_cap) == 2):
                raise ValueError(f"std_cap={std_cap!r} must be (start, end) or None")
            start = check_number(std_cap[0], "std_cap[0]", 0.0, low_open=True)
            std_cap = (start, check_number(std_cap[1], "std_cap[1]", 0.0, start, low_open=True))
        self.std_cap = std_cap
        self.cost_gamma = self.gamma if cost_gamma is None else cost_gamma
        self.cost_gamma = check_number(self.cost_gamma, "cost_gamma", 0.0, 1.0)
        self.cost_gae_lambda = self.gae_lambda if cost_gae_lambda is None else cost_gae_lambda
        self.cost_gae_lambda = check_number(self.cost_gae_lambda, "cost_gae_lambda", 0.0, 1.0)
        self.cvf_coef = check_number(cvf_coef, "cvf_coef", 0.0)
        #: resource names in the order of the cost critic's outputs (set at setup).
        self.cost_resources: list[str] | None = None
        #: resource -> current multiplier lambda_k.
        self.lagrange_multipliers: dict[str, float] = {}
        #: one record per update: timesteps, multipliers and the mean episode costs used.
        self.lagrange_history: list[dict[str, Any]] = []
        #: resource -> the update rule's state (plain numbers), kept in step with the rules.
        self.lagrange_state: dict[str, dict[str, Any]] = {}
        if _init_setup_model:
            self._setup_model()

    # setup ------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        if isinstance(self.observation_space, spaces.Dict):
            raise TypeError("PPOLagrangian supports Box/Discrete observations, not spaces.Dict")
        if not issubclass(self.policy_class, CostActorCriticPolicy):
            raise TypeError(
                f"policy {self.policy_class.__name__} has no cost critic; use 'MlpPolicy' or a "
                "subclass of agents.cost_policy.CostActorCriticPolicy"
            )
        if self.cost_resources is None:
            self.cost_resources = self._discover_resources()
        n_costs = len(self.cost_resources)
        self.policy_kwargs = {**self.policy_kwargs, "n_costs": n_costs}
        if self.rollout_buffer_class is None:
            self.rollout_buffer_class = CostRolloutBuffer
        if not issubclass(self.rollout_buffer_class, CostRolloutBuffer):
            raise TypeError(
                f"rollout_buffer_class={self.rollout_buffer_class.__name__} must subclass "
                "CostRolloutBuffer (it stores the costs)"
            )
        self.rollout_buffer_kwargs = {
            **self.rollout_buffer_kwargs,
            "n_costs": n_costs,
            "cost_gamma": self.cost_gamma,
            "cost_gae_lambda": self.cost_gae_lambda,
        }
        super()._setup_model()
        self._setup_lagrange()

    def _discover_resources(self) -> list[str]:
        """Resource names from ``cost_limits``, else from the keys of the env's ``budget``."""
        if self.cost_limits is not None:
            return list(self.cost_limits)
        if self.env is None or not self.env.has_attr("budget"):
            raise ValueError(
                "cannot tell which resources are constrained: pass cost_limits={resource: "
                "limit, ...} or use an env with a `budget` attribute (a dict resource -> "
                "limit, or an object with such a `limits` dict, like prune-gym's envs)"
            )
        names = [list(_budget_limits(budget)) for budget in self.env.get_attr("budget")]
        if any(other != names[0] for other in names):
            raise ValueError(f"the envs' budgets constrain different resources: {names}")
        return names[0]

    def _make_rule(self) -> LagrangeRule:
        """A fresh multiplier update rule with this model's settings."""
        if self.lagrange_update == "pid":
            return PIDLagrange(
                kp=self.pid_kp,
                ki=self.pid_ki,
                kd=self.pid_kd,
                delay=self.pid_delay,
                alpha_p=self.pid_alpha_p,
                alpha_d=self.pid_alpha_d,
                init=self.lagrange_init,
                max_value=self.lagrange_max,
            )
        rule = SGDLagrange(lr=self.lagrange_lr, max_value=self.lagrange_max)
        check_number(self.lagrange_init, "lagrange_init", 0.0, rule.max_value)
        return rule

    def _setup_lagrange(self) -> None:
        """Update rules (with any loaded state), multipliers and empty episode-cost records."""
        self._lagrange_rules = {resource: self._make_rule() for resource in self.cost_resources}
        for resource, rule in self._lagrange_rules.items():
            if resource in self.lagrange_state:
                rule.load_state_dict(self.lagrange_state[resource])
        if not self.lagrange_multipliers:
            initial = float(self.lagrange_init)
            self.lagrange_multipliers = dict.fromkeys(self.cost_resources, initial)
        self.lagrange_state = {r: rule.state_dict() for r, rule in self._lagrange_rules.items()}
        self._cost_window: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.cost_window)
        self._episodes_since_update = 0
        self._episode_costs = np.zeros((self.n_envs, len(self.cost_resources)))

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_lagrange_rules",
            "_cost_window",
            "_episodes_since_update",
            "_episode_costs",
        ]

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        env_resets = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if reset_num_timesteps:  # as SB3 resets its episode statistics
            self._cost_window.clear()
            self._episodes_since_update = 0
        if env_resets:  # episodes in progress were dropped with the reset
            self._episode_costs = np.zeros((self.n_envs, len(self.cost_resources)))
        self._cap_std()  # the first rollout's cap
        return result

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        """SB3's progress, but never below 0: a rollout longer than ``total_timesteps``
        would otherwise drive the annealed learning rate and std cap negative."""
        super()._update_current_progress_remaining(num_timesteps, total_timesteps)
        self._current_progress_remaining = max(0.0, self._current_progress_remaining)

    # rollouts ---------------------------------------------------------------------------
    def _update_info_buffer(
        self, infos: list[dict[str, Any]], dones: np.ndarray | None = None
    ) -> None:
        super()._update_info_buffer(infos, dones)
        self._record_step_costs(infos, np.zeros(len(infos), bool) if dones is None else dones)

    def _record_step_costs(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        """Read this step's costs, close finished episodes, fill the buffer's cost arrays."""
        costs = np.stack([self._step_costs(info) for info in infos])
        self._episode_costs += costs
        for index in np.flatnonzero(dones):
            self._finish_episode(int(index), infos[index])
        with th.no_grad():
            obs = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
            cost_values = self.policy.predict_cost_values(obs).cpu().numpy()
        costs = costs + self._truncation_bootstrap(infos, dones)
        self.rollout_buffer.record_costs(costs, cost_values)

    def _step_costs(self, info: dict[str, Any]) -> np.ndarray:
        """``info['costs']`` in resource order, or a ``ValueError`` saying what is wrong."""
        costs = info.get("costs")
        if not isinstance(costs, dict):
            raise ValueError(
                f"PPOLagrangian needs info['costs'] (a dict resource -> this step's cost) at "
                f"every step; got {costs!r} in an info with keys {sorted(info)}"
            )
        missing = [r for r in self.cost_resources if r not in costs]
        if missing:
            raise ValueError(
                f"info['costs'] has resources {sorted(costs)} but lacks {missing}; the "
                f"constrained resources are {self.cost_resources}"
            )
        values = np.array([costs[r] for r in self.cost_resources], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"info['costs']={costs!r} has NaN or infinite entries")
        return values

    def _finish_episode(self, index: int, info: dict[str, Any]) -> None:
        """Move env ``index``'s summed episode cost, with its limits, into the cost window."""
        self._cost_window.append((self._episode_costs[index].copy(), self._episode_limits(info)))
        self._episode_costs[index] = 0.0
        self._episodes_since_update += 1

    def _episode_limits(self, info: dict[str, Any]) -> np.ndarray:
        """The limit of every resource: ``cost_limits`` if given, else ``info["cost_limits"]``."""
        limits = self.cost_limits if self.cost_limits is not None else info.get("cost_limits")
        if not isinstance(limits, dict) or any(r not in limits for r in self.cost_resources):
            raise ValueError(
                f"PPOLagrangian needs info['cost_limits'] with every resource of "
                f"{self.cost_resources} at each episode's end (or pass cost_limits=...); "
                f"got {limits!r}"
            )
        return np.array([float(limits[r]) for r in self.cost_resources])

    def _truncation_bootstrap(self, infos: list[dict[str, Any]], dones: np.ndarray) -> np.ndarray:
        """``cost_gamma * V_c(terminal_obs)`` for envs cut off by a time limit, else 0."""
        extra = np.zeros((len(infos), len(self.cost_resources)), dtype=np.float32)
        for index in np.flatnonzero(dones):
            info = infos[index]
            if info.get("terminal_observation") is None or not info.get("TimeLimit.truncated"):
                continue
            terminal_obs = self.policy.obs_to_tensor(info["terminal_observation"])[0]
            with th.no_grad():
                terminal_values = self.policy.predict_cost_values(terminal_obs)[0]
            extra[index] = self.cost_gamma * terminal_values.cpu().numpy()
        return extra

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """SB3's rollout (costs recorded on the way), then the costs' GAE."""
        if not super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps):
            return False
        with th.no_grad():
            obs = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
            last_cost_values = self.policy.predict_cost_values(obs).cpu().numpy()
        self.rollout_buffer.compute_cost_returns_and_advantage(
            last_cost_values, np.asarray(self._last_episode_starts)
        )
        return True

    # multipliers ------------------------------------------------------------------------
    def update_multipliers(self) -> bool:
        """Update every multiplier from the cost window; ``False`` (skipped) if no new episode.

        Over the last ``cost_window`` finished episodes, d_k is the mean of their limits and
        Jc_k is d_k plus an upper confidence bound of the mean excess of an episode's cost
        over its own limit (mean + ``cost_confidence`` standard errors). With one limit for
        every episode that is the bound on the mean cost; with limits that change from
        episode to episode (a budget range), an episode at its own limit adds no excess,
        however far its limit is from the others'. Without an episode finished since the
        last update there is no new evidence, so the multipliers stay as they are.
        """
        if self._episodes_since_update == 0:
            return False
        episode_costs, episode_limits = (np.stack(c) for c in zip(*self._cost_window, strict=True))
        costs, limits = episode_costs.mean(axis=0), episode_limits.mean(axis=0)
        excess = episode_costs - episode_limits
        bound = limits + excess.mean(axis=0)
        if len(episode_costs) > 1:
            spread = excess.std(axis=0, ddof=1) / np.sqrt(len(episode_costs))
            bound += self.cost_confidence * spread
        for k, resource in enumerate(self.cost_resources):
            rule = self._lagrange_rules[resource]
            multiplier = self.lagrange_multipliers[resource]
            new = rule.update(multiplier, float(bound[k]), float(limits[k]))
            self.lagrange_multipliers[resource] = float(new)
            self.lagrange_state[resource] = rule.state_dict()
        self.lagrange_history.append(
            {
                "timesteps": int(self.num_timesteps),
                "multipliers": dict(self.lagrange_multipliers),
                "ep_costs": {r: float(c) for r, c in zip(self.cost_resources, costs, strict=True)},
            }
        )
        self._episodes_since_update = 0
        return True

    # training ---------------------------------------------------------------------------
    def train(self) -> None:
        """Update the multipliers, run PPO's epochs on the Lagrangian, then lower the std cap.

        The epochs learn under the cap the rollout was collected with, so the stored
        log-probabilities are the policy's own and every importance ratio starts at 1;
        the lowered cap takes effect from the next rollout.
        """
        self.update_multipliers()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        stats: dict[str, list[float]] = defaultdict(list)
        for epoch in range(self.n_epochs):
            stopped = self._train_epoch(clip_range, clip_range_vf, stats)
            self._n_updates += 1
            if stopped:
                if self.verbose >= 1:
                    print(f"Early stopping at step {epoch} due to reaching max kl")
                break
        self._record_train_logs(stats, clip_range, clip_range_vf)
        self._cap_std()

    def _cap_std(self) -> None:
        """Cap the policy's std at the schedule's value for the training progress now."""
        if self.std_cap is not None:
            start, end = self.std_cap
            self.policy.set_std_cap(end + (start - end) * self._current_progress_remaining)

    def _train_epoch(
        self, clip_range: float, clip_range_vf: float | None, stats: dict[str, list[float]]
    ) -> bool:
        """One pass over the buffer; ``True`` if ``target_kl`` stopped it early (as PPO)."""
        stats["approx_kl"] = []
        for batch in self.rollout_buffer.get(self.batch_size):
            loss, approx_kl = self._minibatch_loss(batch, clip_range, clip_range_vf, stats)
            if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                return True
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        return False

    def _minibatch_loss(
        self,
        batch: CostRolloutBufferSamples,
        clip_range: float,
        clip_range_vf: float | None,
        stats: dict[str, list[float]],
    ) -> tuple[th.Tensor, float]:
        """PPO's clipped loss on the Lagrangian advantage plus both critics' losses."""
        actions = batch.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy, cost_values = self.policy.evaluate_actions_with_costs(
            batch.observations, actions
        )
        advantages = self._lagrangian_advantages(batch.advantages, batch.cost_advantages)
        log_ratio = log_prob - batch.old_log_prob
        ratio = th.exp(log_ratio)
        clipped = th.clamp(ratio, 1 - clip_range, 1 + clip_range)
        policy_loss = -th.min(advantages * ratio, advantages * clipped).mean()
        values = values.flatten()
        if clip_range_vf is not None:  # as PPO: clip the change of the reward value only
            values = batch.old_values + th.clamp(
                values - batch.old_values, -clip_range_vf, clip_range_vf
            )
        value_loss = F.mse_loss(batch.returns, values)
        cost_value_loss = ((batch.cost_returns - cost_values) ** 2).mean(dim=0).sum()
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = (
            policy_loss
            + self.ent_coef * entropy_loss
            + self.vf_coef * value_loss
            + self.cvf_coef * cost_value_loss
        )
        with th.no_grad():
            approx_kl = th.mean((th.exp(log_ratio) - 1) - log_ratio).item()
        stats["policy_gradient_loss"].append(policy_loss.item())
        stats["value_loss"].append(value_loss.item())
        stats["cost_value_loss"].append(cost_value_loss.item())
        stats["entropy_loss"].append(entropy_loss.item())
        stats["clip_fraction"].append(th.mean((th.abs(ratio - 1) > clip_range).float()).item())
        stats["approx_kl"].append(approx_kl)
        stats["loss"] = [loss.item()]
        return loss, approx_kl

    def _lagrangian_advantages(
        self, reward_advantages: th.Tensor, cost_advantages: th.Tensor
    ) -> th.Tensor:
        """``(A_r - sum_k lam_k A_c,k) / (1 + sum_k lam_k)``, on one scale.

        With ``normalize_advantage`` (SB3's default) both advantages are centred per
        minibatch and divided by the same number, the reward advantages' std: the
        multipliers keep their meaning (reward per unit of cost) whatever the exploration
        noise, and the combined signal shrinks as the Lagrangian flattens near its optimum.
        """
        multipliers = th.tensor(
            [self.lagrange_multipliers[r] for r in self.cost_resources],
            dtype=cost_advantages.dtype,
            device=cost_advantages.device,
        )
        if self.normalize_advantage and len(reward_advantages) > 1:
            scale = reward_advantages.std() + 1e-8
            reward_advantages = (reward_advantages - reward_advantages.mean()) / scale
            cost_advantages = (cost_advantages - cost_advantages.mean(dim=0)) / scale
        return (reward_advantages - cost_advantages @ multipliers) / (1.0 + multipliers.sum())

    # logging ----------------------------------------------------------------------------
    def _record_train_logs(
        self, stats: dict[str, list[float]], clip_range: float, clip_range_vf: float | None
    ) -> None:
        """SB3 PPO's ``train/`` keys, plus ``train/cost_value_loss`` and ``train/lambda_<k>``."""
        for key, values in stats.items():
            self.logger.record(f"train/{key}", float(np.mean(values)) if values else math.nan)
        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", self.policy.effective_std().mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        for resource, multiplier in self.lagrange_multipliers.items():
            self.logger.record(f"train/lambda_{resource}", multiplier)

    def dump_logs(self, iteration: int = 0) -> None:
        """SB3's rollout logs plus ``rollout/ep_cost_<k>_mean`` and ``rollout/violation_rate``."""
        if self._cost_window:
            costs, limits = (np.stack(column) for column in zip(*self._cost_window, strict=True))
            for k, resource in enumerate(self.cost_resources):
                self.logger.record(f"rollout/ep_cost_{resource}_mean", float(costs[:, k].mean()))
            violated = (costs > limits + VIOLATION_TOLERANCE).any(axis=1)
            self.logger.record("rollout/violation_rate", float(violated.mean()))
        super().dump_logs(iteration)

    def learn(
        self: SelfPPOLagrangian,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOLagrangian",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOLagrangian:
        """SB3's ``learn``; TensorBoard runs are named ``PPOLagrangian_<n>`` by default."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _check_cost_limits(cost_limits: dict[str, float] | None) -> dict[str, float] | None:
    """``cost_limits`` as a plain dict of floats, or an error naming what is accepted."""
    if cost_limits is None:
        return None
    if not isinstance(cost_limits, dict) or not cost_limits:
        raise TypeError(
            f"cost_limits={cost_limits!r} must be None or a non-empty dict resource -> limit"
        )
    for resource in cost_limits:
        if not isinstance(resource, str):
            raise TypeError(f"cost_limits key {resource!r} must be a resource name (str)")
    return {r: check_number(v, f"cost_limits[{r!r}]") for r, v in cost_limits.items()}


def _budget_limits(budget: Any) -> dict[str, float]:
    """The limits dict of an env's ``budget``: the dict itself or its ``limits`` attribute."""
    limits = getattr(budget, "limits", budget)
    if not isinstance(limits, dict) or not limits:
        raise TypeError(
            f"the env's budget {budget!r} is neither a non-empty dict resource -> limit nor "
            "an object with such a `limits` dict"
        )
    return limits
