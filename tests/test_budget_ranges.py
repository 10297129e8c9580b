"""Budget-conditioned envs: a budget range, one budget drawn per episode, or fixed by reset."""

import gymnasium as gym
import numpy as np
import pytest

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.envs import allocations
from prune_gym.pruning import Budget
from prune_gym.pruning.cost import BudgetRange, budget_setting

GLOBAL, LAYER = "prune_gym/GlobalRatio-v0", "prune_gym/LayerRatio-v0"
RANGE = {"params": (0.02, 0.2)}


def test_a_range_parses_prints_and_checks_its_bounds():
    budget = BudgetRange.parse("params=0.02:0.2+flops=0.5")
    assert budget == BudgetRange({"params": (0.02, 0.2), "flops": 0.5})
    assert budget.label == "flops=0.5+params=0.02:0.2"
    assert BudgetRange.parse(budget.label) == budget
    assert budget.tightest == Budget({"params": 0.02, "flops": 0.5})
    assert budget_setting({"params": 0.3}) == Budget({"params": 0.3})
    assert budget_setting({"params": [0.1, 0.3]}) == BudgetRange({"params": (0.1, 0.3)})
    with pytest.raises(ValueError, match="low must not exceed high"):
        BudgetRange({"params": (0.3, 0.1)})
    with pytest.raises(ValueError, match="budget params"):
        BudgetRange({"params": (0.0, 0.2)})
    with pytest.raises(ValueError, match=r"\(low, high\) pair"):
        BudgetRange({"params": (0.1, 0.2, 0.3)})
    with pytest.raises(ValueError, match="'x' is not a number"):
        BudgetRange.parse("params=0.1:x")


def test_budgets_are_drawn_log_uniformly_and_reproducibly():
    budget = BudgetRange(RANGE)
    draws = [budget.sample(np.random.default_rng(seed)).limits["params"] for seed in range(3000)]
    assert all(0.02 <= d <= 0.2 for d in draws)
    # log-uniform: each factor of the range gets the same share (0.02-0.04: log 2 / log 10)
    share = np.mean([d < 0.04 for d in draws])
    assert share == pytest.approx(np.log(2) / np.log(10), abs=0.03)
    assert budget.sample(np.random.default_rng(7)) == budget.sample(np.random.default_rng(7))
    assert BudgetRange({"flops": (0.5, 0.5)}).sample(np.random.default_rng(0)).limits == {
        "flops": 0.5
    }


def test_each_episode_draws_its_budget_and_the_observation_and_info_carry_it():
    env = gym.make(GLOBAL, task="digits-mlp", budget=RANGE, action="logits").unwrapped
    column = env.feature_names.index("limit_params")
    limits = []
    for seed in range(4):
        observation, _ = env.reset(seed=seed)
        limit = env.budget.limits["params"]
        limits.append(limit)
        assert observation[column] == pytest.approx(limit)
        info = env.step(np.zeros(env.num_layers, dtype=np.float32))[4]
        assert info["cost_limits"] == {"params": limit}
        assert info["feasible"]  # the logits' reference is rescaled onto each budget
        assert info["params_ratio"] > limit - 2 / env.context.cost_model.params_dense
    assert len(set(limits)) == 4
    env.reset(seed=2)
    assert env.budget.limits["params"] == limits[2]


def test_the_logits_reference_is_computed_once_per_budget(monkeypatch):
    env = gym.make(GLOBAL, task="digits-mlp", budget=RANGE, action="logits").unwrapped
    calls = []
    original = allocations.global_ratios
    monkeypatch.setattr(allocations, "global_ratios", lambda *a: calls.append(1) or original(*a))
    zero = np.zeros(env.num_layers, dtype=np.float32)
    env.reset(seed=1)
    env.step(zero)  # acts around the reference at seed 1's budget
    first = env.reference_densities.copy()
    env.reset(seed=2)
    env.step(zero)
    env.reset(seed=1)
    env.step(zero)
    assert len(calls) == 2  # budgets of seeds 1 and 2; seed 1's again from the cache
    np.testing.assert_array_equal(env.reference_densities, first)


def test_reset_options_fix_the_budget_for_one_episode():
    env = gym.make(GLOBAL, task="digits-mlp", budget={"params": 0.5}).unwrapped
    env.reset(options={"budget": {"params": 0.1}})
    assert env.budget == Budget({"params": 0.1})
    assert env.step(np.full(env.num_layers, -1.0, dtype=np.float32))[4]["cost_limits"] == {
        "params": 0.1
    }
    env.reset()
    assert env.budget == Budget({"params": 0.5})  # the setting again
    ranged = gym.make(GLOBAL, task="digits-mlp", budget=RANGE).unwrapped
    ranged.reset(seed=0, options={"budget": {"params": 0.5}})  # outside the range: allowed
    assert ranged.budget == Budget({"params": 0.5})
    with pytest.raises(ValueError, match="cannot be met"):
        ranged.reset(options={"budget": {"params": 1e-6}})
    with pytest.raises(ValueError, match="latency"):
        ranged.reset(options={"budget": {"latency": 0.5}})


def test_a_range_must_be_reachable_at_its_tightest():
    with pytest.raises(ValueError, match="cannot be met"):
        gym.make(GLOBAL, task="digits-mlp", budget={"params": (1e-6, 0.5)})


def test_layer_ratio_sees_the_drawn_limits_and_projection_meets_them():
    from prune_gym.wrappers import BudgetProjection

    env = BudgetProjection(gym.make(LAYER, task="digits-mlp", budget=RANGE))
    column = env.unwrapped.feature_names.index("limit_params")
    for seed in range(3):
        observation, _ = env.reset(seed=seed)
        assert observation[column] == pytest.approx(env.unwrapped.budget.limits["params"])
        done = False
        while not done:
            _, _, done, _, info = env.step(np.full(1, -1.0, dtype=np.float32))
        assert info["feasible"], (info["used"], info["cost_limits"])


def test_panning_refuses_budget_ranges_and_reset_budgets():
    with pytest.raises(ValueError, match="target_range"):
        gym.make("prune_gym/Panning-v0", task="digits-mlp", budget=RANGE)
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", iterations=2)
    with pytest.raises(ValueError, match="target"):
        env.reset(options={"budget": {"params": 0.1}})


def test_vector_env_sub_envs_draw_their_own_budgets():
    settings = {"task": "digits-mlp", "budget": RANGE, "action": "logits"}
    venv = gym.make_vec(GLOBAL, num_envs=3, **settings)
    venv.reset(seed=5)
    drawn = [env.unwrapped.budget for env in venv.envs]
    for i, budget in enumerate(drawn):
        single = gym.make(GLOBAL, **settings).unwrapped
        single.reset(seed=5 + i)
        assert single.budget == budget
    assert len({budget.limits["params"] for budget in drawn}) == 3
    venv.close()


def test_a_fixed_policy_allocates_at_each_episode_budget():
    from prune_gym.baselines import make_policy

    env = gym.make(GLOBAL, task="digits-mlp", budget=RANGE)
    policy = make_policy("erk", env)
    for seed in range(3):
        observation, _ = env.reset(seed=seed)
        info = env.step(policy.predict(observation)[0])[4]
        limit = env.unwrapped.budget.limits["params"]
        assert info["feasible"]
        assert info["params_ratio"] > limit - 0.01  # spends this episode's budget


def test_metric_mix_prunes_to_each_drawn_budget():
    env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp", budget=RANGE)
    column = env.unwrapped.feature_names.index("limit_params")
    for seed in range(3):
        observation, _ = env.reset(seed=seed)
        limit = env.unwrapped.budget.limits["params"]
        assert observation[column] == pytest.approx(limit)
        info = env.step(env.action_space.sample())[4]
        assert info["feasible"] and info["params_ratio"] > limit - 0.01


def test_a_range_covers_the_budgets_inside_it_up_to_label_rounding():
    budget_range = BudgetRange({"params": (0.2, 0.5)})
    middle = budget_range.grid(3)[1]  # params 0.316228 once written as a label
    assert budget_range.covers(Budget.parse(middle.label))
    assert budget_range.covers(Budget({"params": 0.2})) and budget_range.covers(
        Budget({"params": 0.5})
    )
    assert not budget_range.covers(Budget({"params": 0.19}))
    assert not budget_range.covers(Budget({"flops": 0.3}))  # another resource
    assert not budget_range.covers(Budget({"params": 0.3, "flops": 0.5}))  # one more
