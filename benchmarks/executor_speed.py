"""A cut of the digits suite, serial in this process vs on Ray with 2 CPUs, interleaved.

Run: ``python benchmarks/executor_speed.py [--rounds 2] [--seeds 2]``.

The cut: the ``digits`` suite's methods and fine-tuning step counts on ``--tasks`` and
``--budgets`` with ``--seeds`` seeds. Both executors run it into fresh folders, A B A B
..., torch at one thread (the suites' setting; each Ray task gets one CPU and one thread),
after the dense weights are cached, so neither side trains them. Reported: wall time per
side (median over rounds), the speedup (median and range of the per-round ratios), the
Ray start-up time (once, not in the walls), and whether both give the same records.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from prune_gym.bench import RecordStore, load_suite, parse_budgets, plan, run_benchmark
from prune_gym.executors import LocalExecutor, RayExecutor
from prune_gym.tasks import make


def records(folder: Path) -> dict[str, dict]:
    """The folder's records by run key, wall times dropped."""
    return {
        record["run_key"]: {k: v for k, v in record.items() if k != "wall_time"}
        for record in RecordStore(folder).read()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds")
    parser.add_argument("--tasks", nargs="+", default=["digits-mlp"])
    parser.add_argument("--budgets", default="params=0.1,params=0.02")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = dataclasses.replace(
        load_suite("digits"),
        tasks=tuple(args.tasks),
        budgets=tuple(parse_budgets(args.budgets)),
        seeds=args.seeds,
    )
    for task in spec.tasks:  # cache the dense weights first
        for seed in range(spec.seeds):
            make(task, seed=seed).pretrained_model()
    runs = len(plan(spec))
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    same = True
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.rounds):
            outs = {}
            for name, executor in (("local", LocalExecutor()), ("ray", RayExecutor())):
                outs[name] = Path(scratch) / f"{name}-{index}"
                start = time.perf_counter()
                run_benchmark(spec, outs[name], executor)
                walls[name].append(time.perf_counter() - start)
            same &= records(outs["local"]) == records(outs["ray"])
    ray.shutdown()
    ratios = [a / b for a, b in zip(walls["local"], walls["ray"], strict=True)]
    print(f"torch {torch.__version__}, ray {ray.__version__}; {runs} runs: {spec.tasks}, ")
    print(f"budgets {spec.budgets}, {spec.seeds} seeds, the digits suite's methods and ")
    print(f"fine-tuning ({spec.finetune_steps}); {args.rounds} interleaved round(s)\n")
    print("| executor | wall (s) | runs/min | speedup over local |")
    print("|---|---:|---:|---:|")
    for name in walls:
        wall = statistics.median(walls[name])
        ratio = (
            "1.00"
            if name == "local"
            else (f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
        )
        label = "local, serial" if name == "local" else "ray, 2 CPUs"
        print(f"| {label} | {wall:.1f} | {60 * runs / wall:.1f} | {ratio} |")
    print(f"\nRay start-up (ray.init, not in the walls): {startup:.1f} s")
    print(f"Same records on both executors (wall times aside): {same}")


if __name__ == "__main__":
    main()
