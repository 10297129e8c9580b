"""The ``prune-gym train`` and ``prune-gym eval`` jobs.

``train`` benches every fixed policy (``agents.comparison``: a bench run in
``--out/bench``), trains the agent on the task at its seed with a live progress bar while
``ValidationSelection`` keeps the checkpoint best on validation, benches that checkpoint
in the same folder, runs the search baselines (``RunConfig.searches``, each in
``--out/searches``) with the same env steps in all, then writes to ``--out``:
``model.zip`` (that checkpoint), ``run.json`` (``RunConfig``), ``results.json`` (one row
per policy), ``summary.md`` (the table), ``progress.csv`` and TensorBoard logs (SB3's
logger), and ``training.png``. An ``INCOMPLETE`` file marks the folder from ``run.json``
until ``model.zip`` is final, so an interrupted training is never taken for a policy.
``eval`` reloads a run and redoes the comparison in its bench folder. SB3 zips are
pickle: load only trusted files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from tqdm import tqdm

import prune_gym  # noqa: F401  (registers the env ids)
from agents.comparison import (
    BENCH_FOLDER,
    best_baseline,
    budget_text,
    comparison_rows,
    comparison_table,
    policy_name,
    run_comparison,
    seeds_table,
)
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian
from agents.run_config import SEARCH_AGENTS, RunConfig, algorithm_kwargs
from agents.saved_runs import saved_run
from agents.search import ActionSearch
from agents.selection import ValidationSelection
from prune_gym.algorithms import INCOMPLETE_MARKER
from prune_gym.bench.plots import training_curves
from prune_gym.executors import Executor
from prune_gym.sb3 import VectorEnvAdapter
from prune_gym.tasks import Task
from prune_gym.tasks import make as make_task
from prune_gym.wrappers import CostMonitor, LagrangianReward

#: the folder, inside a run's, of the search baselines' runs (one per search and budget).
SEARCH_FOLDER = "searches"


class TrainingProgress(BaseCallback):
    """A progress bar showing the live reward, costs and multipliers.

    Agents whose logger does not record episode costs (plain PPO, TD3) get
    ``rollout/ep_cost_<resource>_mean`` from the episodes ``CostMonitor`` summed.
    """

    def __init__(self, total: int, resources: list[str], desc: str = "training") -> None:
        super().__init__()
        self.total, self.desc = total, desc
        self.resources = resources
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc=self.desc, unit="step")

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        return True

    def _on_rollout_end(self) -> None:
        episodes = list(self.model.ep_info_buffer)
        if not episodes:
            return
        shown = {"reward": sum(e["r"] for e in episodes) / len(episodes)}
        if not isinstance(self.model, PPOLagrangian):
            for resource in self.resources:
                costs = [e[f"cost_{resource}"] for e in episodes if f"cost_{resource}" in e]
                if costs:
                    self.logger.record(f"rollout/ep_cost_{resource}_mean", sum(costs) / len(costs))
        for resource, value in getattr(self.model, "lagrange_multipliers", {}).items():
            shown[f"lambda_{resource}"] = value
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()})

    def _on_training_end(self) -> None:
        self.bar.close()


def make_training_env(config: RunConfig, task: Task) -> VecEnv:
    """The monitored training env on ``task`` (``ppo`` also prices violations with
    ``LagrangianReward``), ``config.n_envs`` episodes at once.

    Above one env, an env id with a native vector env (``gymnasium.make_vec``) gets it,
    so the episodes' rewards are computed together; any other steps its envs one after
    another (``DummyVecEnv``).
    """
    wrappers = [Monitor, CostMonitor]
    if config.agent == "ppo":
        wrappers.insert(0, partial(LagrangianReward, lam=config.lam))
    settings = config.env_settings(task=task)
    if config.n_envs > 1 and gym.spec(config.env.rpartition(":")[2]).vector_entry_point:
        venv = gym.make_vec(
            config.env,
            num_envs=config.n_envs,
            vectorization_mode="vector_entry_point",
            sub_env_wrappers=wrappers,
            **settings,
        )
        return VectorEnvAdapter(venv)

    def build() -> gym.Env:
        env = gym.make(config.env, **settings)
        for wrap in wrappers:
            env = wrap(env)
        return env

    return DummyVecEnv([build] * config.n_envs)


def build_model(config: RunConfig, task: Task) -> BaseAlgorithm:
    """The untrained agent on ``task`` (its env settings validated on the way)."""
    if config.agent == "panning":
        low = max(0.0, 1.0 - config.budget["params"] - 0.1)
        kwargs = {k: v for k, v in config.env_kwargs.items() if k != "target"}
        agent = PanningAgent(
            task,
            learning_starts=min(500, config.timesteps // 5),
            seed=config.seed,
            env_kwargs=kwargs | {"target_range": (low, min(0.995, low + 0.2))},
        )
        return agent.model
    if config.agent in SEARCH_AGENTS:
        return ActionSearch(
            "MlpPolicy",
            make_training_env(config, task),
            method=SEARCH_AGENTS[config.agent],
            seed=config.seed,
        )
    cls = PPOLagrangian if config.agent == "ppo-lag" else PPO
    return cls(
        "MlpPolicy",
        make_training_env(config, task),
        seed=config.seed,
        device="cpu",
        **algorithm_kwargs(config),
    )


def resolve_reference(config: RunConfig, baselines: list[dict[str, Any]]) -> str | None:
    """Replace ``reference="best"`` by the best fixed policy's ratios; return its name."""
    if config.env_kwargs.get("reference") != "best":
        return None
    best = best_baseline(baselines)
    if best is None:
        raise ValueError(
            'reference="best" needs a fixed policy that meets the budget; none does. '
            "Give reference='global', 'erk' or 'uniform'."
        )
    config.env_kwargs["reference"] = dict(best["ratios"])
    return best["policy"]


def train(config: RunConfig, out: str | Path) -> str:
    """Train, keep the checkpoint best on val, compare with every fixed policy; the table."""
    return train_and_compare(config, out)[0]


def train_and_compare(config: RunConfig, out: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """``train``'s work: the table, and the comparison's bench records (with ``policy``).

    The agent trains, and every policy is assessed, on the task at ``config.seed``. The
    fixed policies' runs of any earlier comparison (another ``out`` too) are reused, not
    redone (``agents.comparison.share_baselines``).
    """
    out = Path(out)
    task = make_task(config.task, seed=config.seed)
    # the fixed policies first: they validate task, env and budget before any file
    baselines = comparison_rows(config, run_comparison(config, task, out / BENCH_FOLDER))
    reference = resolve_reference(config, baselines)
    model = build_model(config, task)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / INCOMPLETE_MARKER  # until model.zip is final: eval and bench refuse the run
    marker.write_text(f"prune-gym train started {time.strftime('%Y-%m-%d %H:%M:%S')}, not finished")
    (out / "run.json").write_text(config.to_json())
    model.set_logger(configure(str(out), ["csv", "tensorboard"]))
    env = gym.make(config.env, **config.env_settings(task=task))
    ranged = len(config.evaluation_budgets) > 1
    budgets = [budget.limits for budget in config.evaluation_budgets] if ranged else []
    selection = ValidationSelection(
        env, config.finetune_steps, config.eval_freq, config.seed, budgets=budgets
    )
    desc = f"{config.agent} at {budget_text(config)}"
    progress = TrainingProgress(config.timesteps, list(config.budget), desc)
    start = time.perf_counter()
    model.learn(total_timesteps=config.timesteps, callback=[progress, selection])
    wall = time.perf_counter() - start
    model.save(out / "model.zip")
    marker.unlink()  # the model is final; eval redoes a comparison cut short after this
    projection = not env.unwrapped.prunes_to_budget
    records = run_comparison(config, task, out / BENCH_FOLDER, out / "model.zip", projection)
    records += run_searches(config, out)
    learned = {"train_time": wall, "kept_timesteps": selection.kept_timesteps}
    learned |= {} if reference is None else {"reference": reference}
    rows = comparison_rows(config, records, **learned)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    table = comparison_table(config, rows)
    if reference is not None:
        table += f"\nThe agent acted by density logits around `{reference}`'s allocation.\n"
    if config.searches:
        table += (
            f"\n{' and '.join(config.searches)}: searches over the same action around the same "
            f"reference, {config.search_timesteps} env steps at each budget (together the "
            f"agent's {config.timesteps}), kept by the same selection; runs in "
            f"{out / SEARCH_FOLDER}.\n"
        )
    table += f"\nTraining: {config.timesteps} env steps in {wall:.0f} s; "
    table += f"checkpoint kept: env step {selection.kept_timesteps}"
    table += " (the untrained policy).\n" if selection.kept_timesteps == 0 else ".\n"
    (out / "summary.md").write_text(table)
    best = best_baseline(rows)
    training_curves(
        out / "progress.csv",
        out / "training.png",
        title=f"{config.agent} on {config.env} ({config.task})",
        budget=config.budget,
        finetune_steps=config.finetune_steps,
        kept_timesteps=selection.kept_timesteps,
        best=None if best is None or ranged else (best["policy"], best["val_accuracy"]),
        dense_val_accuracy=task.evaluate(task.pretrained_model(), "val")["accuracy"],
        prunes_to_budget=env.unwrapped.prunes_to_budget,
    )
    return table, records


def run_searches(config: RunConfig, out: Path) -> list[dict[str, Any]]:
    """Each of ``config.searches`` at each evaluation budget, trained and compared like the
    agent (``train_and_compare`` into ``out/searches/<search>-<budget>``) with
    ``search_timesteps`` env steps: the records of their final policies, named after the
    search."""
    records = []
    for search in config.searches:
        for budget in config.evaluation_budgets:
            searching = dataclasses.replace(  # env_kwargs: the reference the agent acted by
                config,
                agent=search,
                searches=[],
                budget=dict(budget.limits),
                timesteps=config.search_timesteps,
                eval_freq=None,
            )
            folder = out / SEARCH_FOLDER / f"{search}-{budget.label}"
            _, found = train_and_compare(searching, folder)
            records += [
                record | {"policy": policy_name(record, search, search=True), "search": search}
                for record in found
                if record["kind"] == "learned"
            ]
    return records


def train_one(job: tuple[RunConfig, Path]) -> dict[str, Any]:
    """``train(config, out)`` for one seed, wherever it runs: its rows and comparison
    records, or its error."""
    config, out = job
    try:
        _, records = train_and_compare(config, out)
    except Exception as error:  # the other seeds go on; the summary reports this one
        return {"error": f"{type(error).__name__}: {error}"}
    return {"rows": json.loads((out / "results.json").read_text()), "records": records}


def train_seeds(
    config: RunConfig, seeds: Sequence[int], out: str | Path, executor: Executor
) -> tuple[str, dict[int, str]]:
    """One agent per seed (``train`` into ``out/seed-<n>``), then mean ± std over their runs.

    The seeds run on ``executor`` (in parallel on Ray). Writes ``out/results.json`` (every
    seed's rows, each with its ``seed``) and ``out/summary.md``. A seed that fails does not
    stop the others; returns the summary and the failed seeds with their errors.
    """
    out = Path(out)
    jobs = []
    for seed in seeds:
        seeded = copy.deepcopy(config)  # train() resolves reference="best" in place
        seeded.seed = seed
        jobs.append((seeded, out / f"seed-{seed}"))
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    failed: dict[int, str] = {}
    outcomes = executor.map_unordered(train_one, jobs)
    with closing(outcomes), tqdm(total=len(jobs), desc="seeds", unit="seed") as progress:
        for outcome in outcomes:
            seed = outcome.job[0].seed
            result = outcome.result or {"error": f"run lost: {outcome.error}"}
            if "error" in result:
                failed[seed] = result["error"]
            else:
                rows += [row | {"seed": seed} for row in result["rows"]]
                records += result["records"]
            progress.update()
    rows.sort(key=lambda row: row["seed"])  # the order seeds finish in varies
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    summary = seeds_table(config, records, seeds, failed)
    (out / "summary.md").write_text(summary)
    return summary, failed


def evaluate_saved(model_path: str | Path, episodes: int | None = None) -> str:
    """Reload ``model.zip`` and its ``run.json``, and redo the comparison table (in the
    run's bench folder, reusing the runs done before); ``episodes``: other than the run's
    own (``eval_episodes``)."""
    config, task, projection = saved_run(model_path)
    if episodes is not None:
        config.eval_episodes = episodes
    folder = Path(model_path).parent / BENCH_FOLDER
    records = run_comparison(config, task, folder, Path(model_path), projection)
    return comparison_table(config, comparison_rows(config, records))
