"""The language-model tasks: their dense models, then post-training pruning (issue 22).

    python benchmarks/language_models.py                   # both parts, 3 seeds
    python benchmarks/language_models.py --parts dense --seeds 1

- ``dense``: per LM size and seed, the prunable and total parameters, the dense val and
  test perplexity, and the training time (on this machine, one torch thread). The
  models are trained into ``--out/cache`` (``$PRUNE_GYM_CACHE`` for this script), so
  each is trained once and timed then; the times are kept in ``--out/dense.json``.
- ``suite``: ``prune-gym bench --suite lm`` (into ``--out/lm``; finished runs are read
  back): test perplexity of every allocation and ranking at 50% to 80% sparsity, with no
  fine-tuning, mean ± std over seeds (each seed its own trained model); and 2:4 masks at
  50% (``uniform`` ranked within groups of 4, into ``--out/lm-2of4``). Then the papers'
  directions, with two-sided paired t-tests over seeds on the test perplexity: is Wanda
  better than magnitude at 50% (per layer, and with Wanda's per-output-row groups), is
  OWL better than uniform at 70% (both ranked by Wanda), is Wanda better than magnitude
  at 2:4, and what does 2:4 cost against unstructured Wanda?
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

#: 2:4 masks: ``uniform`` at params 0.5 ranked within groups of 4 (bench folder ``lm-2of4``).
TWO_OF_FOUR = ("uniform@magnitude-2:4", "uniform@wanda-2:4")
#: the checks of the papers' directions: (sparsity, budget, candidate, baseline).
CHECKS = (
    (0.5, "params=0.5", "uniform", "uniform@magnitude"),
    (0.5, "params=0.5", "uniform@wanda-row", "uniform@magnitude"),
    (0.7, "params=0.3", "owl", "uniform"),
    (0.7, "params=0.3", "owl@wanda-row", "uniform@wanda-row"),
    (0.5, "params=0.5", "uniform@wanda-2:4", "uniform@magnitude-2:4"),
    (0.5, "params=0.5", "uniform@wanda-2:4", "uniform"),
)


def dense_part(args: argparse.Namespace) -> str:
    """Parameters, dense perplexity and training time of every LM size and seed."""
    from prune_gym.tasks import make
    from prune_gym.tasks.models import LM_SIZES

    times_file = args.out / "dense.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    lines = [
        "| task | prunable params | total params | seed | dense val ppl | dense test ppl "
        "| training time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in LM_SIZES:
        for seed in range(args.seeds):
            task = make(f"lm-{size}", seed=seed)
            key = f"lm-{size}/{seed}"
            if key not in times:  # not trained by this script yet: train and time it now
                start = time.perf_counter()
                task.pretrained_model()
                times[key] = time.perf_counter() - start
                times_file.write_text(json.dumps(times, indent=1))
            model = task.pretrained_model()
            val, test = (math.exp(task.evaluate(model, split)["loss"]) for split in ("val", "test"))
            prunable = task.cost_model(model).params_dense
            total = sum(p.numel() for p in model.parameters())
            lines.append(
                f"| lm-{size} | {prunable:,} | {total:,} | {seed} | {val:.3f} | {test:.3f} "
                f"| {times[key]:.0f} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def suite_part(args: argparse.Namespace) -> str:
    """The ``lm`` suite's runs; perplexity by method and sparsity; the papers' checks."""
    import dataclasses

    from prune_gym.bench import run_benchmark, write_report
    from prune_gym.bench.report import mean_std, paired_p_value
    from prune_gym.bench.spec import load_suite

    spec = dataclasses.replace(load_suite("lm"), seeds=args.seeds)
    records = run_benchmark(spec, args.out / "lm")
    write_report(records, args.out / "lm")  # summary.md and accuracy_vs_compression.png
    two_of_four = dataclasses.replace(spec, budgets=("params=0.5",), methods=TWO_OF_FOUR)
    semi = run_benchmark(two_of_four, args.out / "lm-2of4")
    write_report(semi, args.out / "lm-2of4")
    records = [r for r in records + semi if r.get("status") == "ok"]
    lines = []
    for task in spec.tasks:
        mine = [r for r in records if r["task"] == task]
        dense = statistics.fmean(r["dense_perplexity"] for r in mine)
        lines += [
            "",
            f"### {task} (dense test perplexity {dense:.3f}): test perplexity, mean ± std",
            "",
            "| method | "
            + " | ".join(f"sparsity {1 - float(b.split('=')[1]):.1f}" for b in spec.budgets)
            + " |",
            "|---" * (len(spec.budgets) + 1) + "|",
        ]
        for method in spec.methods:
            cells = []
            for budget in spec.budgets:
                values = [
                    r["test_perplexity"]
                    for r in mine
                    if r["method"] == method and r["budget"] == budget
                ]
                mean, std = mean_std(values)
                cells.append(f"{mean:.3f} ± {std:.3f}")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "| sparsity | candidate | baseline | candidate ppl | baseline ppl | paired p "
            "| verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for sparsity, budget, candidate, baseline in CHECKS:
            by_seed = {
                method: {
                    r["seed"]: r["test_perplexity"]
                    for r in mine
                    if r["method"] == method and r["budget"] == budget
                }
                for method in (candidate, baseline)
            }
            seeds = sorted(set(by_seed[candidate]) & set(by_seed[baseline]))
            ours = [by_seed[candidate][s] for s in seeds]
            theirs = [by_seed[baseline][s] for s in seeds]
            p = paired_p_value(ours, theirs) if len(seeds) > 1 else float("nan")
            better = statistics.fmean(ours) < statistics.fmean(theirs)
            verdict = ("better" if better else "worse") + (
                " beyond noise" if p < 0.05 else " (tie: within noise)"
            )
            lines.append(
                f"| {sparsity:.1f} | {candidate} | {baseline} | {statistics.fmean(ours):.3f} "
                f"| {statistics.fmean(theirs):.3f} | {p:.3f} | {verdict} |"
            )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


PARTS = {
    "dense": ("Dense language models", dense_part),
    "suite": ("Post-training pruning: the lm suite", suite_part),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/language_models"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["PRUNE_GYM_CACHE"] = str((args.out / "cache").resolve())
    torch.set_num_threads(1)  # one core per benchmark process: run parts side by side
    sections = []
    for part in args.parts:
        title, build = PARTS[part]
        sections.append(f"## {title}\n\n{build(args)}\n")
    report = "\n".join(sections)
    (args.out / "language_models.md").write_text(report)
    print("\n" + report)


if __name__ == "__main__":
    main()
