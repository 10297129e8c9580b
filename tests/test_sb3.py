"""Stable-Baselines3 out of the box: four algorithms on every env, vectorised workers."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import prune_gym

ALGORITHMS = {
    "PPO": (PPO, {"n_steps": 64, "batch_size": 32, "n_epochs": 2}),
    "A2C": (A2C, {"n_steps": 8}),
    "SAC": (SAC, {"learning_starts": 64, "batch_size": 32}),
    "TD3": (TD3, {"learning_starts": 64, "batch_size": 32}),
}
#: Panning episodes are shortened so that 512 steps cover several of them.
ENV_KWARGS = {"prune_gym/Panning-v0": {"iterations": 8}}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("env_id", list(prune_gym.ENV_IDS))
def test_sb3_algorithm_trains_512_steps(env_id, algorithm):
    env = gym.make(env_id, task="digits-mlp", **ENV_KWARGS.get(env_id, {}))
    cls, kwargs = ALGORITHMS[algorithm]
    model = cls("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.learn(total_timesteps=512)
    assert model.num_timesteps >= 512
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)


@pytest.mark.slow
def test_subprocess_vector_env_with_two_workers():
    # "module:id" makes each worker import prune_gym (and so register the ids) first
    venv = make_vec_env(
        "prune_gym:prune_gym/GlobalRatio-v0",
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"task": "digits-mlp", "budget": {"flops": 0.5}},
    )
    try:
        obs = venv.reset()
        assert obs.shape == (2, *venv.observation_space.shape)
        actions = np.stack([np.full(venv.action_space.shape, a, np.float32) for a in (-1, 1)])
        _, rewards, dones, infos = venv.step(actions)
        assert dones.all()
        assert infos[0]["macs_ratio"] > infos[1]["macs_ratio"]  # dense vs everything at max
        assert 0 <= rewards.min() <= rewards.max() <= 1
        assert [i["episode"]["l"] for i in infos] == [1, 1]
    finally:
        venv.close()
