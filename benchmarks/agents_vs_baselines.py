"""Learned agents against the best fixed policy at the same budget, cell by cell.

(Not ``benchmarks/agents.py``: run as a script, that name would shadow the ``agents``
package.)

    python benchmarks/agents_vs_baselines.py                    # every part, 3 seeds
    python benchmarks/agents_vs_baselines.py --parts ppo-lag --tasks digits-mlp --seeds 1
    python benchmarks/agents_vs_baselines.py --parts conditioned --setting post-training --seeds 5

Every (cell, seed) is one ``prune-gym train`` run in ``--out/<part>/<cell>/seed<k>``, so
each number can be reproduced with ``prune-gym bench --policy .../model.zip``. Runs that
finished before are read back, not repeated.

- ``ppo-lag``: PPO-Lagrangian on GlobalRatio-v0 in the fine-tuned setting (density logits
  around the best fixed policy's allocation, reward minus the loss on the reward split
  after 10 fine-tuning steps, the checkpoint best on val kept), at unstructured params
  0.05 / 0.02 and channel flops 0.3 / 0.5, on the digits and MNIST-1D tasks. Every final
  mask, learned or fixed, is fine-tuned 200 steps.
- ``lagrangian``: the same cells with plain ratio actions, where only the Lagrangian keeps
  the budget: is the raw deterministic policy feasible? (digits tasks)
- ``random-search`` and ``cma-es``: the search baselines (``agents/search.py``) on the
  ``ppo-lag`` cells, with the same env steps, density logits and selection.
- ``search``: PPO-Lagrangian against both searches on those cells, seed by seed (it
  trains whatever runs of the three are missing): the paired p of PPO against each.
- ``conditioned``: one budget-conditioned PPO-Lagrangian policy per task and seed, trained
  over the setting's unstructured params range and assessed at its five budgets (two of
  them held out of the range; ``SETTINGS``), against random search and CMA-ES over the
  same action (logits around ``global``) run at each budget with an equal share of the
  same total env steps, and the best fixed policy at each budget.

- ``two-resource``: PPO-Lagrangian against PPO with no price on violations, both acting
  plain ratios (no rescaling) under params 0.3 and flops 0.4 on mnist1d-cnn: is the raw
  deterministic policy feasible, and are the multipliers above 0 at the end?

``--setting finetuned`` (default) or ``post-training`` (no fine-tuning in the reward or
before the final measure) applies to every ratio part; runs go to ``--out/<setting>``.
``--setting language-model`` runs the ratio parts on ``lm-tiny`` post-training, with
minus the log perplexity as the reward and the test perplexity as the measure
(``--parts conditioned``: one policy at 60% to 70% sparsity, assessed from 50% to 75%).
- ``transfer``: a PPO-Lagrangian policy on LayerRatio-v0 (per-layer observations)
  trained on two tasks with ``MultiTaskEnv`` behind ``BudgetProjection`` (as AMC trains)
  and acting on a third it never saw, at params 0.3, against a policy trained alike on
  that task with the same env steps and the best fixed policy there. The raw feasible
  column is the policy without the projection; test accuracy is with it.
- ``panning``: the Panning agent (TD3, reward the accuracy after 100 training steps) vs
  iterative SNIP / GraSP / SynFlow and the hand-set schedule at targets 0.95 / 0.98 /
  0.99, every mask trained 600 steps from the initialisation with the task's recipe
  (digits and MNIST-1D tasks), with the paired p against the best fixed policy.

Per cell: feasibility of the learned policy over seeds, its test accuracy next to the best
fixed policy's (chosen on val in every seed), the gap and its two-sided paired t-test over
seeds (a win counts only beyond noise, p < 0.05), whether the goal (feasible in every
seed, mean test accuracy >= the best fixed policy's) is met, and the env step of the
checkpoint kept in each seed (0: the untrained policy, i.e. learning did not beat the
starting allocation on val). Each seed trains its own task (weights, split, rewards).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.comparison import best_baseline, comparison_rows, run_comparison
from agents.jobs import train
from agents.ppo_lagrangian import PPOLagrangian
from agents.run_config import RunConfig, algorithm_kwargs
from prune_gym.bench.plots import read_progress
from prune_gym.bench.report import at_chance, mean_std, mean_std_cell, paired_p_value
from prune_gym.envs import MultiTaskEnv
from prune_gym.tasks import make as make_task
from prune_gym.wrappers import BudgetProjection, CostMonitor

DIGITS = ("digits-cnn", "digits-mlp")
MNIST1D = ("mnist1d-cnn", "mnist1d-mlp")
#: (structure, budget) cells where allocation matters.
CELLS = (
    ("unstructured", {"params": 0.05}),
    ("unstructured", {"params": 0.02}),
    ("channel", {"flops": 0.3}),
    ("channel", {"flops": 0.5}),
)
PANNING_TARGETS = (0.95, 0.98, 0.99)
#: The settings the ratio parts run in (``--setting``): the fine-tuned one these cells
#: were designed for (minus the loss after 10 fine-tuning steps as the reward, 200 steps
#: before the final measure), and post-training (``prune-gym train``'s default since 0.4:
#: the accuracy with no fine-tuning, and none before the final measure). Each has
#: the ``conditioned`` part's training range and assessment budgets, two held out. The
#: searches are parts of their own here, not rows of each run.
SETTINGS: dict[str, dict[str, Any]] = {
    "finetuned": {
        "fields": {"finetune_steps": 200, "searches": []},
        "env": {"reward": "loss", "reward_finetune_steps": 10},
        "range": (0.03, 0.15),
        "budgets": (0.02, 0.03, 0.067, 0.15, 0.2),
    },
    "post-training": {
        "fields": {"finetune_steps": 0, "searches": []},
        "env": {"reward": "accuracy", "reward_finetune_steps": 0},
        "range": (0.2, 0.5),
        "budgets": (0.15, 0.2, 0.316, 0.5, 0.6),
    },
    # the language models, post-training: the reward is minus the log perplexity on the
    # reward split, the measure is the test perplexity (lower is better), weights ranked
    # by Wanda inside each layer; trained at 60% to 70% sparsity.
    "language-model": {
        "fields": {"finetune_steps": 0, "searches": []},
        "env": {
            "reward": "loss",
            "reward_finetune_steps": 0,
            "rank_by": "wanda",
            "metrics": ["magnitude", "wanda"],
        },
        "range": (0.3, 0.4),
        "budgets": (0.25, 0.3, 0.346, 0.4, 0.5),
        "measure": "test_perplexity",
        "tasks": ("lm-tiny",),
    },
}


def setting_config(args: argparse.Namespace, **fields: Any) -> RunConfig:
    """A ratio agent's ``RunConfig`` in ``args.setting`` (``SETTINGS``)."""
    setting = SETTINGS[args.setting]
    env_kwargs = setting["env"] | fields.pop("env_kwargs", {})
    return RunConfig(**setting["fields"] | fields, env_kwargs=env_kwargs)


#: a ratio part -> (the agent it trains, its GlobalRatio action).
AGENT_PARTS = {
    "ppo-lag": ("ppo-lag", "logits"),
    "lagrangian": ("ppo-lag", "ratios"),
    "random-search": ("random-search", "logits"),
    "cma-es": ("cma-es", "logits"),
}
#: the anchors' budgets of env steps, for the table's context.
ANCHORS = "AMC ~400 episodes (x layers steps), Malik et al. 40k steps, Panning 5e4 steps"


def run_folder(out: Path, part: str, label: str, seed: int) -> Path:
    return out / part / label / f"seed{seed}"


def ensure_run(config: RunConfig, folder: Path) -> list[dict[str, Any]]:
    """The run's ``results.json`` rows, training it first unless it finished before."""
    results = folder / "results.json"
    if not results.exists():
        train(config, folder)
    return json.loads(results.read_text())


def cell_label(structure: str, budget: dict[str, float]) -> str:
    (resource, value), *_ = budget.items()
    return f"{structure}-{resource}{value:g}"


def summarise_cell(runs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Over seeds: the learned row (first), the best baseline on val, and their gap."""
    learned = [rows[0] for rows in runs]
    best = [best_baseline(rows) for rows in runs]
    learned_test = [r["test_accuracy"] for r in learned]
    best_test = [b["test_accuracy"] for b in best]
    return {
        "feasible": statistics.fmean(r["feasible"] == 1.0 for r in learned),
        "learned": learned_test,
        "best": best_test,
        "best_names": sorted({b["policy"] for b in best}),
        "gap": [a - b for a, b in zip(learned_test, best_test, strict=True)],
        "timesteps": learned[0]["timesteps"],
        "kept": "/".join(str(r.get("kept_timesteps", "?")) for r in learned),
        "train_time": statistics.fmean(r["train_time"] for r in learned),
    }


def goal(cell: dict[str, Any], task: str) -> str:
    """Goal met? Feasible in every seed and mean test accuracy >= the best fixed policy's;
    "n/a (at chance)" where both are within 0.05 of chance, so no policy works there."""
    means = [statistics.fmean(cell["learned"]), statistics.fmean(cell["best"])]
    if at_chance(means, make_task(task).num_classes):
        return "n/a (at chance)"
    met = cell["feasible"] == 1.0 and statistics.fmean(cell["gap"]) >= 0.0
    return "yes" if met else "no"


def cell_runs(
    args: argparse.Namespace, task: str, cell: tuple[str, dict[str, float]], part: str
) -> list[list[dict[str, Any]]]:
    """Every seed's rows of ``part``'s agent on (task, cell), trained where missing."""
    structure, budget = cell
    agent, action = AGENT_PARTS[part]
    return [
        ensure_run(
            setting_config(
                args,
                agent=agent,
                task=task,
                budget=budget,
                seed=seed,
                timesteps=args.timesteps,
                env_kwargs={"structure": structure, "action": action}
                | ({} if action == "logits" else {"reference": "global"}),
            ),
            run_folder(args.out, part, f"{task}-{cell_label(structure, budget)}", seed),
        )
        for seed in range(args.seeds)
    ]


def mean_cells(values: dict[str, list[float]], keys: Iterable[str]) -> list[str]:
    """``mean ± std`` cells (3 decimals) of ``values[key]`` for each key."""
    return [mean_std_cell(mean_std(values[key]), 3) for key in keys]


def emit(lines: list[str], row: str) -> None:
    """Add a row to a table and print it at once, so a long run shows its progress."""
    lines.append(row)
    print(row, flush=True)


def p_text(ours: list[float], theirs: list[float]) -> str:
    """The paired two-sided p-value over seeds, or n/a with fewer than 2 seeds."""
    return f"{paired_p_value(ours, theirs):.3f}" if len(ours) > 1 else "n/a"


def ratio_part(args: argparse.Namespace, tasks: tuple[str, ...], part: str) -> str:
    """Train every (task, cell, seed) with ``part``'s agent; the markdown table of the cells."""
    lines = [
        "| task | cell | learned feasible | learned test | best fixed (on val) | best test "
        "| gap (learned - best) | paired p | goal met | env steps | kept step (per seed) "
        "| train time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for cell_spec in CELLS:
            cell = summarise_cell(cell_runs(args, task, cell_spec, part))
            learned, best, gap = mean_cells(cell, ("learned", "best", "gap"))
            emit(
                lines,
                f"| {task} | {cell_label(*cell_spec)} | {cell['feasible']:.0%} | {learned} "
                f"| {', '.join(cell['best_names'])} | {best} | {gap} "
                f"| {p_text(cell['learned'], cell['best'])} | {goal(cell, task)} "
                f"| {cell['timesteps']} | {cell['kept']} | {cell['train_time']:.0f} |",
            )
    return "\n".join(lines)


def search_part(args: argparse.Namespace, tasks: tuple[str, ...]) -> str:
    """PPO-Lagrangian against random search and CMA-ES on each cell, seed by seed."""
    lines = [
        "| task | cell | ppo-lag test | random-search test | cma-es test "
        "| p (ppo vs random) | p (ppo vs cma-es) | env steps each |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for cell_spec in CELLS:
            tests = {
                part: summarise_cell(cell_runs(args, task, cell_spec, part))["learned"]
                for part in ("ppo-lag", "random-search", "cma-es")
            }
            ppo = tests["ppo-lag"]
            emit(
                lines,
                f"| {task} | {cell_label(*cell_spec)} | {' | '.join(mean_cells(tests, tests))} "
                f"| {p_text(ppo, tests['random-search'])} | {p_text(ppo, tests['cma-es'])} "
                f"| {args.timesteps} |",
            )
    return "\n".join(lines)


def conditioned_part(args: argparse.Namespace, tasks: tuple[str, ...]) -> str:
    """One policy over a budget range per seed, at every budget, against random search and
    CMA-ES run at each budget with an equal share of the same total env steps."""
    setting = SETTINGS[args.setting]
    low, high = setting["range"]
    budgets = setting["budgets"]
    measure = setting.get("measure", "test_accuracy")
    best_of = max if measure == "test_accuracy" else min  # perplexity: lower is better
    search_steps = args.timesteps // len(budgets)
    lines = [
        f"Test measure: {measure}.",
        "",
        "| task | params budget | held out | learned feasible | learned test | random-search "
        "test | cma-es test | best fixed (on val) | best test | p vs best fixed | p vs best "
        "search | env steps (learned / each search per budget) | learned train time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        keys = ("learned", "feasible", "random-search", "cma-es", "best", "names", "time")
        cells = {budget: {key: [] for key in keys} for budget in budgets}
        for seed in range(args.seeds):
            folder = run_folder(args.out, "conditioned", f"{task}-params{low:g}-{high:g}", seed)
            if not (folder / "model.zip").exists():
                conditioned = setting_config(
                    args, task=task, budget={"params": [low, high]}, seed=seed,
                    timesteps=args.timesteps,
                )  # fmt: skip
                train(conditioned, folder)
            trained = RunConfig.from_file(folder / "run.json")
            train_time = json.loads((folder / "results.json").read_text())[0]["train_time"]
            seeded_task = make_task(task, seed=seed)
            for budget in budgets:
                at_budget = copy.deepcopy(trained)
                at_budget.budget = {"params": budget}
                records = run_comparison(
                    at_budget, seeded_task, folder / "bench", folder / "model.zip"
                )
                rows = comparison_rows(at_budget, records)
                cell = cells[budget]
                learned, best = rows[0], best_baseline(rows)
                cell["learned"].append(learned[measure])
                cell["feasible"].append(learned["feasible"] == 1.0)
                cell["best"].append(best[measure])
                cell["names"].append(best["policy"])
                cell["time"].append(train_time)
                for search in ("random-search", "cma-es"):
                    searched = ensure_run(
                        setting_config(
                            args,
                            agent=search,
                            task=task,
                            budget={"params": budget},
                            seed=seed,
                            timesteps=search_steps,
                            env_kwargs={"reference": "global"},  # the policy's action exactly
                        ),
                        run_folder(
                            args.out, f"conditioned-{search}", f"{task}-params{budget:g}", seed
                        ),
                    )
                    cell[search].append(searched[0][measure])
        for budget, cell in cells.items():
            better = best_of(("random-search", "cma-es"), key=lambda k: statistics.fmean(cell[k]))
            learned, random, cma, best = mean_cells(
                cell, ("learned", "random-search", "cma-es", "best")
            )
            emit(
                lines,
                f"| {task} | {budget:g} | {'no' if low <= budget <= high else 'yes'} "
                f"| {statistics.fmean(cell['feasible']):.0%} | {learned} | {random} | {cma} "
                f"| {', '.join(sorted(set(cell['names'])))} | {best} "
                f"| {p_text(cell['learned'], cell['best'])} "
                f"| {p_text(cell['learned'], cell[better])} ({better}) "
                f"| {args.timesteps} / {search_steps} | {statistics.fmean(cell['time']):.0f} |",
            )
    return "\n".join(lines)


def panning_part(args: argparse.Namespace, tasks: tuple[str, ...]) -> str:
    """The Panning agent vs the iterative baselines at each target; test accuracy."""
    policies = ("learned (panning)", "iterative-snip", "iterative-grasp", "iterative-synflow")
    policies += ("panning-handset", "random")
    lines = [
        "| task | target | "
        + " | ".join(policies)
        + " | best fixed (on val) | paired p | goal met | env steps | kept step (per seed) "
        "| train time (s) |",
        "|---|---|" + "---|" * (len(policies) + 6),
    ]
    for task in tasks:
        for target in PANNING_TARGETS:
            runs = [
                ensure_run(
                    RunConfig(
                        agent="panning",
                        task=task,
                        budget={"params": round(1.0 - target, 6)},
                        seed=seed,
                        timesteps=args.panning_timesteps,
                    ),
                    run_folder(args.out, "panning", f"{task}-target{target:g}", seed),
                )
                for seed in range(args.seeds)
            ]
            by_policy = [{r["policy"]: r["test_accuracy"] for r in rows} for rows in runs]
            cells = [
                mean_std_cell(mean_std([tests[p] for tests in by_policy]), 3) for p in policies
            ]
            cell = summarise_cell(runs)
            emit(
                lines,
                f"| {task} | {target} | "
                + " | ".join(cells)
                + f" | {', '.join(cell['best_names'])} | {p_text(cell['learned'], cell['best'])} "
                f"| {goal(cell, task)} | {cell['timesteps']} | {cell['kept']} "
                f"| {cell['train_time']:.0f} |",
            )
    return "\n".join(lines)


#: the two-resource part: plain ratio actions (no rescaling) under two limits, where only
#: the multipliers keep the raw deterministic policy within the budget.
TWO_RESOURCES = {"params": 0.3, "flops": 0.4}
TWO_RESOURCE_TIMESTEPS = 4096


def final_multipliers(folder: Path) -> dict[str, float]:
    """The Lagrange multipliers a run logged last (``train/lambda_<resource>``), if any."""
    columns = read_progress(folder / "progress.csv")
    return {
        key.removeprefix("train/lambda_"): values[-1][1]
        for key, values in columns.items()
        if key.startswith("train/lambda_")
    }


def two_resource_part(args: argparse.Namespace, tasks: tuple[str, ...]) -> str:
    """PPO-Lagrangian against PPO with no price on violations (``lam`` 0), both acting plain
    ratios under ``TWO_RESOURCES``: is the raw deterministic policy feasible, and what are
    the multipliers at the end?"""
    lines = [
        "| task | agent | raw policy feasible | final multipliers (per seed) | learned test "
        "| best fixed (on val) | best test | paired p | env steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        for agent, lam in (("ppo-lag", 1.0), ("ppo", 0.0)):
            folders = [
                run_folder(args.out, "two-resource", f"{task}-{agent}", seed)
                for seed in range(args.seeds)
            ]
            runs = [
                ensure_run(
                    setting_config(
                        args,
                        agent=agent,
                        lam=lam,
                        task=task,
                        budget=TWO_RESOURCES,
                        seed=seed,
                        timesteps=TWO_RESOURCE_TIMESTEPS,
                        env_kwargs={"action": "ratios"},
                    ),
                    folder,
                )
                for seed, folder in enumerate(folders)
            ]
            name = f"learned ({agent})"  # not the run's row behind BudgetProjection
            learned = [next(r for r in rows if r["policy"] == name) for rows in runs]
            best = [best_baseline(rows) for rows in runs]
            multipliers = [final_multipliers(folder) for folder in folders]
            shown = "; ".join(
                ", ".join(f"{k} {v:.2f}" for k, v in m.items()) or "none" for m in multipliers
            )
            tests = [r["test_accuracy"] for r in learned]
            best_tests = [b["test_accuracy"] for b in best]
            emit(
                lines,
                f"| {task} | {agent} (lam {lam:g}) "
                f"| {sum(r['feasible'] == 1.0 for r in learned)}/{len(learned)} | {shown} "
                f"| {mean_std_cell(mean_std(tests), 3)} "
                f"| {', '.join(sorted({b['policy'] for b in best}))} "
                f"| {mean_std_cell(mean_std(best_tests), 3)} | {p_text(tests, best_tests)} "
                f"| {TWO_RESOURCE_TIMESTEPS} |",
            )
    return "\n".join(lines)


#: the transfer part (the stretch of issue 21): held-out task -> the two tasks on which its
#: LayerRatio policy trains; the held-out one has a conv net where one training task has
#: conv layers, the other only linear ones.
TRANSFER_FOLDS = {
    "mnist1d-cnn": ("digits-cnn", "mnist1d-mlp"),
    "mnist1d-mlp": ("digits-mlp", "mnist1d-cnn"),
}
TRANSFER_BUDGET = {"params": 0.3}
TRANSFER_TIMESTEPS = 16384


def layer_ratio_config(args: argparse.Namespace, task: str, seed: int) -> RunConfig:
    """PPO-Lagrangian on LayerRatio-v0 (per-layer observations) at ``TRANSFER_BUDGET``."""
    return setting_config(
        args,
        env="prune_gym/LayerRatio-v0",
        task=task,
        budget=TRANSFER_BUDGET,
        seed=seed,
        timesteps=TRANSFER_TIMESTEPS,
    )


def train_on_tasks(config: RunConfig, tasks: tuple[str, ...], path: Path) -> None:
    """Train ``config``'s agent on a ``MultiTaskEnv`` over ``tasks`` (each at
    ``config.seed``) and save it to ``path``.

    As AMC trains its agent, the agent acts behind the ``BudgetProjection`` it is assessed
    with, so it learns how to share what the projection leaves to each layer. The final
    policy is kept: no checkpoint is chosen, since a held-out task's val is not the
    agent's to see (nor, to compare alike, is the training task's).
    """
    envs = [
        CostMonitor(Monitor(BudgetProjection(gym.make(config.env, **config.env_settings(task=t)))))
        for t in (make_task(name, seed=config.seed) for name in tasks)
    ]
    model = PPOLagrangian(
        "MlpPolicy",
        DummyVecEnv([lambda: MultiTaskEnv(envs)]),
        seed=config.seed,
        device="cpu",
        **algorithm_kwargs(config),
    )
    model.learn(total_timesteps=config.timesteps)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)


def transfer_rows(config: RunConfig, tasks: tuple[str, ...], folder: Path) -> list[dict[str, Any]]:
    """The comparison on ``config.task`` of a policy trained on ``tasks`` alone (trained in
    ``folder`` unless it was before) with every fixed policy there."""
    model = folder / "model.zip"
    if not model.exists():
        train_on_tasks(config, tasks, model)
    task = make_task(config.task, seed=config.seed)
    records = run_comparison(config, task, folder / "bench", model, projection=True)
    return comparison_rows(config, records)


def transfer_part(args: argparse.Namespace, tasks: tuple[str, ...]) -> str:
    """A LayerRatio policy trained on two tasks and acting on a third it never saw, against
    one trained alike (same env steps, final policy) on that task and the best fixed
    policy there."""
    lines = [
        "| held-out task | trained on | transfer raw feasible | transfer test | in-task test "
        "| best fixed (on val) | best test | p transfer vs best fixed | p transfer vs in-task "
        "| env steps each |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    projected = "learned (ppo-lag) + projection"
    for held_out in tasks:
        sources = TRANSFER_FOLDS[held_out]
        transfer, in_task, best = [], [], []
        for seed in range(args.seeds):
            config = layer_ratio_config(args, held_out, seed)
            label = f"{held_out}-from-{'+'.join(sources)}"
            rows = transfer_rows(config, sources, run_folder(args.out, "transfer", label, seed))
            transfer.append({row["policy"]: row for row in rows})
            folder = run_folder(args.out, "transfer", f"{held_out}-in-task", seed)
            own = transfer_rows(config, (held_out,), folder)
            in_task.append(next(row for row in own if row["policy"] == projected))
            best.append(best_baseline(own))
        tests = {
            "transfer": [rows[projected]["test_accuracy"] for rows in transfer],
            "in-task": [row["test_accuracy"] for row in in_task],
            "best": [row["test_accuracy"] for row in best],
        }
        feasible = sum(rows["learned (ppo-lag)"]["feasible"] == 1.0 for rows in transfer)
        emit(
            lines,
            f"| {held_out} | {', '.join(sources)} | {feasible}/{args.seeds} "
            f"| {' | '.join(mean_cells(tests, ('transfer', 'in-task')))} "
            f"| {', '.join(sorted({row['policy'] for row in best}))} "
            f"| {mean_cells(tests, ('best',))[0]} | {p_text(tests['transfer'], tests['best'])} "
            f"| {p_text(tests['transfer'], tests['in-task'])} | {TRANSFER_TIMESTEPS} |",
        )
    return "\n".join(lines)


#: part name -> (section title, default tasks, table builder); each part's table is kept
#: in ``--out/<part>.md``, and ``agents_vs_baselines.md`` joins every part run so far.
PARTS = {
    "ppo-lag": (
        "PPO-Lagrangian (density logits) vs the best fixed policy",
        DIGITS + MNIST1D,
        lambda args, tasks: ratio_part(args, tasks, "ppo-lag"),
    ),
    "lagrangian": (
        "PPO-Lagrangian (plain ratios) vs the best fixed policy",
        DIGITS,
        lambda args, tasks: ratio_part(args, tasks, "lagrangian"),
    ),
    "random-search": (
        "Random search (density logits) vs the best fixed policy",
        DIGITS + MNIST1D,
        lambda args, tasks: ratio_part(args, tasks, "random-search"),
    ),
    "cma-es": (
        "CMA-ES (density logits) vs the best fixed policy",
        DIGITS + MNIST1D,
        lambda args, tasks: ratio_part(args, tasks, "cma-es"),
    ),
    "search": ("PPO-Lagrangian vs the searches, same env steps", DIGITS + MNIST1D, search_part),
    "conditioned": (
        "One budget-conditioned PPO-Lagrangian policy vs per-budget searches",
        DIGITS + MNIST1D,
        conditioned_part,
    ),
    "two-resource": (
        "PPO-Lagrangian vs unpriced PPO, plain ratios under params and flops limits",
        ("mnist1d-cnn",),
        two_resource_part,
    ),
    "panning": ("Panning agent vs pruning-at-init baselines", DIGITS + MNIST1D, panning_part),
    "transfer": (
        "A LayerRatio policy on a task it never saw (trained on two others)",
        tuple(TRANSFER_FOLDS),
        transfer_part,
    ),
}


def main() -> None:
    torch.set_num_threads(1)  # one core per benchmark process: run parts side by side
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--tasks", nargs="+", help="default: each part's own (see PARTS)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--timesteps", type=int, default=2048, help="env steps of PPO-Lagrangian and the searches"
    )
    parser.add_argument("--panning-timesteps", type=int, default=1000)
    parser.add_argument(
        "--setting",
        choices=list(SETTINGS),
        default="finetuned",
        help="the ratio parts' setting (SETTINGS); runs go to --out/<setting>",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/agents"))
    args = parser.parse_args()
    args.out = args.out / args.setting
    args.out.mkdir(parents=True, exist_ok=True)
    for part in args.parts:
        title, tasks, build = PARTS[part]
        tasks = SETTINGS[args.setting].get("tasks", tasks)  # a setting of its own tasks
        table = build(args, tuple(args.tasks or tasks))
        (args.out / f"{part}.md").write_text(f"## {title}\n\n{table}\n")
    sections = [
        (args.out / f"{part}.md").read_text()
        for part in PARTS
        if (args.out / f"{part}.md").exists()
    ]
    report = "\n".join(sections) + f"\nAnchors' steps: {ANCHORS}.\n"
    (args.out / "agents_vs_baselines.md").write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
