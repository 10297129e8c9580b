"""Benchmark records: nothing lost, nothing reused across settings, interrupts survived."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest

import prune_gym
from prune_gym.bench import BenchSpec, RecordStore, planning, run_benchmark, run_keys
from prune_gym.cli import main

BASE = ["bench", "--task", "digits-mlp", "--budgets", "params=0.3", "--finetune-steps", "0"]


def bench(out, *extra: str) -> int:
    """``prune-gym bench`` on digits-mlp at params 0.3 into ``out`` (uniform, 1 seed by default)."""
    args = [*BASE, "--methods", "uniform", "--seeds", "1", *extra, "--out", str(out)]
    # argparse keeps the last of a repeated option, so ``extra`` overrides the defaults
    return main(args)


def results(out) -> list[dict]:
    return json.loads((out / "results.json").read_text())


def test_a_narrower_rerun_keeps_every_finished_record(tmp_path, executions):
    assert bench(tmp_path, "--methods", "uniform,global-magnitude", "--seeds", "2") == 0
    assert len(executions) == 4
    assert bench(tmp_path, "--methods", "uniform,snip", "--seeds", "1") == 0
    assert executions[4:] == [("snip", 0, 0)]  # only the new run ran
    assert len(RecordStore(tmp_path).read()) == 5  # and nothing was deleted
    assert {record["method"] for record in results(tmp_path)} == {"uniform", "snip"}  # asked
    methods = {"global-magnitude", "uniform", "snip"}
    assert bench(tmp_path, "--methods", ",".join(methods), "--seeds", "2") == 0
    assert executions[5:] == [("snip", 1, 0)]
    assert len(results(tmp_path)) == 6 and len(RecordStore(tmp_path).read()) == 6
    assert {record["method"] for record in results(tmp_path)} == methods
    lines = (tmp_path / "summary.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| method")]
    assert {row.split("|")[1].strip(" *") for row in rows} == methods  # the report has them all


@pytest.mark.parametrize(
    "change",
    [
        ["--finetune-steps", "3"],
        ["--max-ratio", "0.95"],
        ["--structure", "channel"],
        ["--env", "prune_gym/LayerRatio-v0"],
    ],
    ids=lambda change: change[0],
)
def test_a_run_is_reused_only_under_the_same_settings(tmp_path, executions, change):
    assert bench(tmp_path) == 0
    assert bench(tmp_path, *change) == 0
    assert len(executions) == 2  # the changed settings ran anew
    assert bench(tmp_path) == 0 and bench(tmp_path, *change) == 0
    assert len(executions) == 2  # and each is reused under its own settings
    records = RecordStore(tmp_path).read()
    assert len(records) == 2
    assert records[0]["run_key"] != records[1]["run_key"]
    (reported,) = results(tmp_path)  # the report: the run asked for, under its settings
    assert reported["run_key"] == records[1]["run_key"]


def test_method_options_and_the_package_version_are_part_of_the_key(
    tmp_path, executions, monkeypatch
):
    def spec(epochs: int) -> BenchSpec:
        return BenchSpec(
            tasks=("digits-mlp",),
            budgets=("params=0.3",),
            methods=("gmp",),
            seeds=1,
            method_overrides={"gmp": {"epochs": epochs}},
        )

    run_benchmark(spec(1), tmp_path)
    run_benchmark(spec(1), tmp_path)
    assert len(executions) == 1
    (record,) = run_benchmark(spec(2), tmp_path)  # the records of the runs asked for
    assert len(executions) == 2 and record["settings"]["method_options"] == {"epochs": 2}
    installed = prune_gym.__version__
    monkeypatch.setattr(prune_gym, "__version__", "99.0")
    run_benchmark(spec(1), tmp_path)
    assert len(executions) == 3  # another version: nothing reused
    versions = [r["settings"]["version"] for r in RecordStore(tmp_path).read()]
    assert versions == [installed, installed, "99.0"]


def test_a_changed_policy_file_is_not_reused(tmp_path):
    spec = BenchSpec(tasks=("digits-mlp",), budgets=("params=0.3",), methods=("uniform",))
    policy = tmp_path / "policy.zip"
    policy.write_bytes(b"first")
    first = planning.run_settings(spec, f"policy:{policy}", "learned")
    policy.write_bytes(b"retrained")
    second = planning.run_settings(spec, f"policy:{policy}", "learned")
    assert first["policy_sha256"] != second["policy_sha256"]
    assert first["policy_algorithm"] == "ppo"
    with pytest.raises(FileNotFoundError, match=r"nope\.zip"):
        planning.run_settings(spec, "policy:nope.zip", "learned")


def test_damaged_lines_are_skipped_with_a_warning_naming_the_file(tmp_path, executions):
    assert bench(tmp_path, "--methods", "uniform,global-magnitude,snip") == 0
    store = RecordStore(tmp_path)
    lines = store.path.read_bytes().splitlines(keepends=True)
    torn = lines[2][: len(lines[2]) // 2]  # the last record, cut mid-write
    store.path.write_bytes(lines[0] + b"not json\n" + lines[1] + torn)
    with pytest.warns(UserWarning, match=r"records\.jsonl has 2 damaged line.*line 2.*line 4"):
        assert [r["method"] for r in store.read()] == ["uniform", "global-magnitude"]
    with pytest.warns(UserWarning, match="damaged"):
        assert bench(tmp_path, "--methods", "uniform,global-magnitude,snip") == 0
    assert executions[3:] == [("snip", 0, 0)]  # only the torn run ran again
    with pytest.warns(UserWarning, match="damaged"):
        methods = [r["method"] for r in store.read()]
    assert methods == ["uniform", "global-magnitude", "snip"]  # appended on a fresh line


def test_a_folder_from_an_older_version_is_refused_untouched(tmp_path, capsys):
    legacy = tmp_path / "results.json"
    legacy.write_text('[{"task": "digits-mlp"}]')
    with pytest.raises(SystemExit) as exit_info:
        bench(tmp_path)
    assert exit_info.value.code == 2
    assert "older prune-gym" in capsys.readouterr().err
    assert legacy.read_text() == '[{"task": "digits-mlp"}]'
    assert not (tmp_path / "records.jsonl").exists()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from prune_gym.bench import runner, store
    from prune_gym.cli import main

    signal_name, at, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    calls = []

    def strike(record_file=None):
        calls.append(1)
        if len(calls) == at:
            if record_file is not None:  # tear the record being written
                with record_file.open("ab") as handle:
                    handle.write(b'{"run_key": "to')
            os.kill(os.getpid(), getattr(signal, signal_name))

    if where == "run":
        execute = runner.BenchmarkRunner.execute
        runner.BenchmarkRunner.execute = lambda self, run: strike() or execute(self, run)
    else:
        append = store.RecordStore.append
        store.RecordStore.append = lambda self, r: strike(self.path) or append(self, r)
    sys.exit(main(sys.argv[4:]))
    """
)
GRID = ["--methods", "uniform,global-magnitude,random", "--seeds", "2", "--finetune-steps", "5"]


def comparable(records: list[dict]) -> dict:
    """Records by run key without what legitimately differs between runs (timing)."""
    return {
        r["run_key"]: {k: v for k, v in r.items() if k not in ("wall_time", "traceback")}
        for r in records
    }


@pytest.mark.slow
def test_interrupted_benchmarks_resume_to_the_uninterrupted_numbers(tmp_path, executions):
    out = tmp_path / "interrupted"
    args = [*BASE, *GRID, "--out", str(out)]

    def interrupt(signal_name: str, at: int, where: str) -> subprocess.CompletedProcess:
        script = [sys.executable, "-c", KILLER, signal_name, str(at), where, *args]
        return subprocess.run(script, capture_output=True, text=True, timeout=300, check=False)

    stopped = interrupt("SIGINT", 2, "run")  # Ctrl-C during the second run
    assert stopped.returncode == 130, stopped.stderr
    assert "interrupted. 1 finished runs are kept" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert len(RecordStore(out).read()) == 1
    assert interrupt("SIGKILL", 3, "run").returncode == -9  # killed during a run
    assert len(RecordStore(out).read()) == 3
    assert interrupt("SIGKILL", 2, "write").returncode == -9  # killed mid-write
    with pytest.warns(UserWarning, match="1 damaged line"):
        assert len(RecordStore(out).read()) == 4

    with pytest.warns(UserWarning, match="damaged"):  # narrower, then wider and changed
        assert main([*BASE, *GRID, "--seeds", "1", "--out", str(out)]) == 0
        assert main([*BASE, *GRID, "--methods", "uniform,snip", "--out", str(out)]) == 0
        assert main([*BASE, *GRID, "--finetune-steps", "7", "--out", str(out)]) == 0
        assert main(args) == 0
    new_runs = [run for run in executions if run[2] == 5 and run[0] != "snip"]
    assert len(new_runs) == 6 - 4  # only the two runs never finished were run here
    assert sum(run[2] == 7 for run in executions) == 6  # changed settings: all anew

    reference = tmp_path / "uninterrupted"
    assert main([*BASE, *GRID, "--out", str(reference)]) == 0
    with pytest.warns(UserWarning, match="damaged"):
        resumed = comparable(RecordStore(out).read())
    expected = comparable(RecordStore(reference).read())
    assert len(resumed) == 6 + 2 + 6  # the grid, snip's two seeds, the changed settings
    assert {key: resumed[key] for key in expected} == expected  # same keys, same numbers
    with pytest.warns(UserWarning, match="damaged"):
        assert main(args) == 0
    assert len(results(out)) == 6  # the runs asked for reported; the folder keeps all 14


def test_run_keys_tell_apart_specs_that_share_a_folder():
    short = BenchSpec(tasks=("digits-mlp",), budgets=("params=0.2",), methods=("uniform",), seeds=2)
    longer = dataclasses.replace(short, finetune_steps=(100,))
    assert len(run_keys(short)) == 2 and run_keys(short) == run_keys(short)  # one per seed
    assert run_keys(short).isdisjoint(run_keys(longer))


def test_best_on_val_breaks_ties_without_the_random_policies_or_the_rows_order():
    from prune_gym.bench.report import best_on_val

    def row(val, feasible=1.0):
        return {"val_accuracy": (val, 0.0), "feasible": feasible}

    rows = {"random": row(1.0), "uniform": row(1.0), "erk": row(1.0), "snip": row(0.9)}
    assert best_on_val(rows) == "erk"  # tied with random and uniform: first by name
    assert best_on_val(dict(reversed(rows.items()))) == "erk"  # whatever the order
    assert best_on_val({"random-weights": row(0.8), "snip [a=1]": row(0.8)}) == "snip [a=1]"
    assert best_on_val({"random": row(0.95), "erk": row(0.9)}) == "random"  # alone best
    assert best_on_val({"erk": row(0.99, feasible=0.5), "random": row(0.9)}) == "random"
    assert best_on_val({"erk": row(0.99, feasible=0.5)}) is None
