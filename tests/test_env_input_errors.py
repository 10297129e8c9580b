"""Bad env input is refused when the env is made (or stepped), with a message naming it."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import prune_gym
from prune_gym.algorithms import SavedRun
from prune_gym.tasks import Split, Task, TrainRecipe
from prune_gym.tasks import task as task_module

IDS = list(prune_gym.ENV_IDS)
PANNING = "prune_gym/Panning-v0"


def short(env_id: str) -> dict:
    """Settings that keep an episode short: Panning in two iterations."""
    return {"iterations": 2} if env_id == PANNING else {}


@pytest.fixture
def no_model_built(monkeypatch):
    """Fail the test if any model is built or trained (the check must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before the settings were checked")

    monkeypatch.setattr(Task, "build_model", refuse)
    monkeypatch.setattr(Task, "pretrained_model", refuse)


# item 4: Panning trains train_steps, not finetune_steps ---------------------------------
def test_panning_refuses_finetune_steps_and_names_train_steps():
    with pytest.raises(ValueError, match=r"reward_finetune_steps=5.*Panning.*train_steps"):
        gym.make(PANNING, task="digits-mlp", reward_finetune_steps=5)


def write_run(folder, env: str, env_kwargs: dict, timesteps: int = 50) -> str:
    """A ``run.json`` as ``prune-gym train`` writes it, and the model path beside it."""
    run = {"algorithm": "td3", "env": env, "env_kwargs": env_kwargs, "timesteps": timesteps}
    (folder / "run.json").write_text(json.dumps(run))
    return str(folder / "model.zip")


@pytest.mark.parametrize(
    ("env", "env_kwargs", "steps"),
    [
        (PANNING, {"iterations": 10, "reward": "trained_accuracy", "train_steps": 100}, 5000),
        (PANNING, {"iterations": 10, "reward": "trained_accuracy"}, 50 * 200),
        (PANNING, {"iterations": 10, "reward": "proxy", "train_steps": 100}, 0),
        ("prune_gym/GlobalRatio-v0", {"reward": "loss", "reward_finetune_steps": 10}, 500),
        # a run.json of 0.1, under the setting's old name
        ("prune_gym/GlobalRatio-v0", {"reward": "loss", "finetune_steps": 10}, 500),
    ],
)
def test_saved_run_counts_the_training_each_env_does_for_its_rewards(
    tmp_path, env, env_kwargs, steps
):
    if "finetune_steps" in env_kwargs:  # the old name is read, with a warning
        with pytest.warns(DeprecationWarning, match="now reward_finetune_steps"):
            saved = SavedRun.beside(write_run(tmp_path, env, env_kwargs))
    else:
        saved = SavedRun.beside(write_run(tmp_path, env, env_kwargs))
    assert saved.train_steps == steps


# item 5: duplicate metrics -----------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_duplicate_metrics_are_refused_when_the_env_is_made(env_id, no_model_built):
    with pytest.raises(ValueError, match=r"metrics=\['snip', 'magnitude', 'snip'\].*'snip'"):
        gym.make(env_id, task="digits-mlp", metrics=["snip", "magnitude", "snip"])


# item 9: a latency budget needs every layer to keep a channel --------------------------
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("prune_gym/GlobalRatio-v0", {}),
        ("prune_gym/GlobalRatio-v0", {"action": "logits"}),
        ("prune_gym/LayerRatio-v0", {}),
        ("prune_gym/MetricMix-v0", {"mode": "joint"}),
    ],
)
def test_a_latency_budget_refuses_a_max_ratio_that_removes_whole_layers(env_id, kwargs):
    settings = {"task": "digits-cnn", "structure": "channel", "budget": {"latency": 0.5}}
    # digits-cnn's smallest controlled layer, conv1, has 16 channels: at most 15 can go
    with pytest.raises(ValueError, match=r"max_ratio=1 .*every channel.*max_ratio <= 0\.9375"):
        gym.make(env_id, max_ratio=1.0, **settings, **kwargs)
    env = gym.make(env_id, max_ratio=0.9375, **settings, **kwargs).unwrapped
    env.reset(seed=0)
    done = False
    while not done:  # the most pruning action exports and is measured
        _, _, done, _, info = env.step(np.ones(env.action_space.shape, dtype=np.float32))
    assert info["latency_ratio"] > 0


def test_metric_mix_global_mode_ignores_max_ratio_under_a_latency_budget():
    env = gym.make(
        "prune_gym/MetricMix-v0",
        task="digits-cnn",
        structure="channel",
        budget={"latency": 0.5},
        max_ratio=1.0,
    )
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[4]["latency_ratio"] > 0


# item 10: device, render mode, target range, a model with nothing to prune ------------
DEVICES = [
    ("foo", ValueError, r"device='foo' is not a torch device"),
    (0, TypeError, r"device=0 must be a str such as 'cpu' or 'cuda'"),
    ("cuda:99", ValueError, r"device='cuda:99' cannot be used on this machine.*'cpu'"),
]
if not torch.cuda.is_available():
    DEVICES.append(("cuda", ValueError, r"device='cuda' cannot be used on this machine.*'cpu'"))


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(("device", "error", "match"), DEVICES)
def test_bad_devices_are_refused_before_the_model_is_built(
    env_id, device, error, match, no_model_built
):
    with pytest.raises(error, match=match):
        gym.make(env_id, task="digits-mlp", device=device)


@pytest.mark.parametrize("env_id", IDS)
def test_human_rendering_is_refused_by_gymnasium_make(env_id, no_model_built):
    match = r"render_mode='human' is not supported; expected None or one of \['ansi', 'rgb_array'\]"
    with pytest.raises(ValueError, match=match):
        gym.make(env_id, task="digits-mlp", render_mode="human")


@pytest.mark.parametrize("target_range", [(0.5,), 0.5, (0.5, 0.6, 0.7), "ab"])
def test_panning_target_range_must_be_a_pair(target_range, no_model_built):
    with pytest.raises(ValueError, match=r"target_range=.* must be a pair \(low, high\)"):
        gym.make(PANNING, task="digits-mlp", target_range=target_range)


def data_of_four_features() -> tuple[Split, Split]:
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    return Split(x[:40], y[:40]), Split(x[40:], y[40:])


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("build", [nn.Flatten, lambda: nn.Sequential(nn.BatchNorm1d(4))])
def test_a_model_with_nothing_to_prune_is_refused_before_training(env_id, build, monkeypatch):
    recipe = TrainRecipe(lr=1e-2, batch_size=20, epochs=1)
    task = Task("nothing-to-prune", build, data_of_four_features, recipe, (4,), 2)
    monkeypatch.setattr(task_module, "train_dense", pytest.fail)  # refused before training
    with pytest.raises(ValueError, match=r"has no prunable layer.*nn\.Linear, nn\.Conv1d"):
        gym.make(env_id, task=task)


# item 12: stepping after the end, and actions that are not real numbers ---------------
@pytest.mark.parametrize("env_id", IDS)
def test_every_env_refuses_a_step_after_the_episode_ended(env_id):
    env = gym.make(env_id, task="digits-mlp", **short(env_id)).unwrapped
    env.reset(seed=0)
    done = False
    while not done:
        done = env.step(np.zeros(env.action_space.shape, dtype=np.float32))[2]
    with pytest.raises(RuntimeError, match=r"episode is over: call reset\(\) before step\(\)"):
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    env.reset(seed=1)
    env.step(np.zeros(env.action_space.shape, dtype=np.float32))  # a new episode steps again


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize(
    ("entry", "dtype"), [("0.5", "<U3"), (True, "bool"), (0.5 + 1j, "complex128")]
)
def test_actions_that_are_not_real_numbers_are_refused(env_id, entry, dtype):
    env = gym.make(env_id, task="digits-mlp", **short(env_id)).unwrapped
    env.reset(seed=0)
    action = [entry] * env.action_space.shape[0]
    with pytest.raises(TypeError, match=rf"dtype {dtype}.*real-valued numeric array"):
        env.step(action)
    env.step(np.zeros(env.action_space.shape, dtype=np.int64))  # integers are numbers
