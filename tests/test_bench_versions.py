"""A benchmark never reuses a record across a changed model or package version, and says
which versions its records were made with."""

import csv

import torch
from torch import nn
from toy_tasks import blobs_task

import prune_gym
from prune_gym.bench import BenchSpec, RecordStore, latest_records, run_benchmark, write_report
from prune_gym.tasks import register_task

SPEC = BenchSpec(
    tasks=("blobs-activation",),
    budgets=("params=0.5",),
    methods=("uniform",),
    seeds=1,
    finetune_steps=0,
)


def register_blobs(activation) -> None:
    """``blobs-activation``: blobs_task's MLP with ``activation`` (its repr is the same)."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 3)

        def forward(self, x):
            return self.fc2(activation(self.fc1(x)))

    def factory(seed: int = 0):
        task = blobs_task(seed)
        task._build_model = Model
        return task

    register_task("blobs-activation", factory, overwrite=True)


def test_a_changed_forward_runs_again(tmp_path):
    register_blobs(torch.relu)
    run_benchmark(SPEC, tmp_path)
    register_blobs(torch.tanh)
    run_benchmark(SPEC, tmp_path)
    stored = RecordStore(tmp_path).read()
    assert len(stored) == 2  # the tanh model ran, not reused from the relu one
    assert len({r["settings"]["task_definition"] for r in stored}) == 2


def test_reports_show_the_version_of_each_record(tmp_path, monkeypatch):
    register_blobs(torch.relu)
    run_benchmark(SPEC, tmp_path)
    installed = prune_gym.__version__
    monkeypatch.setattr(prune_gym, "__version__", "0.0.1")
    run_benchmark(SPEC, tmp_path)
    summary = write_report(latest_records(RecordStore(tmp_path).read()), tmp_path)
    assert f"prune-gym version of the records: 0.0.1 (1 runs), {installed} (1 runs)." in summary
    with (tmp_path / "results.csv").open() as handle:
        assert sorted(row["version"] for row in csv.DictReader(handle)) == ["0.0.1", installed]
