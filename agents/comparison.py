"""The learned policy next to every fixed policy on the same task and budget.

Every policy is assessed the same way (``prune_gym.evaluation.evaluate``): its final masks
are fine-tuned ``finetune_steps`` and measured on the full val and test splits. Fixed
policies act on the training env's settings with plain ratio actions (so density logits
never distort them); the best of them is chosen on validation accuracy, never on test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from stable_baselines3.common.base_class import BaseAlgorithm
from tqdm import tqdm

import prune_gym  # noqa: F401  (registers the env ids)
from agents.run_config import RunConfig
from prune_gym.baselines import make_policy, policy_env_settings, supported_policies
from prune_gym.bench.report import mean_std, mean_std_cell
from prune_gym.evaluation import Policy, evaluate
from prune_gym.wrappers import BudgetProjection

#: env settings that only shape a learned policy's actions or reward.
LEARNING_ONLY_SETTINGS = ("action", "reference", "density_factor")
SUMMARY_FIELDS = ("val_accuracy", "test_accuracy", "macs_ratio", "params_ratio")


def baseline_env(config: RunConfig, policy: str | None = None) -> gym.Env:
    """The training env's settings with plain ratio actions and no fine-tuning in the reward.

    With a ``policy`` name, also the settings that policy needs (``policy_env_settings``).
    """
    settings = {
        key: value
        for key, value in config.env_settings(finetune_steps=0).items()
        if key not in LEARNING_ONLY_SETTINGS
    }
    if policy is not None:
        settings |= policy_env_settings(policy)
    return gym.make(config.env, **settings)


def policy_row(
    name: str, kind: str, policy: Policy, env: gym.Env, config: RunConfig, **extra: Any
) -> dict[str, Any]:
    """One comparison row: means over ``eval_episodes`` deterministic episodes."""
    start = time.perf_counter()
    records = evaluate(
        policy, env, config.eval_episodes, seed=config.seed, finetune_steps=config.finetune_steps
    )
    row: dict[str, Any] = {"policy": name, "kind": kind, "episodes": len(records)}
    row |= {key: statistics.fmean(float(r[key]) for r in records) for key in SUMMARY_FIELDS}
    row["feasible"] = statistics.fmean(float(r["feasible"]) for r in records)
    row["ratios"] = records[0]["ratios"]
    row["finetune_steps"] = config.finetune_steps
    row["timesteps"] = 0
    row["wall_time"] = time.perf_counter() - start
    return row | extra


def baseline_rows(config: RunConfig) -> list[dict[str, Any]]:
    """Every fixed policy of the env, assessed like the learned one."""
    rows = []
    names = supported_policies(baseline_env(config))
    for name in tqdm(names, desc="fixed policies", unit="policy"):
        env = baseline_env(config, name)
        rows.append(policy_row(name, "baseline", make_policy(name, env, config.seed), env, config))
    return rows


def learned_rows(
    config: RunConfig,
    model: BaseAlgorithm,
    train_seconds: float,
    kept_timesteps: int | None = None,
) -> list[dict[str, Any]]:
    """The learned policy, and behind ``BudgetProjection`` where its actions may overspend.

    ``kept_timesteps``: the env step of the checkpoint kept (0: the untrained policy).
    """
    env = gym.make(config.env, **config.env_settings())
    name = f"learned ({config.agent})"
    extra = {"timesteps": config.timesteps, "train_time": train_seconds}
    extra |= {"kept_timesteps": kept_timesteps}
    rows = [policy_row(name, "learned", model, env, config, **extra)]
    if not env.unwrapped.prunes_to_budget:
        projected = BudgetProjection(env)
        name += " + projection"
        rows.append(policy_row(name, "learned", model, projected, config, **extra))
    return rows


def best_baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fixed policy with the best validation accuracy among those always feasible."""
    feasible = [r for r in rows if r["kind"] == "baseline" and r["feasible"] == 1.0]
    return max(feasible, key=lambda r: r["val_accuracy"], default=None)


def budget_text(config: RunConfig) -> str:
    """The run's budget for table titles: ``flops <= 0.5, params <= 0.6``."""
    return ", ".join(f"{k} <= {v:g}" for k, v in config.budget.items())


def comparison_table(config: RunConfig, rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows, the best baseline (chosen on val) marked."""
    budget = budget_text(config)
    best = best_baseline(rows)
    lines = [
        f"# {config.agent} on {config.env}, task {config.task}, budget {budget}",
        "",
        f"Deterministic policies, {config.eval_episodes} episode(s) each; every final mask "
        f"trained {config.finetune_steps} steps before val/test accuracy. (*): the best "
        f"baseline, chosen on val accuracy among those always feasible: "
        f"{best['policy'] if best else 'none'}. The learned policy is the training "
        "checkpoint best on val (the untrained one included); test accuracy is only "
        "reported.",
        "",
        "| policy | val acc. | test acc. | MACs ratio | params ratio | feasible rate | env steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mark = " (*)" if row is best else ""
        lines.append(
            f"| {row['policy']}{mark} | {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} "
            f"| {row['macs_ratio']:.4f} | {row['params_ratio']:.4f} | {row['feasible']:.0%} "
            f"| {row['timesteps']} |"
        )
    return "\n".join(lines) + "\n"


def seeds_table(
    config: RunConfig, rows: list[dict[str, Any]], seeds: Sequence[int], failed: dict[int, str]
) -> str:
    """Markdown table of every policy's mean ± std over seeds (``rows`` carry ``seed``).

    Each seed's own table, with its best baseline chosen on val, is in its folder; here a
    policy's accuracies are averaged over the seeds it ran on (std: sample, over seeds).
    """
    budget = budget_text(config)
    done = [seed for seed in seeds if seed not in failed]
    lines = [
        f"# {config.agent} on {config.env}, task {config.task}, budget {budget}: "
        f"{len(done)} seed(s)",
        "",
        f"Mean ± std over seeds {', '.join(map(str, done)) or 'none'}; each seed's table is "
        "in its folder (seed-<n>/summary.md). Test accuracy is only reported.",
        "",
        "| policy | seeds | val acc. | test acc. | MACs ratio | params ratio | feasible rate |",
        "|---|---|---|---|---|---|---|",
    ]
    policies = list(dict.fromkeys(row["policy"] for row in rows))
    for policy in policies:
        mine = [row for row in rows if row["policy"] == policy]
        cells = [mean_std_cell(mean_std([row[key] for row in mine])) for key in SUMMARY_FIELDS]
        feasible = statistics.fmean(row["feasible"] for row in mine)
        lines.append(f"| {policy} | {len(mine)} | {' | '.join(cells)} | {feasible:.0%} |")
    for seed, error in failed.items():
        lines.append(f"\nSeed {seed} failed: {error}")
    return "\n".join(lines) + "\n"
