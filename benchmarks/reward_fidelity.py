"""How well does each candidate reward rank allocations by the accuracy they reach?

For random allocations from the space an agent explores (``GlobalRatio-v0`` with
``action="logits"``, so every one meets the budget), it computes each candidate reward
on the env's reward samples (the task's reward split) and the accuracy each allocation
reaches after the benchmark's fine-tuning step count (``--target-steps``, on test: only
measured here, nothing is selected on it), then prints the Spearman rank correlation of
every candidate with that target and its cost per episode. A reward an agent can climb
must rank allocations the way the final accuracy does, above all among the best ones,
where a search or an agent ends: the second table is the Spearman correlation among the
``--top-k`` allocations the reward ranks highest, then the test accuracy of the reward's
own best allocation, and of the best among its top-k once re-scored on validation at the
final fidelity (multi-fidelity: the cheap reward everywhere, the expensive one on a
shortlist), against the best test accuracy of any allocation.

    python benchmarks/reward_fidelity.py                      # digits-cnn and digits-mlp
    python benchmarks/reward_fidelity.py --tasks digits-cnn --allocations 20
    python benchmarks/reward_fidelity.py --tasks mnist1d-cnn --budgets params=0.3 --target-steps 0
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from scipy.stats import spearmanr

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.evaluation import assess_masks
from prune_gym.pruning import Budget

#: (structure, budget) settings where allocation matters (issue "Constrained agents").
SETTINGS = (
    ("unstructured", {"params": 0.05}),
    ("unstructured", {"params": 0.02}),
    ("channel", {"flops": 0.3}),
    ("channel", {"flops": 0.5}),
)
#: candidate rewards: (label, fine-tuning steps, fine-tuning seeds, quantity).
CANDIDATES = (
    ("accuracy", 0, 1, "accuracy"),
    ("-loss", 0, 1, "loss"),
    ("accuracy, 10 steps", 10, 1, "accuracy"),
    ("-loss, 10 steps", 10, 1, "loss"),
    ("accuracy, 20 steps", 20, 1, "accuracy"),
    ("-loss, 20 steps", 20, 1, "loss"),
    ("accuracy, 20 steps x 3 seeds", 20, 3, "accuracy"),
    ("accuracy, 50 steps", 50, 1, "accuracy"),
)


def measure(
    task: str, structure: str, budget: dict, allocations: int, target_steps: int, top_k: int
) -> dict:
    """Per candidate: Spearman with the target over ``allocations`` random allocations, ms."""
    env = gym.make(
        "prune_gym/GlobalRatio-v0", task=task, budget=budget, structure=structure, action="logits"
    ).unwrapped
    context = env.context
    rng = np.random.default_rng(0)
    actions = [np.zeros(env.num_layers)] + [
        rng.uniform(-1.0, 1.0, env.num_layers) for _ in range(allocations - 1)
    ]
    values: dict[str, list[float]] = {label: [] for label, *_ in CANDIDATES}
    seconds: dict[str, list[float]] = {label: [] for label, *_ in CANDIDATES}
    target, final_val = [], []
    for action in actions:
        ratios = dict(zip(env.layer_names, env.action_to_ratios(action), strict=True))
        masks = context.builder().from_ratios(ratios)
        for label, steps, seeds, quantity in CANDIDATES:
            start = time.perf_counter()
            runs = [context.reward_metrics(masks, steps, seed=seed) for seed in range(seeds)]
            seconds[label].append(time.perf_counter() - start)
            sign = -1.0 if quantity == "loss" else 1.0
            values[label].append(sign * statistics.fmean(run[quantity] for run in runs))
        assessment = assess_masks(context, masks, target_steps, seed=0)
        target.append(assessment["test_accuracy"])
        final_val.append(assessment["val_accuracy"])
    return {
        label: (
            float(spearmanr(values[label], target).statistic),
            1000 * statistics.fmean(seconds[label]),
            *top_k_fidelity(values[label], target, final_val, top_k),
        )
        for label in values
    } | {"target": (statistics.fmean(target), max(target) - min(target), max(target))}


def top_k_fidelity(
    reward: list[float], target: list[float], final_val: list[float], k: int
) -> tuple[float, float, float]:
    """Among the ``k`` allocations ``reward`` ranks highest: its Spearman with ``target``,
    the target of its best, and the target of the best of them on ``final_val``."""
    order = np.argsort(reward)[::-1][:k]
    top_reward = [reward[i] for i in order]
    top_target = [target[i] for i in order]
    shortlisted = max(order, key=lambda i: final_val[i])
    return (
        float(spearmanr(top_reward, top_target).statistic),
        target[int(order[0])],
        target[int(shortlisted)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["digits-cnn", "digits-mlp"])
    parser.add_argument("--allocations", type=int, default=40)
    parser.add_argument("--target-steps", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=15, help="the shortlist of the top table")
    parser.add_argument(
        "--budgets",
        nargs="+",
        help="budgets as bench writes them (params=0.3), instead of SETTINGS' four cells",
    )
    parser.add_argument("--structure", default="unstructured", help="of --budgets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = SETTINGS
    if args.budgets:
        settings = tuple((args.structure, Budget.parse(b).limits) for b in args.budgets)
    rows = []
    for task in args.tasks:
        for structure, budget in settings:
            result = measure(
                task, structure, budget, args.allocations, args.target_steps, args.top_k
            )
            rows.append((task, structure, budget, result))
            print(f"measured {task} {structure} {budget}", flush=True)
    budgets = [f"{t} {s[:5]} {next(iter(b))}={next(iter(b.values()))}" for t, s, b, _ in rows]
    print_table(
        f"Spearman correlation with test accuracy after {args.target_steps} fine-tuning "
        f"steps, {args.allocations} allocations per setting; ms per episode in brackets",
        budgets,
        [[f"{r[label][0]:.2f} ({r[label][1]:.0f})" for *_, r in rows] for label, *_ in CANDIDATES],
        (
            "target: mean test acc.",
            [f"{r['target'][0]:.3f} (range {r['target'][1]:.3f})" for *_, r in rows],
        ),
    )
    print_table(
        f"Among each reward's top {args.top_k}: Spearman with the target; test acc. of the "
        f"reward's best / of the top {args.top_k}'s best on val after {args.target_steps} "
        "steps (multi-fidelity)",
        budgets,
        [
            [f"{r[label][2]:.2f}; {r[label][3]:.3f} / {r[label][4]:.3f}" for *_, r in rows]
            for label, *_ in CANDIDATES
        ],
        ("best test acc. of any allocation", [f"{r['target'][2]:.3f}" for *_, r in rows]),
    )


def print_table(
    title: str, columns: list[str], cells: list[list[str]], last: tuple[str, list[str]]
) -> None:
    """A markdown table: one row per candidate reward, then the ``last`` row."""
    print(f"\n{title}\n")
    print("| reward | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for (label, *_), row in zip(CANDIDATES, cells, strict=True):
        print(f"| {label} | " + " | ".join(row) + " |")
    print(f"| {last[0]} | " + " | ".join(last[1]) + " |")


if __name__ == "__main__":
    main()
