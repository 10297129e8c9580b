"""prune-gym bench: the smoke suite end to end, resuming, failures, budgets and suites."""

import csv
import dataclasses
import json

import pytest

from prune_gym.bench import (
    COLUMNS,
    BenchSpec,
    RecordStore,
    load_suite,
    parse_budgets,
    plan,
    run_benchmark,
)
from prune_gym.bench import runner as bench_runner
from prune_gym.cli import main


def test_smoke_suite_writes_every_file_with_the_required_columns(smoke_output):
    out, code = smoke_output
    assert code == 0
    for name in ("results.csv", "results.json", "summary.md"):
        assert (out / name).stat().st_size > 0
    for name in ("accuracy_vs_compression.png", "layer_ratios.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(COLUMNS) <= set(rows[0])
    methods = {row["method"] for row in rows}
    assert methods == {"random", "uniform", "global-magnitude", "snip", "gmp"}
    assert len(rows) == 5 * 2  # methods x seeds
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert float(row["params_ratio"]) <= 0.2 + 1e-12
        assert row["feasible"] == "True"
        assert float(row["speedup"]) == pytest.approx(1 / float(row["macs_ratio"]))
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0
    summary = (out / "summary.md").read_text()
    assert "digits-mlp, budget params=0.2" in summary and "**" in summary
    records = RecordStore(out).read()
    assert {record["device"] for record in records} == {"cpu"}


def test_resuming_skips_finished_runs(smoke_output, monkeypatch):
    out, _ = smoke_output
    before = json.loads((out / "results.json").read_text())

    def refuse(self, run):
        raise AssertionError(f"run {run.key} was executed again")

    monkeypatch.setattr(bench_runner.BenchmarkRunner, "execute", refuse)
    assert main(["bench", "--suite", "smoke", "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == before


def test_a_failed_run_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    original = bench_runner.BenchmarkRunner.execute

    def flaky(self, run):
        if run.method == "snip":
            raise RuntimeError("planted failure")
        return original(self, run)

    monkeypatch.setattr(bench_runner.BenchmarkRunner, "execute", flaky)
    code = main(
        [
            "bench",
            "--task",
            "digits-mlp",
            "--budgets",
            "params=0.3",
            "--methods",
            "uniform,snip",
            "--seeds",
            "1",
            "--finetune-steps",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    records = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"]: r["status"] for r in records} == {"uniform": "ok", "snip": "failed"}
    assert "planted failure" in (tmp_path / "summary.md").read_text()


def test_budgets_parse_single_multi_and_sweep():
    assert parse_budgets("params=0.1,params=0.02") == ["params=0.1", "params=0.02"]
    assert parse_budgets("params=0.3+flops=0.5") == ["flops=0.5+params=0.3"]
    sweep = parse_budgets("sweep")
    assert len(sweep) >= 5 and sweep[0] == "params=0.5"
    with pytest.raises(ValueError):
        parse_budgets("params=2")


def test_the_device_is_checked_and_keys_only_runs_off_the_cpu():
    base = {"tasks": ("digits-mlp",), "budgets": ("params=0.1",), "methods": ("uniform",)}
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        BenchSpec(**base, device="gpu")
    with pytest.raises(TypeError, match="device=0 must be a str"):
        BenchSpec(**base, device=0)
    on_cpu = plan(BenchSpec(**base))[0].settings
    on_gpu = plan(BenchSpec(**base, device="cuda:1"))[0].settings
    assert "device" not in on_cpu  # CPU runs keep the keys they had before devices
    assert on_gpu == on_cpu | {"device": "cuda:1"}


def test_plan_expands_all_and_rejects_unknown_methods():
    spec = BenchSpec(tasks=("digits-mlp",), budgets=("params=0.1",), methods=("all",), seeds=2)
    runs = plan(spec)
    kinds = {run.kind for run in runs}
    assert kinds == {"one-shot", "training"}
    assert {"global-magnitude", "erk", "gmp", "granet", "flipout", "swd", "imp", "rigl"} <= {
        run.method for run in runs
    }
    with pytest.raises(ValueError, match="no-such"):
        plan(BenchSpec(tasks=("digits-mlp",), budgets=("params=0.1",), methods=("no-such",)))


def test_every_shipped_suite_loads():
    for name in ("smoke", "digits", "teacher", "mnist", "cifar10"):
        spec = load_suite(name)
        assert spec.tasks and spec.budgets
    assert len(load_suite("mnist").budgets) >= 5
    with pytest.raises(FileNotFoundError, match="smoke"):
        load_suite("no-such-suite")


def test_a_trained_sb3_policy_joins_the_same_table(tmp_path):
    import gymnasium as gym
    from stable_baselines3 import PPO

    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-mlp", budget={"params": 0.3})
    PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0).learn(32).save(
        tmp_path / "ppo"
    )
    policy = str(tmp_path / "ppo.zip")
    code = main(
        [
            "bench",
            "--task",
            "digits-mlp",
            "--budgets",
            "params=0.3",
            "--methods",
            "uniform",
            "--policy",
            policy,
            "--seeds",
            "1",
            "--finetune-steps",
            "0",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    records = json.loads((tmp_path / "o" / "results.json").read_text())
    learned = next(r for r in records if r["kind"] == "learned")
    assert learned["method"] == f"policy:{policy}"
    assert learned["status"] == "ok" and 0 <= learned["test_accuracy"] <= 1
    assert f"policy:{policy}" in (tmp_path / "o" / "summary.md").read_text()
    spec = BenchSpec(("digits-mlp",), ("params=0.3",), ("uniform",), seeds=1, finetune_steps=0)
    spec = dataclasses.replace(spec, policies=(policy,), projection=True)
    records = run_benchmark(spec, tmp_path / "o")  # the unprojected runs are reused
    projected = next(r for r in records if r["settings"].get("projection"))
    assert projected["method"] == f"policy:{policy}" and projected["status"] == "ok"
    assert projected["feasible"]  # BudgetProjection meets the budget whatever the policy does


def test_env_kwargs_first_seed_and_projection_shape_the_plan(tmp_path):
    base = {"tasks": ("digits-mlp",), "budgets": ("params=0.1",), "methods": ("uniform",)}
    plain = plan(BenchSpec(**base, seeds=1))
    tuned = plan(BenchSpec(**base, seeds=2, first_seed=1, env_kwargs={"reward": "loss"}))
    assert "env_kwargs" not in plain[0].settings  # plain benches keep their keys
    assert [run.seed for run in tuned] == [1, 2]
    assert tuned[0].settings == plain[0].settings | {"env_kwargs": {"reward": "loss"}}
    with pytest.raises(ValueError, match="structure"):
        BenchSpec(**base, env_kwargs={"structure": "channel"})
    policy = tmp_path / "policy.zip"
    policy.write_bytes(b"weights")
    runs = plan(BenchSpec(**base, seeds=1, policies=(str(policy),), projection=True))
    learned = [run.settings.get("projection") for run in runs if run.kind == "learned"]
    assert learned == [None, True]
