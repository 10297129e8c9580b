"""SB3's actor-critic policy with a cost critic: one value output per constrained resource."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from prune_gym.checks import check_int


class CostActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` plus ``cost_value_net``, an MLP like the value net with K outputs.

    The cost critic reads the value features and is built before SB3 creates the optimizer,
    so one optimizer trains all heads. ``forward``/``predict`` are SB3's, unchanged, so
    ``evaluate_policy`` and ``EvalCallback`` work as with any SB3 policy.
    """

    def __init__(self, *args: Any, n_costs: int = 1, **kwargs: Any) -> None:
        self.n_costs = check_int(
            n_costs, "n_costs", low=1
        )  # read by _build, which SB3's __init__ calls
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        vf_arch = self.net_arch.get("vf", []) if isinstance(self.net_arch, dict) else self.net_arch
        layers = create_mlp(self.features_dim, self.n_costs, list(vf_arch), self.activation_fn)
        self.cost_value_net = nn.Sequential(*layers)
        if self.ortho_init:  # the gains SB3 uses for the value MLP and its output layer
            self.cost_value_net.apply(partial(self.init_weights, gain=np.sqrt(2)))
            self.init_weights(self.cost_value_net[-1], gain=1.0)
        super()._build(lr_schedule)  # creates the optimizer over every parameter, cost critic too

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "n_costs": self.n_costs}

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
