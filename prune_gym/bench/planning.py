"""What a benchmark runs and how each run is keyed: the grid of a ``BenchSpec``.

A run is one (task, budget, method, seed) under the spec's settings that change its
result; its key hashes both, so a folder reuses exactly the runs it would otherwise
repeat (see docs/design.md, Records).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from prune_gym.algorithms import SavedRun
from prune_gym.baselines import is_supported, policy_env_settings, supported_policies
from prune_gym.baselines.methods import available_methods, method_steps
from prune_gym.bench.spec import MATCHED, BenchSpec
from prune_gym.checks import did_you_mean
from prune_gym.tasks import make


@dataclass(frozen=True)
class Run:
    """One cell of the benchmark grid and the spec settings its result depends on."""

    task: str
    budget: str
    method: str
    seed: int
    kind: str
    settings: dict[str, Any] = field(default_factory=dict, compare=False)

    def identity(self) -> dict[str, Any]:
        """The grid coordinates, as record fields."""
        return {
            "task": self.task,
            "budget": self.budget,
            "method": self.method,
            "seed": self.seed,
            "kind": self.kind,
        }

    @property
    def policy_path(self) -> str:
        """The model zip of a learned policy's run."""
        return self.method.removeprefix("policy:")

    def fields(self, settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record fields naming the run: coordinates, ``settings`` (default the spec's), key."""
        settings = self.settings if settings is None else settings
        identity = self.identity()
        return identity | {"settings": settings, "run_key": run_key(identity, settings)}


def run_key(identity: dict[str, Any], settings: dict[str, Any]) -> str:
    """A hash of a run's grid coordinates and of every setting that changes its result."""
    text = json.dumps({"run": identity, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def run_settings(
    spec: BenchSpec, method: str, kind: str, finetune_steps: int = 0
) -> dict[str, Any]:
    """The settings of ``spec`` that a run of ``method`` depends on.

    Training-time methods depend on their options only; policies (fixed and learned) on
    the env they act on (with what the policy needs, ``policy_env_settings``) and their
    ``finetune_steps``; a learned policy on its zip's bytes and its ``run.json``.
    """
    if kind == "training":
        return {"method_options": dict(spec.method_overrides.get(method, {}))}
    settings: dict[str, Any] = {
        "env": spec.env,
        "structure": spec.structure,
        "finetune_steps": finetune_steps,
        "max_ratio": spec.max_ratio,
    }
    if spec.device != "cpu":  # only then, so CPU runs keep the keys they always had
        settings["device"] = spec.device
    saved = None
    if kind == "learned":
        path = Path(method.removeprefix("policy:"))
        if not path.is_file():
            raise FileNotFoundError(f"policy zip {path} not found")
        settings["policy_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        saved = SavedRun.beside(path)
    if spec.env_kwargs and saved is None:  # likewise: plain benches keep their keys
        settings["env_kwargs"] = dict(spec.env_kwargs)
    if kind == "one-shot":
        settings |= policy_env_settings(method)
    elif saved is None:
        settings["policy_algorithm"] = spec.policy_algorithm
    else:  # it acts on the env it was trained on, whatever the spec's env
        settings |= {"env": saved.env, "policy_algorithm": saved.algorithm}
        settings |= {"policy_env_kwargs": saved.env_kwargs}
        settings["agent_train_steps"] = saved.train_steps
    return settings


def finetune_step_counts(spec: BenchSpec, task: str) -> list[int]:
    """The spec's fine-tuning step counts on ``task``, ``"matched"`` resolved to GMP's steps."""
    budgets = []
    for budget in spec.finetune_steps:
        if budget == MATCHED:
            budget = method_steps("gmp", task, **spec.method_overrides.get("gmp", {}))
        budgets.append(budget)
    return list(dict.fromkeys(budgets))


def variants(spec: BenchSpec, task: str, method: str, kind: str) -> list[dict[str, Any]]:
    """The settings of every run of ``method`` on ``task``: one per fine-tuning step count
    (training-time methods: one), learned policies also behind ``BudgetProjection`` when
    ``spec.projection``."""
    if kind == "training":
        return [run_settings(spec, method, kind)]
    settings = [
        run_settings(spec, method, kind, steps) for steps in finetune_step_counts(spec, task)
    ]
    if kind == "learned" and spec.projection:
        settings += [variant | {"projection": True} for variant in settings]
    return settings


def plan(spec: BenchSpec) -> list[Run]:
    """Every run of ``spec``, methods ``all`` expanded to every one-shot and training method."""
    probe = gym.make(
        spec.env,
        task=make(spec.tasks[0], seed=spec.seed_values[0]),
        structure=spec.structure,
        max_ratio=spec.max_ratio,
        **spec.env_kwargs,
    )
    one_shot = supported_policies(probe)
    training = tuple(available_methods())
    methods: list[tuple[str, str]] = []
    for name in spec.methods:
        if name == "all":
            methods += [(m, "one-shot") for m in one_shot] + [(m, "training") for m in training]
        elif is_supported(name, probe):
            methods.append((name, "one-shot"))
        elif name in training:
            methods.append((name, "training"))
        else:
            raise ValueError(
                f"unknown method {name!r}; one-shot on {spec.env}: {one_shot}; "
                f"training-time: {training}; or 'all'."
                + did_you_mean(name, [*one_shot, *training, "all"])
            )
    methods += [(f"policy:{path}", "learned") for path in spec.policies]
    unique = list(dict.fromkeys(methods))
    seeds = spec.seed_values
    runs = []
    for task in spec.tasks:
        grid = [
            (method, kind, settings)
            for method, kind in unique
            for settings in variants(spec, task, method, kind)
        ]
        runs += [
            Run(task, budget, method, seed, kind, settings)
            for budget in spec.budgets
            for method, kind, settings in grid
            for seed in seeds
        ]
    return runs
