"""PanningAgent: TD3 with the Panning code's defaults, one agent for many target sparsities."""

import pytest

from agents.panning_agent import PAPER_DEFAULTS, PanningAgent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    agent = PanningAgent(
        "digits-mlp", learning_starts=40, batch_size=32, env_kwargs={"iterations": 3}
    )
    return agent.learn(200)


def test_trains_a_few_hundred_steps_and_prunes_to_the_requested_sparsity(trained):
    assert trained.model.num_timesteps == 200
    for target in (0.8, 0.95):
        masks = trained.prune("digits-mlp", target)
        assert masks.sparsity() == pytest.approx(target, abs=1e-4)
        assert masks.sparsity() >= target


def test_one_agent_prunes_another_task(trained):
    masks = trained.prune("digits-cnn", 0.9)
    assert set(masks.masks) == {"conv1", "conv2", "fc1", "fc2"}
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-4)


def test_save_and_load_keep_the_policy_and_env_settings(trained, tmp_path):
    trained.save(tmp_path / "agent")
    loaded = PanningAgent.load(tmp_path / "agent.zip")
    assert loaded.env_kwargs == {"iterations": 3}
    first = trained.prune("digits-mlp", 0.9)
    second = loaded.prune("digits-mlp", 0.9)
    assert all((first[n] == second[n]).all() for n in first)


def test_defaults_are_the_panning_codes():
    agent = PanningAgent("digits-mlp", env_kwargs={"iterations": 2})
    model = agent.model
    assert model.learning_rate == PAPER_DEFAULTS["learning_rate"] == 2e-4
    assert model.batch_size == 256 and model.gamma == 0.99 and model.tau == 0.01
    assert model.learning_starts == 2000
    assert model.action_noise._sigma.tolist() == [0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match="target_range"):
        PanningAgent("digits-mlp", env_kwargs={"target": 0.9})
