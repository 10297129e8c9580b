"""Dense weights stored on disk with a sha256 sidecar, verified before parsing, under a lock.

``<stem>.pt`` is a plain ``torch.save`` file (loadable with ``weights_only=True``);
``<stem>.json`` records its size and sha256, because PyTorch's zip reader does not checksum
tensor data: an edited byte would otherwise load silently. ``<stem>.lock`` makes concurrent
processes train once: the first trains and writes, the others wait and load. A cache this
process cannot write (a read-only share) is used without the lock: its verified weights
load, and anything it lacks is trained in memory, with a warning naming the folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from prune_gym.files import write_atomically

#: Bumped when the layout of a cached weights file or its sidecar changes.
CACHE_FORMAT = 2
#: What ``torch.load`` raises for a file that passed the digest check but does not parse.
_INCOMPATIBLE = (RuntimeError, ValueError, pickle.UnpicklingError)
#: Warnings name the caller of ``Task.pretrained_model`` (this, Task._load_or_train, it).
_STACKLEVEL = 4


class UnusableCacheError(Exception):
    """A cached weights file that must not be used; the message says why."""


def sidecar_path(path: Path) -> Path:
    """The JSON record of ``path``'s size and sha256."""
    return path.with_suffix(".json")


def load_or_train(
    path: Path,
    key: str,
    task: str,
    model: nn.Module,
    train: Callable[[], dict[str, torch.Tensor]],
) -> dict[str, torch.Tensor]:
    """The state dict cached at ``path`` for ``key``, else ``train()``'s, then stored there.

    Holds ``<stem>.lock`` throughout. An unusable file is reported with a warning naming
    it and replaced; a path that is not a regular file (a directory) is left alone and the
    trained weights are returned uncached, with a warning. Where the lock cannot be taken
    (the folder cannot be made or written), a verified file is loaded; else the weights
    are trained in memory and returned uncached, with a warning naming the folder.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        held = FileLock(path.with_suffix(".lock")).acquire()
    except OSError as error:  # e.g. a read-only share: use it, write nothing
        unusable = ""
        if path.is_file():
            try:
                return read_weights(path, key, model)
            except UnusableCacheError as reason:
                unusable = f"; {path} is unusable ({reason})"
        warnings.warn(
            f"pretrained cache folder {path.parent} cannot be written ({_describe(error)})"
            f"{unusable}; the weights are trained in memory and not cached",
            stacklevel=_STACKLEVEL,
        )
        return train()
    with held:
        if path.exists() and not path.is_file():
            warnings.warn(
                f"pretrained cache path {path} is not a regular file; retraining, and the "
                "weights are not cached",
                stacklevel=_STACKLEVEL,
            )
            return train()
        if path.exists():
            try:
                return read_weights(path, key, model)
            except UnusableCacheError as error:
                warnings.warn(
                    f"ignoring unusable pretrained cache file {path} ({error}); retraining",
                    stacklevel=_STACKLEVEL,
                )
        state = train()
        payload = {"format": CACHE_FORMAT, "key": key, "task": task, "state_dict": state}
        try:
            write_weights(path, payload)
        except OSError as error:
            warnings.warn(
                f"could not write pretrained cache file {path} ({_describe(error)}); the "
                "trained weights are not cached",
                stacklevel=_STACKLEVEL,
            )
        return state


def read_weights(path: Path, key: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict stored at ``path``, or ``UnusableCacheError`` saying why not.

    The file's size and sha256 are checked against its sidecar before ``torch.load``
    sees a byte; then its format, key and state dict keys and shapes against ``model``.
    """
    try:
        record = json.loads(sidecar_path(path).read_text())
        data = path.read_bytes()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnusableCacheError(_describe(error)) from error
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
        raise UnusableCacheError(f"its sidecar is not a prune-gym record of format {CACHE_FORMAT}")
    if record.get("bytes") != len(data) or record.get("sha256") != _sha256(data):
        raise UnusableCacheError(
            f"its {len(data)} bytes do not match the size and sha256 in its sidecar"
        )
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except _INCOMPATIBLE as error:
        raise UnusableCacheError(_describe(error)) from error
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise UnusableCacheError(f"not a prune-gym cache file of format {CACHE_FORMAT}")
    if payload.get("key") != key:
        raise UnusableCacheError("it was written for a different task, recipe, seed, model or data")
    state = payload.get("state_dict")
    expected = model.state_dict()
    if not isinstance(state, dict) or state.keys() != expected.keys():
        raise UnusableCacheError("its state dict keys do not match the model")
    for name, value in expected.items():
        if not torch.is_tensor(state[name]) or state[name].shape != value.shape:
            raise UnusableCacheError(f"tensor {name!r} has the wrong shape")
    return state


def write_weights(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` ``payload`` to ``path``, then its sidecar; each written atomically."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    record = {
        "format": CACHE_FORMAT,
        "key": payload.get("key"),
        "task": payload.get("task"),
        "bytes": len(data),
        "sha256": _sha256(data),
    }
    write_atomically(path, data)
    write_atomically(sidecar_path(path), json.dumps(record, indent=1).encode())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(error: BaseException) -> str:
    """``"TypeName: first line of the message"``, or the type name alone for an empty one."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
