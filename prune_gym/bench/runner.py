"""Run a benchmark: every (task, budget, method, seed) whose result the folder lacks.

One-shot methods act as fixed policies on the benchmark's env and are then fine-tuned
with the same budget (``finetune_steps``); training-time methods run their own schedule
to the budget's parameter sparsity; a trained SB3 policy is evaluated like a fixed one.
Each finished run is appended to the folder's ``records.jsonl`` (``RecordStore``) under a
key that hashes every setting that changes its result, so a re-run reuses exactly the
runs it would otherwise repeat, whatever grid it asks for, and never deletes one.
Runs execute here, one after another, or on a Ray cluster (``prune_gym.executors``);
either way this process (the driver) writes every record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from tqdm import tqdm

import prune_gym
from prune_gym.algorithms import SavedRun, load_model
from prune_gym.baselines import make_policy, policy_env_settings, supported_policies
from prune_gym.baselines.methods import available_methods, method_steps, run_method
from prune_gym.bench.overlap import aligned_overlap, support_recovery
from prune_gym.bench.report import REPORT_FILES
from prune_gym.bench.spec import MATCHED, BenchSpec, parse_budget
from prune_gym.bench.store import RecordStore, latest_records
from prune_gym.checks import did_you_mean
from prune_gym.evaluation import evaluate
from prune_gym.executors import Executor, LocalExecutor
from prune_gym.pruning import Budget, MaskSet
from prune_gym.pruning.allocate import whole_weight_sparsity
from prune_gym.tasks import Task, make

KINDS = ("one-shot", "training", "learned")


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
    if kind == "one-shot":
        settings |= policy_env_settings(method)
    if kind == "learned":
        path = Path(method.removeprefix("policy:"))
        if not path.is_file():
            raise FileNotFoundError(f"policy zip {path} not found")
        settings["policy_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        saved = SavedRun.beside(path)
        if saved is None:
            settings["policy_algorithm"] = spec.policy_algorithm
        else:  # it acts on the env it was trained on, whatever the spec's env
            settings |= {"env": saved.env, "policy_algorithm": saved.algorithm}
            settings |= {"policy_env_kwargs": saved.env_kwargs}
            settings["agent_train_steps"] = saved.train_steps
    return settings


def finetune_budgets(spec: BenchSpec, task: str) -> list[int]:
    """The spec's fine-tuning budgets on ``task``, ``"matched"`` resolved to GMP's steps."""
    budgets = []
    for budget in spec.finetune_steps:
        if budget == MATCHED:
            budget = method_steps("gmp", task, **spec.method_overrides.get("gmp", {}))
        budgets.append(budget)
    return list(dict.fromkeys(budgets))


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
                f"training-time: {training}; or 'all'."
                + did_you_mean(name, [*one_shot, *training, "all"])
            )
    methods += [(f"policy:{path}", "learned") for path in spec.policies]
    unique = list(dict.fromkeys(methods))
    runs = []
    for task in spec.tasks:
        variants = [
            (method, kind, run_settings(spec, method, kind, steps))
            for method, kind in unique
            for steps in ([0] if kind == "training" else finetune_budgets(spec, task))
        ]
        runs += [
            Run(task, budget, method, seed, kind, settings)
            for budget in spec.budgets
            for method, kind, settings in variants
            for seed in range(spec.seeds)
        ]
    return runs


class BenchmarkRunner:
    """Identifies and executes runs, caching tasks and dense accuracies per (task, seed)."""

    def __init__(self, spec: BenchSpec) -> None:
        self.spec = spec
        self._tasks: dict[tuple[str, int], Task] = {}
        self._definitions: dict[tuple[str, int], str] = {}
        self._dense: dict[tuple[str, int], float] = {}
        self._layers: dict[str, dict[str, str]] = {}

    def task(self, name: str, seed: int) -> Task:
        """The task ``name`` at ``seed``, built once."""
        if (name, seed) not in self._tasks:
            self._tasks[name, seed] = make(name, seed=seed)
        return self._tasks[name, seed]

    def dense_accuracy(self, name: str, seed: int) -> float:
        """Test accuracy of the task's dense pretrained model."""
        if (name, seed) not in self._dense:
            task = self.task(name, seed)
            self._dense[name, seed] = task.evaluate(task.pretrained_model(), "test")["accuracy"]
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
        dense_accuracy = self.dense_accuracy(run.task, run.seed)
        budget = parse_budget(run.budget)
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
            "dense_accuracy": dense_accuracy,
            "speedup": 1.0 / record["macs_ratio"] if record["macs_ratio"] > 0 else float("inf"),
            "mask_overlap": mask_overlap(task, masks),
            "support_recovery": planted_support_recovery(task, masks),
            "status": "ok",
            "error": "",
            "wall_time": time.perf_counter() - start,
        }
        return record

    def _episode(self, run: Run, task: Task, budget: Budget) -> tuple[dict[str, Any], MaskSet]:
        """A fixed or learned policy for one episode, then the shared fine-tuning budget.

        A learned policy with a ``run.json`` beside its zip acts on the env it was
        trained on (its env id and settings, this run's task and budget).
        """
        saved = SavedRun.beside(run.policy_path) if run.kind == "learned" else None
        device = run.settings.get("device", "cpu")
        if saved is None:
            settings = {"structure": self.spec.structure, "max_ratio": self.spec.max_ratio}
            settings |= policy_env_settings(run.method) if run.kind == "one-shot" else {}
            env = gym.make(
                self.spec.env, task=task, budget=budget.limits, device=device, **settings
            )
        else:
            kwargs = saved.env_kwargs | {"device": device}
            env = gym.make(saved.env, task=task, budget=budget.limits, **kwargs)
        if run.kind == "learned":
            algorithm = self.spec.policy_algorithm if saved is None else saved.algorithm
            policy = load_model(run.policy_path, algorithm)
        else:
            policy = make_policy(run.method, env, seed=run.seed)
        steps = run.settings["finetune_steps"]
        (record,) = evaluate(policy, env, 1, seed=run.seed, finetune_steps=steps)
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


@contextmanager
def hold_folder(out_dir: Path) -> Iterator[RecordStore]:
    """The record store of ``out_dir``, held for one benchmark while the block runs.

    Checks the folder before any run: ``ValueError`` for a folder written by an older
    prune-gym, a report path that is a folder, a folder that cannot be made or written, a
    records file that is not a regular file or cannot be appended to, and a folder
    another benchmark holds (``RecordStore.lock``, reentrant in this thread).
    """
    store = RecordStore(out_dir)
    legacy = out_dir / "results.json"
    if legacy.exists() and not store.path.exists():
        raise ValueError(
            f"{legacy} exists but {store.path.name} does not: the folder was written by an "
            "older prune-gym whose runs cannot be matched to their settings. Nothing was "
            "changed; use a new --out folder."
        )
    for name in REPORT_FILES:
        if (out_dir / name).is_dir() and not (out_dir / name).is_symlink():
            raise ValueError(
                f"{out_dir / name} is a folder; the report {name} is written there: move it "
                "away or give another folder"
            )
    with store.lock():
        store.check()
        yield store


def run_keys(spec: BenchSpec) -> set[str]:
    """The keys of every run of ``spec``: pick its records out of a folder shared with
    other benchmarks (the records ``run_benchmark`` returns)."""
    runner = BenchmarkRunner(spec)
    return {runner.identify(run)["run_key"] for run in plan(spec)}


class BenchmarkInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_benchmark``; ``records``: the latest records of the benchmark's
    runs finished by then (in this or earlier benchmarks), for a report."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self.records = records


def run_benchmark(
    spec: BenchSpec, out_dir: str | Path, executor: Executor | None = None
) -> list[dict[str, Any]]:
    """Run every run of ``spec`` whose key is not finished in ``out_dir``; return its records.

    The folder is held (``hold_folder``: checked first; another benchmark on it is
    refused) until this returns. Runs go to ``executor`` (default: one after another in
    this process); each record is appended here as its run finishes, with a progress bar
    over the runs to do. Returns the latest record of each run of ``spec``, reused or run
    now, and only those: a failure under these settings shows even where the same task,
    budget, method and seed succeeded under others. The folder keeps every record of
    every benchmark. A failed run is recorded (status ``failed`` with its error) and the
    rest go on; it is tried again by the next benchmark. An interrupt stops between two
    records, cancelling the runs in progress (every finished run is on disk), and raises
    ``BenchmarkInterrupted``.
    """
    with hold_folder(Path(out_dir)) as store:
        return _run_missing(spec, store, LocalExecutor() if executor is None else executor)


def _run_missing(spec: BenchSpec, store: RecordStore, executor: Executor) -> list[dict[str, Any]]:
    """``run_benchmark``'s work, in the folder it holds."""
    finished = {r["run_key"] for r in store.read() if r["status"] == "ok"}
    benchmark = uuid.uuid4().hex
    runner = runner_for(spec, benchmark)
    keys: set[str] = set()  # of every run of spec: what it reports
    todo = []
    for run in plan(spec):
        try:
            fields = runner.identify(run)
        except Exception as error:  # recorded and reported; the other runs go on
            failed = run.fields() | failure(error)
            store.append(failed)
            keys.add(failed["run_key"])
            continue
        keys.add(fields["run_key"])
        if fields["run_key"] not in finished:
            todo.append((run, fields))
    function = functools.partial(execute_run, spec, benchmark)
    progress = tqdm(total=len(todo), desc=f"benchmark ({executor.name})", unit="run")
    try:
        with progress, closing(executor.map_unordered(function, todo)) as outcomes:
            for outcome in outcomes:
                run, fields = outcome.job
                if outcome.error is None:
                    store.append(outcome.result)
                else:  # the executor lost it (its worker kept dying): recorded like a failure
                    store.append(fields | lost(outcome.error))
                progress.update()
                progress.set_postfix_str(f"{run.task} {run.budget} {run.method} seed {run.seed}")
    except KeyboardInterrupt as stop:
        raise BenchmarkInterrupted(latest_records(store.read(), keys)) from stop
    return latest_records(store.read(), keys)


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
