"""An env family defined outside the package works with the fixed policies, BudgetProjection,
``prune-gym bench`` and ``prune-gym train`` through its hooks, with no package file edited."""

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from prune_gym.baselines import make_policy, supported_policies
from prune_gym.cli import main
from prune_gym.envs import env_settings_names, family_env_id
from prune_gym.plugins import import_modules
from prune_gym.wrappers import BudgetProjection

MODULE = Path(__file__).with_name("data") / "shared_ratio.py"
ENV = "shared_ratio/SharedRatio-v0"
import_modules([str(MODULE)])  # registers ENV, as --import does
shared_ratio = sys.modules["shared_ratio"]


def make_env(**settings) -> gym.Env:
    return gym.make(
        ENV, task="digits-mlp", budget={"params": 0.3}, metrics=["magnitude"], **settings
    )


def finish_episode(env: gym.Env, policy=None, seed: int = 0) -> dict:
    """One episode with ``policy`` (random actions if None); the last info."""
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    done = False
    while not done:
        action = env.action_space.sample() if policy is None else policy.predict(observation)[0]
        observation, _, done, _, info = env.step(action)
    return info


def test_the_family_answers_which_fixed_policies_act_on_it_and_they_meet_the_budget():
    env = make_env()
    assert supported_policies(env) == ("random", "uniform")
    for name in supported_policies(env):
        info = finish_episode(env, make_policy(name, env, seed=0))
        assert info["feasible"] and info["params_ratio"] <= 0.3
    ratios = finish_episode(env, make_policy("uniform", env))["ratios"].values()
    assert max(ratios) - min(ratios) < 1e-3  # one ratio shared by every layer, to a weight
    with pytest.raises(ValueError, match=r"'erk' is not available.*\('random', 'uniform'\)"):
        make_policy("erk", env)


def test_budget_projection_asks_the_family_how_to_project():
    env = BudgetProjection(make_env(floor=0.2))
    infos = [finish_episode(env, seed=seed) for seed in range(4)]
    assert all(info["feasible"] and info["floor"] == 0.2 for info in infos)
    assert env.action(np.ones(1, dtype=np.float32)) == pytest.approx(1.0)  # already fits


def test_the_family_trains_like_global_ratio_and_takes_its_own_settings():
    assert family_env_id(ENV) == "prune_gym/GlobalRatio-v0"
    assert "floor" in env_settings_names(ENV) and "action" not in env_settings_names(ENV)
    with pytest.raises(ValueError, match=r"floor=1\.5 is outside \[0, 1\]"):
        make_env(floor=1.5)


def test_prune_gym_bench_runs_fixed_policies_on_the_family(tmp_path):
    args = ["bench", "--import", str(MODULE), "--env", ENV, "--task", "digits-mlp"]
    args += ["--budgets", "params=0.5", "--methods", "uniform,random", "--seeds", "1"]
    assert main([*args, "--finetune-steps", "0", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    records = {r["method"]: r for r in map(json.loads, lines)}
    assert set(records) == {"uniform", "random"}
    assert all(r["status"] == "ok" and r["params_ratio"] <= 0.5 for r in records.values())


def test_prune_gym_train_trains_an_agent_on_the_family(tmp_path):
    args = ["train", "--import", str(MODULE), "--env", ENV, "--task", "digits-mlp"]
    args += ["--budget", "params=0.5", "--timesteps", "16", "--finetune-steps", "0"]
    args += ["--env-kwargs", '{"floor": 0.1, "reward_finetune_steps": 0}', "--episodes", "1"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    # GlobalRatio-v0's defaults, less those the family does not take (action, reference)
    assert run["env_kwargs"] == {
        "floor": 0.1,
        "max_ratio": 1.0,
        "reward_finetune_steps": 0,
        "reward": "accuracy",
    }
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {row["policy"] for row in rows} >= {"uniform", "random"}


def test_the_env_class_of_an_id_is_found_and_other_envs_are_refused():
    from prune_gym.envs import GlobalRatioEnv, prune_gym_env_class

    assert prune_gym_env_class("prune_gym/GlobalRatio-v0") is GlobalRatioEnv
    assert prune_gym_env_class(ENV).__name__ == "SharedRatioEnv"
    with pytest.raises(
        ValueError, match=r"'CartPole-v1' makes 'CartPoleEnv'.* not a prune-gym env"
    ):
        prune_gym_env_class("CartPole-v1")
