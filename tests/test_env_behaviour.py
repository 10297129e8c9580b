"""What each environment does with its actions: layer steps, mixes, the Panning schedule."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from prune_gym.baselines import make_policy
from prune_gym.pruning import MaskSet
from prune_gym.tasks import evaluate_tensors
from prune_gym.wrappers import BudgetProjection


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
        "prune_gym/GlobalRatio-v0", task="digits-mlp", max_ratio=0.99, reward_finetune_steps=100
    ).unwrapped
    plain.reset(seed=0)
    tuned.reset(seed=0)
    before = plain.step(action)[1]
    assert tuned.step(action)[1] >= before
    context = plain.context  # shared with ``tuned``; evaluated again, past the reward cache
    with context.masked(plain.last_masks) as model:
        again = evaluate_tensors(model, context.reward_inputs, context.reward_targets)
    assert again["accuracy"] == before  # the dense weights were restored


@pytest.mark.parametrize(
    ("structure", "budget"), [("unstructured", {"params": 0.05}), ("channel", {"flops": 0.3})]
)
@pytest.mark.parametrize("reference", ["global", "erk", "uniform"])
def test_density_logits_meet_the_budget_for_every_action(structure, budget, reference):
    env = gym.make(
        "prune_gym/GlobalRatio-v0",
        task="digits-cnn",
        structure=structure,
        budget=budget,
        action="logits",
        reference=reference,
    ).unwrapped
    assert env.prunes_to_budget
    zero = np.zeros(env.num_layers, dtype=np.float32)
    units = [env.context.builder().unit_count(name) for name in env.layer_names]
    zero_ratios = env.action_to_ratios(zero)
    assert env.fits_ratios(zero_ratios)
    # the zero action is the reference scaled by one factor >= 1 onto the budget: the
    # same allocation, keeping whatever budget the reference's whole units left over
    low, high = 1 - env.max_ratio, 1 - env.min_ratio
    factors = (1 - zero_ratios) / env.reference_densities
    inside = (1 - zero_ratios > low + 1e-9) & (1 - zero_ratios < high - 1e-9)
    np.testing.assert_allclose(factors[inside], factors[inside][:1].repeat(inside.sum()))
    extra = (zero_ratios - (1 - env.reference_densities)) * units
    assert np.all(extra <= 1.0 + 1e-9)  # never prunes more than the reference, to a unit
    if structure == "unstructured":  # a global threshold leaves less than one weight over
        gap = np.abs(zero_ratios - (1 - env.reference_densities)) * units
        assert np.all(gap <= 1.0 + 1e-9)
    env.action_space.seed(0)
    for action in [zero, *(env.action_space.sample() for _ in range(8))]:
        env.reset(seed=0)
        info = env.step(action)[4]
        assert info["feasible"], info["used"]
        removed = [info["ratios"][name] for name in env.layer_names]  # whole units: round()
        assert np.all(np.array(removed) <= env.max_ratio + 0.5 / np.array(units) + 1e-12)
    if structure == "unstructured":  # rescaled onto the budget: within one weight of it
        total = env.context.cost_model.params_dense
        assert info["params_ratio"] > budget["params"] - 1.5 / total


def test_density_logits_start_at_the_reference_and_invert_ratios_that_meet_the_budget():
    kwargs = {"task": "digits-cnn", "budget": {"params": 0.05}}
    logits = gym.make("prune_gym/GlobalRatio-v0", action="logits", **kwargs).unwrapped
    ratios = gym.make("prune_gym/GlobalRatio-v0", **kwargs).unwrapped
    # the reference is the global-magnitude allocation at the budget, the fixed policy's
    reference = make_policy("global-magnitude", ratios).ratios
    np.testing.assert_allclose(logits.reference_densities, 1 - reference, atol=1e-9)
    target = logits.action_to_ratios(np.array([0.5, -0.25, 0.1, -0.6]))
    round_trip = logits.action_to_ratios(logits.ratios_to_action(target))
    np.testing.assert_allclose(round_trip, target, atol=1e-8)  # 0 returns as 4e-9 (numpy 2.4)
    with pytest.raises(ValueError, match=r"action='ratio'.*Did you mean 'ratios'"):
        gym.make("prune_gym/GlobalRatio-v0", action="ratio", **kwargs)
    with pytest.raises(ValueError, match=r"density_factor=1\.0"):
        gym.make("prune_gym/GlobalRatio-v0", action="logits", density_factor=1.0, **kwargs)
    projected = BudgetProjection(logits)  # already feasible: passed through unchanged
    action = np.array([1.0, -1.0, 0.3, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(projected.action(action), action)


def test_a_revisited_allocation_is_rewarded_from_the_cache_without_fine_tuning(monkeypatch):
    env = gym.make(
        "prune_gym/GlobalRatio-v0", task="digits-mlp", reward_finetune_steps=20
    ).unwrapped
    calls = []
    finetune = env.context.task.finetune
    monkeypatch.setattr(
        env.context.task, "finetune", lambda *a, **k: calls.append(1) or finetune(*a, **k)
    )
    action = np.full(env.num_layers, 0.4, dtype=np.float32)
    env.reset(seed=0)
    first = env.step(action)[1]
    env.reset(seed=1)  # another episode, the same allocation
    assert env.step(action)[1] == first
    assert calls == [1] and env.context.reward_hits >= 1
    other = gym.make(
        "prune_gym/GlobalRatio-v0", task="digits-mlp", reward_finetune_steps=20
    ).unwrapped
    other.reset(seed=2)
    assert other.step(action)[1] == first and calls == [1]  # shared by envs of one context


@pytest.mark.parametrize("env_id", ["prune_gym/GlobalRatio-v0", "prune_gym/LayerRatio-v0"])
def test_the_loss_reward_is_minus_the_reward_samples_cross_entropy(env_id):
    env = gym.make(env_id, task="digits-mlp", reward="loss").unwrapped
    env.reset(seed=0)
    done = False
    while not done:
        _, reward, done, _, info = env.step(np.full(env.action_space.shape, 0.2, np.float32))
    assert reward == -info["loss"] < 0
    with env.context.masked(env.last_masks) as model:
        expected = evaluate_tensors(model, env.context.reward_inputs, env.context.reward_targets)
    assert info["loss"] == pytest.approx(expected["loss"])


def test_unstructured_budget_checks_count_weights_exactly_as_built_masks_do():
    env = gym.make(
        "prune_gym/GlobalRatio-v0", task="digits-cnn", budget={"params": 0.3}, action="logits"
    ).unwrapped
    builder = env.context.builder()

    def fits_built_masks(ratios):  # the check before: build the masks, then price them
        return env.fits(builder.from_ratios(dict(zip(env.layer_names, ratios, strict=True))))

    rng = np.random.default_rng(0)
    checks = [rng.uniform(0, 1, env.num_layers) for _ in range(300)]
    edge = env.action_to_ratios(np.zeros(env.num_layers))  # on the budget, to a weight
    checks += [edge, np.nextafter(edge, 0.0), np.nextafter(edge, 1.0)]
    for ratios in checks:
        assert env.fits_ratios(ratios) == fits_built_masks(ratios)
    actions = [rng.uniform(-1, 1, env.num_layers) for _ in range(20)]
    rescaled = [env.action_to_ratios(action) for action in actions]
    env.fits_ratios = fits_built_masks
    before = [env.action_to_ratios(action) for action in actions]
    for new, old in zip(rescaled, before, strict=True):
        np.testing.assert_array_equal(new, old)  # bit-identical allocations
    with pytest.raises(ValueError, match="ratio of layer"):
        gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn").unwrapped.fits_ratios(
            [1.5] * env.num_layers
        )
