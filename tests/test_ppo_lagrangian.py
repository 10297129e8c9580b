"""PPOLagrangian: multipliers, cost critic, saving, logging, vector envs, Zoo support.

The toy constrained env below has a known answer: each resource's cost is c = (a + 1) / 2
for its action a, the reward is sum_k (1.6 c_k - c_k^2) (best at c = 0.8), and with
limit d the Lagrangian's optimum is c = d with multiplier r'(d) = 1.6 - 2d.
"""

import csv
import json
import math
import zipfile
from functools import partial
from types import SimpleNamespace
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import prune_gym
from agents import PIDLagrange, PPOLagrangian, SGDLagrange
from agents.cost_buffer import CostRolloutBuffer
from agents.zoo import train_ppo_lag

LIMIT = 0.3
#: small, fast settings shared by the training tests.
FAST = {"n_steps": 64, "batch_size": 64, "n_epochs": 4, "seed": 0, "device": "cpu"}
SMALL_NET = {"net_arch": [16]}


class ToyBudgetEnv(gym.Env):
    """Episodes of ``episode_length`` steps; costs (a + 1) / 2 per resource, spread over them."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(
        self,
        limits: dict[str, float] | None = None,
        episode_length: int = 1,
        report_costs: bool = True,
    ) -> None:
        self.budget = dict(limits or {"flops": LIMIT})
        self.episode_length = episode_length
        self.report_costs = report_costs
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(self.budget),), np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._t / self.episode_length], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        cost = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
        self._t += 1
        reward = float((1.6 * cost - cost**2).sum()) / self.episode_length
        info = {"cost_limits": dict(self.budget)}
        if self.report_costs:
            info["costs"] = {
                r: float(c) / self.episode_length for r, c in zip(self.budget, cost, strict=True)
            }
        return self._obs(), reward, self._t >= self.episode_length, False, info


def deterministic_costs(model, env: ToyBudgetEnv) -> np.ndarray:
    """The costs of the trained policy's deterministic action."""
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    return (np.clip(action, -1.0, 1.0) + 1.0) / 2.0


def multipliers_over_time(model: PPOLagrangian, resource: str) -> list[float]:
    """``resource``'s multiplier after each update."""
    return [record["multipliers"][resource] for record in model.lagrange_history]


# the algorithm on the toy env ----------------------------------------------------------
def test_multiplier_rises_while_the_limit_is_violated():
    model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(), policy_kwargs=SMALL_NET, **FAST)
    model.learn(640)
    history = model.lagrange_history
    assert len(history) == 10  # every rollout of one-step episodes finishes some
    previous = 0.0
    for record in history:
        if record["ep_costs"]["flops"] > LIMIT:
            assert record["multipliers"]["flops"] > previous
        previous = record["multipliers"]["flops"]
    assert model.lagrange_multipliers["flops"] > 0.5
    assert model.cost_resources == ["flops"]


class RisingBandit(gym.Env):
    """One step; reward and every cost rise together toward the action bound.

    Each action dimension k gives u_k = (a_k + 1) / 2 in [0, 1], costs ``c_k = u_k`` and
    reward ``mean(u)`` (linear) or ``mean(sqrt(u))`` (concave): unconstrained, the best
    action is the bound u = 1; under limits d_k inside the box, it is u_k = d_k exactly.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, limits: tuple[float, ...], shape: str) -> None:
        self.limits = {f"c{k}": limit for k, limit in enumerate(limits)}
        self.budget = dict(self.limits)
        self.shape = shape
        self.observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (len(limits),), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        u = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
        reward = float(np.mean(u if self.shape == "linear" else np.sqrt(u)))
        costs = dict(zip(self.limits, map(float, u), strict=True))
        info = {"costs": costs, "cost_limits": self.limits}
        return np.zeros(1, np.float32), reward, True, False, info


BANDITS = {
    "linear, limit 0.3": ((0.3,), "linear"),
    "linear, limit 0.7": ((0.7,), "linear"),
    "concave, limit 0.3": ((0.3,), "concave"),
    "concave, limit 0.7": ((0.7,), "concave"),
    "linear, two resources": ((0.3, 0.6), "linear"),
    "concave, two resources": ((0.4, 0.7), "concave"),
}


def deterministic_cost_error(algorithm, bandit: str, seed: int) -> np.ndarray:
    """Train with the algorithm's defaults (SB3's normalize_advantage=True); det. cost - limit."""
    limits, shape = BANDITS[bandit]
    venv = DummyVecEnv([partial(RisingBandit, limits, shape)] * 8)
    model = algorithm("MlpPolicy", venv, n_steps=16, seed=seed, device="cpu").learn(10_000)
    action, _ = model.predict(np.zeros(1, np.float32), deterministic=True)
    return (np.clip(action, -1.0, 1.0) + 1.0) / 2.0 - np.array(limits)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bandit", BANDITS)
def test_deterministic_policy_lands_just_inside_every_limit(bandit, seed):
    error = deterministic_cost_error(PPOLagrangian, bandit, seed)
    assert np.all((error >= -0.05) & (error <= 0.01)), error


@pytest.mark.slow
@pytest.mark.parametrize("bandit", BANDITS)
def test_plain_ppo_fails_the_same_check(bandit):
    error = deterministic_cost_error(PPO, bandit, seed=0)
    assert np.any(error > 0.01), error  # it goes for the bound


def test_fewer_timesteps_than_one_rollout_keeps_the_schedules_at_their_end():
    model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(), policy_kwargs=SMALL_NET, **FAST)
    model.learn(FAST["n_steps"] // 2)  # SB3 still collects one whole rollout
    assert model.num_timesteps == FAST["n_steps"]
    assert model.policy.optimizer.param_groups[0]["lr"] == 0.0
    assert model.predict(np.zeros(1, np.float32))[0].shape == (1,)
    assert th.exp(model.policy.log_std_cap).item() == pytest.approx(0.05)


def test_every_update_starts_with_importance_ratios_of_one():
    model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(), policy_kwargs=SMALL_NET, **FAST)
    first_ratios = []
    original = model._minibatch_loss

    def spying(batch, *args):
        if len(first_ratios) < model._n_updates // model.n_epochs + 1:  # an update's first
            with th.no_grad():
                log_prob = model.policy.evaluate_actions_with_costs(
                    batch.observations, batch.actions
                )[1]
            first_ratios.append(th.exp(log_prob - batch.old_log_prob))
        return original(batch, *args)

    model._minibatch_loss = spying
    model.learn(4 * FAST["n_steps"])
    assert len(first_ratios) == 4  # one per update, before its first gradient step
    for ratios in first_ratios:
        torch_ones = th.ones_like(ratios)
        assert th.allclose(ratios, torch_ones, atol=1e-5), ratios.max()


class OwnLimitEnv(gym.Env):
    """One step; each episode draws its limit, and the cost is always exactly that limit."""

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    #: the constrained resource; each episode's own limit is in its info.
    budget: ClassVar[dict[str, float]] = {"params": 0.5}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.limit = float(self.np_random.uniform(0.05, 0.9))
        return np.array([self.limit], np.float32), {}

    def step(self, action):
        info = {"costs": {"params": self.limit}, "cost_limits": {"params": self.limit}}
        return np.array([self.limit], np.float32), float(action[0]), True, False, info


def test_episodes_at_their_own_varying_limits_keep_the_multiplier_at_zero():
    model = PPOLagrangian("MlpPolicy", OwnLimitEnv(), policy_kwargs=SMALL_NET, **FAST)
    model.learn(6 * FAST["n_steps"])
    assert len(model.lagrange_history) >= 5
    assert all(entry["multipliers"]["params"] == 0.0 for entry in model.lagrange_history)


def test_two_resources_get_two_multipliers_that_move_their_own_way():
    env = ToyBudgetEnv({"flops": 0.2, "params": 1.0})  # flops violated, params never
    model = PPOLagrangian("MlpPolicy", env, lagrange_init=1.0, policy_kwargs=SMALL_NET, **FAST)
    assert model.policy.cost_value_net[-1].out_features == 2
    model.learn(1280)
    flops = multipliers_over_time(model, "flops")
    params = multipliers_over_time(model, "params")
    assert flops[-1] > 2.0 and flops == sorted(flops)
    assert params[-1] == 0.0 and params == sorted(params, reverse=True)


def test_same_seed_gives_the_same_multipliers():
    histories = []
    for _ in range(2):
        model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(), policy_kwargs=SMALL_NET, **FAST)
        model.learn(192)
        histories.append(model.lagrange_history)
    assert histories[0] == histories[1]


def test_update_is_skipped_until_an_episode_finishes():
    env = ToyBudgetEnv(episode_length=20)
    settings = {**FAST, "n_steps": 16, "batch_size": 16}
    model = PPOLagrangian("MlpPolicy", env, lagrange_init=0.5, **settings)
    assert model.update_multipliers() is False  # nothing finished yet: no update
    model.learn(16)  # one train() with no finished episode
    assert model.lagrange_multipliers == {"flops": 0.5}
    assert model.lagrange_history == []
    model.learn(16, reset_num_timesteps=False)  # the first episode ended at step 20
    assert [r["timesteps"] for r in model.lagrange_history] == [32]
    assert model.lagrange_multipliers["flops"] > 0.5  # its cost ~0.5 exceeds 0.3
    assert model.update_multipliers() is False  # no new episode since that update


def test_pid_rule_responds_to_violation_and_recovery():
    rule = PIDLagrange(init=0.0)
    rising = [rule.update(0.0, cost=0.8, limit=0.3) for _ in range(20)]
    assert rising == sorted(rising) and rising[-1] > 0.1
    state = rule.state_dict()
    assert json.loads(json.dumps(state)) == state  # plain numbers
    restored = PIDLagrange(init=0.0)
    restored.load_state_dict(state)
    falling = [rule.update(0.0, cost=0.0, limit=0.3) for _ in range(20)]
    assert falling[-1] < rising[-1]
    assert [restored.update(0.0, cost=0.0, limit=0.3) for _ in range(20)] == falling


def test_pid_option_trains_and_raises_the_multiplier():
    model = PPOLagrangian(
        "MlpPolicy",
        ToyBudgetEnv(),
        lagrange_update="pid",
        pid_kp=1.0,
        pid_ki=0.5,
        policy_kwargs=SMALL_NET,
        **FAST,
    )
    model.learn(640)
    multipliers = multipliers_over_time(model, "flops")
    assert multipliers[0] > 0.0 and multipliers == sorted(multipliers)
    assert model.lagrange_state["flops"]["integral"] > 0.0


def test_sgd_rule_is_projected_onto_zero_and_the_cap():
    rule = SGDLagrange(lr=2.0, max_value=1.0)
    assert rule.update(0.5, cost=0.1, limit=0.3) == pytest.approx(0.1)
    assert rule.update(0.1, cost=0.0, limit=0.3) == 0.0
    assert rule.update(0.9, cost=0.8, limit=0.3) == 1.0


# buffer and critic -------------------------------------------------------------------
def test_cost_gae_matches_a_hand_computation():
    space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    buffer = CostRolloutBuffer(3, space, space, "cpu", gae_lambda=0.5, gamma=0.9, n_costs=1)
    assert (buffer.cost_gamma, buffer.cost_gae_lambda) == (0.9, 0.5)  # defaults: the reward's
    costs, values, starts = [1.0, 2.0, 3.0], [0.5, 1.0, 1.5], [1.0, 0.0, 1.0]
    for cost, value, start in zip(costs, values, starts, strict=True):
        buffer.record_costs(np.array([[cost]]), np.array([[value]]))
        buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.array([start]),
                   th.zeros(1), th.zeros(1))  # fmt: skip
    buffer.compute_cost_returns_and_advantage(np.array([[4.0]]), dones=np.array([False]))
    delta2 = 3.0 + 0.9 * 4.0 - 1.5
    delta1 = 2.0 - 1.0  # the next step starts a new episode
    delta0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = [delta0 + 0.45 * delta1, delta1, delta2]
    assert buffer.cost_advantages[:, 0, 0] == pytest.approx(expected)
    assert buffer.cost_returns[:, 0, 0] == pytest.approx(np.add(expected, values))
    with pytest.raises(RuntimeError, match="record_costs"):
        buffer.reset()
        buffer.add(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), np.ones(1),
                   th.zeros(1), th.zeros(1))  # fmt: skip


def test_truncated_episodes_bootstrap_the_cost_with_the_cost_critic():
    env = TimeLimit(ToyBudgetEnv(episode_length=1000), max_episode_steps=4)
    settings = {**FAST, "n_steps": 8, "batch_size": 8, "learning_rate": 0.0}  # critic stays put
    model = PPOLagrangian("MlpPolicy", env, cost_gamma=0.5, **settings)
    model.learn(8)
    actions = model.rollout_buffer.actions.reshape(8)  # buffer is flattened after train()
    raw = (np.clip(actions, -1, 1) + 1) / 2 / 1000
    recorded = model.rollout_buffer.costs.reshape(8)
    truncated_at = [3, 7]
    terminal_obs = th.tensor([[4 / 1000]])
    with th.no_grad():
        bootstrap = 0.5 * model.policy.predict_cost_values(terminal_obs).item()
    for step in range(8):
        extra = bootstrap if step in truncated_at else 0.0
        assert recorded[step] == pytest.approx(raw[step] + extra, abs=1e-6)
    episode_costs = [raw[:4].sum(), raw[4:].sum()]
    assert model.lagrange_history[0]["ep_costs"]["flops"] == pytest.approx(np.mean(episode_costs))


# saving and logging --------------------------------------------------------------------
def test_save_load_keeps_multipliers_as_plain_json(tmp_path):
    model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(), lagrange_update="pid", pid_ki=0.5, **FAST)
    model.learn(256)
    path = tmp_path / "ppo_lag.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    assert data["lagrange_multipliers"] == model.lagrange_multipliers
    assert data["lagrange_history"] == model.lagrange_history
    assert data["lagrange_state"] == model.lagrange_state
    assert isinstance(data["lagrange_state"]["flops"]["cost_emas"], list)
    assert data["cost_resources"] == ["flops"]

    loaded = PPOLagrangian.load(path, env=ToyBudgetEnv(), device="cpu")
    assert loaded.lagrange_multipliers == model.lagrange_multipliers
    assert loaded.lagrange_history == model.lagrange_history
    assert loaded._lagrange_rules["flops"].state_dict() == model.lagrange_state["flops"]
    obs = np.array([0.0], np.float32)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
    loaded.learn(64, reset_num_timesteps=False)  # training goes on from the restored state
    assert len(loaded.lagrange_history) == len(model.lagrange_history) + 1


def test_logger_records_multipliers_costs_and_cost_loss(tmp_path):
    model = PPOLagrangian(
        "MlpPolicy", ToyBudgetEnv({"flops": 0.3, "params": 0.9}), policy_kwargs=SMALL_NET, **FAST
    )
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(192)
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    for key in (
        "train/lambda_flops",
        "train/lambda_params",
        "train/cost_value_loss",
        "rollout/ep_cost_flops_mean",
        "rollout/ep_cost_params_mean",
        "rollout/violation_rate",
    ):
        assert key in rows[0]
    assert 0.0 < float(rows[-1]["rollout/violation_rate"]) <= 1.0  # costs start near 0.5
    assert 0.0 < model.logger.name_to_value["train/cost_value_loss"] < math.inf


# vector envs, SB3 evaluation, real prune-gym envs --------------------------------------
def test_subprocess_vector_env():
    venv = SubprocVecEnv([partial(ToyBudgetEnv, episode_length=2)] * 2)
    try:
        model = PPOLagrangian("MlpPolicy", venv, policy_kwargs=SMALL_NET, **FAST)
        model.learn(256)
    finally:
        venv.close()
    assert len(model.lagrange_history) == 2  # 128 steps (64 episodes) per rollout
    assert model.lagrange_multipliers["flops"] > 0.0


@pytest.mark.parametrize(
    ("env_id", "budget"),
    [
        ("prune_gym/GlobalRatio-v0", {"flops": 0.5}),
        ("prune_gym/LayerRatio-v0", {"flops": 0.5, "params": 0.6}),
    ],
)
def test_real_prune_gym_env_with_eval_callback_and_evaluate_policy(env_id, budget):
    make = partial(gym.make, env_id, task="digits-mlp", budget=budget)
    venv = DummyVecEnv([lambda: Monitor(make())])
    eval_env = Monitor(make())
    model = PPOLagrangian("MlpPolicy", venv, gamma=1.0, **{**FAST, "batch_size": 32, "n_epochs": 2})
    assert model.cost_resources == list(budget)  # read from the env's budget
    callback = EvalCallback(eval_env, eval_freq=64, n_eval_episodes=2, verbose=0)
    model.learn(256, callback=callback)
    assert callback.n_calls == 256 and callback.last_mean_reward > -np.inf
    assert model.lagrange_history
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=2)
    assert 0.0 <= mean_reward <= 1.0  # accuracy
    assert set(model.lagrange_multipliers) == set(budget)


# bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lagrange_update": "adam"}, ValueError, "lagrange_update='adam'.*'sgd', 'pid'"),
        ({"lagrange_lr": -0.1}, ValueError, "lagrange_lr=-0.1"),
        ({"lagrange_init": 200.0}, ValueError, "lagrange_init=200.0"),
        ({"lagrange_update": "pid", "pid_delay": 0}, ValueError, "pid_delay=0"),
        ({"cost_window": 0}, ValueError, "cost_window=0"),
        ({"cost_gamma": 1.5}, ValueError, "cost_gamma=1.5"),
        ({"cost_limits": [0.3]}, TypeError, "cost_limits=\\[0.3\\]"),
        ({"cost_limits": {"flops": math.nan}}, ValueError, "cost_limits\\['flops'\\]"),
        ({"policy": PPO.policy_aliases["MlpPolicy"]}, TypeError, "no cost critic"),
    ],
)
def test_bad_settings_raise_naming_the_value(kwargs, error, match):
    kwargs = {"policy": "MlpPolicy", **kwargs}
    with pytest.raises(error, match=match):
        PPOLagrangian(env=ToyBudgetEnv(), **kwargs, **FAST)


def test_env_without_costs_fails_at_the_first_step():
    model = PPOLagrangian("MlpPolicy", ToyBudgetEnv(report_costs=False), **FAST)
    with pytest.raises(ValueError, match=r"info\['costs'\]"):
        model.learn(64)
    assert model.num_timesteps == 1


def test_env_without_budget_needs_cost_limits():
    env = ToyBudgetEnv()
    del env.budget
    with pytest.raises(ValueError, match="cost_limits="):
        PPOLagrangian("MlpPolicy", env, **FAST)
    model = PPOLagrangian("MlpPolicy", env, cost_limits={"flops": 0.25}, **FAST)
    assert model.cost_resources == ["flops"]


# RL Baselines3 Zoo ---------------------------------------------------------------------
def test_zoo_hyperparams_are_for_registered_envs_and_valid_arguments():
    hyperparams = yaml.safe_load(train_ppo_lag.HYPERPARAMS.read_text())
    assert set(hyperparams) == set(prune_gym.ENV_IDS) - {"prune_gym/Panning-v0"}
    zoo_only = {"n_timesteps", "n_envs", "monitor_kwargs", "policy"}
    for settings in hyperparams.values():
        assert settings["policy"] == "MlpPolicy" and settings["n_timesteps"] > 0
        arguments = {k: v for k, v in settings.items() if k not in zoo_only}
        PPOLagrangian("MlpPolicy", ToyBudgetEnv(), device="cpu", **arguments)


def test_zoo_registration_patches_every_algorithm_table():
    zoo = SimpleNamespace(ALGOS={"ppo": PPO})
    modules = [SimpleNamespace(ALGOS={"ppo": PPO}) for _ in train_ppo_lag.ZOO_MODULES]
    train_ppo_lag.register_ppo_lag(zoo, modules)
    assert zoo.ALGOS["ppo_lag"] is PPOLagrangian
    assert all(module.ALGOS is zoo.ALGOS for module in modules)
    assert train_ppo_lag.with_defaults(["--env", "x"])[:4] == [
        "--algo",
        "ppo_lag",
        "--conf-file",
        str(train_ppo_lag.HYPERPARAMS),
    ]
    assert train_ppo_lag.with_defaults(["--algo", "ppo", "-conf", "a.yml"]) == [
        "--algo",
        "ppo",
        "-conf",
        "a.yml",
    ]


def test_zoo_script_without_rl_zoo3_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(train_ppo_lag.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install rl_zoo3"):
        train_ppo_lag.main(["--env", "prune_gym/GlobalRatio-v0"])
