"""The output folder of ``prune-gym bench``: nothing hidden, nothing torn, errors in one line.

A bench reports the runs it was asked for, failures included; one bench at a time holds a
folder; readers never see a half-written report; an unusable folder is refused before
any run (exit 2) and an I/O error while writing gives exit 74, never a traceback.
"""

import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from fs_helpers import read_only
from test_bench_records import BASE, bench

from prune_gym.bench import RecordStore
from prune_gym.bench import runner as bench_runner
from prune_gym.bench.report import write_tables
from prune_gym.cli import main


def bench_exit(out, *extra: str) -> int:
    """``bench``'s exit code, whether it returns it or exits with it."""
    try:
        return bench(out, *extra)
    except SystemExit as exit_info:
        return exit_info.code


def stderr_lines(capsys) -> list[str]:
    """The lines the command printed to stderr (progress bars included), no traceback."""
    printed = capsys.readouterr().err
    assert "Traceback" not in printed, printed
    return printed.strip().splitlines()


# item 1: a failure under the settings asked for is never hidden -----------------------------
def test_a_failed_rerun_is_reported_even_after_a_success_under_other_settings(
    tmp_path, executions, monkeypatch, capsys
):
    original = bench_runner.BenchmarkRunner.execute

    def fails_with_3_steps(self, run):
        if run.settings["finetune_steps"] == 3:
            raise RuntimeError("planted failure")
        return original(self, run)

    monkeypatch.setattr(bench_runner.BenchmarkRunner, "execute", fails_with_3_steps)
    assert bench(tmp_path) == 0
    capsys.readouterr()
    assert bench(tmp_path, "--finetune-steps", "3") == 1  # the same cell, other settings
    assert "1 runs, 1 failed" in capsys.readouterr().out
    (record,) = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["settings"]["finetune_steps"] == 3
    summary = (tmp_path / "summary.md").read_text()
    assert "## Failed runs (1)" in summary and "planted failure" in summary
    assert "## digits-mlp" not in summary  # no table: the old result is not this one
    assert not list(tmp_path.glob("*.png"))  # nor a plot of it
    assert len(RecordStore(tmp_path).read()) == 2  # the folder keeps both

    assert bench(tmp_path) == 0  # asked again for the settings that work: reused, no failure
    assert "1 runs, 0 failed" in capsys.readouterr().out
    assert "Failed runs" not in (tmp_path / "summary.md").read_text()
    assert executions == [("uniform", 0, 0)]  # the run that worked ran once
    assert len(RecordStore(tmp_path).read()) == 2


# item 6: one bench per folder, no torn file ---------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import pathlib, sys, time
    import torch
    torch.set_num_threads(1)
    from prune_gym.bench import runner
    from prune_gym.cli import main

    started, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    execute = runner.BenchmarkRunner.execute

    def held(self, run):
        started.touch()
        while not go.exists():
            time.sleep(0.05)
        return execute(self, run)

    runner.BenchmarkRunner.execute = held
    sys.exit(main(sys.argv[3:]))
    """
)


@pytest.mark.slow
def test_a_second_bench_on_a_busy_folder_is_refused_naming_the_holder(tmp_path, executions, capsys):
    out, started, go = tmp_path / "out", tmp_path / "started", tmp_path / "go"
    args = [*BASE, "--methods", "uniform", "--seeds", "1", "--out", str(out)]
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(started), str(go), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not started.exists():  # the first bench is in its run, holding the folder
            assert first.poll() is None and time.monotonic() < deadline, "the first bench failed"
            time.sleep(0.05)
        assert bench_exit(out) == 2
        (message,) = stderr_lines(capsys)  # refused before any run: no progress bar
        assert f"pid {first.pid} on {socket.gethostname()}" in message
        assert executions == []
    finally:
        go.touch()
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert bench(out) == 0 and executions == []  # the first bench's run is reused
    assert len(RecordStore(out).read()) == 1  # each run once


def test_concurrent_report_writers_never_show_a_reader_a_torn_file(tmp_path):
    versions = [
        [{"task": "t", "run_key": str(n), "ratios": {}, "note": "x" * 1000} for n in range(size)]
        for size in (200, 300)
    ]
    errors: list[BaseException] = []

    def write(records):
        try:
            for _ in range(30):
                write_tables(records, tmp_path)
        except Exception as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(records,)) for records in versions]
    for writer in writers:
        writer.start()
    seen, torn = set(), 0
    while any(writer.is_alive() for writer in writers):
        try:
            seen.add(len(json.loads((tmp_path / "results.json").read_text())))
        except FileNotFoundError:
            continue
        except json.JSONDecodeError:
            torn += 1
    for writer in writers:
        writer.join()
    assert errors == [] and torn == 0
    assert seen <= {200, 300}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.csv", "results.json"]


# item 8: an unusable folder is refused before any run; I/O errors exit 74 -------------------
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("a-file", "is a file, not a folder"),
        ("under-a-file", "Not a directory"),
        ("records-is-a-folder", "records.jsonl is not a regular file"),
        ("records-is-a-device", "records.jsonl is not a regular file"),
        ("report-is-a-folder", "results.csv is a folder"),
    ],
)
def test_an_unusable_out_is_refused_before_any_run(tmp_path, executions, capsys, case, expected):
    out = tmp_path / "out"
    if case == "a-file":
        out.write_text("notes")
    elif case == "under-a-file":
        (tmp_path / "notes").write_text("notes")
        out = tmp_path / "notes" / "out"
    elif case == "records-is-a-folder":
        (out / "records.jsonl").mkdir(parents=True)
    elif case == "records-is-a-device":  # reads without bound: must not be read
        out.mkdir()
        (out / "records.jsonl").symlink_to("/dev/full")
    else:
        (out / "results.csv").mkdir(parents=True)
    assert bench_exit(out) == 2
    (message,) = stderr_lines(capsys)  # refused before any run: no progress bar
    assert message.startswith("prune-gym bench: error: ") and expected in message
    assert executions == []


def test_a_read_only_out_is_refused_before_any_run(shared_tmp, executions, capsys):
    out = shared_tmp / "out"
    out.mkdir()
    with read_only(out):
        code = bench_exit(out)
    assert code == 2
    (message,) = stderr_lines(capsys)
    assert str(out) in message and "cannot be written" in message
    assert executions == [] and list(out.iterdir()) == []


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(name)``: from then on, fsync of a file whose path holds ``name`` fails
    with ENOSPC, as on a full disk (the data written is not known to be on disk)."""

    def fill(name: str) -> None:
        fsync = os.fsync

        def full(fd: int) -> None:
            if name in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            fsync(fd)

        monkeypatch.setattr(os, "fsync", full)

    return fill


@pytest.mark.parametrize("name", ["records.jsonl", "results.json"])
def test_a_full_disk_exits_74_in_one_line_leaving_no_temporary_file(
    tmp_path, executions, disk_full, capsys, name
):
    disk_full(name)
    assert bench_exit(tmp_path) == 74
    message = stderr_lines(capsys)[-1]  # after the progress bar
    assert message.startswith("prune-gym bench: I/O error: ")
    assert "No space left on device" in message and str(tmp_path / name) in message
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]
    assert len(executions) == 1


def test_the_exit_codes_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for code in ("1: a run failed", "2: a usage error", "74: an I/O error"):
        assert code in text


def test_write_atomically_replaces_whole_or_leaves_the_old_file(tmp_path, monkeypatch):
    from prune_gym.files import write_atomically

    target = tmp_path / "report.txt"
    write_atomically(target, "first")
    write_atomically(target, b"second")
    assert target.read_text() == "second" and oct(target.stat().st_mode & 0o777) == "0o644"

    def full(_descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"report\.txt"):
        write_atomically(target, "third")
    assert target.read_text() == "second"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]  # no temporary file left
