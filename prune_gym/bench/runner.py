"""Run a benchmark: every (task, budget, method, seed), resumable, failures recorded.

One-shot methods act as fixed policies on the benchmark's env and are then fine-tuned
with the same budget (``finetune_steps``); training-time methods run their own schedule
to the budget's parameter sparsity; a trained SB3 policy is evaluated like a fixed one.
Records are written after every run, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from tqdm import tqdm

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.baselines import make_policy, supported_policies
from prune_gym.baselines.methods import available_methods, run_method
from prune_gym.bench.overlap import aligned_overlap
from prune_gym.bench.spec import BenchSpec, parse_budget
from prune_gym.evaluation import evaluate
from prune_gym.pruning import Budget, CostModel, MaskSet
from prune_gym.pruning.allocate import whole_weight_sparsity
from prune_gym.tasks import Task, make

#: the DESIGN §8 columns first, then what identifies and explains a run.
COLUMNS = (
    "task",
    "method",
    "budget",
    "seed",
    "val_accuracy",
    "test_accuracy",
    "dense_accuracy",
    "sparsity",
    "params_ratio",
    "macs_ratio",
    "speedup",
    "feasible",
    "wall_time",
    "kind",
    "env",
    "structure",
    "finetune_steps",
    "mask_overlap",
    "status",
    "error",
)
KINDS = ("one-shot", "training", "learned")


@dataclass(frozen=True)
class Run:
    """One cell of the benchmark grid."""

    task: str
    budget: str
    method: str
    seed: int
    kind: str

    @property
    def key(self) -> str:
        """Identity of the run inside one output folder (for resuming)."""
        return f"{self.task}|{self.budget}|{self.method}|{self.seed}"


def plan(spec: BenchSpec) -> list[Run]:
    """Every run of ``spec``, methods ``all`` expanded to every one-shot and training method."""
    probe = gym.make(
        spec.env, task=spec.tasks[0], structure=spec.structure, max_ratio=spec.max_ratio
    )
    one_shot = supported_policies(probe)
    training = tuple(available_methods())
    methods: list[tuple[str, str]] = []
    for name in spec.methods:
        if name == "all":
            methods += [(m, "one-shot") for m in one_shot] + [(m, "training") for m in training]
        elif name in one_shot:
            methods.append((name, "one-shot"))
        elif name in training:
            methods.append((name, "training"))
        else:
            raise ValueError(
                f"unknown method {name!r}; one-shot on {spec.env}: {one_shot}; "
                f"training-time: {training}; or 'all'"
            )
    methods += [(f"policy:{path}", "learned") for path in spec.policies]
    return [
        Run(task, budget, method, seed, kind)
        for task in spec.tasks
        for budget in spec.budgets
        for method, kind in dict.fromkeys(methods)
        for seed in range(spec.seeds)
    ]


class BenchmarkRunner:
    """Executes runs, caching dense accuracies per (task, seed)."""

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec
        self._tasks: dict[tuple[str, int], tuple[Task, float]] = {}

    def task(self, name: str, seed: int) -> tuple[Task, float]:
        """The task at ``seed`` and its dense model's test accuracy."""
        if (name, seed) not in self._tasks:
            task = make(name, seed=seed)
            dense = task.evaluate(task.pretrained_model(), "test")["accuracy"]
            self._tasks[name, seed] = (task, dense)
        return self._tasks[name, seed]

    def execute(self, run: Run) -> dict[str, Any]:
        """The record of one run (raises if the run fails)."""
        start = time.perf_counter()
        task, dense_accuracy = self.task(run.task, run.seed)
        budget = parse_budget(run.budget)
        if run.kind == "training":
            record, masks = self._training(run, task, budget)
        else:
            record, masks = self._episode(run, task, budget)
        record |= {
            "task": run.task,
            "method": run.method,
            "budget": run.budget,
            "seed": run.seed,
            "kind": run.kind,
            "env": self.spec.env if run.kind != "training" else "",
            "structure": self.spec.structure,
            "finetune_steps": self.spec.finetune_steps if run.kind != "training" else 0,
            "dense_accuracy": dense_accuracy,
            "speedup": 1.0 / record["macs_ratio"] if record["macs_ratio"] > 0 else float("inf"),
            "mask_overlap": mask_overlap(task, masks),
            "status": "ok",
            "error": "",
            "wall_time": time.perf_counter() - start,
        }
        return record

    def _episode(self, run: Run, task: Task, budget: Budget) -> tuple[dict[str, Any], MaskSet]:
        """A fixed or learned policy for one episode, then the shared fine-tuning budget."""
        env = gym.make(
            self.spec.env,
            task=task,
            budget=budget.limits,
            structure=self.spec.structure,
            max_ratio=self.spec.max_ratio,
        )
        if run.kind == "learned":
            policy = load_policy(run.method.removeprefix("policy:"), self.spec.policy_algorithm)
        else:
            policy = make_policy(run.method, env, seed=run.seed)
        (record,) = evaluate(policy, env, 1, seed=run.seed, finetune_steps=self.spec.finetune_steps)
        return record, env.unwrapped.last_masks

    def _training(self, run: Run, task: Task, budget: Budget) -> tuple[dict[str, Any], MaskSet]:
        """A training-time method run to the budget's parameter sparsity."""
        if "params" not in budget.limits:
            raise ValueError(
                f"training-time method {run.method!r} prunes to a parameter sparsity; "
                f"budget {run.budget!r} has no params limit"
            )
        overrides = self.spec.method_overrides.get(run.method, {})
        cost_model = CostModel(task.build_model(), task.example_input())
        sparsity = whole_weight_sparsity(1.0 - budget.limits["params"], cost_model.params_dense)
        result = run_method(run.method, task, sparsity, seed=run.seed, **overrides)
        used = cost_model.used_fractions(result.masks)
        violation = budget.violation(used)
        record = {
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "sparsity": result.masks.sparsity(),
            "params_ratio": used["params"],
            "macs_ratio": used["flops"],
            "budget_violation": violation,
            "feasible": violation <= 0.0,
            "ratios": result.masks.ratios(),
        }
        return record, result.masks


def mask_overlap(task: Task, masks: MaskSet) -> float | None:
    """Overlap with a planted teacher's mask, hidden units matched (None without a teacher)."""
    truth = getattr(task, "true_masks", None)
    return None if truth is None else aligned_overlap(masks, truth)


def load_policy(path: str, algorithm: str) -> Any:
    """A trained SB3 model from its zip (pickle inside: load only files you trust)."""
    from stable_baselines3 import A2C, PPO, SAC, TD3

    classes = {"ppo": PPO, "a2c": A2C, "sac": SAC, "td3": TD3}
    if algorithm not in classes:
        raise ValueError(f"policy algorithm {algorithm!r} unknown; expected {sorted(classes)}")
    return classes[algorithm].load(path, device="cpu")


def read_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished runs already in ``out_dir/results.json``, by run key."""
    path = out_dir / "results.json"
    if not path.exists():
        return {}
    records = json.loads(path.read_text())
    return {
        Run(r["task"], r["budget"], r["method"], r["seed"], r["kind"]).key: r
        for r in records
        if r["status"] == "ok"
    }


def write_results(out_dir: Path, records: list[dict[str, Any]]) -> None:
    """``results.json`` (everything) and ``results.csv`` (the columns, ratios as JSON)."""
    (out_dir / "results.json").write_text(json.dumps(records, indent=1, default=float))
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, "ratios"], extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(record | {"ratios": json.dumps(record.get("ratios", {}))})


def run_benchmark(spec: BenchSpec, out_dir: str | Path) -> list[dict[str, Any]]:
    """Run every run of ``spec`` not already finished in ``out_dir``; return all records.

    A failed run is recorded (status ``failed`` with its error) and the rest go on.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    finished = read_results(out_dir)
    runner = BenchmarkRunner(spec)
    records: list[dict[str, Any]] = []
    progress = tqdm(plan(spec), desc="benchmark", unit="run")
    for run in progress:
        progress.set_postfix_str(f"{run.task} {run.budget} {run.method} seed {run.seed}")
        if run.key in finished:
            records.append(finished[run.key])
            continue
        try:
            record = runner.execute(run)
        except Exception as error:  # recorded and reported; the other runs go on
            record = {
                "task": run.task,
                "method": run.method,
                "budget": run.budget,
                "seed": run.seed,
                "kind": run.kind,
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        records.append(record)
        write_results(out_dir, records)
    return records
