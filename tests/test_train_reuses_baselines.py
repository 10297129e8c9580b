"""train assesses the fixed policies once: a second train on the same task, budget and
seed reuses their runs (shared through the cache folder), even into another --out."""

import json
import threading

import pytest

from agents import comparison
from agents.jobs import train_and_compare
from agents.run_config import RunConfig
from prune_gym.bench import RecordStore
from prune_gym.bench.execute import BenchmarkRunner
from prune_gym.tasks import make as make_task


def config(**changes) -> RunConfig:
    """The quickest train: digits-mlp, one rollout, a few fine-tuning steps."""
    settings = {"task": "digits-mlp", "budget": {"flops": 0.5}, "timesteps": 64}
    settings |= {"finetune_steps": 5, "eval_freq": 64, "searches": []}
    settings["env_kwargs"] = {"reward_finetune_steps": 1}
    return RunConfig(**settings | changes)


@pytest.fixture(autouse=True)
def shared_store(tmp_path, monkeypatch):
    """This test's own shared store (not the cache folder that other tests share)."""
    monkeypatch.setattr(comparison, "cache_dir", lambda: tmp_path / "cache")
    return RecordStore(tmp_path / "cache" / comparison.SHARED_FOLDER)


def fixed(records: list[dict]) -> dict[str, dict]:
    """The fixed policies' records by run key."""
    return {record["run_key"]: record for record in records if record["kind"] != "learned"}


def baseline_rows(out) -> list[dict]:
    rows = json.loads((out / "results.json").read_text())
    return [row for row in rows if row["kind"] == "baseline"]


def test_a_second_train_into_another_folder_reuses_the_fixed_policies(
    tmp_path, executions, shared_store
):
    _, first = train_and_compare(config(), tmp_path / "first")
    assessed = [method for method, _, _ in executions]
    baselines = len(fixed(first))
    assert baselines >= 5 and len(assessed) == baselines + 1  # and the learned policy
    del executions[:]
    _, second = train_and_compare(config(), tmp_path / "second")
    assert executions == [(f"policy:{tmp_path / 'second' / 'model.zip'}", 0, 5)]  # learned
    assert fixed(second) == fixed(first)  # the same records, wall times included
    assert baseline_rows(tmp_path / "second") == baseline_rows(tmp_path / "first")
    stored = [
        RecordStore(out / "bench").read() for out in (tmp_path / "first", tmp_path / "second")
    ]
    assert fixed(stored[1]) == fixed(stored[0])  # the run's own bench folder holds them
    shared = shared_store.read()
    assert fixed(shared).keys() == fixed(first).keys() and len(shared) == baselines  # once


@pytest.mark.parametrize("change", [{"seed": 1}, {"budget": {"flops": 0.4}}])
def test_another_seed_or_budget_assesses_the_fixed_policies_anew(
    tmp_path, executions, shared_store, change
):
    first = comparison.run_comparison(config(), make_task("digits-mlp"), tmp_path / "first")
    assert len(executions) == len(first)
    del executions[:]
    other = config(**change)
    task = make_task("digits-mlp", seed=other.seed)
    second = comparison.run_comparison(other, task, tmp_path / "second")
    assert len(executions) == len(second) == len(first)  # none reused
    assert not fixed(first).keys() & fixed(second).keys()
    assert len(shared_store.read()) == 2 * len(first)


def test_a_failed_run_is_not_shared_and_runs_again(tmp_path, executions, shared_store, monkeypatch):
    counting = BenchmarkRunner.execute

    def failing(self, run):
        if run.method == "snip":
            raise RuntimeError("out of memory")
        return counting(self, run)

    monkeypatch.setattr(BenchmarkRunner, "execute", failing)
    task = make_task("digits-mlp")
    with pytest.raises(RuntimeError, match="snip seed 0: RuntimeError: out of memory"):
        comparison.run_comparison(config(), task, tmp_path / "first")
    assert all(record["status"] == "ok" for record in shared_store.read())
    assert "snip" not in {record["method"] for record in shared_store.read()}
    monkeypatch.setattr(BenchmarkRunner, "execute", counting)
    del executions[:]
    records = comparison.run_comparison(config(), task, tmp_path / "second")
    assert [method for method, _, _ in executions] == ["snip"]  # the others reused
    assert {record["status"] for record in records} == {"ok"}


def test_an_unusable_shared_store_is_skipped_with_a_warning(tmp_path, executions):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / comparison.SHARED_FOLDER).write_text("not a folder")
    with pytest.warns(UserWarning, match="fixed policies' runs not shared: .* is a file"):
        records = comparison.run_comparison(config(), make_task("digits-mlp"), tmp_path / "out")
    assert len(executions) == len(records) and {r["status"] for r in records} == {"ok"}


def test_the_shared_store_waits_for_another_holder_a_bench_does_not(tmp_path, shared_store):
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with shared_store.lock():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    with pytest.raises(ValueError, match="in use by another benchmark"), shared_store.lock():
        pass
    threading.Timer(0.2, release.set).start()
    with shared_store.lock(wait=10):
        assert release.is_set()  # held once the other let go
    holder.join()
