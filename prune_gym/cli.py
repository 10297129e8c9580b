"""The ``prune-gym`` console script.

``prune-gym list`` shows what is registered (environments, tasks, metrics); ``train``
trains an agent and compares it with every baseline; ``eval`` re-evaluates a saved agent;
``bench`` compares pruning methods (and trained policies) on the same tasks and budgets.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from prune_gym.envs import ENV_IDS
from prune_gym.pruning import available_metrics
from prune_gym.tasks import list_tasks

#: exit code after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def import_modules(names: Sequence[str]) -> None:
    """Import each ``--import`` module (a dotted name or a ``.py`` path) so it can register.

    A user's tasks, metrics and envs exist once the module that registers them has run.
    Dotted names are looked up from the current directory too, as ``python -m`` does.
    ``ValueError`` naming the module if it cannot be found; errors inside it propagate.
    """
    for name in names:
        if name.endswith(".py"):
            path = Path(name)
            if not path.is_file():
                raise ValueError(f"--import {name!r}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            continue
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or not (name == error.name or name.startswith(error.name + ".")):
                raise  # the module exists but imports something missing: show where
            raise ValueError(
                f"--import {name!r}: no such module ({error}); give a module importable from "
                "the current directory or a path to a .py file"
            ) from error


def _list(_args: argparse.Namespace) -> int:
    """Print what can be named: envs, tasks, metrics, fixed policies and training methods."""
    from prune_gym.baselines import ALL_POLICIES
    from prune_gym.baselines.methods import available_methods
    from prune_gym.bench import available_suites

    print("envs:     " + ", ".join(ENV_IDS))
    print("tasks:    " + ", ".join(list_tasks()))
    print("metrics:  " + ", ".join(available_metrics()))
    print("policies: " + ", ".join(ALL_POLICIES) + "  (one-shot fixed policies)")
    print("methods:  " + ", ".join(available_methods()) + "  (training-time methods)")
    print("suites:   " + ", ".join(available_suites()) + "  (prune-gym bench --suite)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Run a benchmark into ``--out``; exit code 1 if any run failed."""
    import agents  # noqa: F401  (registers ppo-lag, so its zips load by name)
    from prune_gym.bench import (
        BenchSpec,
        RecordStore,
        latest_records,
        load_suite,
        parse_budgets,
        run_benchmark,
        write_report,
    )

    given = {
        "tasks": tuple(args.task) if args.task else None,
        "budgets": tuple(parse_budgets(args.budgets)) if args.budgets else None,
        "methods": tuple(m.strip() for m in args.methods.split(",")) if args.methods else None,
        "seeds": args.seeds,
        "env": args.env,
        "structure": args.structure,
        "finetune_steps": args.finetune_steps,
        "max_ratio": args.max_ratio,
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
    try:
        records = run_benchmark(spec, out)
    except KeyboardInterrupt:
        records = latest_records(RecordStore(out).read())
        if records:
            write_report(records, out)
        print(
            f"\nprune-gym bench: interrupted. {len(records)} finished runs are kept in "
            f"{out / 'records.jsonl'}; the run in progress was dropped. Run the same command "
            "again to resume.",
            file=sys.stderr,
        )
        return INTERRUPTED
    print(write_report(records, out))
    failed = sum(record.get("status") == "failed" for record in records)
    print(f"{len(records)} runs, {failed} failed; results in {out}")
    return 1 if failed else 0


def _train(args: argparse.Namespace) -> int:
    """Train an agent into ``--out`` and print its table against the baselines."""
    from agents.jobs import train
    from agents.run_config import RunConfig
    from prune_gym.bench.spec import parse_budget

    budget = {}
    for text in args.budget or ["flops=0.5"]:
        budget |= parse_budget(text).limits
    env_kwargs = json.loads(args.env_kwargs) if args.env_kwargs else {}
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"--env-kwargs {args.env_kwargs!r} must be a JSON object")
    flags = {
        "structure": args.structure,
        "max_ratio": args.max_ratio,
        "action": args.action,
        "reference": args.reference,
        "reward": args.reward,
        "finetune_steps": args.reward_finetune_steps,
    }
    env_kwargs |= {key: value for key, value in flags.items() if value is not None}
    optional = {"finetune_steps": args.finetune_steps, "eval_freq": args.eval_freq}
    config = RunConfig(
        env=args.env,
        task=args.task,
        budget=budget,
        agent=args.agent,
        timesteps=args.timesteps,
        seed=args.seed,
        env_kwargs=env_kwargs,
        lam=args.lam,
        eval_episodes=args.episodes,
        **{key: value for key, value in optional.items() if value is not None},
    )
    print(train(config, args.out))
    print(f"model.zip, run.json, results.json, summary.md and training.png in {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    """Re-evaluate a saved agent against the baselines."""
    from agents.jobs import evaluate_saved

    print(evaluate_saved(args.model, args.episodes))
    return 0


def _finetune_budgets(text: str) -> tuple[int | str, ...]:
    """``"200,matched"`` -> ``(200, "matched")`` (validated by ``BenchSpec``)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    return tuple(item if item == "matched" else _integer(item) for item in items)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of steps or matched") from error


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="prune-gym", description="Neural-network pruning as Gymnasium environments."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (dotted name or .py path) first, so the tasks, metrics and envs "
        "it registers can be named; repeatable",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser(
        "list",
        parents=[common],
        help="list registered envs, tasks, metrics, fixed policies, training methods and suites",
    ).set_defaults(run=_list)
    train = verbs.add_parser(
        "train",
        parents=[common],
        help="train an agent, then compare it with every baseline on the same budget",
        description="With no options: PPO-Lagrangian on GlobalRatio-v0, digits-cnn, flops "
        "budget 0.5, acting by density logits around the best fixed policy's allocation "
        "(a few minutes on 2 cores).",
    )
    train.add_argument(
        "--env",
        default="prune_gym/GlobalRatio-v0",
        help="environment id: a prune-gym env, or an id registered for one (see --import)",
    )
    train.add_argument("--task", default="digits-cnn", help="task name")
    train.add_argument(
        "--budget", action="append", help="resource=fraction, repeatable (default flops=0.5)"
    )
    train.add_argument("--agent", default="ppo-lag", choices=("ppo-lag", "ppo", "panning"))
    train.add_argument("--timesteps", type=int, default=2048, help="env steps of training")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--structure", choices=("unstructured", "channel"))
    train.add_argument("--max-ratio", type=float, help="largest per-layer ratio an action maps to")
    train.add_argument(
        "--action", choices=("ratios", "logits"), help="GlobalRatio's action (default logits)"
    )
    train.add_argument(
        "--reference",
        help="logits' reference: best (the best fixed policy on val; default), global, erk, "
        "uniform",
    )
    train.add_argument("--reward", choices=("accuracy", "loss"), help="default loss")
    train.add_argument(
        "--reward-finetune-steps", type=int, help="fine-tuning before each reward (default 10)"
    )
    train.add_argument("--env-kwargs", help="more env settings as a JSON object")
    train.add_argument(
        "--finetune-steps",
        type=int,
        help="training of every final mask before val/test accuracy (default 200)",
    )
    train.add_argument("--eval-freq", type=int, help="env steps between validation checks")
    train.add_argument("--lam", type=float, default=1.0, help="violation price for --agent ppo")
    train.add_argument("--episodes", type=int, default=1, help="evaluation episodes per policy")
    train.add_argument("--out", default="runs/train", help="output folder")
    train.set_defaults(run=_train)
    evaluation = verbs.add_parser(
        "eval",
        parents=[common],
        help="evaluate a saved agent against the baselines",
        description="SB3 zips are pickle: load only trusted files.",
    )
    evaluation.add_argument("--model", required=True, help="model.zip written by train")
    evaluation.add_argument("--episodes", type=int, default=20)
    evaluation.set_defaults(run=_eval)
    bench = verbs.add_parser(
        "bench",
        parents=[common],
        help="compare pruning methods on the same tasks and budgets",
        description="Writes results.csv, results.json, summary.md and PNG plots to --out; "
        "runs already there are reused. SB3 policy zips are pickle: load only trusted files.",
    )
    bench.add_argument(
        "--suite", help="a built-in suite's name (see prune-gym list) or a suite YAML file's path"
    )
    bench.add_argument("--task", action="append", help="task name (repeatable)")
    bench.add_argument(
        "--budgets", help="comma-separated budgets, e.g. params=0.1,flops=0.5+params=0.3, or sweep"
    )
    bench.add_argument("--methods", help="comma-separated method names, or all (default)")
    bench.add_argument("--seeds", type=int, help="number of seeds (default 3)")
    bench.add_argument("--env", help="env the one-shot methods act on (default GlobalRatio)")
    bench.add_argument("--structure", choices=("unstructured", "channel"))
    bench.add_argument(
        "--finetune-steps",
        type=_finetune_budgets,
        help="fine-tuning of every policy's masks: steps, comma-separated budgets, and/or "
        "matched (GMP's total steps on the task), e.g. 200,matched (default 200)",
    )
    bench.add_argument(
        "--max-ratio", type=float, help="largest per-layer ratio one-shot methods may use (1.0)"
    )
    bench.add_argument("--policy", action="append", help="trained SB3 model zip (repeatable)")
    bench.add_argument("--algo", help="algorithm of --policy zips: ppo (default), a2c, sac, td3")
    bench.add_argument("--out", required=True, help="output folder (resumable)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prune-gym``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import_modules(args.imports)
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:  # bad input: a message, not a traceback
        parser.exit(2, f"prune-gym {args.verb}: error: {error}\n")
    except KeyboardInterrupt:
        print(f"\nprune-gym {args.verb}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
