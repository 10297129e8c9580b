"""The four environments: checkers, determinism, costs, actions, bad input, custom tasks."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torch import nn

import prune_gym
from prune_gym.envs import GlobalRatioEnv
from prune_gym.pruning import MaskSet, count_costs
from prune_gym.tasks import Split, Task, TrainRecipe, register_task

IDS = list(prune_gym.ENV_IDS)
RATIO_IDS = ["prune_gym/LayerRatio-v0", "prune_gym/GlobalRatio-v0", "prune_gym/MetricMix-v0"]
STRUCTURES = ("unstructured", "channel")
#: every env with every structure it supports (Panning prunes single weights only).
ENV_STRUCTURES = [(env_id, s) for env_id in RATIO_IDS for s in STRUCTURES] + [
    ("prune_gym/Panning-v0", "unstructured")
]


def run_episode(env: gym.Env, seed: int) -> list[tuple]:
    """(observation, reward, info) of every step of one episode with seeded random actions."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    steps = [(obs, 0.0, {})]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps.append((obs, reward, info))
        done = terminated or truncated
    return steps


@pytest.mark.parametrize("task", ["digits-mlp", "digits-cnn"])
@pytest.mark.parametrize(("env_id", "structure"), ENV_STRUCTURES)
def test_env_passes_gymnasium_and_sb3_checkers_without_warnings(env_id, structure, task):
    env = gym.make(env_id, task=task, structure=structure)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    assert env.observation_space.dtype == np.float32 and env.action_space.dtype == np.float32
    assert len(env.unwrapped.feature_names) == env.observation_space.shape[0]


@pytest.mark.parametrize(("env_id", "structure"), ENV_STRUCTURES)
def test_same_seed_gives_the_same_trajectory(env_id, structure):
    first = run_episode(gym.make(env_id, task="digits-cnn", structure=structure), seed=3)
    second = run_episode(gym.make(env_id, task="digits-cnn", structure=structure), seed=3)
    assert len(first) == len(second)
    for (obs_a, reward_a, info_a), (obs_b, reward_b, info_b) in zip(first, second, strict=True):
        assert np.array_equal(obs_a, obs_b)
        assert reward_a == reward_b
        assert info_a.keys() == info_b.keys()
        assert info_a.get("ratios") == info_b.get("ratios")


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("env_id", RATIO_IDS)
def test_episode_costs_sum_to_the_final_used_fractions(env_id, structure):
    env = gym.make(
        env_id, task="digits-cnn", structure=structure, budget={"flops": 0.4, "params": 0.5}
    )
    for seed in range(3):
        steps = run_episode(env, seed)
        final = steps[-1][2]
        flops = sum(info["costs"]["flops"] for _, _, info in steps[1:])
        params = sum(info["costs"]["params"] for _, _, info in steps[1:])
        assert flops == pytest.approx(final["macs_ratio"], abs=1e-12)
        assert params == pytest.approx(final["params_ratio"], abs=1e-12)
        assert all(info["cost_limits"] == {"flops": 0.4, "params": 0.5} for _, _, info in steps[1:])
        assert all(
            info["cost"] == pytest.approx(sum(info["costs"].values())) for _, _, info in steps[1:]
        )


def test_panning_costs_sum_to_the_final_params_fraction():
    env = gym.make("prune_gym/Panning-v0", task="digits-mlp", iterations=5, target=0.9)
    steps = run_episode(env, seed=0)
    total = sum(info["costs"]["params"] for _, _, info in steps[1:])
    assert total == pytest.approx(steps[-1][2]["params_ratio"], abs=1e-12)
    assert steps[-1][2]["cost_limits"] == {"params": pytest.approx(0.1)}


@pytest.mark.parametrize("budget", [{"flops": 0.3}, {"params": 0.2}, {"flops": 0.6, "params": 0.5}])
def test_feasibility_and_violation_agree_with_the_ratios(budget):
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn", budget=budget).unwrapped
    model = env.context.task.pretrained_model()
    x = env.context.task.example_input()
    for level in (-0.8, 0.0, 0.4, 0.9):
        action = np.full(env.action_space.shape, level, dtype=np.float32)
        env.reset(seed=0)
        _, _, _, _, info = env.step(action)
        ratios = dict(zip(env.layer_names, env.action_to_ratios(action), strict=True))
        costs = count_costs(model, x, MaskSet.from_ratios(model, ratios))
        used = {
            "flops": costs["macs_nonzero"] / costs["macs_dense"],
            "params": costs["params_nonzero"] / costs["params_dense"],
        }
        assert info["macs_ratio"] == pytest.approx(used["flops"])
        assert info["params_ratio"] == pytest.approx(used["params"])
        violation = max(0.0, *(used[r] - limit for r, limit in budget.items()))
        assert info["budget_violation"] == pytest.approx(violation)
        assert info["feasible"] == (violation <= 0)
        assert info["ratios"] == pytest.approx(
            {
                n: round(r * m.weight.numel()) / m.weight.numel()
                for (n, r), m in zip(
                    ratios.items(), (model.conv1, model.conv2, model.fc1, model.fc2), strict=True
                )
            }
        )


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("env_id", RATIO_IDS)
def test_actions_and_ratios_round_trip(env_id, structure):
    env = gym.make(env_id, task="digits-cnn", structure=structure).unwrapped
    ratios = np.linspace(env.min_ratio, env.max_ratio, env.num_layers)
    back = env.action_to_ratios(env.ratios_to_action(ratios))
    assert back == pytest.approx(ratios, abs=1e-6)
    as_dict = dict(zip(env.layer_names, ratios, strict=True))
    assert env.ratios_to_action(as_dict) == pytest.approx(env.ratios_to_action(ratios))


def test_metric_weights_round_trip():
    env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp").unwrapped
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    assert env.action_to_weights(env.weights_to_action(weights)) == pytest.approx(weights)


@pytest.mark.parametrize("env_id", IDS)
def test_nan_and_wrongly_shaped_actions_are_rejected(env_id):
    env = gym.make(env_id, task="digits-mlp").unwrapped
    env.reset(seed=0)
    shape = env.action_space.shape
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(shape, np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((shape[0] + 1,), dtype=np.float32))


def test_out_of_range_finite_actions_are_clipped():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp").unwrapped
    env.reset(seed=0)
    _, _, _, _, clipped = env.step(np.full(env.action_space.shape, 5.0))
    env.reset(seed=0)
    _, _, _, _, edge = env.step(np.ones(env.action_space.shape))
    assert clipped["ratios"] == edge["ratios"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": {"flops": 0.0}}, "flops"),
        ({"budget": {"flops": 1.5}}, "flops"),
        ({"budget": {"energy": 0.5}}, "energy"),
        ({"budget": {"latency": 0.5}}, "latency"),
        ({"task": "no-such-task"}, "no-such-task"),
        ({"metrics": ["magnitude", "no-such-metric"]}, "no-such-metric"),
        ({"structure": "blocks"}, "blocks"),
        ({"reward_samples": 0}, "reward_samples"),
        ({"max_ratio": 1.5}, "max_ratio"),
    ],
)
def test_bad_settings_raise_value_errors_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gym.make("prune_gym/GlobalRatio-v0", **{"task": "digits-mlp", **kwargs})


def tiny_task(seed: int = 0) -> Task:
    """A user's own task: a small CNN on random 2-class images."""

    def data():
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(300, 2, 6, 6, generator=generator)
        y = (x[:, 0].mean(dim=(1, 2)) > 0).long()
        return Split(x[:240], y[:240]), Split(x[240:], y[240:])

    def model():
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)
        )

    recipe = TrainRecipe(optimizer="adam", lr=1e-2, batch_size=60, epochs=3)
    return Task(
        "tiny-user-task", model, data, recipe, input_shape=(2, 6, 6), num_classes=2, seed=seed
    )


register_task("tiny-user-task", tiny_task, overwrite=True)


@pytest.mark.parametrize("env_id", IDS)
def test_a_user_registered_task_works_with_every_env(env_id):
    for task in ("tiny-user-task", tiny_task()):
        env = gym.make(env_id, task=task, budget={"params": 0.5})
        steps = run_episode(env, seed=0)
        final = steps[-1][2]
        assert 0.0 <= final["accuracy"] <= 1.0
        assert final["params_ratio"] <= 1.0
        assert env.unwrapped.layer_names == ["0", "3"]


@pytest.mark.parametrize("env_id", IDS)
def test_envs_pickle_and_rebuild(env_id):
    env = gym.make(env_id, task="digits-mlp").unwrapped
    copy = pickle.loads(pickle.dumps(env))
    assert np.array_equal(env.reset(seed=1)[0], copy.reset(seed=1)[0])


def test_render_modes():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn", render_mode="rgb_array")
    run_episode(env, seed=0)
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn", render_mode="ansi")
    run_episode(env, seed=0)
    assert "conv1" in env.render() and "feasible" in env.render()
    with pytest.raises(ValueError, match="render_mode"):
        GlobalRatioEnv(task="digits-cnn", render_mode="human")
