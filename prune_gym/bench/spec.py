"""What a benchmark runs: tasks x budgets x methods x seeds, from the CLI or a YAML suite."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from prune_gym.checks import check_device, check_fraction, check_int, did_you_mean
from prune_gym.envs import check_env_id
from prune_gym.pruning import Budget

#: a fine-tuning step count equal to GMP's total optimizer steps on the task (``--finetune-steps``).
MATCHED = "matched"
#: ``--budgets sweep``: parameter budgets at compression 2, 4, 8, 16, 32 and 64.
SWEEP = tuple(f"params={1 / c:g}" for c in (2, 4, 8, 16, 32, 64))
#: the built-in suites, shipped as package data (``prune_gym/bench/suites/<name>.yaml``).
SUITES = resources.files("prune_gym.bench") / "suites"
#: env settings that are ``BenchSpec`` fields (or grid axes), never ``env_kwargs``.
OWN_FIELDS = {"task", "budget", "structure", "max_ratio", "device"}


def available_suites() -> list[str]:
    """Names of the built-in suites (``prune-gym bench --suite <name>``)."""
    return sorted(
        item.name[: -len(".yaml")] for item in SUITES.iterdir() if item.name.endswith(".yaml")
    )


def loosest_first(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Distinct (task, budget label) pairs: tasks as first met, each task's budgets from
    the loosest to the tightest (by their smallest limit); the order of tables and panels."""
    pairs = list(dict.fromkeys(pairs))
    tasks = list(dict.fromkeys(task for task, _ in pairs))
    return sorted(
        pairs,
        key=lambda pair: (tasks.index(pair[0]), -min(Budget.parse(pair[1]).limits.values())),
    )


def parse_budgets(text: str) -> list[str]:
    """``"params=0.1,params=0.02"`` or ``"sweep"`` -> canonical budget labels."""
    items = SWEEP if text.strip() == "sweep" else text.split(",")
    if not all(item.strip() for item in items):
        raise ValueError(
            f"--budgets {text!r} has an empty budget; e.g. params=0.1,flops=0.5 or sweep"
        )
    return [Budget.parse(item).label for item in items]


@dataclass(frozen=True)
class BenchSpec:
    """Everything one benchmark run needs; every run is one (task, budget, method, seed)."""

    tasks: tuple[str, ...]
    budgets: tuple[str, ...]
    methods: tuple[str, ...] = ("all",)
    #: how many seeds (``first_seed`` onwards), or the seeds themselves, e.g. ``(0, 2)``.
    seeds: int | tuple[int, ...] = 3
    env: str = "prune_gym/GlobalRatio-v0"
    structure: str = "unstructured"
    #: fine-tuning of every policy's final masks, one or several budgets; ``"matched"`` is
    #: GMP's total optimizer steps on the task, so one-shot and training-time methods
    #: compare at equal compute.
    finetune_steps: int | str | tuple[int | str, ...] = 200
    #: one-shot methods may prune a layer up to this ratio (None: the env's default, 0.99
    #: or 0.9 with channels, as for agents).
    max_ratio: float | None = 1.0
    method_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: tuple[str, ...] = ()
    policy_algorithm: str = "ppo"
    #: where one-shot and learned runs' envs compute (``"cuda"`` on a GPU); training-time
    #: methods train on the CPU.
    device: str = "cpu"
    #: further settings of the env that one-shot policies (and learned ones without a
    #: ``run.json``) act on, e.g. ``{"reward": "loss"}``; in the run key only when given.
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    #: runs use seeds ``first_seed`` .. ``first_seed + seeds - 1``.
    first_seed: int = 0
    #: also run every learned policy behind ``BudgetProjection``, a run of its own.
    projection: bool = False

    def __post_init__(self) -> None:
        if not self.tasks or not self.budgets or not self.methods:
            raise ValueError(f"a benchmark needs tasks, budgets and methods; got {self}")
        budgets = self.finetune_steps
        budgets = tuple(budgets) if isinstance(budgets, (tuple, list)) else (budgets,)
        if not budgets:
            raise ValueError("finetune_steps names no budget; e.g. 200 or [200, matched]")
        budgets = tuple(
            b if b == MATCHED else check_int(b, "finetune_steps", low=0) for b in budgets
        )
        object.__setattr__(self, "finetune_steps", budgets)
        if self.max_ratio is not None:
            check_fraction(self.max_ratio, "max_ratio")
        check_int(self.first_seed, "first_seed", low=0)
        self._check_seeds()
        if not isinstance(self.projection, bool):
            raise TypeError(f"projection must be true or false, not {self.projection!r}")
        if not isinstance(self.env_kwargs, dict):
            raise TypeError(f"env_kwargs must be a dict of env settings, not {self.env_kwargs!r}")
        own = sorted(set(self.env_kwargs) & OWN_FIELDS)
        if own:
            raise ValueError(
                f"env_kwargs may not hold {own}: give them as the fields of their own "
                f"(tasks, budgets, structure, max_ratio, device); got env_kwargs={self.env_kwargs}"
            )
        check_device(self.device)
        check_env_id(self.env)
        for budget in self.budgets:
            Budget.parse(budget)

    def _check_seeds(self) -> None:
        """A count of at least one, or distinct seeds >= 0 (then ``first_seed`` stays 0)."""
        if not isinstance(self.seeds, (tuple, list)):
            check_int(self.seeds, "seeds", low=1)
            return
        seeds = tuple(check_int(seed, "a seed", low=0) for seed in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds={list(self.seeds)}: give distinct seeds, e.g. [0, 1, 2]")
        if self.first_seed:
            raise ValueError(
                f"seeds={list(seeds)} names its seeds: first_seed={self.first_seed} only "
                "applies to a count of seeds"
            )
        object.__setattr__(self, "seeds", seeds)

    @property
    def seed_values(self) -> tuple[int, ...]:
        """The seeds every run of the grid is repeated at."""
        if isinstance(self.seeds, tuple):
            return self.seeds
        return tuple(range(self.first_seed, self.first_seed + self.seeds))


def load_suite(name_or_path: str) -> BenchSpec:
    """A built-in suite by name (``available_suites()``), or a YAML file by path."""
    if name_or_path.endswith((".yaml", ".yml")) or Path(name_or_path).is_file():
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"no benchmark suite file at {path}")
    else:
        path = SUITES / f"{name_or_path}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"no built-in benchmark suite {name_or_path!r}; built-in suites: "
                f"{available_suites()}, or give a YAML file path."
                + did_you_mean(name_or_path, available_suites())
            )
    raw = yaml.safe_load(path.read_text())
    fields = {f.name for f in dataclasses.fields(BenchSpec)}
    if not isinstance(raw, dict):
        raise ValueError(
            f"suite {path} holds {'nothing' if raw is None else repr(raw)}; a suite is a "
            f"YAML mapping with keys among {sorted(fields)} (tasks and budgets required)"
        )
    unknown = sorted(set(raw) - fields - {"description"})
    if unknown:
        raise ValueError(f"suite {path} has unknown keys {unknown}; accepted: {sorted(fields)}")
    raw.pop("description", None)
    if isinstance(raw.get("seeds"), list):
        raw["seeds"] = tuple(raw["seeds"])
    for key in ("tasks", "methods", "policies"):
        if key in raw:
            raw[key] = tuple(raw[key])
    raw["budgets"] = tuple(
        label for item in raw.get("budgets", ()) for label in parse_budgets(str(item))
    )
    return BenchSpec(**raw)
