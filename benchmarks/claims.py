"""The seed papers' qualitative claims, checked at small scale on digits and MNIST-1D.

    python benchmarks/claims.py --out runs/fair --agents runs/agents

Runs what the claims need with ``prune-gym bench`` into ``--out/<dataset>`` (the same
folders and run keys as the ``digits`` and ``mnist1d`` suites there, so finished runs are
reused, never repeated), reads the agents' claims from ``agents_vs_baselines.py``'s
folder, and prints one table: claim | setting | numbers | holds?

Every number is test accuracy, mean ± std over seeds, each method after its own training
or, for one-shot methods, after fine-tuning as long as GMP trains (equal compute); a claim
"A > B" holds in a setting when A's mean is above B's, and the p-value of a two-sided
paired t-test over seeds says how sure that is; where both means are within 0.05 of
chance (1 / classes), the setting says nothing about the claim and the row reads "n/a
(both at chance)". Nothing is selected on test: where a claim compares with
"the best of" several methods, that best is chosen on val.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import agents  # noqa: F401  (registers ppo-lag)
from prune_gym.bench import BenchSpec, run_benchmark, run_keys
from prune_gym.bench.report import at_chance, mean_std, mean_std_cell, paired_p_value
from prune_gym.bench.spec import MATCHED
from prune_gym.tasks import make as make_task

DATASETS = {"digits": ("digits-mlp", "digits-cnn"), "mnist1d": ("mnist1d-mlp", "mnist1d-cnn")}
PAPERS = "GraNet (Liu et al. 2021), FlipOut (Apostol et al. 2020), SWD (Tessier et al. 2022), LTH"
ITERATIVE = ("iterative-snip", "iterative-grasp", "iterative-synflow")
HANDSET_CLAIM = "hand-set Panning > best iterative SNIP/GraSP/SynFlow"
AGENT_CLAIM = "Panning agent > best iterative SNIP/GraSP/SynFlow"
LAGRANGIAN_CLAIM = "PPO-Lagrangian feasible in every evaluation episode"
#: masks pruned at initialisation are trained this long (per dataset) before they are scored.
PANNING_TRAIN_STEPS = {"digits": 600, "mnist1d": 2000}
AT_CHANCE = "n/a (both at chance)"


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` (test accuracy) at every budget in ``budgets``."""

    text: str
    a: str
    b: str
    budgets: tuple[str, ...]


HIGH = ("params=0.05", "params=0.02", "params=0.01")
CLAIMS = (
    Claim("FlipOut > global magnitude at >= 99% sparsity", "flipout", "global-magnitude", HIGH[2:]),
    Claim("GraNet > GMP", "granet", "gmp", HIGH),
    Claim("SWD > magnitude at high sparsity", "swd", "global-magnitude", HIGH[1:]),
    Claim("IMP > random at 98% sparsity", "imp", "random-weights", HIGH[1:2]),
)


def own_records(spec: BenchSpec, folder: Path) -> list[dict[str, Any]]:
    """Run ``spec`` in ``folder`` (finished runs are reused) and return its records only:
    the folder is shared with the suites, whose other settings (e.g. another fine-tuning
    budget for the same method) must not mix in."""
    keys = run_keys(spec)
    return [r for r in run_benchmark(spec, folder) if r["run_key"] in keys]


def by_seed(records: list[dict[str, Any]], **where: Any) -> dict[int, dict[str, Any]]:
    """Successful records matching ``where`` (record fields), by seed."""
    return {
        r["seed"]: r
        for r in records
        if r["status"] == "ok" and all(r.get(key) == value for key, value in where.items())
    }


def compare(
    a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]], num_classes: int
) -> tuple[str, str]:
    """``numbers`` and ``holds?`` cells for "a > b" on test accuracy, paired by seed."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return "no runs", "n/a"
    ta = [a[s]["test_accuracy"] for s in seeds]
    tb = [b[s]["test_accuracy"] for s in seeds]
    p = paired_p_value(ta, tb) if len(seeds) > 2 else float("nan")
    numbers = f"{mean_std_cell(mean_std(ta), 3)} vs {mean_std_cell(mean_std(tb), 3)} "
    numbers += f"({len(seeds)} seeds, p={p:.2f})"
    if at_chance([statistics.fmean(ta), statistics.fmean(tb)], num_classes):
        return numbers, AT_CHANCE
    return numbers, "yes" if statistics.fmean(ta) > statistics.fmean(tb) else "no"


def class_count(task: str) -> int:
    """The task's number of classes (chance accuracy is its inverse)."""
    return make_task(task).num_classes


def method_claims(out: Path, seeds: int) -> list[tuple[str, str, str, str]]:
    """The training-time methods' claims on every dataset: table rows."""
    rows = []
    budgets = tuple(dict.fromkeys(b for claim in CLAIMS for b in claim.budgets))
    methods = tuple(dict.fromkeys(m for claim in CLAIMS for m in (claim.a, claim.b)))
    for dataset, tasks in DATASETS.items():
        spec = BenchSpec(
            tasks=tasks, budgets=budgets, methods=methods, seeds=seeds, finetune_steps=(MATCHED,)
        )
        records = own_records(spec, out / dataset)
        for claim in CLAIMS:
            for task in tasks:
                for budget in claim.budgets:
                    numbers, holds = compare(
                        by_seed(records, task=task, budget=budget, method=claim.a),
                        by_seed(records, task=task, budget=budget, method=claim.b),
                        class_count(task),
                    )
                    rows.append((claim.text, f"{task}, {budget}", numbers, holds))
    return rows


def panning_claims(out: Path, agents_dir: Path, seeds: int) -> list[tuple[str, str, str, str]]:
    """Hand-set schedule and Panning agent vs the best iterative metric (chosen on val)."""
    rows = []
    budgets = ("params=0.05", "params=0.02", "params=0.01")
    for dataset, tasks in DATASETS.items():
        spec = BenchSpec(
            tasks=tasks,
            budgets=budgets,
            methods=(*ITERATIVE, "panning-handset"),
            seeds=seeds,
            env="prune_gym/Panning-v0",
            finetune_steps=PANNING_TRAIN_STEPS[dataset],
        )
        records = own_records(spec, out / f"{dataset}-panning")
        for task in tasks:
            for budget in budgets:
                cell = [r for r in records if (r["task"], r["budget"]) == (task, budget)]
                best = best_on_val(cell, ITERATIVE)
                numbers, holds = compare(
                    by_seed(cell, method="panning-handset"),
                    by_seed(cell, method=best),
                    class_count(task),
                )
                setting = f"{task}, {budget} (best: {best})"
                rows.append((HANDSET_CLAIM, setting, numbers, holds))
    for folder in sorted((agents_dir / "panning").glob("*")):
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*/results.json"))]
        if not runs:
            continue
        learned = {seed: policies[0] for seed, policies in enumerate(runs)}
        best = {}
        for seed, policies in enumerate(runs):
            name = best_on_val(policies, ITERATIVE, key="policy")
            best[seed] = next(r for r in policies if r["policy"] == name)
        task = folder.name.rsplit("-target", 1)[0]  # folders are <task>-target<t>
        numbers, holds = compare(learned, best, class_count(task))
        setting = f"{folder.name} (trained {learned[0]['timesteps']} env steps)"
        rows.append((AGENT_CLAIM, setting, numbers, holds))
    return rows


def best_on_val(rows: list[dict[str, Any]], names: tuple[str, ...], key: str = "method") -> str:
    """The one of ``names`` with the best mean val accuracy in ``rows``."""
    means = {
        name: statistics.fmean(r["val_accuracy"] for r in rows if r.get(key) == name)
        for name in names
        if any(r.get(key) == name for r in rows)
    }
    return max(means, key=means.get)


#: agents_vs_baselines.py part -> how its PPO-Lagrangian acts.
LAGRANGIAN_PARTS = {"ppo-lag": "density logits (default)", "lagrangian": "plain ratios"}


def lagrangian_claim(agents_dir: Path) -> list[tuple[str, str, str, str]]:
    """PPO-Lagrangian's deterministic policy: feasible in every evaluation episode?

    One row per action parametrisation: the default density logits, and plain ratios,
    where only the Lagrangian keeps the budget.
    """
    rows = []
    for part, action in LAGRANGIAN_PARTS.items():
        results = sorted((agents_dir / part).glob("*/seed*/results.json"))
        learned = [json.loads(path.read_text())[0] for path in results]
        if not learned:
            rows.append((LAGRANGIAN_CLAIM, action, "no runs", "n/a"))
            continue
        feasible = sum(r["feasible"] == 1.0 for r in learned)
        numbers = f"{feasible} of {len(learned)} (cell, seed) runs feasible"
        holds = "yes" if feasible == len(learned) else "no"
        rows.append((LAGRANGIAN_CLAIM, f"{action}, every cell and seed", numbers, holds))
    return rows


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/fair"))
    parser.add_argument("--agents", type=Path, default=Path("runs/agents"))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = method_claims(args.out, args.seeds)
    rows += panning_claims(args.out, args.agents, args.seeds)
    rows += lagrangian_claim(args.agents)
    lines = ["| claim | setting | numbers (test accuracy) | holds? |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    held = sum(row[3] == "yes" for row in rows)
    at_chance = sum(row[3] == AT_CHANCE for row in rows)
    lines += [
        "",
        f"{held} of {len(rows)} rows hold; {at_chance} are at chance on both sides. "
        f"Papers: {PAPERS}.",
    ]
    report = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "claims.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
