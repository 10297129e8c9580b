"""Speed of the environments: reset, steps/s, episode time vs one bare forward pass.

Run: ``python benchmarks/env_speed.py [--episodes 5] [--tasks digits-cnn resnet20-random]``.
Targets (issue 3): episode time / bare forward pass <= 1.2 for LayerRatio, GlobalRatio
and MetricMix on ResNet-20 with 1000 reward samples, and non-final LayerRatio steps under
1 ms. ``resnet20-random`` is the CIFAR ResNet-20 on random CIFAR-shaped data with its
initial weights (no download, no training): speed does not depend on the data.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch

import prune_gym
from prune_gym.tasks import Split, Task, TrainRecipe, register_task
from prune_gym.tasks.models import resnet20


def random_cifar_task(seed: int = 0) -> Task:
    """ResNet-20 on 10,000 random CIFAR-shaped images (1,000 of them become val)."""

    def data() -> tuple[Split, Split]:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(10_200, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (10_200,), generator=generator)
        return Split(x[:10_000], y[:10_000]), Split(x[10_000:], y[10_000:])

    untrained = TrainRecipe(optimizer="sgd", lr=0.1, epochs=0)
    return Task("resnet20-random", resnet20, data, untrained, (3, 32, 32), 10, seed=seed)


register_task("resnet20-random", random_cifar_task, overwrite=True)


def bare_forward_seconds(env: gym.Env, repeats: int) -> float:
    """Median time of one forward pass of the masked model over the reward samples."""
    context = env.unwrapped.context
    context.builder().from_ratios({n: 0.5 for n in context.layer_names}).apply(context.model)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            context.model(context.reward_inputs)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def measure(env_id: str, task: str, episodes: int, kwargs: dict) -> dict[str, float]:
    """Reset time, step rate, episode time and its ratio to a bare forward pass."""
    start = time.perf_counter()
    env = gym.make(env_id, task=task, reward_samples=1000, **kwargs)
    env.reset(seed=0)
    setup = time.perf_counter() - start
    env.action_space.seed(0)
    resets, episode_times, step_times, non_final = [], [], [], []
    for episode in range(episodes):
        start = time.perf_counter()
        env.reset(seed=episode)
        resets.append(time.perf_counter() - start)
        done, episode_start = False, time.perf_counter()
        while not done:
            action = env.action_space.sample()
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            step_times.append(time.perf_counter() - start)
            done = terminated or truncated
            if not done:
                non_final.append(step_times[-1])
        episode_times.append(time.perf_counter() - episode_start)
    forward = bare_forward_seconds(env, repeats=3)
    episode = statistics.median(episode_times)
    return {
        "setup_s": setup,
        "reset_ms": 1e3 * statistics.median(resets),
        "steps_per_s": len(step_times) / sum(step_times),
        "non_final_step_ms": 1e3 * statistics.median(non_final) if non_final else float("nan"),
        "episode_s": episode,
        "forward_s": forward,
        "ratio": episode / forward,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", default=["digits-cnn", "resnet20-random"])
    parser.add_argument("--panning-iterations", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(
        "| task | env | setup (s) | reset (ms) | steps/s | non-final step (ms) | "
        "episode (s) | bare forward (s) | episode / forward |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task in args.tasks:
        for env_id in prune_gym.ENV_IDS:
            kwargs = {"iterations": args.panning_iterations} if "Panning" in env_id else {}
            episodes = 1 if "Panning" in env_id else args.episodes
            row = measure(env_id, task, episodes, kwargs)
            print(
                f"| {task} | {env_id.split('/')[1]} | {row['setup_s']:.1f} | "
                f"{row['reset_ms']:.3f} | {row['steps_per_s']:.1f} | "
                f"{row['non_final_step_ms']:.3f} | {row['episode_s']:.3f} | "
                f"{row['forward_s']:.3f} | {row['ratio']:.2f} |",
                flush=True,
            )
    print(f"\n(MetricMix in its default global mode; numpy {np.__version__})")


if __name__ == "__main__":
    main()
