"""Each env family's settings: one frozen dataclass, checked once, the pickling state."""

import dataclasses
import pickle
from dataclasses import field

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import SubprocVecEnv

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.envs import (
    GlobalRatioEnv,
    GlobalRatioSettings,
    MetricMixSettings,
    PruningSettings,
    doc,
    env_settings_names,
)

PANNING = "prune_gym/Panning-v0"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PenaltySettings(GlobalRatioSettings):
    """GlobalRatio's settings and a price subtracted from every reward."""

    penalty: float = field(default=0.0, metadata=doc("subtracted from every reward"))


class PenaltyEnv(GlobalRatioEnv):
    """GlobalRatio whose reward is lowered by ``penalty``: a subclass adding a setting."""

    SETTINGS = PenaltySettings

    def _act(self, action: np.ndarray):
        observation, reward, terminated, truncated, info = super()._act(action)
        return observation, reward - self.settings.penalty, terminated, truncated, info


def make_penalty_env() -> PenaltyEnv:
    return PenaltyEnv(task="digits-mlp", metrics=["magnitude"], penalty=5.0)


def first_reward(env: gym.Env) -> float:
    env.reset(seed=0)
    return float(env.step(np.zeros(env.action_space.shape, dtype=np.float32))[1])


def test_a_subclass_setting_survives_pickle():
    env = make_penalty_env()
    copy = pickle.loads(pickle.dumps(env))
    assert copy.settings == env.settings and copy.settings.penalty == 5.0
    plain = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", metrics=["magnitude"])
    assert first_reward(copy) == pytest.approx(first_reward(plain) - 5.0)


def test_a_subclass_setting_survives_subprocvecenv():
    env = make_penalty_env()
    expected = first_reward(env)
    # spawn pickles the env into the worker, as any start method but fork does
    vec_env = SubprocVecEnv([lambda: env], start_method="spawn")
    try:
        assert vec_env.get_attr("settings")[0].penalty == 5.0
        vec_env.reset()
        _, rewards, _, _ = vec_env.step(np.zeros((1, *vec_env.action_space.shape)))
    finally:
        vec_env.close()
    assert rewards[0] == pytest.approx(expected)


def test_an_env_defining_init_is_refused_when_the_class_is_made():
    with pytest.raises(TypeError, match=r"OldStyle defines __init__.*PruningSettings subclass"):

        class OldStyle(GlobalRatioEnv):
            def __init__(self, penalty: float = 0.0, **kwargs) -> None:
                self.penalty = penalty
                super().__init__(**kwargs)


def test_a_family_settings_class_must_extend_its_parents():
    with pytest.raises(TypeError, match=r"SETTINGS=MetricMixSettings must derive from.*Global"):

        class Mismatched(GlobalRatioEnv):
            SETTINGS = MetricMixSettings


def test_the_settings_render_each_env_docstring_arguments_table():
    table = GlobalRatioEnv.__doc__.split("## Arguments")[1]
    assert "| `density_factor` | `float` | `4.0` |" in table
    assert "| `budget` |" in table and "| `task` |" in table
    assert "| `penalty` | `float` | `0.0` | subtracted from every reward |" in PenaltyEnv.__doc__
    assert env_settings_names("prune_gym/GlobalRatio-v0") >= set(GlobalRatioSettings.names())


def test_an_unknown_setting_is_refused_naming_the_nearest():
    with pytest.raises(TypeError, match=r"\['densty_factor'\].*Did you mean 'density_factor'\?"):
        gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", densty_factor=2.0)


def test_settings_are_checked_and_normalised_once():
    settings = PruningSettings(budget={"params": np.float32(0.5)}, structure="channel")
    assert settings.budget.limits == {"params": 0.5} and settings.max_ratio == 0.9
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_ratio = 0.5
    with pytest.raises(ValueError, match=r"mode='both'.*\('global', 'joint'\)"):
        MetricMixSettings(mode="both")


def test_panning_derives_its_target_once_and_keeps_a_fixed_budget():
    env = gym.make(PANNING, task="digits-mlp", budget={"params": 0.1}, iterations=2).unwrapped
    assert env.settings.target == pytest.approx(0.9)
    budget = env.budget
    env.reset(seed=0)
    assert env.budget is budget and env.target == pytest.approx(0.9)
    drawn = gym.make(PANNING, task="digits-mlp", iterations=2, target_range=(0.5, 0.6)).unwrapped
    drawn.reset(seed=0)
    assert 0.5 <= drawn.target <= 0.6
    assert drawn.budget.limits["params"] == pytest.approx(1 - drawn.target)
    with pytest.raises(ValueError, match=r"target=0\.5 and budget=.*disagree"):
        gym.make(PANNING, task="digits-mlp", target=0.5, budget={"params": 0.1})


def test_the_settings_render_each_env_s_arguments_table():
    from prune_gym.envs import GlobalRatioEnv
    from prune_gym.envs.settings import settings_table

    table = settings_table(GlobalRatioSettings).splitlines()
    assert table[0] == "| Parameter | Type | Default | Description |"
    rows = {line.split("|")[1].strip(" `"): line for line in table[2:]}
    assert set(rows) == set(GlobalRatioSettings.names())
    assert "`'ratios'`" in rows["action"] and "`0`" in rows["reward_finetune_steps"]
    assert "\n".join(table) in GlobalRatioEnv.__doc__  # the docstring's Arguments table
