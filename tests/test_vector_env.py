"""The native vector env: N episodes at once, rewards computed together, equal to N envs.

Tolerance: a batched reward is the same fine-tune as a single env's, computed on stacked
copies (other kernels, other summation order), so rewards and ``info["loss"]`` agree to
``rtol=1e-3, atol=1e-5`` after 10 Adam steps (measured: at most 2e-4 on digits-cnn, 1e-7
on digits-mlp); everything else (observations, costs, ratios, feasibility, accuracies
here) is equal.
"""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import prune_gym  # noqa: F401  (registers the env ids)
from agents.ppo_lagrangian import PPOLagrangian
from prune_gym.envs.vector import GlobalRatioVectorEnv, LayerRatioVectorEnv, PruningVectorEnv
from prune_gym.sb3 import VectorEnvAdapter
from prune_gym.wrappers import CostMonitor

GLOBAL = "prune_gym/GlobalRatio-v0"
LAYER = "prune_gym/LayerRatio-v0"
RTOL, ATOL = 1e-3, 1e-5
SETTINGS = {
    GLOBAL: {
        "task": "digits-mlp",
        "action": "logits",
        "reward": "loss",
        "reward_finetune_steps": 10,
        "max_ratio": 1.0,
    },
    LAYER: {"task": "digits-cnn", "reward": "loss", "reward_finetune_steps": 10},
}


def single_envs(env_id, count):
    return SyncVectorEnv(
        [lambda: gym.make(env_id, **SETTINGS[env_id]) for _ in range(count)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


def batched_env(env_id, count):
    return gym.make_vec(
        env_id, num_envs=count, vectorization_mode="vector_entry_point", **SETTINGS[env_id]
    )


def assert_infos_match(batched, single):
    """Equal info dicts (same keys, masks and values), rewards' loss within tolerance."""
    assert sorted(batched) == sorted(single)
    for key, value in single.items():
        if isinstance(value, dict):
            assert_infos_match(batched[key], value)
        elif key == "final_obs":
            for a, b in zip(batched[key], value, strict=True):
                np.testing.assert_array_equal(a, b)
        elif key == "loss":
            np.testing.assert_allclose(batched[key], value, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(batched[key], value, err_msg=key)


@pytest.mark.parametrize(("env_id", "count"), [(GLOBAL, 4), (LAYER, 3)])
def test_batched_env_equals_independent_envs_through_autoresets(env_id, count):
    single, batched = single_envs(env_id, count), batched_env(env_id, count)
    context = batched.envs[0].unwrapped.context
    assert isinstance(batched, PruningVectorEnv)
    observations, infos = single.reset(seed=7)
    batched_observations, batched_infos = batched.reset(seed=7)
    np.testing.assert_array_equal(batched_observations, observations)
    assert_infos_match(batched_infos, infos)
    rng = np.random.default_rng(0)
    episode_ends = 0
    episode_length = 1 if env_id == GLOBAL else batched.envs[0].unwrapped.num_layers
    for _ in range(2 * episode_length + 1):
        actions = rng.uniform(-1, 1, batched.action_space.shape).astype(np.float32)
        context.forget_results()  # each side computes its own rewards
        expected = single.step(actions)
        context.forget_results()
        result = batched.step(actions)
        np.testing.assert_array_equal(result[0], expected[0])  # reset obs after an end
        np.testing.assert_allclose(result[1], expected[1], rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(result[2], expected[2])
        np.testing.assert_array_equal(result[3], expected[3])
        assert_infos_match(result[4], expected[4])
        episode_ends += int(result[2].sum())
    assert episode_ends >= 2 * count  # every sub-env ended and restarted at least twice
    assert np.all(np.asarray(result[1])[result[2]] != 0.0)  # final rewards were computed
    single.close()
    batched.close()


def test_rewards_are_computed_together_once_per_mask():
    batched = batched_env(GLOBAL, 4)
    context = batched.envs[0].unwrapped.context
    context.forget_results()
    calls = []
    original = context.task.finetune_copies
    context.task.finetune_copies = lambda model, masks, *a, **k: (
        calls.append(len(masks)) or original(model, masks, *a, **k)
    )
    batched.reset(seed=0)
    actions = np.zeros(batched.action_space.shape, dtype=np.float32)
    actions[1, 0] = 0.5  # a shift of every logit alike is undone by the rescaling
    misses = context.reward_misses
    batched.step(actions)
    # one batch of the 2 distinct allocations; the 4 steps then read their rewards
    assert calls == [2]
    assert context.reward_misses - misses == 2
    batched.close()


def test_reset_seeds_each_sub_env_like_sync_vector_env():
    batched = batched_env(GLOBAL, 3)
    batched.reset(seed=11)
    for i, env in enumerate(batched.envs):
        single = gym.make(GLOBAL, **SETTINGS[GLOBAL])
        single.reset(seed=11 + i)
        assert env.unwrapped.np_random.random() == single.unwrapped.np_random.random()
    batched.reset(seed=[3, 1, 2])
    draws = [env.unwrapped.np_random.random() for env in batched.envs]
    single = gym.make(GLOBAL, **SETTINGS[GLOBAL])
    single.reset(seed=1)
    assert draws[1] == single.unwrapped.np_random.random()
    with pytest.raises(ValueError, match="got 2 seeds for 3 sub-envs"):
        batched.reset(seed=[1, 2])
    batched.close()


def test_make_vec_uses_the_native_vector_env_of_the_ratio_envs():
    for env_id, cls in ((GLOBAL, GlobalRatioVectorEnv), (LAYER, LayerRatioVectorEnv)):
        venv = gym.make_vec(env_id, num_envs=2, task="digits-mlp")
        assert type(venv) is cls
        assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert venv.observation_space.shape == (2, *venv.single_observation_space.shape)
        venv.close()


def test_a_sub_env_passes_gymnasium_check_env():
    venv = batched_env(GLOBAL, 2)
    check_env(venv.envs[0], skip_render_check=True)
    venv.close()


def test_bad_num_envs_is_a_value_error():
    with pytest.raises(ValueError, match="num_envs"):
        GlobalRatioVectorEnv(num_envs=0, task="digits-mlp")


def test_action_wrappers_of_sub_envs_decide_the_rewarded_masks():
    from prune_gym.wrappers import BudgetProjection

    settings = {"task": "digits-mlp", "budget": {"params": 0.3}, "reward_finetune_steps": 2}
    venv = GlobalRatioVectorEnv(2, sub_env_wrappers=[BudgetProjection], **settings)
    venv.reset(seed=0)
    _, _, terminated, _, infos = venv.step(np.ones((2, venv.single_action_space.shape[0])))
    assert terminated.all()
    assert infos["final_info"]["feasible"].all()  # projected: the requested ratios overspend
    venv.close()


def test_sb3_adapter_rejects_next_step_autoreset():
    sync = SyncVectorEnv([lambda: gym.make(GLOBAL, task="digits-mlp")])
    with pytest.raises(ValueError, match="SAME_STEP"):
        VectorEnvAdapter(sync)


def test_sb3_adapter_gives_the_infos_dummy_vec_env_gives():
    settings = SETTINGS[GLOBAL]

    def monitored():
        return CostMonitor(Monitor(gym.make(GLOBAL, **settings)))

    dummy = DummyVecEnv([monitored, monitored])
    adapter = VectorEnvAdapter(
        gym.make_vec(GLOBAL, num_envs=2, sub_env_wrappers=[Monitor, CostMonitor], **settings)
    )
    for venv in (dummy, adapter):
        venv.seed(3)
    np.testing.assert_array_equal(adapter.reset(), dummy.reset())
    actions = np.array([[0.2] * 4, [-0.4] * 4], dtype=np.float32)[
        :, : adapter.action_space.shape[0]
    ]
    _, rewards, dones, infos = adapter.step(actions)
    _, expected_rewards, expected_dones, expected_infos = dummy.step(actions)
    np.testing.assert_allclose(rewards, expected_rewards, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(dones, expected_dones)
    for info, expected in zip(infos, expected_infos, strict=True):
        assert sorted(info) == sorted(expected)
        np.testing.assert_array_equal(
            info["terminal_observation"], expected["terminal_observation"]
        )
        assert info["costs"] == expected["costs"]
        assert info["episode"]["cost"] == expected["episode"]["cost"]
        assert info["feasible"] == expected["feasible"]
    assert adapter.get_attr("num_layers") == dummy.get_attr("num_layers")
    assert adapter.env_is_wrapped(Monitor) == [True, True]


def test_ppo_lagrangian_trains_on_the_batched_env():
    settings = SETTINGS[GLOBAL] | {"budget": {"params": 0.3}, "reward_finetune_steps": 2}
    venv = VectorEnvAdapter(
        gym.make_vec(GLOBAL, num_envs=4, sub_env_wrappers=[Monitor, CostMonitor], **settings)
    )
    model = PPOLagrangian(
        "MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=2, seed=0, device="cpu"
    )
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert len(model.ep_info_buffer) == 100  # SB3 keeps the last 100 of the 128 episodes
    costs = [episode["cost_params"] for episode in model.ep_info_buffer]
    assert all(cost <= 0.3 + 1e-6 for cost in costs)  # logits actions meet the budget
    assert set(model.lagrange_multipliers) == {"params"}


def test_reward_masks_are_those_the_step_prunes_and_follow_the_budget():
    from prune_gym.pruning import Budget

    env = gym.make(GLOBAL, task="digits-mlp", action="logits").unwrapped
    action = np.linspace(-1, 1, env.num_layers, dtype=np.float32)
    masks = env.reward_masks(action)
    env.reset(seed=0)
    env.step(action)
    assert env.last_masks.digest() == masks.digest()
    env.budget = Budget({"flops": 0.3})  # the same action now means other masks
    assert env.reward_masks(action).sparsity() > masks.sparsity() + 0.15


def test_sub_envs_answer_call_get_attr_set_attr_and_render():
    venv = GlobalRatioVectorEnv(2, task="digits-mlp", render_mode="ansi")
    assert venv.get_attr("num_layers") == (3, 3)
    assert venv.call("fixed_policies") == venv.call("fixed_policies")[:1] * 2
    venv.set_attr("reward_kind", ["loss", "accuracy"])
    assert venv.get_attr("reward_kind") == ("loss", "accuracy")
    with pytest.raises(ValueError, match="got 3 values for 2 sub-envs"):
        venv.set_attr("reward_kind", ["loss"] * 3)
    venv.reset(seed=0)
    venv.step(np.zeros(venv.action_space.shape, dtype=np.float32))
    assert all("fc1" in text and "feasible" in text for text in venv.render())
    venv.close()
