"""User modules that register tasks, metrics and envs: imported once per process.

The CLI's ``--import`` runs them in the driver; ``prune_gym.executors`` runs them again in
every worker process before its first job, so a worker can resolve the same names.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

#: ``.py`` files already run in this process (a second run would register twice).
_LOADED_FILES: set[Path] = set()


def resolved(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` with ``.py`` paths made absolute, for a worker whose directory differs."""
    return tuple(str(Path(name).resolve()) if name.endswith(".py") else name for name in names)


def import_modules(names: Sequence[str]) -> None:
    """Import each module (a dotted name or a ``.py`` path) so it can register, once.

    A user's tasks, metrics and envs exist once the module that registers them has run.
    Dotted names are looked up from the current directory too, as ``python -m`` does.
    ``ValueError`` naming the module if it cannot be found; errors inside it propagate.
    """
    for name in names:
        if name.endswith(".py"):
            _run_file(Path(name))
            continue
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or not (name == error.name or name.startswith(error.name + ".")):
                raise  # the module exists but imports something missing: show where
            raise ValueError(
                f"--import {name!r}: no such module ({error}); give a module importable from "
                "the current directory or a path to a .py file"
            ) from error


def _run_file(path: Path) -> None:
    """Run the ``.py`` file at ``path`` as a module named after it, unless already run."""
    if not path.is_file():
        raise ValueError(f"--import {str(path)!r}: no such file")
    if path.resolve() in _LOADED_FILES:
        return
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    _LOADED_FILES.add(path.resolve())
