"""Helpers shared by test modules: an unwritable folder, made real even for root."""

import os
from contextlib import contextmanager
from pathlib import Path

#: the uid a root test runs as while a folder must be unwritable (``nobody``).
NOBODY = 65534


@contextmanager
def read_only(folder: Path):
    """``folder`` and every folder in it unwritable to this process while the block runs."""
    folders = [folder, *(path for path in folder.rglob("*") if path.is_dir())]
    for path in folders:
        path.chmod(0o555)
    try:
        if os.geteuid() == 0:
            os.seteuid(NOBODY)
            try:
                yield
            finally:
                os.seteuid(0)
        else:
            yield
    finally:
        for path in folders:
            path.chmod(0o755)
