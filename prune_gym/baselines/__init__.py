"""Classical pruning methods: one-shot methods as fixed policies, training-time methods.

``make_policy(name, env)`` gives an object with SB3's ``predict``, so learned and fixed
policies are evaluated alike (``prune_gym.evaluation.assess_policy``).
"""

from prune_gym.baselines.policies import (
    ALL_POLICIES,
    FixedPolicy,
    is_supported,
    make_policy,
    policy_env_settings,
    supported_policies,
)

__all__ = [
    "ALL_POLICIES",
    "FixedPolicy",
    "is_supported",
    "make_policy",
    "policy_env_settings",
    "supported_policies",
]
