"""BudgetProjection, CostMonitor and LagrangianReward."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from prune_gym.wrappers import BudgetProjection, CostMonitor, LagrangianReward

BUDGETS = [{"flops": 0.3}, {"params": 0.2}, {"flops": 0.4, "params": 0.3}]


def finish_episode(env: gym.Env, seed: int) -> dict:
    """Run one episode with seeded random actions and return the last info."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    return info


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("structure", ["unstructured", "channel"])
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("prune_gym/LayerRatio-v0", {}),
        ("prune_gym/GlobalRatio-v0", {}),
        ("prune_gym/MetricMix-v0", {"mode": "joint"}),
        ("prune_gym/MetricMix-v0", {}),
    ],
)
def test_random_actions_through_budget_projection_are_always_feasible(
    env_id, kwargs, structure, budget
):
    env = BudgetProjection(
        gym.make(env_id, task="digits-cnn", structure=structure, budget=budget, **kwargs)
    )
    infos = [finish_episode(env, seed) for seed in range(8)]
    assert all(info["feasible"] for info in infos), [info["used"] for info in infos]


def test_projection_changes_nothing_that_already_fits():
    env = BudgetProjection(gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp"))
    action = np.ones(env.action_space.shape, dtype=np.float32)  # everything at max_ratio
    assert env.action(action) == pytest.approx(action)
    loose = -np.ones(env.action_space.shape, dtype=np.float32)  # nothing pruned: too costly
    assert (env.action(loose) > loose).all()


def test_a_budget_no_projection_can_meet_is_refused_when_the_env_is_made():
    with pytest.raises(ValueError, match="cannot be met"):
        gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget={"params": 0.001})


def test_cost_monitor_sums_costs_next_to_monitor_episode_stats():
    env = CostMonitor(
        Monitor(gym.make("prune_gym/LayerRatio-v0", task="digits-cnn", budget=BUDGETS[2]))
    )
    info = finish_episode(env, seed=0)
    episode = info["episode"]
    assert {"r", "l", "t"} <= set(episode)
    assert episode["l"] == 4
    assert episode["cost_flops"] == pytest.approx(info["macs_ratio"])
    assert episode["cost_params"] == pytest.approx(info["params_ratio"])
    assert episode["cost"] == pytest.approx(info["macs_ratio"] + info["params_ratio"])


@pytest.mark.parametrize("lam", [2.0, {"flops": 3.0}])
def test_lagrangian_reward_subtracts_the_priced_violation(lam):
    base = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget={"flops": 0.2})
    env = LagrangianReward(base, lam)
    env.reset(seed=0)
    action = -np.ones(env.action_space.shape, dtype=np.float32)  # dense: violation 0.8
    _, reward, _, _, info = env.step(action)
    price = lam if isinstance(lam, float) else lam["flops"]
    assert info["budget_violation"] == pytest.approx(0.8)
    assert reward == pytest.approx(info["accuracy"] - price * 0.8)
    with pytest.raises(ValueError, match="outside the budget"):
        LagrangianReward(base, {"params": 1.0})
    with pytest.raises(ValueError, match="lam"):
        LagrangianReward(base, -1.0)
