"""Env settings are validated when the env is made; per-task state is bounded and released."""

import gc
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.cli import main
from prune_gym.envs.context import RECENT_CONTEXTS, PruningContext
from prune_gym.pruning import Budget
from prune_gym.tasks import Split, Task, TrainRecipe, make

DIGITS_REWARD = len(make("digits-mlp").splits["reward"])


@pytest.mark.parametrize(
    ("budget", "match"),
    [
        (0.5, r"budget=0\.5 must be a dict resource -> fraction such as \{'flops': 0\.5\}"),
        ("flops=0.5", r"budget='flops=0\.5' must be a dict.*Budget\.parse"),
        ({"flop": 0.5}, r"unknown budget resource 'flop'.*Did you mean 'flops'\?"),
    ],
)
def test_budgets_of_the_wrong_form_get_a_message_naming_them(budget, match):
    with pytest.raises((TypeError, ValueError), match=match):
        gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget=budget)


def test_numpy_scalars_are_accepted_as_numbers():
    env = gym.make(
        "prune_gym/GlobalRatio-v0",
        task="digits-mlp",
        budget={"params": np.float32(0.5)},
        reward_samples=np.int64(100),
        reward_finetune_steps=np.int64(0),
        max_ratio=np.float64(0.9),
    ).unwrapped
    assert env.budget.limits == {"params": 0.5} and type(env.budget.limits["params"]) is float
    assert len(env.context.reward_targets) == 100
    assert Budget({"flops": np.float16(0.25)}).limits == {"flops": 0.25}


@pytest.mark.parametrize(
    ("reward_samples", "match"),
    [
        (True, "reward_samples=True must be an integer"),
        (0, "reward_samples=0 must be an integer >= 1"),
        (10**6, f"reward_samples=1000000 exceeds the {DIGITS_REWARD} samples of task"),
    ],
)
def test_reward_samples_must_be_a_count_the_reward_split_holds(reward_samples, match):
    with pytest.raises(ValueError, match=match):
        gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", reward_samples=reward_samples)


def test_reward_samples_default_to_the_whole_reward_split_never_the_selection_split():
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp").unwrapped
    assert len(env.context.reward_targets) == DIGITS_REWARD < 1000
    splits = env.context.task.splits
    rows = {tuple(row.tolist()) for row in splits["reward"].batch(slice(None)).flatten(1)}
    rewarded = {tuple(row.tolist()) for row in env.context.reward_inputs.flatten(1)}
    selected = {tuple(row.tolist()) for row in splits["val"].batch(slice(None)).flatten(1)}
    assert rewarded == rows and rewarded.isdisjoint(selected)


@pytest.mark.parametrize("env_id", ["prune_gym/GlobalRatio-v0", "prune_gym/LayerRatio-v0"])
def test_an_unreachable_budget_is_refused_naming_the_smallest_reachable_value(env_id):
    # every layer at max_ratio 0.99 keeps round(1% of each layer): about 1% of the weights
    with pytest.raises(ValueError, match=r"cannot be met.*keeps params >= 0\.0\d+") as error:
        gym.make(env_id, task="digits-mlp", budget={"params": 0.005})
    floor = float(str(error.value).split("params >= ")[1].split(" ")[0])
    assert 0.005 < floor < 0.011
    env = gym.make(env_id, task="digits-mlp", budget={"params": floor + 1e-4})
    assert env.unwrapped.budget.limits["params"] == pytest.approx(floor + 1e-4)
    # one global threshold can remove every weight, so MetricMix's global mode can meet it
    gym.make("prune_gym/MetricMix-v0", task="digits-mlp", budget={"params": 0.005})


def test_channel_budgets_count_the_output_layer_that_cannot_shrink():
    with pytest.raises(ValueError, match=r"cannot be met.*structure='channel'"):
        gym.make(
            "prune_gym/GlobalRatio-v0",
            task="digits-cnn",
            structure="channel",
            budget={"params": 0.01},
        )


def single_layer_task(seed: int = 0) -> Task:
    def data():
        x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] > 0).long()
        return Split(x[:150], y[:150]), Split(x[150:], y[150:])

    recipe = TrainRecipe(optimizer="adam", lr=1e-2, batch_size=50, epochs=1)
    return Task("one-linear", lambda: nn.Linear(6, 2), data, recipe, (6,), 2, seed=seed)


def test_channel_structure_needs_a_layer_besides_the_output_layer():
    with pytest.raises(ValueError, match=r"layers producing the model's output.*no other prunable"):
        gym.make("prune_gym/GlobalRatio-v0", task=single_layer_task(), structure="channel")
    gym.make("prune_gym/GlobalRatio-v0", task=single_layer_task(), budget={"params": 0.5})


def test_panning_refuses_channel_structure():
    with pytest.raises(ValueError, match="structure='channel' is not supported"):
        gym.make("prune_gym/Panning-v0", task="digits-mlp", structure="channel")


def live_contexts() -> int:
    gc.collect()
    return sum(type(obj) is PruningContext for obj in gc.get_objects())


def make_env(reward_samples: int) -> gym.Env:
    """An env whose context differs from every other's (cheap: one metric)."""
    return gym.make(
        "prune_gym/GlobalRatio-v0",
        task="digits-mlp",
        metrics=["magnitude"],
        reward_samples=reward_samples,
    )


def test_closing_an_env_frees_its_context_and_unused_ones_are_bounded():
    before = live_contexts()
    for count in range(10, 60):  # 50 envs, 50 different contexts, each closed
        env = make_env(count)
        env.reset(seed=0)
        env.close()
    del env
    assert live_contexts() <= before
    for count in range(10, 30):  # dropped without close: only the most recent are kept
        make_env(count).reset(seed=0)
    assert live_contexts() <= before + RECENT_CONTEXTS


def test_envs_with_equal_settings_share_a_context_while_one_is_open():
    first, second = make_env(77), make_env(77)
    assert first.unwrapped.context is second.unwrapped.context
    first.close()  # the other env still holds it, and a new env shares it again
    assert make_env(77).unwrapped.context is second.unwrapped.context
    with pytest.raises(RuntimeError, match="was closed"):
        first.unwrapped.context  # noqa: B018


def test_cli_names_an_unknown_env_id(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                *("bench", "--task", "digits-mlp", "--budgets", "params=0.3"),
                *("--env", "prune_gym/GlobalRatios-v0", "--out", str(tmp_path)),
            ]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "unknown env id 'prune_gym/GlobalRatios-v0'" in error
    assert "Did you mean 'prune_gym/GlobalRatio-v0'?" in error and "Traceback" not in error


def test_cli_names_unknown_keys_in_run_json(tmp_path, capsys):
    (tmp_path / "model.zip").write_bytes(b"")
    (tmp_path / "run.json").write_text(json.dumps({"task": "digits-mlp", "timestep": 10}))
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(tmp_path / "model.zip")])
    assert exit_info.value.code == 2
    assert "unknown keys ['timestep']" in capsys.readouterr().err


def test_the_old_name_of_reward_finetune_steps_still_works_with_a_warning():
    with pytest.warns(DeprecationWarning, match="finetune_steps is now reward_finetune_steps"):
        env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", finetune_steps=3)
    assert env.unwrapped.settings.reward_finetune_steps == 3
    with pytest.raises(TypeError, match="not also its old name finetune_steps"):
        gym.make(
            "prune_gym/GlobalRatio-v0", task="digits-mlp", finetune_steps=3, reward_finetune_steps=3
        )
