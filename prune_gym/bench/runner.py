"""Run a benchmark: every (task, budget, method, seed) whose result the folder lacks.

``plan`` lists the runs of a spec and keys them (``prune_gym.bench.plan``); each one is
executed where it runs (``prune_gym.bench.execute``) and appended to the folder's
``records.jsonl`` (``RecordStore``) under a key that hashes every setting that changes
its result, so a re-run reuses exactly the runs it would otherwise repeat, whatever grid
it asks for, and never deletes one. Runs execute here, one after another, or on a Ray
cluster (``prune_gym.executors``); either way this process (the driver) writes every
record.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from prune_gym.bench.execute import BenchmarkRunner, execute_run, failure, lost, runner_for
from prune_gym.bench.planning import Run, plan
from prune_gym.bench.report import REPORT_FILES
from prune_gym.bench.spec import BenchSpec
from prune_gym.bench.store import RecordStore, latest_records
from prune_gym.executors import Executor, LocalExecutor


@contextmanager
def hold_folder(out_dir: Path) -> Iterator[RecordStore]:
    """The record store of ``out_dir``, held for one benchmark while the block runs.

    Checks the folder before any run: ``ValueError`` for a folder written by an older
    prune-gym, a report path that is a folder, a folder that cannot be made or written, a
    records file that is not a regular file or cannot be appended to, and a folder
    another benchmark holds (``RecordStore.lock``, reentrant in this thread).
    """
    store = RecordStore(out_dir)
    legacy = out_dir / "results.json"
    if legacy.exists() and not store.path.exists():
        raise ValueError(
            f"{legacy} exists but {store.path.name} does not: the folder was written by an "
            "older prune-gym whose runs cannot be matched to their settings. Nothing was "
            "changed; use a new --out folder."
        )
    for name in REPORT_FILES:
        if (out_dir / name).is_dir() and not (out_dir / name).is_symlink():
            raise ValueError(
                f"{out_dir / name} is a folder; the report {name} is written there: move it "
                "away or give another folder"
            )
    with store.lock():
        store.check()
        yield store


def run_keys(spec: BenchSpec) -> set[str]:
    """The keys of every run of ``spec``: pick its records out of a folder shared with
    other benchmarks (the records ``run_benchmark`` returns)."""
    runner = BenchmarkRunner(spec)
    return {runner.identify(run)["run_key"] for run in plan(spec)}


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_benchmark``; ``records``: the latest records of the benchmark's
    runs finished by then (in this or earlier benchmarks), for a report."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self.records = records


def run_benchmark(
    spec: BenchSpec, out_dir: str | Path, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """Run every run of ``spec`` whose key is not finished in ``out_dir``; return its records.

    The folder is held (``hold_folder``: checked first; another benchmark on it is
    refused) until this returns. Runs go to ``executor`` (default: one after another in
    this process); each record is appended here as its run finishes, with a progress bar
    over the runs to do. Returns the latest record of each run of ``spec``, reused or run
    now, and only those: a failure under these settings shows even where the same task,
    budget, method and seed succeeded under others. The folder keeps every record of
    every benchmark. A failed run is recorded (status ``failed`` with its error) and the
    rest go on; it is tried again by the next benchmark. An interrupt stops between two
    records, cancelling the runs in progress (every finished run is on disk), and raises
    ``BenchmarkInterrupted``. A spec that cannot be planned raises before the folder is
    touched.
    """
    runs = plan(spec)
    with hold_folder(Path(out_dir)) as store:
        return _run_missing(spec, runs, store, LocalExecutor() if executor is None else executor)


def _run_missing(
    spec: BenchSpec, runs: list[Run], store: RecordStore, executor: Executor
) -> list[dict[str, Any]]:
    """``run_benchmark``'s work on the ``runs`` of ``spec``, in the folder it holds."""
    finished = {r["run_key"] for r in store.read() if r["status"] == "ok"}
    benchmark = uuid.uuid4().hex
    runner = runner_for(spec, benchmark)
    keys: set[str] = set()  # of every run of spec: what it reports
    todo = []
    for run in runs:
        try:
            fields = runner.identify(run)
        except Exception as error:  # recorded and reported; the other runs go on
            failed = run.fields() | failure(error)
            store.append(failed)
            keys.add(failed["run_key"])
            continue
        keys.add(fields["run_key"])
        if fields["run_key"] not in finished:
            todo.append((run, fields))
    function = functools.partial(execute_run, spec, benchmark)
    progress = tqdm(total=len(todo), desc=f"benchmark ({executor.name})", unit="run")
    try:
        with progress, closing(executor.map_unordered(function, todo)) as outcomes:
            for outcome in outcomes:
                run, fields = outcome.job
                if outcome.error is None:
                    store.append(outcome.result)
                else:  # the executor lost it (its worker kept dying): recorded like a failure
                    store.append(fields | lost(outcome.error))
                progress.update()
                progress.set_postfix_str(f"{run.task} {run.budget} {run.method} seed {run.seed}")
    except KeyboardInterrupt as stop:
        raise BenchmarkInterrupted(latest_records(store.read(), keys)) from stop
    return latest_records(store.read(), keys)
