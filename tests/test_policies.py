"""Fixed policies (classical one-shot methods) and the evaluation loop shared with SB3."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from torch.nn.utils import prune

from prune_gym.baselines import make_policy, policy_env_settings, supported_policies
from prune_gym.baselines.policies import PANNING_STAGES
from prune_gym.bench import BenchSpec
from prune_gym.bench.planning import plan
from prune_gym.evaluation import assess_policy
from prune_gym.pruning import MaskSet, prunable_layers

ENVS = [
    ("prune_gym/LayerRatio-v0", {}),
    ("prune_gym/GlobalRatio-v0", {}),
    ("prune_gym/MetricMix-v0", {}),
    ("prune_gym/MetricMix-v0", {"mode": "joint"}),
]


@pytest.mark.parametrize("budget", [{"flops": 0.3}, {"params": 0.2, "flops": 0.5}])
@pytest.mark.parametrize("structure", ["unstructured", "channel"])
@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_every_policy_meets_the_budget_on_every_env_it_supports(env_id, kwargs, structure, budget):
    settings = {"task": "digits-cnn", "structure": structure, "budget": budget, **kwargs}
    for name in supported_policies(gym.make(env_id, **settings)):
        env = gym.make(env_id, **settings | policy_env_settings(name))
        record = assess_policy(make_policy(name, env), env, n_episodes=2)
        assert all(r["feasible"] for r in record), (name, [r["budget_violation"] for r in record])
        for resource, limit in budget.items():
            used = record[0]["macs_ratio" if resource == "flops" else "params_ratio"]
            assert used <= limit + 1e-12


def test_panning_policies_prune_to_the_target():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", iterations=5, target=0.95)
    assert supported_policies(env) == (
        "random",
        "iterative-snip",
        "iterative-grasp",
        "iterative-synflow",
        "panning-handset",
    )
    for name in supported_policies(env):
        (record,) = assess_policy(make_policy(name, env), env)
        assert record["feasible"] and record["sparsity"] == pytest.approx(0.95, abs=1e-4)
        assert record["length"] == 5


def test_panning_handset_uses_the_papers_stages():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", iterations=100, target=0.995)
    policy = make_policy("panning-handset", env)
    names = list(env.unwrapped.feature_names)
    for progress, expected in ((0.0, 0), (0.35, 1), (0.5, 2), (0.75, 3), (0.99, 4)):
        observation = np.zeros(len(names), dtype=np.float32)
        observation[names.index("target_sparsity")] = 0.995
        observation[names.index("progress")] = progress
        weights = env.unwrapped.action_to_weights(policy.predict(observation)[0])
        pruned = 1 - 0.005**progress
        stage = next(i for i, (limit, _) in enumerate(PANNING_STAGES) if pruned < limit)
        assert stage == expected
        assert weights == pytest.approx(PANNING_STAGES[stage][1])  # [synflow, snip, grasp]


def test_global_magnitude_on_global_ratio_equals_torch_global_unstructured():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn", budget={"params": 0.15})
    (record,) = assess_policy(make_policy("global-magnitude", env), env)
    masks = env.unwrapped.last_masks
    model = env.unwrapped.context.task.pretrained_model()
    prune.global_unstructured(
        [(m, "weight") for _, m in prunable_layers(model)],
        pruning_method=prune.L1Unstructured,
        amount=record["sparsity"],
    )
    reference = MaskSet.from_model(model)
    for name in masks:
        assert torch.equal(masks[name], reference[name]), name


def test_assess_policy_treats_sb3_models_and_fixed_policies_alike():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget={"flops": 0.5})
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0).learn(32)
    for policy in (model, make_policy("uniform", env)):
        records = assess_policy(policy, env, n_episodes=2, seed=5)
        assert [r["seed"] for r in records] == [5, 6]
        for record in records:
            assert {"return", "accuracy", "val_accuracy", "test_accuracy", "macs_ratio"} <= set(
                record
            )
            assert record["cost_flops"] == pytest.approx(record["macs_ratio"])
            assert 0 <= record["test_accuracy"] <= 1


def test_fine_tuning_budget_is_applied_before_val_and_test():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget={"params": 0.05})
    policy = make_policy("uniform", env)
    (plain,) = assess_policy(policy, env)
    (tuned,) = assess_policy(policy, env, finetune_steps=150)
    assert tuned["val_accuracy"] > plain["val_accuracy"]
    (again,) = assess_policy(policy, env)  # the shared model is restored after fine-tuning
    assert again["val_accuracy"] == plain["val_accuracy"]


def test_unknown_and_unsupported_policies_are_rejected():
    env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp")
    with pytest.raises(ValueError, match="no-such-method"):
        make_policy("no-such-method", env)
    with pytest.raises(ValueError, match="erk"):
        make_policy("erk", env)  # global mode only chooses a mix
    with pytest.raises(ValueError, match="n_episodes"):
        assess_policy(make_policy("random", env), env, n_episodes=0)


def test_a_joint_metric_mix_offers_only_policies_whose_ranking_it_mixes():
    settings = {"task": "digits-mlp", "budget": {"params": 0.3}, "mode": "joint"}
    env = gym.make("prune_gym/MetricMix-v0", metrics=["snip", "grasp"], **settings)
    names = supported_policies(env)
    # erk and layer-magnitude rank by magnitude, owl by wanda: none is mixed here
    assert names == ("random", "uniform", "snip", "grasp")
    for name in names:
        (record,) = assess_policy(make_policy(name, env), env)
        assert record["feasible"]


def test_a_ranked_policy_name_needs_a_registered_metric():
    assert policy_env_settings("uniform@wanda-row") == {"rank_by": "wanda-row"}
    with pytest.raises(ValueError, match=r"unknown metric 'wandda'.*Did you mean 'wanda'"):
        policy_env_settings("uniform@wandda")
    with pytest.raises(ValueError, match="expected <policy>@<metric>"):
        policy_env_settings("uniform@")
    spec = BenchSpec(tasks=("digits-mlp",), budgets=("params=0.3",), methods=("erk@wandda",))
    with pytest.raises(ValueError, match="unknown metric 'wandda'"):
        plan(spec)  # before any run


def test_random_weights_keeps_weights_at_random_and_needs_its_env():
    settings = {"task": "digits-mlp", "budget": {"params": 0.2}}
    with pytest.raises(ValueError, match="rank_by"):
        make_policy("random-weights", gym.make("prune_gym/GlobalRatio-v0", **settings))
    chosen = {}
    for name in ("random-weights", "global-magnitude"):
        env = gym.make("prune_gym/GlobalRatio-v0", **settings | policy_env_settings(name))
        assess_policy(make_policy(name, env), env)
        chosen[name] = env.unwrapped.last_masks
    random_kept, magnitude_kept = chosen["random-weights"], chosen["global-magnitude"]
    ratios = np.array(list(random_kept.ratios().values()))
    assert np.allclose(ratios, 0.8, atol=0.05)  # one random threshold: ~0.8 everywhere (3 sd)
    shared = sum(int((random_kept[n] & magnitude_kept[n]).sum()) for n in random_kept)
    assert shared / random_kept.num_kept() == pytest.approx(0.2, abs=0.03)  # chance overlap
