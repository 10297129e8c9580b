"""The ``prune-gym train`` and ``prune-gym eval`` jobs.

``train`` assesses every fixed policy, trains the agent with a live progress bar while
``ValidationSelection`` keeps the checkpoint best on validation, then writes to ``--out``:
``model.zip`` (that checkpoint), ``run.json`` (``RunConfig``), ``results.json`` (one row
per policy), ``summary.md`` (the table), ``progress.csv`` and TensorBoard logs (SB3's
logger), and ``training.png``. ``eval`` reloads a run and redoes the comparison. SB3 zips
are pickle: load only trusted files.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from tqdm import tqdm

import prune_gym  # noqa: F401  (registers the env ids)
from agents.comparison import (
    baseline_rows,
    best_baseline,
    comparison_table,
    learned_rows,
    seeds_table,
)
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian
from agents.run_config import RunConfig, algorithm_kwargs
from agents.selection import ValidationSelection
from prune_gym.algorithms import load_model
from prune_gym.bench.plots import save_png
from prune_gym.executors import Executor
from prune_gym.tasks import make as make_task
from prune_gym.wrappers import CostMonitor, LagrangianReward


class TrainingProgress(BaseCallback):
    """A progress bar showing the live reward, costs and multipliers.

    Agents whose logger does not record episode costs (plain PPO, TD3) get
    ``rollout/ep_cost_<resource>_mean`` from the episodes ``CostMonitor`` summed.
    """

    def __init__(self, total: int, resources: list[str]) -> None:
        super().__init__()
        self.total = total
        self.resources = resources
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, desc="training", unit="step")

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


def make_training_env(config: RunConfig) -> DummyVecEnv:
    """The monitored training env (``ppo`` also prices violations with ``LagrangianReward``)."""

    def build() -> gym.Env:
        env = gym.make(config.env, **config.env_settings())
        if config.agent == "ppo":
            env = LagrangianReward(env, config.lam)
        return CostMonitor(Monitor(env))

    return DummyVecEnv([build])


def build_model(config: RunConfig) -> BaseAlgorithm:
    """The untrained agent (its env settings validated on the way)."""
    if config.agent == "panning":
        low = max(0.0, 1.0 - config.budget["params"] - 0.1)
        kwargs = {k: v for k, v in config.env_kwargs.items() if k != "target"}
        agent = PanningAgent(
            config.task,
            learning_starts=min(500, config.timesteps // 5),
            seed=config.seed,
            env_kwargs=kwargs | {"target_range": (low, min(0.995, low + 0.2))},
        )
        return agent.model
    cls = PPOLagrangian if config.agent == "ppo-lag" else PPO
    return cls(
        "MlpPolicy",
        make_training_env(config),
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
    out = Path(out)
    baselines = baseline_rows(config)  # validates task, env and budget before any file
    reference = resolve_reference(config, baselines)
    model = build_model(config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(config.to_json())
    model.set_logger(configure(str(out), ["csv", "tensorboard"]))
    selection = ValidationSelection(
        gym.make(config.env, **config.env_settings()),
        config.finetune_steps,
        config.eval_freq,
        config.seed,
    )
    progress = TrainingProgress(config.timesteps, list(config.budget))
    start = time.perf_counter()
    model.learn(total_timesteps=config.timesteps, callback=[progress, selection])
    wall = time.perf_counter() - start
    model.save(out / "model.zip")
    rows = learned_rows(config, model, wall, selection.kept_timesteps)
    if reference is not None:
        for row in rows:
            row["reference"] = reference
    rows += baselines
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    table = comparison_table(config, rows)
    if reference is not None:
        table += f"\nThe agent acted by density logits around `{reference}`'s allocation.\n"
    table += f"\nTraining: {config.timesteps} env steps in {wall:.0f} s; "
    table += f"checkpoint kept: env step {selection.kept_timesteps}"
    table += " (the untrained policy).\n" if selection.kept_timesteps == 0 else ".\n"
    (out / "summary.md").write_text(table)
    dense = make_task(config.task, seed=config.seed)
    dense_val = dense.evaluate(dense.pretrained_model(), "val")["accuracy"]
    plot_training(out / "progress.csv", config, rows, dense_val, out / "training.png")
    return table


def train_one(job: tuple[RunConfig, Path]) -> dict[str, Any]:
    """``train(config, out)`` for one seed, wherever it runs: its rows, or its error."""
    config, out = job
    try:
        train(config, out)
    except Exception as error:  # the other seeds go on; the summary reports this one
        return {"error": f"{type(error).__name__}: {error}"}
    return {"rows": json.loads((out / "results.json").read_text())}


def train_seeds(
    config: RunConfig, seeds: Sequence[int], out: str | Path, executor: Executor
) -> tuple[str, dict[int, str]]:
    """One agent per seed (``train`` into ``out/seed-<n>``), then mean ± std over seeds.

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
            progress.update()
    rows.sort(key=lambda row: row["seed"])  # the order seeds finish in varies
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    summary = seeds_table(config, rows, seeds, failed)
    (out / "summary.md").write_text(summary)
    return summary, failed


def evaluate_saved(model_path: str | Path, episodes: int | None = None) -> str:
    """Reload ``model.zip`` and its ``run.json``, and redo the comparison table."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no model at {model_path}; give the model.zip that train wrote")
    run_file = model_path.with_name("run.json")
    if not run_file.exists():
        raise FileNotFoundError(f"{run_file} not found: eval needs the run.json that train writes")
    config = RunConfig.from_file(run_file)
    if episodes is not None:
        config.eval_episodes = episodes
    model = load_model(model_path, config.algorithm)
    return comparison_table(config, learned_rows(config, model, 0.0) + baseline_rows(config))


def read_progress(path: Path) -> dict[str, list[tuple[float, float]]]:
    """SB3's ``progress.csv`` as column -> [(timesteps, value)] for rows that hold a value.

    The check of the untrained policy has a row of its own, stamped by ``eval/timesteps``.
    """
    if not path.exists():
        return {}
    columns: dict[str, list[tuple[float, float]]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            steps = row.get("time/total_timesteps") or row.get("eval/timesteps")
            if not steps:
                continue
            for key, value in row.items():
                if value not in ("", None) and key != "time/total_timesteps":
                    columns.setdefault(key, []).append((float(steps), float(value)))
    return columns


def plot_training(
    progress: Path,
    config: RunConfig,
    rows: list[dict[str, Any]],
    dense_val_accuracy: float,
    path: Path,
) -> None:
    """``training.png``: reward, val accuracy against references, costs, multipliers.

    Panels appear only for what the run logged (no multiplier panel without a
    Lagrangian), so none is empty; the validation panel shows the dense model's and the
    best baseline's val accuracy as reference lines.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = read_progress(progress)
    costs = [r for r in config.budget if f"rollout/ep_cost_{r}_mean" in columns]
    lambdas = [r for r in config.budget if f"train/lambda_{r}" in columns]
    panels = [name for name, present in (
        ("reward", "rollout/ep_rew_mean" in columns),
        ("validation", "eval/val_accuracy" in columns),
        ("costs", bool(costs)),
        ("multipliers", bool(lambdas)),
    ) if present]  # fmt: skip
    if not panels:
        return
    figure = Figure(figsize=(7.5, 2.4 * len(panels) + 0.6), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "reward":
            ax.plot(*zip(*columns["rollout/ep_rew_mean"], strict=True), color="tab:green")
            ax.set_ylabel("episode reward")
        elif panel == "validation":
            checks = columns["eval/val_accuracy"]
            ax.plot(*zip(*checks, strict=True), "o-", label="learned")
            kept = [
                (step, value) for step, value in checks if step == rows[0].get("kept_timesteps")
            ]
            if kept:
                ax.plot(*kept[0], "*", markersize=14, color="C3", label="kept checkpoint")
            best = best_baseline(rows)
            if best is not None:
                ax.axhline(best["val_accuracy"], ls="--", color="gray", label=best["policy"])
            ax.axhline(dense_val_accuracy, ls=":", color="black", label="dense")
            ax.set_ylabel(f"val acc. after\n{config.finetune_steps} steps")
            ax.legend(fontsize=7)
        elif panel == "costs":
            highest = 0.0
            for resource in costs:
                used = columns[f"rollout/ep_cost_{resource}_mean"]
                (line,) = ax.plot(*zip(*used, strict=True))
                line.set_label(f"{resource} used")
                limit = config.budget[resource]
                ax.axhline(limit, ls="--", color=line.get_color(), label=f"{resource} limit")
                highest = max(highest, limit, *(value for _, value in used))
            ax.set_ylim(0.0, 1.15 * highest)  # a cost on its limit stays off the frame
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_ylabel("episode cost")
            ax.legend(fontsize=7)
        else:
            for resource in lambdas:
                values = columns[f"train/lambda_{resource}"]
                ax.plot(*zip(*values, strict=True), label=f"lambda {resource}")
            ax.set_ylabel("Lagrange multiplier")
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("env steps")
    axes[0].set_title(f"{config.agent} on {config.env} ({config.task})", fontsize=9)
    figure.tight_layout()
    save_png(figure, path)
