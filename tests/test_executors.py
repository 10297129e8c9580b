"""Runs on Ray: the same records as locally, retried when a worker dies, resumable.

One local Ray instance (``ray.init(num_cpus=2)``) serves the module; its workers get a
weights cache of their own, so they also train the pretrained weights themselves.
"""

import json
import os
import sys
import textwrap

import pytest

from prune_gym.bench import BenchSpec, RecordStore, run_benchmark
from prune_gym.cli import main
from prune_gym.executors import LocalExecutor, RayExecutor, make_executor
from prune_gym.plugins import import_modules

#: record fields that may differ between two executions of the same run.
TIMINGS = ("wall_time",)


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the [ray] extra (in [dev]) is not installed")
    cache = tmp_path_factory.mktemp("worker_cache")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PRUNE_GYM_CACHE": str(cache)}},
    )
    yield cache
    ray.shutdown()


def _records(folder) -> dict[str, dict]:
    """The folder's records by run key, timings dropped; fails on a key written twice."""
    records = RecordStore(folder).read()
    keys = [record["run_key"] for record in records]
    assert len(keys) == len(set(keys)), "a run was recorded twice"
    return {
        record["run_key"]: {k: v for k, v in record.items() if k not in TIMINGS}
        for record in records
    }


@pytest.mark.slow
def test_ray_records_of_the_smoke_suite_equal_the_local_ones(smoke_output, ray_instance, tmp_path):
    local, code = smoke_output
    assert code == 0
    assert main(["bench", "--suite", "smoke", "--executor", "ray", "--out", str(tmp_path)]) == 0
    on_ray = _records(tmp_path)
    assert on_ray == _records(local)
    assert all(record["status"] == "ok" for record in on_ray.values())
    assert any(ray_instance.rglob("*.pt")), "the workers trained and cached their own weights"


def _plugin(folder, name: str, kills: str) -> str:
    """A module registering task ``name``: digits-mlp whose dense evaluation kills its
    process ``kills`` ("once": the first time, "always": every time)."""
    path = folder / f"{name.replace('-', '_')}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            from pathlib import Path
            from prune_gym.tasks import make, register_task

            ARMED = Path({str(folder / "armed")!r})
            KILLS = Path({str(folder / "kills")!r})

            class Doomed(type(make("digits-mlp"))):
                def evaluate(self, *args, **kwargs):
                    if {kills!r} == "always" or ARMED.exists():
                        ARMED.unlink(missing_ok=True)
                        with KILLS.open("a") as handle:
                            handle.write(f"{{os.getpid()}}\\n")
                        os.kill(os.getpid(), signal.SIGKILL)
                    return super().evaluate(*args, **kwargs)

            def build(seed=0):
                task = make("digits-mlp", seed=seed)
                task.__class__ = Doomed
                return task

            register_task({name!r}, build)
            """
        )
    )
    return str(path)


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_is_retried_and_recorded_once(ray_instance, tmp_path):
    plugin = _plugin(tmp_path, "dies-once", kills="once")
    (tmp_path / "armed").touch()
    out = tmp_path / "bench"
    args = ["bench", "--import", plugin, "--task", "dies-once", "--budgets", "params=0.2"]
    args += ["--methods", "uniform", "--seeds", "1", "--finetune-steps", "0"]
    assert main([*args, "--executor", "ray", "--out", str(out)]) == 0
    assert len((tmp_path / "kills").read_text().split()) == 1  # one worker was killed
    (record,) = RecordStore(out).read()  # and the run recorded once, by its retry
    assert record["status"] == "ok" and record["task"] == "dies-once"


@pytest.mark.slow
def test_a_run_whose_worker_always_dies_is_recorded_failed_once(ray_instance, tmp_path):
    plugin = _plugin(tmp_path, "always-dies", kills="always")
    spec = BenchSpec(("always-dies",), ("params=0.2",), ("uniform",), seeds=1, finetune_steps=0)
    import_modules([plugin])  # the driver names the task too
    executor = RayExecutor(imports=[plugin], max_retries=1)
    (record,) = run_benchmark(spec, tmp_path / "bench", executor)
    assert record["status"] == "failed" and record["error"].startswith("run lost:")
    assert "2 attempt(s)" in record["error"]
    assert len((tmp_path / "kills").read_text().split()) == 2  # the run, and one retry
    assert len(RecordStore(tmp_path / "bench").read()) == 1


@pytest.mark.slow
def test_a_run_that_fails_on_ray_is_recorded_failed_with_its_error_as_locally(
    ray_instance, tmp_path
):
    spec = BenchSpec(("digits-mlp",), ("flops=0.5",), ("gmp",), seeds=1)  # no params limit
    (on_ray,) = run_benchmark(spec, tmp_path / "ray", RayExecutor())
    (local,) = run_benchmark(spec, tmp_path / "local", LocalExecutor())
    assert on_ray["status"] == local["status"] == "failed"
    assert on_ray["error"] == local["error"]
    assert on_ray["error"].startswith("ValueError: training-time method 'gmp'")


@pytest.mark.slow
def test_an_error_in_the_worker_outside_the_run_is_recorded_with_its_cause(ray_instance, tmp_path):
    plugin = tmp_path / "broken_in_workers.py"  # imports in the driver, raises in workers
    plugin.write_text(
        f"import os\nif os.getpid() != {os.getpid()}:\n    raise RuntimeError('no driver')\n"
    )
    spec = BenchSpec(("digits-mlp",), ("params=0.2",), ("uniform",), seeds=1, finetune_steps=0)
    (record,) = run_benchmark(spec, tmp_path / "bench", RayExecutor(imports=[str(plugin)]))
    assert record["status"] == "failed"
    assert record["error"] == "run lost: RuntimeError in the worker: no driver"


@pytest.mark.slow
def test_an_interrupted_ray_benchmark_resumes_without_losing_or_repeating_runs(
    ray_instance, tmp_path, monkeypatch
):
    methods = ("random", "uniform", "global-magnitude")
    spec = BenchSpec(("digits-mlp",), ("params=0.2",), methods, seeds=2, finetune_steps=0)
    out = tmp_path / "bench"
    append = RecordStore.append

    def interrupted_after_two(store, record):
        append(store, record)
        if len(store.read()) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the driver, between two records

    monkeypatch.setattr(RecordStore, "append", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(spec, out, RayExecutor())
    monkeypatch.setattr(RecordStore, "append", append)
    assert len(RecordStore(out).read()) == 2  # the cancelled runs wrote nothing
    records = run_benchmark(spec, out, RayExecutor())
    assert len(records) == 6 and all(record["status"] == "ok" for record in records)
    assert len(_records(out)) == 6  # each run once: the first two were not run again
    local = tmp_path / "local"
    run_benchmark(spec, local, LocalExecutor())
    assert _records(out) == _records(local)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_train_seeds_writes_each_seed_and_their_mean(executor, request, tmp_path):
    if executor == "ray":
        request.getfixturevalue("ray_instance")
    out = tmp_path / "train"
    args = ["train", "--task", "digits-mlp", "--budget", "params=0.5", "--timesteps", "64"]
    args += ["--finetune-steps", "10", "--seeds", "0,1", "--executor", executor]
    assert main([*args, "--out", str(out)]) == 0
    rows = json.loads((out / "results.json").read_text())
    for seed in (0, 1):
        own = json.loads((out / f"seed-{seed}" / "results.json").read_text())
        assert [row | {"seed": seed} for row in own] == [r for r in rows if r["seed"] == seed]
        assert json.loads((out / f"seed-{seed}" / "run.json").read_text())["seed"] == seed
    learned = [row["test_accuracy"] for row in rows if row["policy"] == "learned (ppo-lag)"]
    mean = sum(learned) / 2
    spread = abs(learned[0] - learned[1]) / 2**0.5  # the sample std of two values
    summary = (out / "summary.md").read_text()
    assert "| learned (ppo-lag) | 2 | " in summary
    assert f"{mean:.4f} ± {spread:.4f}" in summary


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--suite", "smoke", "--executor", "ray", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert "pip install 'prune-gym[ray]'" in message
    assert not (tmp_path / "records.jsonl").exists()


def test_ray_only_options_are_refused_for_the_local_executor():
    with pytest.raises(ValueError, match=r"address.*--executor ray"):
        make_executor("local", address="auto")
    with pytest.raises(ValueError, match="executor 'dask' is not one of"):
        make_executor("dask")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "--suite", "smoke", "--gpus-per-run", "1"], "add --device cuda"),
        (["train", "--executor", "ray"], "give --seeds"),
        (["train", "--seed", "3", "--seeds", "0,1"], "not both"),
        (["train", "--seeds", "0,0"], "distinct seeds"),
    ],
)
def test_inconsistent_placement_flags_exit_with_a_message(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
