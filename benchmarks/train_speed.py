"""Wall time of a default ``prune-gym train``, this tree against an older one, interleaved.

Run: ``python benchmarks/train_speed.py --before /path/to/old/checkout [--rounds 2]``
(e.g. ``git worktree add /tmp/before <commit>``).

Each round runs, one after another: A, the older tree's ``prune-gym train`` (its
defaults: digits-cnn, flops 0.5, 2048 env steps of PPO-Lagrangian); B, this tree's, with
the shared fixed-policy records emptied (a first run); C, this tree's again (a second run
on the same task, budget and seed: the fixed policies are reused); D, this tree's with
``--n-envs 8`` (the batched vector env; fixed policies reused). Every run writes into its
own fresh ``--out``; all share one weights cache, so no side trains the dense model.
Reported: median and range over rounds of each side's seconds, and of each side over A.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SIDES = {
    "A: before": ("before", []),
    "B: after, first run": ("after", []),
    "C: after, second run": ("after", []),
    "D: after, second run, --n-envs 8": ("after", ["--n-envs", "8"]),
}


def run_train(tree: Path, out: Path, cache: Path, extra: list[str]) -> float:
    """Seconds of one ``prune-gym train`` of ``tree`` into ``out`` (its default settings)."""
    environment = os.environ | {"PYTHONPATH": str(tree), "PRUNE_GYM_CACHE": str(cache)}
    command = [sys.executable, "-m", "prune_gym.cli", "train", "--out", str(out), *extra]
    start = time.perf_counter()
    subprocess.run(command, env=environment, check=True, capture_output=True, cwd=tree)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the older tree")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="train-speed-"))
    cache = work / "cache"
    trees = {"before": args.before.resolve(), "after": HERE}
    run_train(HERE, work / "warm-up", cache, ["--timesteps", "16"])  # trains the dense model
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_index in range(args.rounds):
        for side, (tree, extra) in SIDES.items():
            if side.startswith("B"):
                shutil.rmtree(cache / "baselines", ignore_errors=True)
            out = work / f"{round_index}-{side[0]}"
            seconds[side].append(run_train(trees[tree], out, cache, extra))
            print(f"round {round_index}: {side}: {seconds[side][-1]:.1f} s", flush=True)
    before = seconds["A: before"]
    print(f"\n{args.rounds} interleaved rounds (A B C D ...); median (min-max)\n")
    print("| side | seconds | over A |")
    print("|---|---:|---:|")
    for side, values in seconds.items():
        ratios = [value / old for value, old in zip(values, before, strict=True)]
        print(
            f"| {side} | {statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f}) "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
