"""Shared pytest fixtures."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from prune_gym.bench import runner as bench_runner
from prune_gym.tasks import task as task_module

# Two threads on a two-core machine shared with other processes make small models
# many times slower (threads wait on each other); one thread gives the same numbers.
# The cores are used by running the tests in several processes (pytest-xdist, ``-n`` in
# pyproject.toml), each at one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _prune_gym_cache(tmp_path_factory):
    """Point $PRUNE_GYM_CACHE at one temporary folder for the whole run (never the user's).

    Under pytest-xdist every worker of the run shares it (the folder above the workers'
    own temporary folders): the cache's file lock makes the first worker that needs a
    task's weights train them and the others wait and load them, so each is trained once.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "prune_gym_cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("prune_gym_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNE_GYM_CACHE", str(folder))
        yield


@pytest.fixture(scope="session")
def smoke_output(tmp_path_factory):
    """The smoke suite run once through the CLI, as CI users run it: (folder, exit code)."""
    from prune_gym.cli import main

    out = tmp_path_factory.mktemp("smoke")
    code = main(["bench", "--suite", "smoke", "--out", str(out)])
    return out, code


@pytest.fixture
def executions(monkeypatch):
    """The runs executed (not reused) from now on, as (method, seed, finetune_steps)."""
    executed = []
    original = bench_runner.BenchmarkRunner.execute

    def counting(self, run):
        executed.append((run.method, run.seed, run.settings.get("finetune_steps", 0)))
        return original(self, run)

    monkeypatch.setattr(bench_runner.BenchmarkRunner, "execute", counting)
    return executed


@pytest.fixture
def shared_tmp():
    """A temporary folder every user may enter (pytest's are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="prune-gym-readonly-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def trainings(monkeypatch) -> list[int]:
    """Counts the calls of ``train_dense`` made by ``Task.pretrained_model``."""
    calls: list[int] = []
    original = task_module.train_dense
    monkeypatch.setattr(
        task_module, "train_dense", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    return calls
