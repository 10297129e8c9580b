"""SB3's actor-critic policy with a cost critic, a Gaussian mean kept in the box, a std cap.

Why the mean is bounded: SB3 clips the action it sends to the env but trains on the
unclipped sample. When reward and cost both grow toward an action bound, a free Gaussian
mean runs past the bound, every sample is clipped to the same action, every advantage is
exactly zero, and nothing can bring the mean back, whatever the Lagrange multiplier says.
With the mean squashed into the box (``tanh``, rescaled), at least half of each
dimension's samples land inside it, so advantages never all vanish; the deterministic
action (the mean) is always a valid action. Sampling and log-probabilities stay SB3's
Gaussian ones, so the policy gradient is unchanged and unbiased.

Why the std is capped: the constraint is enforced on the stochastic policy's expected
cost, but users deploy the deterministic action. Lowering the cap during training
(``PPOLagrangian``'s ``std_cap``) makes the two coincide by the end.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from prune_gym.checks import check_int


class CostActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` plus a cost critic (K outputs), a bounded mean and a std cap.

    ``cost_value_net`` is an MLP like the value net, reading the value features, built
    before SB3 creates the optimizer, so one optimizer trains all heads. With a bounded
    ``Box`` action space and SB3's diagonal Gaussian, the mean is ``tanh`` of the action
    net's output rescaled into the box, and the std is ``min(exp(log_std), std_cap)``
    (``set_std_cap``; no cap until set). ``forward``/``predict`` are SB3's, so
    ``evaluate_policy`` and ``EvalCallback`` work as with any SB3 policy.

    :param n_costs: number of constrained resources (outputs of the cost critic).
    """

    def __init__(self, *args: Any, n_costs: int = 1, **kwargs: Any) -> None:
        # read by _build, which SB3's __init__ calls
        self.n_costs = check_int(n_costs, "n_costs", low=1)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        vf_arch = self.net_arch.get("vf", []) if isinstance(self.net_arch, dict) else self.net_arch
        layers = create_mlp(self.features_dim, self.n_costs, list(vf_arch), self.activation_fn)
        self.cost_value_net = nn.Sequential(*layers)
        if self.ortho_init:  # the gains SB3 uses for the value MLP and its output layer
            self.cost_value_net.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.init_weights(self.cost_value_net[-1], gain=1.0)
        self.register_buffer("log_std_cap", th.tensor(math.inf))
        box = self.action_space
        self.bounded_mean = isinstance(box, spaces.Box) and bool(
            np.all(np.isfinite(box.low)) and np.all(np.isfinite(box.high))
        )
        if self.bounded_mean:
            self.register_buffer("action_center", th.as_tensor((box.high + box.low) / 2.0))
            self.register_buffer("action_half_range", th.as_tensor((box.high - box.low) / 2.0))
        super()._build(lr_schedule)  # creates the optimizer over every parameter, cost critic too

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "n_costs": self.n_costs}

    def set_std_cap(self, std: float) -> None:
        """Cap the Gaussian's standard deviation at ``std`` (``inf`` removes the cap)."""
        self.log_std_cap.fill_(math.log(std) if std > 0 else -math.inf)

    def effective_std(self) -> th.Tensor:
        """The std actually sampled with: the learned one, capped."""
        return th.exp(th.clamp(self.log_std, max=self.log_std_cap))

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        if not (self.bounded_mean and isinstance(self.action_dist, DiagGaussianDistribution)):
            return super()._get_action_dist_from_latent(latent_pi)
        raw = self.action_net(latent_pi)
        mean = self.action_center + self.action_half_range * th.tanh(raw)
        log_std = th.clamp(self.log_std, max=self.log_std_cap)
        return self.action_dist.proba_distribution(mean.to(raw.dtype), log_std)

    def predict_cost_values(self, obs: PyTorchObs) -> th.Tensor:
        """Estimated discounted future cost of every resource, shape (batch, n_costs)."""
        features = self.extract_features(obs)
        vf_features = features if self.share_features_extractor else features[1]
        return self.cost_value_net(vf_features)

    def evaluate_actions_with_costs(
        self, obs: PyTorchObs, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None, th.Tensor]:
        """SB3's ``evaluate_actions`` (values, log_prob, entropy) plus the cost values."""
        values, log_prob, entropy = self.evaluate_actions(obs, actions)
        return values, log_prob, entropy, self.predict_cost_values(obs)
