"""Method registry and entry points: ``run_method``, ``build_trainer``, ``available_methods``.

Options are resolved in this order: the method's paper defaults, the (method, task) table
of ``defaults.py``, then the caller's overrides. An option is either a ``TrainRecipe``
field (``epochs``, ``lr``, ``optimizer``, ...) or a field of the method's config.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from prune_gym.baselines.methods.defaults import defaults_for
from prune_gym.baselines.methods.flipout import FlipoutSchedule
from prune_gym.baselines.methods.gradual import GmpSchedule, GranetSchedule
from prune_gym.baselines.methods.imp import ImpSchedule
from prune_gym.baselines.methods.rigl import RiglSchedule
from prune_gym.baselines.methods.schedule import MethodConfig, Schedule
from prune_gym.baselines.methods.swd import SwdSchedule
from prune_gym.baselines.methods.trainer import MethodResult, SparseTrainer
from prune_gym.checks import check_number
from prune_gym.tasks import Task, TrainRecipe, make

#: Training-time methods by name (docs/design.md, Layers); each is a ``Schedule`` for
#: ``SparseTrainer``.
METHODS: dict[str, type[Schedule]] = {
    schedule.name: schedule
    for schedule in (
        GmpSchedule,
        GranetSchedule,
        FlipoutSchedule,
        SwdSchedule,
        ImpSchedule,
        RiglSchedule,
    )
}

_RECIPE_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainRecipe))


def available_methods() -> list[str]:
    """Names of the training-time methods, in registration order."""
    return list(METHODS)


def run_method(
    name: str, task: Task | str, sparsity: float, *, seed: int = 0, **overrides: Any
) -> MethodResult:
    """Train ``task``'s model with method ``name`` to ``sparsity``; select on val, report test.

    ``overrides`` replace any default option (recipe field or method option); ``seed``
    drives minibatch order, random masks and noise (the initial weights are the task's).
    """
    return build_trainer(name, task, sparsity, seed=seed, **overrides).run()


def method_steps(name: str, task: Task | str, sparsity: float = 0.5, **overrides: Any) -> int:
    """The optimizer steps ``run_method(name, task, sparsity, **overrides)`` would take."""
    return build_trainer(name, task, sparsity, **overrides).schedule.total_steps


def build_trainer(
    name: str, task: Task | str, sparsity: float, *, seed: int = 0, **overrides: Any
) -> SparseTrainer:
    """The ``SparseTrainer`` that ``run_method`` runs, ready to ``run()`` or to inspect."""
    schedule_class = _lookup(name)
    sparsity = check_number(sparsity, "sparsity", 0.0, 1.0, high_open=True)
    task = make(task) if isinstance(task, str) else task
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task or a task name, got {type(task).__name__}")
    recipe, config = resolve_options(name, task, overrides)
    if recipe.epochs < 1:
        raise ValueError(f"epochs={recipe.epochs!r}: a training-time method needs epochs >= 1")
    steps_per_epoch = math.ceil(len(task.splits["train"]) / recipe.batch_size)
    schedule = schedule_class(sparsity, config, recipe.epochs * steps_per_epoch, seed)
    return SparseTrainer(task, schedule, recipe, seed=seed, eval_every=config.eval_every)


def resolve_options(
    name: str, task: Task, overrides: dict[str, Any]
) -> tuple[TrainRecipe, MethodConfig]:
    """The training recipe and the method config for ``name`` on ``task`` with overrides."""
    config_class = _lookup(name).config_class
    config_fields = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - config_fields - _RECIPE_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown options {unknown} for method {name!r}; accepted: method options "
            f"{sorted(config_fields)} and recipe fields {sorted(_RECIPE_FIELDS)}"
        )
    options = {**defaults_for(name, task.name), **overrides}
    recipe = dataclasses.replace(
        task.recipe, **{key: value for key, value in options.items() if key in _RECIPE_FIELDS}
    )
    config = config_class(**{key: value for key, value in options.items() if key in config_fields})
    return recipe, config


def _lookup(name: str) -> type[Schedule]:
    """The schedule class of method ``name``, or a ValueError listing the methods."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available methods: {available_methods()}")
    return METHODS[name]
