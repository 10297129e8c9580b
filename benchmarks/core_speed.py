"""Speed of the pruning core: masks from ratios, importance scores, evaluation throughput.

Run: ``python benchmarks/core_speed.py [--repeats 20]``. Prints markdown tables for the
digits-cnn model and the CIFAR ResNet-20 on random data (no dataset needed). Everything
is measured in one run, so compare ratios within a table, not across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from prune_gym.pruning import (
    MaskBuilder,
    MaskSet,
    available_metrics,
    compute_scores,
    prunable_layers,
)
from prune_gym.tasks.models import digits_cnn, resnet20
from prune_gym.tasks.train import evaluate_tensors

MODELS = {
    "digits-cnn": (digits_cnn, (1, 8, 8), 2000),
    "cifar10-resnet20": (resnet20, (3, 32, 32), 1000),
}


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mask_rows(model: torch.nn.Module, repeats: int) -> list[tuple[str, float]]:
    """Seconds to build masks: cached ranks vs a fresh sort on every call."""
    builder = MaskBuilder(model)
    ratios = {name: 0.7 for name, _ in prunable_layers(model)}
    return [
        (
            "mask from ratios, cached order",
            median_seconds(lambda: builder.from_ratios(ratios), repeats),
        ),
        (
            "mask from ratios, full re-sort",
            median_seconds(lambda: MaskSet.from_ratios(model, ratios), repeats),
        ),
        (
            "global threshold, cached order",
            median_seconds(lambda: builder.global_threshold(0.9), repeats),
        ),
        (
            "global threshold, full re-sort",
            median_seconds(lambda: MaskSet.global_threshold(model, 0.9), repeats),
        ),
    ]


def score_rows(
    model: torch.nn.Module, shape: tuple[int, ...], repeats: int
) -> list[tuple[str, float]]:
    """Seconds per ``compute_scores`` call for every registered metric (batch of 128)."""
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(128, *shape, generator=generator),
        torch.randint(0, 10, (128,), generator=generator),
    )
    return [
        (
            f"scores: {metric}",
            median_seconds(lambda m=metric: compute_scores(model, m, batch), repeats),
        )
        for metric in available_metrics()
    ]


def throughput(model: torch.nn.Module, shape: tuple[int, ...], samples: int, repeats: int) -> float:
    """Evaluation samples per second through the one evaluation routine."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, *shape, generator=generator)
    targets = torch.randint(0, 10, (samples,), generator=generator)
    return samples / median_seconds(lambda: evaluate_tensors(model, inputs, targets), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    for name, (factory, shape, samples) in MODELS.items():
        model = factory().eval()
        rows = mask_rows(model, args.repeats) + score_rows(model, shape, max(3, args.repeats // 4))
        weights = sum(m.weight.numel() for _, m in prunable_layers(model))
        print(f"## {name} ({weights:,} prunable weights)\n")
        print("| operation | median time (ms) |\n|---|---:|")
        for label, seconds in rows:
            print(f"| {label} | {seconds * 1e3:.3f} |")
        cached, resort = rows[0][1], rows[1][1]
        print(f"| speed-up of cached order over re-sort | {resort / cached:.1f}x |")
        rate = throughput(model, shape, samples, max(3, args.repeats // 4))
        print(f"| evaluation throughput ({samples} samples) | {rate:,.0f} samples/s |\n")


if __name__ == "__main__":
    main()
