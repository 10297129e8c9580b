"""Files written whole or not at all, for every module (tasks' weights cache, bench reports).

``write_atomically`` writes a unique temporary file beside its target, fsyncs it and renames
it into place: a reader sees the old file or the new one, never a part of either, even
while other processes write the same path; a failed write leaves no temporary file and
the old file untouched, and its ``OSError`` names the file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def write_atomically(path: Path, data: bytes | str) -> None:
    """Replace ``path`` by ``data`` (text is UTF-8 encoded) in one rename; mode 0644."""
    path = Path(path)
    with naming(path):
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data.encode() if isinstance(data, str) else data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.remove(temporary)
            raise


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """Make an ``OSError`` raised in the block name ``path`` if it names no file (a failed
    write through an open file does not): ``[Errno 28] No space left on device: 'path'``."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
