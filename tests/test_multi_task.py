"""MultiTaskEnv: one policy trained over several tasks, acting on one it never saw."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from toy_tasks import blobs_task, load_blobs

from agents.ppo_lagrangian import PPOLagrangian
from prune_gym.envs import MultiTaskEnv
from prune_gym.evaluation import assess_policy
from prune_gym.tasks import Task, TrainRecipe
from prune_gym.wrappers import BudgetProjection, CostMonitor

BUDGET = {"params": 0.5}


def deep_blobs_task(seed: int = 0, width: int = 16) -> Task:
    """The blobs data with a three-layer MLP: more layers than ``blobs_task``'s two."""
    return Task(
        f"deep-blobs-{width}",
        build_model=lambda: nn.Sequential(
            nn.Linear(4, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3)
        ),
        load_data=load_blobs,
        recipe=TrainRecipe(lr=1e-2, batch_size=32, epochs=3),
        input_shape=(4,),
        num_classes=3,
        seed=seed,
    )


def layer_ratio(task: Task) -> gym.Env:
    return gym.make("prune_gym/LayerRatio-v0", task=task, budget=BUDGET)


@pytest.fixture(scope="module")
def two_tasks() -> MultiTaskEnv:
    return MultiTaskEnv([layer_ratio(blobs_task()), layer_ratio(deep_blobs_task())])


def episode_lengths(env: gym.Env, seed: int, episodes: int) -> list[tuple[int, int]]:
    """(task index, length) of seeded episodes of zero actions."""
    out = []
    for episode in range(episodes):
        _, info = env.reset(seed=seed if episode == 0 else None)
        length, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
            length, done = length + 1, terminated or truncated
        out.append((info["task_index"], length))
    return out


def test_episodes_run_on_every_task_drawn_by_the_seed(two_tasks):
    check_env(two_tasks, skip_render_check=True)
    episodes = episode_lengths(two_tasks, seed=3, episodes=20)
    # each episode is one step per prunable layer of its task's network: 2 or 3
    assert {index: length for index, length in episodes} == {0: 2, 1: 3}
    assert 4 <= sum(index for index, _ in episodes) <= 16  # both tasks drawn often
    assert episode_lengths(two_tasks, seed=3, episodes=20) == episodes
    assert episode_lengths(two_tasks, seed=4, episodes=20) != episodes


def test_an_option_fixes_the_task_and_the_budget_is_the_current_envs(two_tasks):
    for index in (1, 0, 1):
        _, info = two_tasks.reset(options={"task_index": index})
        assert info["task_index"] == index and two_tasks.active is two_tasks.envs[index]
    assert two_tasks.budget.limits == BUDGET
    with pytest.raises(ValueError, match=r"task_index=2 must be an integer in \[0, 1\]"):
        two_tasks.reset(options={"task_index": 2})


def test_envs_with_other_spaces_are_refused():
    mismatched = gym.make("prune_gym/GlobalRatio-v0", task=deep_blobs_task(), budget=BUDGET)
    with pytest.raises(ValueError, match=r"env 1 has observation_space .* must share both"):
        MultiTaskEnv([layer_ratio(blobs_task()), mismatched])
    with pytest.raises(ValueError, match="at least one env"):
        MultiTaskEnv([])


def test_a_policy_trained_on_two_tasks_acts_on_a_third_it_never_saw():
    tasks = (blobs_task(), deep_blobs_task())
    train_envs = [CostMonitor(Monitor(layer_ratio(task))) for task in tasks]
    model = PPOLagrangian(
        "MlpPolicy",
        DummyVecEnv([lambda: MultiTaskEnv(train_envs)]),
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=128)
    assert model.cost_resources == ["params"]
    assert set(model.lagrange_multipliers) == {"params"}
    unseen = BudgetProjection(layer_ratio(deep_blobs_task(width=24)))
    (record,) = assess_policy(model, unseen, seed=0)
    assert record["length"] == 3  # one action per layer of the unseen net
    assert record["feasible"] and record["params_ratio"] <= BUDGET["params"]
