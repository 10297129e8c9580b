"""Search baselines: random search and CMA-ES over one action, as SB3 algorithms."""

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

import agents  # noqa: F401  (registers "search")
from agents.run_config import RunConfig
from agents.search import ActionSearch
from prune_gym.algorithms import algorithm_class
from prune_gym.cli import main

TARGET = np.array([0.6, -0.3, 0.2])


class Bowl(gym.Env):
    """One step; the reward is minus the squared distance of the action to ``TARGET``."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        reward = -float(np.sum((np.asarray(action) - TARGET) ** 2))
        return np.zeros(1, np.float32), reward, True, False, {}


def distance_after(method: str, steps: int, seed: int = 0, n_envs: int = 1) -> float:
    model = ActionSearch("MlpPolicy", DummyVecEnv([Bowl] * n_envs), method=method, seed=seed)
    model.learn(steps)
    assert model.num_timesteps == steps
    action, _ = model.predict(np.zeros(1, np.float32), deterministic=True)
    assert -float(np.sum((action - TARGET) ** 2)) == pytest.approx(model.best_reward, abs=1e-6)
    return float(np.linalg.norm(action - TARGET))


def test_both_searches_approach_the_optimum_and_cma_es_gets_closer():
    random = [distance_after("random", 200, seed) for seed in range(3)]
    evolution = [distance_after("cma-es", 200, seed) for seed in range(3)]
    assert max(random) < 0.6 and max(evolution) < 0.1
    assert np.mean(evolution) < np.mean(random)


class Line(Bowl):
    """``Bowl`` with a one-dimensional action, whose optimum is 0.6."""

    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def step(self, action):
        return np.zeros(1, np.float32), -float((np.asarray(action)[0] - 0.6) ** 2), True, False, {}


def test_cma_es_searches_a_one_dimensional_action():
    model = ActionSearch("MlpPolicy", DummyVecEnv([Line]), method="cma-es", seed=0).learn(96)
    action, _ = model.predict(np.zeros(1, np.float32), deterministic=True)
    assert action.shape == (1,) and abs(float(action[0]) - 0.6) < 0.05


def test_a_search_is_reproducible_and_counts_every_env_step():
    assert distance_after("random", 40, seed=3) == distance_after("random", 40, seed=3)
    assert distance_after("cma-es", 40, seed=3) == distance_after("cma-es", 40, seed=3)
    distance_after("cma-es", 48, seed=1, n_envs=4)  # 12 steps of 4 candidates


def test_the_saved_search_acts_its_best_action(tmp_path):
    model = ActionSearch("MlpPolicy", DummyVecEnv([Bowl]), method="cma-es", seed=0).learn(64)
    model.save(tmp_path / "model.zip")
    loaded = algorithm_class("search").load(tmp_path / "model.zip")
    observation = np.zeros(1, np.float32)
    np.testing.assert_array_equal(loaded.predict(observation)[0], model.predict(observation)[0])
    assert loaded.method == "cma-es" and loaded.best_reward == model.best_reward


def test_a_search_needs_one_step_episodes_and_a_fixed_budget():
    env = DummyVecEnv([lambda: gym.make("prune_gym/LayerRatio-v0", task="digits-mlp")])
    with pytest.raises(ValueError, match="one step"):
        ActionSearch("MlpPolicy", env, seed=0).learn(8)
    with pytest.raises(ValueError, match="one-step env"):
        RunConfig(agent="random-search", env="prune_gym/LayerRatio-v0")
    with pytest.raises(ValueError, match="fixed budget"):
        RunConfig(agent="cma-es", budget={"params": [0.05, 0.2]})
    with pytest.raises(ValueError, match="method"):
        ActionSearch("MlpPolicy", DummyVecEnv([Bowl]), method="grid")


def test_train_runs_a_search_baseline_with_the_same_steps_and_selection(tmp_path):
    args = ["train", "--task", "digits-mlp", "--agent", "random-search", "--timesteps", "32"]
    args += ["--budget", "params=0.3"]
    assert main([*args, "--finetune-steps", "5", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["algorithm"] == "search"
    rows = json.loads((tmp_path / "results.json").read_text())
    learned = next(row for row in rows if row["kind"] == "learned")
    assert learned["policy"] == "learned (random-search)" and learned["timesteps"] == 32
    assert learned["feasible"] == 1.0  # density logits: every candidate meets the budget
    assert main(["eval", "--model", str(tmp_path / "model.zip"), "--episodes", "1"]) == 0


def test_train_runs_both_searches_beside_the_agent_at_every_budget_with_its_env_steps(tmp_path):
    args = ["train", "--task", "digits-mlp", "--budget", "params=0.1:0.4", "--timesteps", "48"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results.json").read_text())
    budgets = ["params=0.1", "params=0.2", "params=0.4"]
    searched = {(row["budget"], row["policy"]): row for row in rows if row["kind"] == "search"}
    assert sorted(searched) == sorted((b, s) for b in budgets for s in ("random-search", "cma-es"))
    for (budget, search), row in searched.items():
        assert row["timesteps"] == 16 and row["feasible"] == 1.0  # 48 env steps over 3 budgets
        assert not row["best_on_val"]  # the best fixed policy is chosen among fixed ones
        assert row["train_time"] > 0 and row["eval_time"] > 0  # the search's, from its folder
        saved = json.loads((tmp_path / "searches" / f"{search}-{budget}" / "run.json").read_text())
        assert saved["timesteps"] == 16 and saved["budget"] == {"params": float(budget[7:])}
        assert saved["env_kwargs"]["reference"] == "global"  # the agent's reference
    order = [row["policy"] for row in rows if row["budget"] == "params=0.2"]
    assert order[:3] == ["learned (ppo-lag)", "random-search", "cma-es"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| params=0.2 | cma-es |" in summary and "16 env steps at each budget" in summary
    none = tmp_path / "none"
    assert main([*args, "--searches", "none", "--out", str(none)]) == 0
    assert not (none / "searches").exists()
