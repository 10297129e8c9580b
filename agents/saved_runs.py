"""Benching the policies that ``prune-gym train`` saved, as they were trained.

A ``model.zip`` with its ``run.json`` names the task, budget, env settings, seeds and
fine-tuning of its run, so ``prune-gym bench --policy model.zip`` alone benches it exactly
as ``train`` compared it (``saved_runs_spec``), and a bench at another task or budget says
so (``policy_warnings``): a policy acts outside what it learned there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym

from agents.comparison import budget_text, comparison_spec
from agents.run_config import RunConfig
from prune_gym.algorithms import check_finished_run
from prune_gym.bench import BenchSpec
from prune_gym.pruning import Budget
from prune_gym.pruning.cost import BudgetRange, budget_setting
from prune_gym.tasks import Task
from prune_gym.tasks import make as make_task


def saved_run(model_path: str | Path) -> tuple[RunConfig, Task, bool]:
    """The config of the finished ``train`` run that wrote ``model_path``, its task at the
    run's seed, and whether its policy may overspend (so it is also benched behind
    ``BudgetProjection``). ``ValueError``/``FileNotFoundError`` naming what is missing."""
    model_path = Path(model_path)
    check_finished_run(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; give the model.zip that train wrote")
    run_file = model_path.with_name("run.json")
    if not run_file.exists():
        raise FileNotFoundError(
            f"{run_file} not found: the task and budgets of {model_path} come from the "
            "run.json that train writes beside it; without one, give --task and --budgets"
        )
    config = RunConfig.from_file(run_file)
    task = make_task(config.task, seed=config.seed)
    env = gym.make(config.env, **config.env_settings(task=task))
    return config, task, not env.unwrapped.prunes_to_budget


def saved_runs_spec(model_paths: Sequence[str | Path]) -> BenchSpec:
    """The bench of ``train``'s comparison for the runs that wrote ``model_paths``: their
    task, budgets, seeds, fine-tuning and env settings, every fixed policy, and the
    policies; ``ValueError`` if the runs were compared differently."""
    specs = []
    for path in model_paths:
        config, task, projection = saved_run(path)
        specs.append(comparison_spec(config, task, projection=projection))
    for path, spec in zip(model_paths[1:], specs[1:], strict=True):
        if spec != specs[0]:
            raise ValueError(
                f"{path} was trained and compared otherwise than {model_paths[0]} (task, "
                "budgets, seeds, fine-tuning or env settings): bench them one at a time, or "
                "give --task and --budgets"
            )
    return dataclasses.replace(specs[0], policies=tuple(str(path) for path in model_paths))


def policy_warnings(spec: BenchSpec, given_algorithm: str | None = None) -> list[str]:
    """What a user should know about ``spec``'s policies that ``train`` saved: a task or
    budget other than the one each was trained for, and an ``--algo`` its ``run.json``
    overrides. Policies without a ``run.json`` get none."""
    warnings = []
    for path in spec.policies:
        run_file = Path(path).with_name("run.json")
        if not run_file.exists():
            continue
        config = RunConfig.from_file(run_file)
        if given_algorithm is not None and given_algorithm != config.algorithm:
            warnings.append(
                f"--algo {given_algorithm} is ignored for {path}: its run.json loads it as "
                f"{config.algorithm}"
            )
        other_tasks = [task for task in spec.tasks if task != config.task]
        if other_tasks:
            warnings.append(
                f"{path} was trained on {config.task}; it is benched on {other_tasks} too, "
                "a task it never saw"
            )
        other_budgets = [b for b in spec.budgets if not within_trained_budget(b, config)]
        if other_budgets:
            warnings.append(
                f"{path} was trained at {budget_text(config)}; it is benched at "
                f"{other_budgets}, outside that (prune-gym bench --policy {path} alone "
                "benches it as trained)"
            )
    return warnings


def within_trained_budget(label: str, config: RunConfig) -> bool:
    """Whether the budget ``label`` is the one ``config`` trained at, or inside its range."""
    trained, budget = budget_setting(config.budget), Budget.parse(label)
    if isinstance(trained, BudgetRange):
        return trained.covers(budget)
    return budget.label == trained.label
