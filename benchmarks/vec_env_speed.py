"""Vectorised rollouts on one machine: SubprocVecEnv with 1 vs 2 workers, interleaved.

Run: ``python benchmarks/vec_env_speed.py [--rounds 5] [--episodes 4]``.

For each (task, env) three SB3 ``SubprocVecEnv`` stand ready side by side: one worker with
torch's default threads (all cores), one worker with one thread, and two workers with one
thread each. Rounds alternate between them (A B C A B C ...), each timing ``--episodes``
whole episodes per worker of random actions, so a shared, noisy machine shows as spread
rather than a wrong ratio. Reported: env steps per second (median over rounds) and the
speedup of two workers over each one-worker setting (median and range of the per-round
ratios).

Goal (issue "Beyond one machine"): 2 workers >= 1.8x the steps/s of 1 on 2 cores. The
last lines measure what the machine allows without any env: a cache-resident compute
load, and the bare ResNet-20 reward forward, in two processes at once over one alone.
``resnet20-random`` is CIFAR-shaped random data with initial weights (``env_speed.py``).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import SubprocVecEnv

from prune_gym.plugins import import_modules

#: registers resnet20-random / resnet50-random.
ENV_SPEED = str(Path(__file__).with_name("env_speed.py"))
#: setting -> (workers, torch threads per worker; None: torch's default).
SETTINGS = {"1 worker, default threads": (1, None), "1 worker, 1 thread": (1, 1)}
SETTINGS["2 workers, 1 thread each"] = (2, 1)


def make_env(env_id: str, task: str, threads: int | None, rank: int) -> gym.Env:
    """One worker's env (run in the worker process): its thread count, then the env."""
    import_modules([ENV_SPEED])
    if threads is not None:
        torch.set_num_threads(threads)
    env = gym.make(env_id, task=task)
    env.reset(seed=rank)
    env.action_space.seed(rank)
    return env


def time_episodes(vec_env: SubprocVecEnv, episodes: int, seed: int) -> float:
    """Env steps per second over ``episodes`` whole episodes per worker, random actions.

    Whole episodes, so every round has the same share of final steps (the ones that
    evaluate the net) whatever the episode length; the workers' episodes have equal
    lengths, so they stay aligned (SB3 resets each one as it ends).
    """
    rng = np.random.default_rng(seed)
    space = vec_env.action_space
    finished = steps = 0
    start = time.perf_counter()
    while finished < episodes * vec_env.num_envs:
        actions = rng.uniform(space.low, space.high, (vec_env.num_envs, *space.shape))
        dones = vec_env.step(actions.astype(space.dtype))[2]
        finished += int(dones.sum())
        steps += vec_env.num_envs
    return steps / (time.perf_counter() - start)


def measure(task: str, env_id: str, rounds: int, episodes: int) -> dict[str, list[float]]:
    """Steps/s per setting and round, the settings interleaved round by round."""
    vec_envs = {
        name: SubprocVecEnv(
            [functools.partial(make_env, env_id, task, threads, rank) for rank in range(workers)]
        )
        for name, (workers, threads) in SETTINGS.items()
    }
    rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
    try:
        for vec_env in vec_envs.values():  # warm-up
            vec_env.reset()
            time_episodes(vec_env, 1, seed=0)
        for index in range(rounds):
            for name, vec_env in vec_envs.items():
                rates[name].append(time_episodes(vec_env, episodes, seed=index + 1))
    finally:
        for vec_env in vec_envs.values():
            vec_env.close()
    return rates


def matmuls(count: int) -> None:
    """``count`` 512x512 float32 matrix products on one thread (a pure-compute load)."""
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    for _ in range(count):
        a = torch.tanh(a @ a)


def forwards(count: int) -> None:
    """``count`` ResNet-20 forward passes over 200 CIFAR-shaped images on one thread: the
    bare work of a resnet20-random reward, without any env."""
    from prune_gym.tasks.models import resnet20

    torch.set_num_threads(1)
    model, images = resnet20().eval(), torch.randn(200, 3, 32, 32)
    with torch.inference_mode():
        for _ in range(count):
            model(images)


#: loads for ``parallel_ceiling``: name -> (function, count per measurement).
LOADS = {"matmuls (cache-resident)": (matmuls, 400), "resnet20 forwards (no env)": (forwards, 4)}


def parallel_ceiling(load, count: int, rounds: int) -> list[float]:
    """Per round, the throughput of two 1-thread processes running ``load`` over one.

    The same load alone and then in both processes at once, interleaved: 2.0 on two
    free cores, less where the processes share a physical core, a CPU quota, the cache
    or memory bandwidth.
    """
    ratios = []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(load, [1, 1], chunksize=1)  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            pool.apply(load, (count,))
            alone = time.perf_counter() - start
            start = time.perf_counter()
            pool.map(load, [count, count], chunksize=1)
            ratios.append(2 * alone / (time.perf_counter() - start))
    return ratios


def speedup(two: list[float], one: list[float]) -> str:
    """Median (min-max) of the per-round ratios ``two / one``."""
    ratios = [a / b for a, b in zip(two, one, strict=True)]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per worker and round")
    parser.add_argument("--tasks", nargs="+", default=["digits-cnn", "resnet20-random"])
    parser.add_argument(
        "--envs", nargs="+", default=["prune_gym/GlobalRatio-v0", "prune_gym/LayerRatio-v0"]
    )
    args = parser.parse_args()
    import_modules([ENV_SPEED])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads")
    print(
        f"{args.rounds} interleaved rounds of {args.episodes} episodes per worker; "
        "env steps/s: medians\n"
    )
    names = list(SETTINGS)
    print(f"| task | env | {' | '.join(names)} | 2 workers / 1 (default) | 2 workers / 1 (1 thr) |")
    print("|---|---|" + "---:|" * (len(names) + 2))
    for task in args.tasks:
        for env_id in args.envs:
            rates = measure(task, env_id, args.rounds, args.episodes)
            medians = " | ".join(f"{statistics.median(rates[name]):.1f}" for name in names)
            two = rates[names[2]]
            print(
                f"| {task} | {env_id.split('/')[1]} | {medians} | "
                f"{speedup(two, rates[names[0]])} | {speedup(two, rates[names[1]])} |",
                flush=True,
            )
    print("\nWhat the machine allows: two 1-thread processes over one, no env, interleaved")
    for name, (load, count) in LOADS.items():
        ratios = parallel_ceiling(load, count, args.rounds)
        print(f"- {name}: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
