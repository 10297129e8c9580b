"""The records of a benchmark folder: one JSON line per finished run, appended, never rewritten.

``records.jsonl`` is the only file a benchmark's results live in; ``results.csv``,
``results.json``, ``summary.md`` and the plots are rebuilt from it. Each record is written
with a single append, flushed and fsynced, so a kill can at worst tear the line being
written: readers skip a damaged line with a warning naming the file and line, and keep
the rest. One benchmark at a time writes a folder: it holds the folder's lock
(``RecordStore.lock``), and the holder's pid and host are in ``.bench.holder`` meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from prune_gym.files import naming, write_atomically

RECORDS_FILE = "records.jsonl"
#: fields without which a line is not a record.
REQUIRED_FIELDS = ("run_key", "status", "task", "budget", "method", "seed", "kind")
#: the lock held by the benchmark writing a folder, and who that is (JSON: pid, host, since).
LOCK_FILE, HOLDER_FILE = ".bench.lock", ".bench.holder"
#: (thread, folder) of every folder lock this process holds: nested holds pass through.
_HELD: set[tuple[int, str]] = set()


class RecordStore:
    """Append-only JSON-lines records of the finished runs in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RECORDS_FILE

    def read(self) -> list[dict[str, Any]]:
        """Every intact record in file order; each damaged line is skipped with a warning."""
        if not self._present():
            return []
        records, damaged = [], []
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    missing = [f for f in REQUIRED_FIELDS if f not in record]
                    if missing:
                        raise ValueError(f"no {', '.join(missing)}")
                except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
                    damaged.append(f"line {number} ({type(error).__name__}: {error})")
                    continue
                records.append(record)
        if damaged:
            warnings.warn(
                f"{self.path} has {len(damaged)} damaged line(s), skipped: {'; '.join(damaged)}. "
                f"The other {len(records)} records are kept; a skipped run is run again.",
                stacklevel=2,
            )
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one record as one line, on disk (fsynced) before this returns."""
        line = (json.dumps(record, default=_plain) + "\n").encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        with naming(self.path), self.path.open("a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a torn last line: start ours on a new one
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def check(self) -> None:
        """Raise ``ValueError`` unless the records file, if there is one, is a regular file
        this process can append to (checked before any run, not after the first)."""
        if not self._present():
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
        except OSError as error:
            raise ValueError(
                f"{self.path} cannot be appended to ({error.strerror}); give another folder"
            ) from error

    def _present(self) -> bool:
        """Whether the records file exists; ``ValueError`` if it is not a regular file
        (a folder, or a device such as ``/dev/full``, which reads without end)."""
        if not os.path.lexists(self.path):
            return False
        if not self.path.is_file():
            raise ValueError(
                f"{self.path} is not a regular file; it must hold the folder's records: move "
                "it away or give another folder"
            )
        return True

    @contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[RecordStore]:
        """Hold the folder for one benchmark (made if missing) while the block runs.

        Raises ``ValueError`` if the folder cannot be made or written, or if another
        benchmark holds it ``wait`` seconds on (the message names its pid and host): a
        benchmark is refused at once, a brief read or append of records shared by many
        runs waits its turn. Nested holds in one thread pass through (the CLI holds the
        folder around ``run_benchmark``).
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ValueError(f"benchmark folder {self.folder} is a file, not a folder") from None
        except OSError as error:
            raise self._unwritable(error) from error
        held = (threading.get_ident(), os.path.realpath(self.folder))
        if held in _HELD:
            yield self
            return
        lock = FileLock(self.folder / LOCK_FILE)
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise ValueError(
                f"benchmark folder {self.folder} is in use by another benchmark "
                f"({self._holder()}); wait for it to end, or give another folder"
            ) from None
        except OSError as error:
            raise self._unwritable(error) from error
        holder = self.folder / HOLDER_FILE
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S")
            who = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
            write_atomically(holder, json.dumps(who))
            _HELD.add(held)
            yield self
        finally:
            _HELD.discard(held)
            try:
                holder.unlink(missing_ok=True)
            finally:
                lock.release()

    def _unwritable(self, error: OSError) -> ValueError:
        return ValueError(
            f"benchmark folder {self.folder} cannot be written ({error.strerror}); give a "
            "folder this process can create and write"
        )

    def _holder(self) -> str:
        """``pid 12 on host, since 2025-01-31 12:00:00``: the folder's holder, if known."""
        try:
            who = json.loads((self.folder / HOLDER_FILE).read_text())
            return f"pid {who['pid']} on {who['host']}, since {who['since']}"
        except (OSError, ValueError, TypeError, KeyError):
            return "its pid and host are not known yet"


def latest_records(
    records: Iterable[dict[str, Any]], keys: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """One record per run key (of ``keys``; default every key): its last successful
    record, else its last failed one. A failure under some settings is never hidden by a
    success under others: those are other keys."""
    ok: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for record in records:
        if keys is None or record["run_key"] in keys:
            (ok if record["status"] == "ok" else failed)[record["run_key"]] = record
    return list(ok.values()) + [record for key, record in failed.items() if key not in ok]


def _plain(value: Any) -> Any:
    """JSON form of numpy scalars and arrays in a record."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"record value {value!r} of type {type(value).__name__} is not JSON")
