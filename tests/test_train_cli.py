"""prune-gym train / eval: the main job, on tiny budgets of timesteps."""

import json

import pytest

from agents.jobs import RunConfig, algorithm_kwargs
from prune_gym.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    args = ["train", "--task", "digits-mlp", "--budget", "flops=0.5", "--budget", "params=0.6"]
    code = main([*args, "--timesteps", "256", "--episodes", "1", "--out", str(out)])
    return out, code


def test_train_writes_model_logs_plot_and_a_table_against_every_baseline(trained_run, capsys):
    out, code = trained_run
    assert code == 0
    for name in ("model.zip", "run.json", "summary.md", "training.png", "history.json"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    summary = (out / "summary.md").read_text()
    for policy in ("learned (ppo-lag)", "random", "uniform", "erk", "global-magnitude", "snip"):
        assert f"| {policy}" in summary
    history = json.loads((out / "history.json").read_text())
    assert {"timesteps", "reward", "cost_flops", "lambda_flops", "lambda_params"} <= set(
        history[-1]
    )
    assert json.loads((out / "run.json").read_text())["budget"] == {"flops": 0.5, "params": 0.6}


def test_eval_reloads_the_run_and_reports_feasibility(trained_run, capsys):
    out, _ = trained_run
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model.zip"), "--episodes", "2"]) == 0
    text = capsys.readouterr().out
    assert "learned (ppo-lag)" in text and "feasible rate" in text


@pytest.mark.parametrize("agent", ["ppo", "panning"])
def test_other_agents_train(agent, tmp_path):
    budget = "params=0.2" if agent == "panning" else "flops=0.5"
    code = main(
        [
            "train",
            "--agent",
            agent,
            "--task",
            "digits-mlp",
            "--budget",
            budget,
            "--timesteps",
            "64",
            "--episodes",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert f"learned ({agent})" in (tmp_path / "summary.md").read_text()


def test_run_config_validation_and_hyperparameters():
    with pytest.raises(ValueError, match="agent"):
        RunConfig(agent="dqn")
    with pytest.raises(ValueError, match="params"):
        RunConfig(agent="panning", budget={"flops": 0.5})
    assert "lagrange_lr" in algorithm_kwargs(RunConfig())
    assert "lagrange_lr" not in algorithm_kwargs(RunConfig(agent="ppo"))


def test_bad_input_gets_a_message_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "no-such-task", "--timesteps", "8", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "no-such-task" in capsys.readouterr().err
    assert not (tmp_path / "run.json").exists()  # nothing is written for a bad run
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(tmp_path / "missing.zip")])
    assert "missing.zip" in capsys.readouterr().err
    (tmp_path / "model.zip").write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["eval", "--model", str(tmp_path / "model.zip")])
    assert "run.json" in capsys.readouterr().err
