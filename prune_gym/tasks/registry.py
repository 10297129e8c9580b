"""The registry of named tasks: ``register_task(name, factory)`` and ``make(name)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from prune_gym.checks import did_you_mean
from prune_gym.tasks.task import Task

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task], *, overwrite: bool = False) -> None:
    """Register ``factory(**overrides) -> Task`` under ``name`` for ``make(name)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name={name!r} must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for task {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def make(name: str, **overrides: Any) -> Task:
    """Build the registered task ``name``; ``overrides`` go to its factory (e.g. ``seed=1``)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown task {name!r}; available tasks: {', '.join(list_tasks())}."
            + did_you_mean(name, list_tasks())
        )
    factory = _REGISTRY[name]
    _check_overrides(name, factory, overrides)
    task = factory(**overrides)
    if not isinstance(task, Task):
        raise TypeError(f"factory of task {name!r} returned {type(task).__name__}, not a Task")
    return task


def _check_overrides(name: str, factory: Callable[..., Task], overrides: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming overrides the factory does not accept, and those it does."""
    parameters = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = sorted(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise TypeError(f"task {name!r} does not accept {unknown}; accepted overrides: {accepted}")
