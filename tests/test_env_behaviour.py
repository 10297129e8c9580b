"""What each environment does with its actions: layer steps, mixes, the Panning schedule."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from prune_gym.pruning import MaskSet


def test_layer_ratio_steps_through_layers_and_pays_only_at_the_end():
    env = gym.make("prune_gym/LayerRatio-v0", task="digits-cnn").unwrapped
    obs, _ = env.reset(seed=0)
    names = list(env.feature_names)
    assert obs[names.index("previous_ratio")] == 0.0
    rewards = []
    for t, layer in enumerate(env.layer_names):
        assert env.current_layer == layer
        obs, reward, terminated, _, info = env.step(np.array([0.0], dtype=np.float32))
        rewards.append(reward)
        assert terminated == (t == env.num_layers - 1)
    assert rewards[:-1] == [0.0] * (env.num_layers - 1)
    assert rewards[-1] == info["accuracy"] > 0.5
    middle = (env.min_ratio + env.max_ratio) / 2
    assert obs[names.index("previous_ratio")] == pytest.approx(middle, abs=1e-3)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0], dtype=np.float32))


def test_layer_ratio_observation_tracks_what_was_removed():
    env = gym.make("prune_gym/LayerRatio-v0", task="digits-mlp", max_ratio=0.5).unwrapped
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))  # first layer at ratio 0.5
    names = list(env.feature_names)
    assert obs[names.index("params_removed")] == pytest.approx(0.5 * env.params_share[0], abs=1e-6)
    later = env.params_share[2:].sum()
    assert obs[names.index("params_later")] == pytest.approx(later, abs=1e-6)


def test_metric_mix_prunes_to_exactly_the_tightest_budget():
    env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp", budget={"params": 0.25}).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    total = env.context.cost_model.params_dense
    assert info["params_ratio"] <= 0.25
    assert info["params_ratio"] >= 0.25 - 1.0 / total  # within one weight of the limit


def test_a_one_hot_magnitude_mix_is_global_magnitude_pruning():
    env = gym.make(
        "prune_gym/MetricMix-v0",
        task="digits-mlp",
        budget={"params": 0.3},
        metrics=["magnitude", "snip"],
    ).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.weights_to_action([1.0, 0.0]))
    model = env.context.task.pretrained_model()
    reference = MaskSet.global_threshold(model, 1 - info["params_ratio"])
    assert info["ratios"] == pytest.approx(reference.ratios())
    assert info["metric_weights"] == {"magnitude": 1.0, "snip": 0.0}


def test_metric_mix_joint_mode_takes_ratios_and_a_mix():
    env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp", mode="joint").unwrapped
    assert env.action_space.shape == (env.num_layers + len(env.metrics),)
    ratios = [0.5, 0.25, 0.0]
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.weights_to_action([0, 1, 0, 0], ratios=ratios))
    assert list(info["ratios"].values()) == pytest.approx(ratios, abs=1e-3)


def test_panning_follows_the_exponential_schedule_with_nested_masks():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", iterations=5, target=0.9).unwrapped
    env.reset(seed=0)
    previous = env.masks
    for k in range(5):
        _, reward, terminated, _, info = env.step(env.action_space.sample())
        expected = 1 - (1 - 0.9) ** ((k + 1) / 5)
        assert info["scheduled_sparsity"] == pytest.approx(expected)
        assert env.masks.sparsity() == pytest.approx(expected, abs=1e-4)
        assert all(not (env.masks[n] & ~previous[n]).any() for n in env.masks)  # nested
        assert info["effective_sparsity"] >= env.masks.sparsity() - 1e-12
        assert reward <= 0.0
        previous = env.masks
    assert terminated and info["feasible"]
    assert info["sparsity"] == pytest.approx(0.9, abs=1e-4)


def test_panning_draws_the_target_from_its_range_per_episode():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", target_range=(0.8, 0.95)).unwrapped
    targets = {env.reset(seed=seed)[1]["target_sparsity"] for seed in range(6)}
    assert len(targets) == 6 and all(0.8 <= t <= 0.95 for t in targets)


def test_panning_scores_a_fresh_initialisation_not_the_trained_net():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp").unwrapped
    trained = env.context.task.pretrained_model()
    initial = env.context.task.build_model()
    env.context.dense_masks.apply(env.context.model)
    weight = env.context.model.fc1.weight
    assert torch.equal(weight, initial.fc1.weight) and not torch.equal(weight, trained.fc1.weight)


def test_panning_trained_accuracy_reward_trains_the_sparse_net():
    env = gym.make(
        "prune_gym/Panning-v0",
        task="digits-mlp",
        iterations=3,
        target=0.5,
        reward="trained_accuracy",
        train_steps=100,
    ).unwrapped
    env.reset(seed=0)
    rewards = [env.step(env.weights_to_action([1, 1, 1]))[1] for _ in range(3)]
    assert rewards[:2] == [0.0, 0.0]
    assert rewards[2] > 0.5  # 100 steps take a half-pruned init well above chance (0.1)


def test_a_latency_budget_is_measured_on_the_exported_channel_pruned_model():
    env = gym.make(
        "prune_gym/GlobalRatio-v0",
        task="digits-cnn",
        structure="channel",
        budget={"latency": 0.95, "flops": 0.6},
    ).unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    assert info["latency_ratio"] > 0
    assert info["costs"]["latency"] == info["latency_ratio"]
    assert info["used"]["latency"] == info["latency_ratio"]
    assert info["feasible"] == (info["latency_ratio"] <= 0.95 and info["macs_ratio"] <= 0.6 + 1e-12)


def test_fine_tuning_before_the_reward_helps_and_leaves_the_shared_model_intact():
    action = np.full((3,), 0.6, dtype=np.float32)  # digits-mlp: three layers, ~60% pruned
    plain = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", max_ratio=0.99).unwrapped
    tuned = gym.make(
        "prune_gym/GlobalRatio-v0", task="digits-mlp", max_ratio=0.99, finetune_steps=100
    ).unwrapped
    plain.reset(seed=0)
    tuned.reset(seed=0)
    before = plain.step(action)[1]
    assert tuned.step(action)[1] >= before
    assert plain.step(action)[1] == before  # the dense weights were restored
