"""Speed and memory of the environments: episode time over a bare forward pass, interleaved.

Run: ``python benchmarks/env_speed.py [--pairs 7] [--tasks digits-cnn resnet20-random]``.

Each (task, env) runs in its own process, so its peak memory is its own. After a warm-up
episode the two sides alternate A B A B ...: A is one episode (LayerRatio, GlobalRatio,
MetricMix) or one non-final step (Panning); B is the bare work it cannot avoid: one
forward pass of the masked model over the same reward samples, or, for Panning, the
passes a step needs (its metrics' scores, the SynFlow pass and the loss/gradient pass on
the calibration batch). Each pair gives a ratio A / B; the table shows their median and
range, so a shared, noisy machine shows as spread instead of a wrong ratio.

Targets (issue "Any PyTorch model, at real scale"): episodes <= 1.1x the bare forward
(LayerRatio, GlobalRatio, MetricMix on resnet20 and resnet50), a Panning step <= 1.5x its
passes, non-final LayerRatio steps < 1 ms. Memory: the process's peak resident memory
beyond what the task's trained model and data take, per prunable weight.
``resnet20-random`` / ``resnet50-random`` are CIFAR-shaped random data with the models'
initial weights (no download, no training): speed does not depend on the data.

``--vector`` (issue "Rewards in batches") measures instead, per task and number of envs
N: env steps per second of the native vector env (``gymnasium.make_vec``, rewards
computed together) against N single envs stepped one after another in one process
(``SyncVectorEnv``), both on GlobalRatio-v0 with ``prune-gym train``'s fine-tuned settings (10
fine-tuning steps, loss reward, density logits) and random actions, rounds interleaved A
B A B with the reward cache emptied before each; and the budget rescaling of one logits
action, by counted weights (now) against built masks (before), with the allocations
compared bit for bit. Goal: >= 4x at N = 8 on the small tasks; rescaling <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import prune_gym
from prune_gym.envs.panning import SAMPLES_PER_CLASS
from prune_gym.pruning import compute_scores, prunable_layers
from prune_gym.tasks import Split, Task, TrainRecipe, make, register_task
from prune_gym.tasks.models import resnet20


def _random_cifar_data(seed: int) -> tuple[Split, Split]:
    """10,200 random CIFAR-shaped uint8 images (1,000 of the 10,000 train become val)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (10_200, 3, 32, 32), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 10, (10_200,), generator=generator)
    stats = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return Split(x[:10_000], y[:10_000], stats), Split(x[10_000:], y[10_000:], stats)


def _resnet50() -> nn.Module:
    import torchvision

    return torchvision.models.resnet50(weights=None, num_classes=10)


def random_cifar_task(name: str, build_model, seed: int = 0) -> Task:
    """A model on random CIFAR-shaped data with its initial weights (zero training)."""
    untrained = TrainRecipe(optimizer="sgd", lr=0.1, epochs=0)
    data = lambda: _random_cifar_data(seed)  # noqa: E731
    return Task(name, build_model, data, untrained, (3, 32, 32), 10, seed=seed)


register_task(
    "resnet20-random",
    lambda seed=0: random_cifar_task("resnet20-random", resnet20, seed),
    overwrite=True,
)
register_task(
    "resnet50-random",
    lambda seed=0: random_cifar_task("resnet50-random", _resnet50, seed),
    overwrite=True,
)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bare_forward(env: gym.Env) -> float:
    """Seconds of one forward pass of the masked model over the env's reward samples."""
    context = env.unwrapped.context
    start = time.perf_counter()
    with torch.inference_mode():
        context.model(context.reward_inputs)
    return time.perf_counter() - start


def panning_passes(env: gym.Env) -> float:
    """Seconds of the passes one Panning step needs, on the current masked net."""
    base = env.unwrapped
    context = base.context
    start = time.perf_counter()
    for metric in base.metrics:
        context.compute_scores(metric)
    compute_scores(context.model, "synflow", None, input_shape=context.task.input_shape)
    model = context.model
    count = SAMPLES_PER_CLASS * context.task.num_classes
    inputs, targets = context.task.calibration_batch(count, context.task.seed, class_balanced=True)
    loss = nn.functional.cross_entropy(model(inputs), targets)
    torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return time.perf_counter() - start


def run_episode(env: gym.Env, seed: int) -> tuple[float, list[float]]:
    """Seconds of one whole episode (reset included) and of each of its non-final steps."""
    start = time.perf_counter()
    env.reset(seed=seed)
    non_final, done = [], False
    while not done:
        step_start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
        if not done:
            non_final.append(time.perf_counter() - step_start)
    return time.perf_counter() - start, non_final


def ratio_summary(ratios: list[float]) -> dict[str, float]:
    """Median, least and largest of the per-pair ratios A / B."""
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def measure_one(task_name: str, env_id: str, pairs: int) -> dict:
    """One (task, env): interleaved ratios, step times and memory, as a JSON-able row."""
    torch.manual_seed(0)
    task = make(task_name)
    task.pretrained_model()
    weights = sum(m.weight.numel() for _, m in prunable_layers(task.build_model()))
    baseline = rss_bytes()
    start = time.perf_counter()
    env = gym.make(env_id, task=task_name)  # reward samples: min(1000, val size)
    env.reset(seed=0)
    env.action_space.seed(0)
    setup = time.perf_counter() - start
    panning = "Panning" in env_id
    ratios, sides, non_final = [], {"a": [], "b": []}, []
    if panning:
        env.step(env.action_space.sample())  # warm-up
        taken = 1
        for _ in range(pairs):
            if taken == env.unwrapped.iterations - 1:  # time non-final steps only
                env.reset(seed=0)
                taken = 0
            taken += 1
            step_start = time.perf_counter()
            env.step(env.action_space.sample())
            a = time.perf_counter() - step_start
            b = panning_passes(env)
            sides["a"].append(a)
            sides["b"].append(b)
            ratios.append(a / b)
    else:
        run_episode(env, seed=0)  # warm-up
        for pair in range(pairs):
            a, steps = run_episode(env, seed=pair + 1)
            b = bare_forward(env)
            non_final += steps
            sides["a"].append(a)
            sides["b"].append(b)
            ratios.append(a / b)
    env.close()
    return {
        "task": task_name,
        "env": env_id.split("/")[1],
        "weights": weights,
        "setup_s": setup,
        "a_s": statistics.median(sides["a"]),
        "b_s": statistics.median(sides["b"]),
        **ratio_summary(ratios),
        "non_final_ms": 1e3 * statistics.median(non_final) if non_final else None,
        "bytes_per_weight": (peak_rss_bytes() - baseline) / weights,
    }


#: GlobalRatio-v0's settings in ``prune-gym train``'s fine-tuned setting (a named reference
#: instead of "best"): the rewards whose batching this measures fine-tune.
TRAIN_SETTINGS = {
    "budget": {"flops": 0.5},
    "action": "logits",
    "reference": "global",
    "reward": "loss",
    "reward_finetune_steps": 10,
    "max_ratio": 1.0,
}
GLOBAL_RATIO = "prune_gym/GlobalRatio-v0"


def time_round(venv: gym.vector.VectorEnv, steps: int, rng: np.random.Generator) -> float:
    """Seconds of ``steps`` vector steps of fresh random actions, rewards not remembered."""
    venv.envs[0].unwrapped.context.forget_results()
    actions = [rng.uniform(-1, 1, venv.action_space.shape) for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        venv.step(action.astype(np.float32))
    return time.perf_counter() - start


def measure_vector(task: str, num_envs: int, pairs: int, episodes: int, device: str) -> dict:
    """Steps/s of the batched env (A) and of ``SyncVectorEnv`` (B), interleaved."""
    settings = {"task": task, "device": device} | TRAIN_SETTINGS
    batched = gym.make_vec(GLOBAL_RATIO, num_envs=num_envs, **settings)
    single = gym.vector.SyncVectorEnv(
        [lambda: gym.make(GLOBAL_RATIO, **settings) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    steps = max(1, -(-episodes // num_envs))  # one-step episodes: ~``episodes`` per round
    rng = np.random.default_rng(0)
    for venv in (batched, single):
        venv.reset(seed=0)
        time_round(venv, 1, rng)  # warm-up
    rates = {"a": [], "b": []}
    for _ in range(pairs):
        rates["a"].append(num_envs * steps / time_round(batched, steps, rng))
        rates["b"].append(num_envs * steps / time_round(single, steps, rng))
    ratios = [a / b for a, b in zip(rates["a"], rates["b"], strict=True)]
    batched.close()
    single.close()
    return {
        "task": task,
        "n": num_envs,
        "a": statistics.median(rates["a"]),
        "b": statistics.median(rates["b"]),
        **ratio_summary(ratios),
    }


def measure_rescaling(task: str, pairs: int, actions: int = 50) -> dict:
    """Milliseconds per logits action: counted weights (A) and built masks (B)."""
    env = gym.make(GLOBAL_RATIO, task=task, **TRAIN_SETTINGS).unwrapped
    builder = env.context.builder()

    def fits_built_masks(ratios: np.ndarray) -> bool:
        return env.fits(builder.from_ratios(dict(zip(env.layer_names, ratios, strict=True))))

    counted = env.fits_ratios
    batch = [np.random.default_rng(i).uniform(-1, 1, env.num_layers) for i in range(actions)]
    times, results = {"a": [], "b": []}, {"a": [], "b": []}
    for _ in range(pairs):
        for side, check in (("a", counted), ("b", fits_built_masks)):
            env.fits_ratios = check
            start = time.perf_counter()
            results[side] = [env.action_to_ratios(action) for action in batch]
            times[side].append(1e3 * (time.perf_counter() - start) / actions)
    identical = all(np.array_equal(a, b) for a, b in zip(results["a"], results["b"], strict=True))
    return {
        "task": task,
        "a_ms": statistics.median(times["a"]),
        "a_range": (min(times["a"]), max(times["a"])),
        "b_ms": statistics.median(times["b"]),
        "b_range": (min(times["b"]), max(times["b"])),
        "identical": identical,
        "actions": actions,
    }


def vector_tables(args: argparse.Namespace) -> None:
    """The ``--vector`` tables: batched env against single envs, and the rescaling."""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.pairs} "
        "interleaved rounds per row; speedup = median (min-max) of A/B per round\n"
    )
    print("| task | N | A: batched env (steps/s) | B: N single envs (steps/s) | A / B |")
    print("|---|---:|---:|---:|---:|")
    for task in args.tasks:
        for num_envs in args.sizes:
            row = measure_vector(task, num_envs, args.pairs, args.episodes, args.device)
            print(
                f"| {task} | {num_envs} | {row['a']:.1f} | {row['b']:.1f} | {row['ratio']:.2f} "
                f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) |",
                flush=True,
            )
    print(
        "\n| task | A: counted weights (ms/action) | B: built masks (ms/action) | "
        "allocations bit-identical |"
    )
    print("|---|---:|---:|---|")
    for task in args.tasks:
        row = measure_rescaling(task, args.pairs)
        print(
            f"| {task} | {row['a_ms']:.3f} ({row['a_range'][0]:.3f}-{row['a_range'][1]:.3f}) | "
            f"{row['b_ms']:.3f} ({row['b_range'][0]:.3f}-{row['b_range'][1]:.3f}) | "
            f"{'yes' if row['identical'] else 'NO'} ({row['actions']} actions) |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="A/B pairs per row")
    parser.add_argument(
        "--tasks",
        nargs="+",
        help="default digits-cnn resnet20-random; "
        "--vector: digits-cnn digits-mlp mnist1d-cnn resnet20-random",
    )
    parser.add_argument("--envs", nargs="+", default=list(prune_gym.ENV_IDS))
    parser.add_argument("--vector", action="store_true", help="batched vector env vs N envs")
    parser.add_argument(
        "--sizes", nargs="+", type=int, default=[1, 4, 8, 16], help="--vector: numbers of envs"
    )
    parser.add_argument(
        "--episodes",
        type=int,
        default=16,
        help="--vector: episodes per side and round (at least N)",
    )
    parser.add_argument("--device", default="cpu", help="--vector: the envs' device (cuda)")
    parser.add_argument("--one", nargs=2, metavar=("TASK", "ENV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.vector:
        args.tasks = args.tasks or ["digits-cnn", "digits-mlp", "mnist1d-cnn", "resnet20-random"]
        vector_tables(args)
        return
    args.tasks = args.tasks or ["digits-cnn", "resnet20-random"]
    if args.one:
        print(json.dumps(measure_one(*args.one, args.pairs)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, numpy {np.__version__}")
    print(f"{args.pairs} interleaved pairs per row; ratio = median (min-max) of A/B per pair\n")
    print(
        "| task | env | weights | setup (s) | A: episode or step (s) | B: bare passes (s) | "
        "A / B | non-final step (ms) | peak bytes / weight |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task in args.tasks:
        for env_id in args.envs:
            command = [sys.executable, __file__, "--pairs", str(args.pairs), "--one", task, env_id]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"| {task} | {env_id} | failed: {result.stderr.strip().splitlines()[-1]} |")
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            step = "" if row["non_final_ms"] is None else f"{row['non_final_ms']:.3f}"
            print(
                f"| {task} | {row['env']} | {row['weights']:,} | {row['setup_s']:.1f} | "
                f"{row['a_s']:.3f} | {row['b_s']:.3f} | {row['ratio']:.2f} "
                f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | {step} | "
                f"{row['bytes_per_weight']:.0f} |",
                flush=True,
            )
    print("\nA: LayerRatio/GlobalRatio/MetricMix one episode; Panning one step.")
    print("B: one forward over the reward samples; Panning its scores + SynFlow + loss/grad.")


if __name__ == "__main__":
    main()
