"""The ``prune-gym`` console script.

``prune-gym list`` shows what is registered (environments, tasks, metrics); ``prune-gym
bench`` compares pruning methods (and trained policies) on the same tasks and budgets.
The ``train`` and ``eval`` verbs of DESIGN §8 arrive with the agents they drive.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from prune_gym.envs import ENV_IDS
from prune_gym.pruning import available_metrics
from prune_gym.tasks import list_tasks


def _list(_args: argparse.Namespace) -> int:
    """Print the registered environments, tasks and importance metrics."""
    print("envs:    " + ", ".join(ENV_IDS))
    print("tasks:   " + ", ".join(list_tasks()))
    print("metrics: " + ", ".join(available_metrics()))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Run a benchmark into ``--out``; exit code 1 if any run failed."""
    from prune_gym.bench import BenchSpec, load_suite, parse_budgets, run_benchmark, write_report

    given = {
        "tasks": tuple(args.task) if args.task else None,
        "budgets": tuple(parse_budgets(args.budgets)) if args.budgets else None,
        "methods": tuple(m.strip() for m in args.methods.split(",")) if args.methods else None,
        "seeds": args.seeds,
        "env": args.env,
        "structure": args.structure,
        "finetune_steps": args.finetune_steps,
        "policies": tuple(args.policy) if args.policy else None,
        "policy_algorithm": args.algo,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if args.suite:
        spec = dataclasses.replace(load_suite(args.suite), **given)
    else:
        missing = [
            flag
            for flag, key in (("--task", "tasks"), ("--budgets", "budgets"))
            if key not in given
        ]
        if missing:
            raise SystemExit(f"prune-gym bench: give --suite, or {' and '.join(missing)}")
        spec = BenchSpec(**given)
    out = Path(args.out)
    records = run_benchmark(spec, out)
    print(write_report(records, out))
    failed = sum(record.get("status") == "failed" for record in records)
    print(f"{len(records)} runs, {failed} failed; results in {out}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="prune-gym", description="Neural-network pruning as Gymnasium environments."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="list registered envs, tasks and metrics").set_defaults(run=_list)
    bench = verbs.add_parser(
        "bench",
        help="compare pruning methods on the same tasks and budgets",
        description="Writes results.csv, results.json, summary.md and PNG plots to --out; "
        "runs already there are reused. SB3 policy zips are pickle: load only trusted files.",
    )
    bench.add_argument("--suite", help="a suite name in benchmarks/suites/ or a YAML path")
    bench.add_argument("--task", action="append", help="task name (repeatable)")
    bench.add_argument(
        "--budgets", help="comma-separated budgets, e.g. params=0.1,flops=0.5+params=0.3, or sweep"
    )
    bench.add_argument("--methods", help="comma-separated method names, or all (default)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    bench.add_argument("--env", help="env the one-shot methods act on (default GlobalRatio)")
    bench.add_argument("--structure", choices=("unstructured", "channel"))
    bench.add_argument("--finetune-steps", type=int, help="fine-tuning after one-shot pruning")
    bench.add_argument("--policy", action="append", help="trained SB3 model zip (repeatable)")
    bench.add_argument("--algo", help="algorithm of --policy zips: ppo (default), a2c, sac, td3")
    bench.add_argument("--out", required=True, help="output folder (resumable)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prune-gym``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
