"""Learned agents against the best fixed-policy baseline at the same budget.

(Not ``benchmarks/agents.py``: run as a script, that name would shadow the ``agents``
package.)

Run: ``python benchmarks/agents_vs_baselines.py [--seeds 3] [--timesteps 6000]``.

Part 1: PPO-Lagrangian on GlobalRatio-v0 and LayerRatio-v0, digits-mlp and digits-cnn,
flops budgets 0.3 and 0.5: the final deterministic policy's feasibility and accuracy next
to the best feasible baseline (chosen on validation accuracy, as the agent's reward is).
Part 2: the Panning agent (TD3, one agent per task and seed for all targets) against
iterative SNIP / GraSP / SynFlow and the paper's hand-set schedule on Panning-v0 at
target sparsities 0.9, 0.95 and 0.98, every mask trained from the initialisation for the
same number of steps (trained accuracy). Prints markdown tables; saves ``agents.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import gymnasium as gym

from agents.jobs import RunConfig, build_model, compare
from agents.panning_agent import PanningAgent
from prune_gym.baselines import make_policy
from prune_gym.evaluation import evaluate

RATIO_ENVS = ("prune_gym/GlobalRatio-v0", "prune_gym/LayerRatio-v0")
TASKS = ("digits-mlp", "digits-cnn")
FLOPS_BUDGETS = (0.3, 0.5)
PANNING_TARGETS = (0.9, 0.95, 0.98)
PANNING_BASELINES = ("iterative-snip", "iterative-grasp", "iterative-synflow", "panning-handset")


def ppo_lagrangian_run(env_id: str, task: str, flops: float, seed: int, timesteps: int) -> dict:
    """Train PPO-Lagrangian once; its row and the best feasible baseline's."""
    config = RunConfig(
        env=env_id,
        task=task,
        budget={"flops": flops},
        seed=seed,
        timesteps=timesteps,
        eval_episodes=1,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as logs:
        model = build_model(config, Path(logs))
        model.learn(total_timesteps=timesteps)
    wall = time.perf_counter() - start
    rows = compare(config, model)
    learned, projected = (r for r in rows if r["kind"] == "learned")
    baselines = [r for r in rows if r["kind"] == "baseline" and r["feasible"] == 1.0]
    best = max(baselines, key=lambda b: b["val_accuracy"])
    return {
        "env": env_id,
        "task": task,
        "flops": flops,
        "seed": seed,
        "timesteps": timesteps,
        "wall_time": wall,
        "learned": learned,
        "projected": projected,
        "best_baseline": best,
    }


def panning_runs(task: str, seed: int, timesteps: int, train_steps: int) -> list[dict]:
    """Train one Panning agent, then compare it at every target (trained accuracy)."""
    env_kwargs = {"iterations": 10, "target_range": (0.85, 0.99)}
    start = time.perf_counter()
    agent = PanningAgent(task, learning_starts=timesteps // 10, seed=seed, env_kwargs=env_kwargs)
    agent.learn(timesteps)
    wall = time.perf_counter() - start
    rows = []
    for target in PANNING_TARGETS:
        env = gym.make("prune_gym/Panning-v0", task=task, target=target, iterations=10)
        policies = {"panning-agent": agent.model}
        policies |= {name: make_policy(name, env, seed=seed) for name in PANNING_BASELINES}
        for name, policy in policies.items():
            (record,) = evaluate(policy, env, 1, seed=seed, finetune_steps=train_steps)
            rows.append(
                {
                    "task": task,
                    "seed": seed,
                    "target": target,
                    "policy": name,
                    "val_accuracy": record["val_accuracy"],
                    "test_accuracy": record["test_accuracy"],
                    "sparsity": record["sparsity"],
                    "timesteps": timesteps,
                    "wall_time": wall,
                }
            )
    return rows


def mean_std(values: list[float]) -> str:
    """``mean ± std`` with three decimals."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def ppo_table(runs: list[dict]) -> str:
    """One row per (env, task, budget): learned vs best baseline, over seeds."""
    lines = [
        "| env | task | flops budget | learned feasible | learned test acc. | learned MACs "
        "| + projection feasible | + projection test acc. "
        "| best baseline(s) | baseline test acc. | timesteps | train time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = dict.fromkeys((r["env"], r["task"], r["flops"]) for r in runs)
    for env_id, task, flops in keys:
        group = [r for r in runs if (r["env"], r["task"], r["flops"]) == (env_id, task, flops)]
        learned = [r["learned"] for r in group]
        best = [r["best_baseline"] for r in group]
        lines.append(
            f"| {env_id.split('/')[1]} | {task} | {flops} "
            f"| {statistics.fmean(x['feasible'] for x in learned):.0%} "
            f"| {mean_std([x['test_accuracy'] for x in learned])} "
            f"| {mean_std([x['macs_ratio'] for x in learned])} "
            f"| {statistics.fmean(r['projected']['feasible'] for r in group):.0%} "
            f"| {mean_std([r['projected']['test_accuracy'] for r in group])} "
            f"| {', '.join(sorted({b['policy'] for b in best}))} "
            f"| {mean_std([b['test_accuracy'] for b in best])} "
            f"| {group[0]['timesteps']} | {statistics.fmean(r['wall_time'] for r in group):.0f} |"
        )
    return "\n".join(lines)


def panning_table(rows: list[dict]) -> str:
    """Test accuracy after training, per task, target and policy, over seeds."""
    policies = ["panning-agent", *PANNING_BASELINES]
    lines = [
        "| task | target | " + " | ".join(policies) + " |",
        "|---|---|" + "---|" * len(policies),
    ]
    for task, target in dict.fromkeys((r["task"], r["target"]) for r in rows):
        cells = [
            mean_std(
                [
                    r["test_accuracy"]
                    for r in rows
                    if (r["task"], r["target"], r["policy"]) == (task, target, policy)
                ]
            )
            for policy in policies
        ]
        lines.append(f"| {task} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--timesteps", type=int, default=6000, help="PPO-Lagrangian steps")
    parser.add_argument("--panning-timesteps", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=600, help="training of each mask")
    parser.add_argument("--parts", nargs="+", default=["ppo-lag", "panning"])
    parser.add_argument("--out", default="runs/agents")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {}
    if "ppo-lag" in args.parts:
        results["ppo_lagrangian"] = [
            ppo_lagrangian_run(env_id, task, flops, seed, args.timesteps)
            for env_id in RATIO_ENVS
            for task in TASKS
            for flops in FLOPS_BUDGETS
            for seed in range(args.seeds)
        ]
        print("## PPO-Lagrangian vs the best fixed-policy baseline\n")
        print(ppo_table(results["ppo_lagrangian"]), flush=True)
    if "panning" in args.parts:
        results["panning"] = [
            row
            for task in TASKS
            for seed in range(args.seeds)
            for row in panning_runs(task, seed, args.panning_timesteps, args.train_steps)
        ]
        print("\n## Panning agent vs iterative baselines (test accuracy after training)\n")
        print(panning_table(results["panning"]))
    (out / f"agents-{'-'.join(args.parts)}.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
