"""The records of a benchmark folder: one JSON line per finished run, appended, never rewritten.

``records.jsonl`` is the only file a benchmark's results live in; ``results.csv``,
``results.json``, ``summary.md`` and the plots are rebuilt from it. Each record is written
with a single append, flushed and fsynced, so a kill can at worst tear the line being
written: readers skip a damaged line with a warning naming the file and line, and keep
the rest.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RECORDS_FILE = "records.jsonl"
#: fields without which a line is not a record.
REQUIRED_FIELDS = ("run_key", "status", "task", "budget", "method", "seed", "kind")


class RecordStore:
    """Append-only JSON-lines records of the finished runs in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RECORDS_FILE

    def read(self) -> list[dict[str, Any]]:
        """Every intact record in file order; each damaged line is skipped with a warning."""
        if not self.path.exists():
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
        with self.path.open("a+b") as handle:
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a torn last line: start ours on a new one
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per run key: its last successful record, else its last failed one.

    A failure is also dropped once the same cell (task, budget, method, seed) has
    succeeded under any settings, so a fixed problem stops being reported as failing.
    """
    ok: dict[str, dict[str, Any]] = {}
    failed: dict[str, dict[str, Any]] = {}
    for record in records:
        (ok if record["status"] == "ok" else failed)[record["run_key"]] = record
    succeeded = {cell(record) for record in ok.values()}
    still_failing = [
        record for key, record in failed.items() if key not in ok and cell(record) not in succeeded
    ]
    return list(ok.values()) + still_failing


def cell(record: dict[str, Any]) -> tuple[str, str, str, int]:
    """The grid cell a record belongs to: ``(task, budget, method, seed)``."""
    return record["task"], record["budget"], record["method"], record["seed"]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _plain(value: Any) -> Any:
    """JSON form of numpy scalars and arrays in a record."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"record value {value!r} of type {type(value).__name__} is not JSON")
