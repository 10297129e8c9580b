"""prune-gym train / eval: the main job on small budgets; its comparison is a bench run."""

import csv
import json

import gymnasium as gym
import pytest

from agents.run_config import RunConfig, algorithm_kwargs
from prune_gym.bench import RecordStore
from prune_gym.cli import main
from prune_gym.tasks import make as make_task

BUDGET = ["--budget", "flops=0.5", "--budget", "params=0.6"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    args = ["train", "--task", "digits-mlp", *BUDGET, "--timesteps", "256"]
    code = main([*args, "--finetune-steps", "50", "--searches", "none", "--out", str(out)])
    return out, code


def test_train_writes_model_logs_plot_results_and_a_table_against_every_baseline(trained_run):
    out, code = trained_run
    assert code == 0
    for name in ("model.zip", "run.json", "results.json", "summary.md", "training.png"):
        assert (out / name).stat().st_size > 0, name
    assert any(out.glob("events.out.tfevents.*"))
    summary = (out / "summary.md").read_text()
    for policy in ("learned (ppo-lag)", "random", "uniform", "erk", "global-magnitude", "snip"):
        assert f"| {policy}" in summary
    rows = json.loads((out / "results.json").read_text())
    learned = rows[0]
    assert learned["policy"] == "learned (ppo-lag)" and learned["timesteps"] == 256
    assert learned["feasible"] == 1.0  # density logits meet the budget by construction
    for row in rows:
        assert {"val_accuracy", "test_accuracy", "params_ratio", "macs_ratio"} <= set(row)
        assert {"train_time", "eval_time"} <= set(row) and "wall_time" not in row
        assert row["finetune_steps"] == 50
    with (out / "progress.csv").open() as handle:
        columns = set(next(csv.reader(handle)))
    assert {"eval/val_accuracy", "train/lambda_flops", "rollout/ep_cost_params_mean"} <= columns


def test_run_json_records_every_env_setting_and_the_reference(trained_run):
    out, _ = trained_run
    run = json.loads((out / "run.json").read_text())
    assert run["budget"] == {"flops": 0.5, "params": 0.6} and run["algorithm"] == "ppo-lag"
    settings = run["env_kwargs"]
    assert settings["action"] == "logits" and settings["reward"] == "accuracy"
    assert settings["reward_finetune_steps"] == 0  # post-training by default
    reference = json.loads((out / "results.json").read_text())[0]["reference"]
    rows = json.loads((out / "results.json").read_text())
    baseline = next(r for r in rows if r["policy"] == reference)
    assert settings["reference"] == baseline["ratios"]  # "best" resolved to that allocation
    assert settings["max_ratio"] == 1.0  # as bench's one-shot methods, so numbers match


def test_the_comparison_is_a_bench_folder_that_bench_reuses(trained_run, executions):
    out, _ = trained_run
    records = RecordStore(out / "bench").read()
    learned = next(r for r in records if r["kind"] == "learned")
    assert learned["env"] == "prune_gym/GlobalRatio-v0"  # the env of its run.json
    assert learned["settings"]["policy_env_kwargs"]["action"] == "logits"
    rows = json.loads((out / "results.json").read_text())
    assert {row["policy"] for row in rows} == {
        "learned (ppo-lag)" if r["kind"] == "learned" else r["method"] for r in records
    }
    code = main(
        [
            *("bench", "--task", "digits-mlp", "--budgets", "flops=0.5+params=0.6"),
            *("--methods", "erk", "--policy", str(out / "model.zip"), "--seeds", "1"),
            *("--finetune-steps", "50", "--out", str(out / "bench")),
        ]
    )
    assert code == 0
    # the learned run is train's own, reused; erk acts on bench's default env settings
    # (no reward settings), which is a run of its own
    assert [method for method, _, _ in executions] == ["erk"]


def test_eval_reloads_the_run_and_reports_feasibility(trained_run, capsys):
    out, _ = trained_run
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model.zip"), "--episodes", "2"]) == 0
    text = capsys.readouterr().out
    assert "learned (ppo-lag)" in text and "feasible rate" in text


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "panning"])
def test_other_agents_train(agent, tmp_path):
    budget = "params=0.2" if agent == "panning" else "flops=0.5"
    code = main(
        [
            *("train", "--agent", agent, "--task", "digits-mlp", "--budget", budget),
            *("--timesteps", "64", "--finetune-steps", "20", "--out", str(tmp_path)),
        ]
    )
    assert code == 0
    assert f"learned ({agent})" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "training.png").stat().st_size > 0


def test_run_config_validation_defaults_and_hyperparameters():
    with pytest.raises(ValueError, match="agent"):
        RunConfig(agent="dqn")
    with pytest.raises(ValueError, match="params"):
        RunConfig(agent="panning", budget={"flops": 0.5})
    with pytest.raises(ValueError, match="env_kwargs may not hold 'task'"):
        RunConfig(env_kwargs={"task": "digits-mlp"})
    # the default: one policy over a budget range, post-training, with both searches
    default = RunConfig()
    assert (default.task, default.budget) == ("mnist1d-cnn", {"params": [0.2, 0.5]})
    assert default.env_settings()["reference"] == "global"  # "best" needs one budget
    assert default.searches == ["random-search", "cma-es"]
    assert RunConfig(budget={"flops": 0.5}).env_settings()["reference"] == "best"
    assert RunConfig(agent="panning", budget={"params": 0.1}).searches == []
    with pytest.raises(ValueError, match="searches"):
        RunConfig(env="prune_gym/LayerRatio-v0", searches=["cma-es"])
    with pytest.raises(ValueError, match="search"):
        RunConfig(searches=["grid"])
    assert RunConfig(env_kwargs={"reward": "accuracy"}).env_settings()["reward"] == "accuracy"
    # post-training, the accuracy ranks allocations best (and minus the loss rewards collapse)
    assert RunConfig().env_settings()["reward"] == "accuracy"
    assert RunConfig(env="prune_gym/LayerRatio-v0").env_settings()["reward"] == "accuracy"
    assert RunConfig(env_kwargs={"reward": "loss"}).env_settings()["reward"] == "loss"
    panning = RunConfig(agent="panning", budget={"params": 0.1})
    assert (RunConfig().finetune_steps, panning.finetune_steps) == (0, 600)
    # the agent prunes in as many iterations as the claims table's fixed schedules (env's)
    env = gym.make(panning.env, **panning.env_settings(task="digits-mlp")).unwrapped
    assert env.iterations == gym.make(panning.env, task="digits-mlp").unwrapped.iterations == 20
    assert "lagrange_update" not in algorithm_kwargs(RunConfig())  # PPOLagrangian's defaults
    assert "cost_window" not in algorithm_kwargs(RunConfig(agent="ppo"))


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


def test_the_model_kept_is_the_checkpoint_best_on_validation(trained_run):
    out, _ = trained_run
    with (out / "progress.csv").open() as handle:
        checks = [r for r in csv.DictReader(handle) if r["eval/val_accuracy"]]
    assert len(checks) >= 2  # every eval_freq steps and at the end
    feasible = [float(r["eval/val_accuracy"]) for r in checks if float(r["eval/feasible"])]
    assert len(feasible) == len(checks)  # density logits: every checkpoint meets the budget
    assert float(checks[0]["eval/timesteps"]) == 0  # the untrained policy is a candidate
    learned = json.loads((out / "results.json").read_text())[0]
    assert learned["val_accuracy"] == max(feasible)
    kept = [
        float(r["eval/timesteps"]) for r in checks if float(r["eval/val_accuracy"]) == max(feasible)
    ]
    assert learned["kept_timesteps"] == kept[0]


def test_train_with_n_envs_collects_episodes_on_the_batched_env(tmp_path, monkeypatch):
    from agents import jobs
    from prune_gym.sb3 import VectorEnvAdapter

    made = []
    original = jobs.make_training_env
    monkeypatch.setattr(jobs, "make_training_env", lambda *a: made.append(original(*a)) or made[-1])
    args = ["train", "--task", "digits-mlp", "--timesteps", "64", "--n-envs", "4"]
    assert main([*args, "--finetune-steps", "5", "--out", str(tmp_path)]) == 0
    assert isinstance(made[0], VectorEnvAdapter) and made[0].num_envs == 4
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["n_envs"] == 4
    rows = list(csv.DictReader((tmp_path / "progress.csv").open()))
    assert int(rows[-1]["time/total_timesteps"]) == 64
    assert "learned (ppo-lag)" in (tmp_path / "summary.md").read_text()


def test_n_envs_keeps_the_rollout_size_and_is_checked():
    assert algorithm_kwargs(RunConfig())["n_steps"] == 64
    assert algorithm_kwargs(RunConfig(n_envs=8))["n_steps"] == 8
    assert algorithm_kwargs(RunConfig(n_envs=3))["n_steps"] == 22  # 66 >= one batch of 64
    with pytest.raises(ValueError, match="n_envs"):
        RunConfig(n_envs=0)
    with pytest.raises(ValueError, match="n_envs=2"):
        RunConfig(agent="panning", budget={"params": 0.1}, n_envs=2)


def test_train_over_a_budget_range_compares_at_its_ends_and_middle(tmp_path):
    args = ["train", "--task", "digits-mlp", "--budget", "params=0.05:0.2", "--timesteps", "64"]
    assert main([*args, "--finetune-steps", "5", "--out", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["budget"] == {"params": [0.05, 0.2]}
    assert run["env_kwargs"]["reference"] == "global"  # "best" is one budget's allocation
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [row["budget"] for row in rows if row["kind"] == "learned"] == [
        "params=0.05",
        "params=0.1",
        "params=0.2",
    ]
    learned = [row for row in rows if row["kind"] == "learned"]
    assert all(row["feasible"] == 1.0 for row in learned)
    assert [round(row["params_ratio"], 2) for row in learned] == [0.05, 0.1, 0.2]
    assert sum(row["best_on_val"] for row in rows) == 3  # one best fixed policy per budget
    summary = (tmp_path / "summary.md").read_text()
    assert "budget params in [0.05, 0.2]" in summary and "| params=0.1 | learned" in summary


def test_a_budget_range_refuses_the_best_reference_and_the_panning_agent():
    with pytest.raises(ValueError, match="reference"):
        RunConfig(budget={"params": [0.05, 0.2]}, env_kwargs={"reference": "best"})
    with pytest.raises(ValueError, match="one target sparsity"):
        RunConfig(agent="panning", budget={"params": [0.05, 0.2]})
    with pytest.raises(ValueError, match="low must not exceed high"):
        RunConfig(budget={"params": [0.2, 0.05]})


def test_the_seed_sets_the_task_the_agent_and_every_policy_are_assessed_on(tmp_path):
    dense = {}
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        args = ["train", "--task", "digits-mlp", "--budget", "params=0.3", "--timesteps", "16"]
        assert main([*args, "--searches", "none", "--seed", str(seed), "--out", str(out)]) == 0
        task = make_task("digits-mlp", seed=seed)  # its own weights, split and rewards
        expected = task.evaluate(task.pretrained_model(), "test")["accuracy"]
        records = RecordStore(out / "bench").read()
        assert {record["dense_accuracy"] for record in records} == {expected}
        assert {record["seed"] for record in records} == {seed}
        dense[seed] = expected
    assert dense[0] != dense[1]
