"""Execute one benchmark run where it runs (here or on a worker): its result record.

One-shot methods act as fixed policies on the benchmark's env and are then fine-tuned
with the same budget (``finetune_steps``); training-time methods run their own schedule
to the budget's parameter sparsity; a trained SB3 policy is evaluated like a fixed one
(behind ``BudgetProjection`` for a run with ``projection``).
"""

from __future__ import annotations

import math
import time
import traceback
from typing import Any

import gymnasium as gym

import prune_gym
from prune_gym.algorithms import SavedRun, load_model
from prune_gym.baselines import make_policy, policy_env_settings
from prune_gym.baselines.methods import run_method
from prune_gym.bench.overlap import aligned_overlap, support_recovery
from prune_gym.bench.planning import Run
from prune_gym.bench.spec import BenchSpec
from prune_gym.evaluation import assess_policy
from prune_gym.pruning import Budget, MaskSet
from prune_gym.pruning.allocate import whole_weight_sparsity
from prune_gym.tasks import Task, make
from prune_gym.wrappers import BudgetProjection


class BenchmarkRunner:
    """Identifies and executes runs, caching tasks and dense accuracies per (task, seed)."""

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec
        self._tasks: dict[tuple[str, int], Task] = {}
        self._definitions: dict[tuple[str, int], str] = {}
        self._dense: dict[tuple[str, int], dict[str, float]] = {}
        self._layers: dict[str, dict[str, str]] = {}

    def task(self, name: str, seed: int) -> Task:
        """The task ``name`` at ``seed``, built once."""
        if (name, seed) not in self._tasks:
            self._tasks[name, seed] = make(name, seed=seed)
        return self._tasks[name, seed]

    def dense_test(self, name: str, seed: int) -> dict[str, float]:
        """Test ``accuracy`` and ``loss`` of the task's dense pretrained model."""
        if (name, seed) not in self._dense:
            task = self.task(name, seed)
            self._dense[name, seed] = task.evaluate(task.pretrained_model(), "test")
        return self._dense[name, seed]

    def layer_descriptions(self, name: str, seed: int) -> dict[str, str]:
        """Prunable layer name -> a short description (``conv 16→32 3x3``), for reports."""
        if name not in self._layers:
            layers = self.task(name, seed).cost_model().layers
            self._layers[name] = {layer.name: layer.description() for layer in layers}
        return self._layers[name]

    def identify(self, run: Run) -> dict[str, Any]:
        """The record fields naming ``run``: coordinates, full settings and ``run_key``.

        The settings add the task's definition (its recipe, model and data fingerprint)
        and the package version to the spec's, since both change every number.
        """
        coordinates = (run.task, run.seed)
        if coordinates not in self._definitions:
            self._definitions[coordinates] = self.task(*coordinates).definition_key()
        return run.fields(
            run.settings
            | {"task_definition": self._definitions[coordinates], "version": prune_gym.__version__}
        )

    def execute(self, run: Run) -> dict[str, Any]:
        """The result fields of one run (raises if the run fails)."""
        start = time.perf_counter()
        task = self.task(run.task, run.seed)
        dense = self.dense_test(run.task, run.seed)
        budget = Budget.parse(run.budget)
        if run.kind == "training":
            record, masks = self._training(run, task, budget)
        else:
            record, masks = self._episode(run, task, budget)
        splits = task.splits
        record |= {
            "env": run.settings.get("env", ""),
            "structure": masks.structure,
            "finetune_steps": run.settings.get("finetune_steps", 0),
            "max_ratio": run.settings.get("max_ratio"),
            "device": run.settings.get("device", "cpu"),  # training-time methods: the CPU
            "val_samples": len(splits["val"]),
            "test_samples": len(splits["test"]),
            "layers": self.layer_descriptions(run.task, run.seed),
            "dense_accuracy": dense["accuracy"],
            "speedup": 1.0 / record["macs_ratio"] if record["macs_ratio"] > 0 else float("inf"),
            "mask_overlap": mask_overlap(task, masks),
            "support_recovery": planted_support_recovery(task, masks),
            "status": "ok",
            "error": "",
            "wall_time": time.perf_counter() - start,
        }
        if task.reports_perplexity and "test_loss" in record:
            record["test_perplexity"] = math.exp(record["test_loss"])
            record["dense_perplexity"] = math.exp(dense["loss"])
        return record

    def _episode(self, run: Run, task: Task, budget: Budget) -> tuple[dict[str, Any], MaskSet]:
        """A fixed or learned policy for one episode, then the shared fine-tuning step count.

        A learned policy with a ``run.json`` beside its zip acts on the env it was
        trained on (its env id and settings, this run's task and budget).
        """
        saved = SavedRun.beside(run.policy_path) if run.kind == "learned" else None
        device = run.settings.get("device", "cpu")
        if saved is None:
            settings = {"structure": self.spec.structure, "max_ratio": self.spec.max_ratio}
            settings |= self.spec.env_kwargs
            settings |= policy_env_settings(run.method) if run.kind == "one-shot" else {}
            env = gym.make(
                self.spec.env, task=task, budget=budget.limits, device=device, **settings
            )
        else:
            kwargs = saved.env_kwargs | {"device": device}
            env = gym.make(saved.env, task=task, budget=budget.limits, **kwargs)
        if run.settings.get("projection"):
            env = BudgetProjection(env)
        if run.kind == "learned":
            algorithm = self.spec.policy_algorithm if saved is None else saved.algorithm
            policy = load_model(run.policy_path, algorithm)
        else:
            policy = make_policy(run.method, env, seed=run.seed)
        steps = run.settings["finetune_steps"]
        (record,) = assess_policy(policy, env, 1, seed=run.seed, finetune_steps=steps)
        # optimizer steps spent: the final fine-tuning, and a learned policy's training (its
        # rewards' fine-tuning: an upper bound, as rewards of masks seen before are cached)
        record["train_steps"] = steps + run.settings.get("agent_train_steps", 0)
        return record, env.unwrapped.last_masks

    def _training(self, run: Run, task: Task, budget: Budget) -> tuple[dict[str, Any], MaskSet]:
        """A training-time method run to the budget's parameter sparsity."""
        if "params" not in budget.limits:
            raise ValueError(
                f"training-time method {run.method!r} prunes to a parameter sparsity; "
                f"budget {run.budget!r} has no params limit"
            )
        overrides = self.spec.method_overrides.get(run.method, {})
        cost_model = task.cost_model()
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
            "train_steps": result.train_steps,
        }
        return record, result.masks


def planted_support_recovery(task: Task, masks: MaskSet) -> float | None:
    """Recovery of a planted teacher's input support (None without a teacher)."""
    support = getattr(task, "support", None)
    if support is None:
        return None
    return support_recovery(masks, support, next(iter(task.true_masks.masks)))


def mask_overlap(task: Task, masks: MaskSet) -> float | None:
    """Overlap with a planted teacher's mask, hidden units matched (None without a teacher)."""
    truth = getattr(task, "true_masks", None)
    return None if truth is None else aligned_overlap(masks, truth)


def failure(error: BaseException) -> dict[str, Any]:
    """The result fields of a run that raised ``error`` (call inside its ``except``)."""
    return {
        "status": "failed",
        "error": f"{type(error).__name__}: {error}",
        "traceback": traceback.format_exc(),
    }


#: this process's runner, and the benchmark it serves (``runner_for``).
_RUNNER: tuple[str, BenchmarkRunner] | None = None


def runner_for(spec: BenchSpec, benchmark: str) -> BenchmarkRunner:
    """This process's runner for one ``run_benchmark`` call, named by ``benchmark``.

    A worker (or the driver, locally) keeps it from run to run, so it builds each task
    and its dense accuracy once, as a local benchmark does; a new benchmark starts afresh.
    """
    global _RUNNER
    if _RUNNER is None or _RUNNER[0] != benchmark:
        _RUNNER = (benchmark, BenchmarkRunner(spec))
    return _RUNNER[1]


def execute_run(spec: BenchSpec, benchmark: str, job: tuple[Run, dict[str, Any]]) -> dict[str, Any]:
    """The record of one run (``job``: the run and its identifying fields), where it runs.

    A run that raises is returned as a failed record, not raised: its error is its result.
    """
    run, fields = job
    try:
        return fields | runner_for(spec, benchmark).execute(run)
    except Exception as error:
        return fields | failure(error)


def lost(error: str) -> dict[str, Any]:
    """The result fields of a run its executor lost (e.g. a worker killed every attempt)."""
    return {"status": "failed", "error": f"run lost: {error}", "traceback": ""}
