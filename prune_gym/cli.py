"""The ``prune-gym`` console script.

``prune-gym list`` shows what is registered (environments, tasks, metrics); ``train``
trains an agent and compares it with every baseline; ``eval`` re-evaluates a saved agent;
``bench`` compares pruning methods (and trained policies) on the same tasks and budgets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from prune_gym.envs import ENV_IDS
from prune_gym.executors import EXECUTORS, Executor, MissingExtra, make_executor
from prune_gym.plugins import import_modules
from prune_gym.pruning import available_metrics
from prune_gym.tasks import list_tasks

#: exit code after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: exit code of an I/O error, e.g. a full disk (EX_IOERR of sysexits.h).
IO_ERROR = 74


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
    """Run a benchmark into ``--out`` and report its runs; exit code 1 if any run failed."""
    import agents  # noqa: F401  (registers ppo-lag, so its zips load by name)
    from prune_gym.bench import BenchSpec, load_suite, parse_budgets, run_benchmark, write_report
    from prune_gym.bench.runner import BenchmarkInterrupted, hold_folder

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
            raise ValueError(f"give --suite, or {' and '.join(missing)}")
        spec = BenchSpec(**given)
    if args.device:
        spec = dataclasses.replace(spec, device=args.device)
    if args.gpus_per_run and spec.device == "cpu":
        raise ValueError(
            f"--gpus-per-run {args.gpus_per_run:g} reserves GPUs that runs on device 'cpu' "
            "would not use: add --device cuda"
        )
    out = Path(args.out)
    with hold_folder(out):  # checked before anything starts; reports written before release
        executor = _executor(args)
        try:
            records = run_benchmark(spec, out, executor)
        except BenchmarkInterrupted as stop:
            if stop.records:
                write_report(stop.records, out)
            print(
                f"\nprune-gym bench: interrupted. {len(stop.records)} finished runs are kept "
                f"in {out / 'records.jsonl'}; the run in progress was dropped. Run the same "
                "command again to resume.",
                file=sys.stderr,
            )
            return INTERRUPTED
        finally:
            executor.close()
        print(write_report(records, out))
    failed = sum(record.get("status") == "failed" for record in records)
    print(f"{len(records)} runs, {failed} failed; results in {out}")
    return 1 if failed else 0


def _executor(args: argparse.Namespace) -> Executor:
    """The executor ``--executor``, ``--address`` and the resources per run ask for."""
    return make_executor(
        args.executor,
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        imports=args.imports,
    )


def _train(args: argparse.Namespace) -> int:
    """Train an agent into ``--out`` (one per seed) and print its table against the baselines."""
    from agents.jobs import train, train_seeds
    from agents.run_config import RunConfig
    from prune_gym.pruning.cost import BudgetRange, parse_budget

    budget: dict[str, float | list[float]] = {}
    for text in args.budget or []:
        parsed = parse_budget(text)
        if isinstance(parsed, BudgetRange):
            budget |= {r: [low, high] for r, (low, high) in parsed.bounds.items()}
        else:
            budget |= parsed.limits
    env_kwargs = dict(args.env_kwargs or {})
    flags = {
        "structure": args.structure,
        "max_ratio": args.max_ratio,
        "action": args.action,
        "reference": args.reference,
        "reward": args.reward,
        "reward_finetune_steps": args.reward_finetune_steps,
    }
    env_kwargs |= {key: value for key, value in flags.items() if value is not None}
    optional = {
        "task": args.task,
        "budget": budget or None,
        "finetune_steps": args.finetune_steps,
        "eval_freq": args.eval_freq,
        "searches": args.searches,
    }
    config = RunConfig(
        env=args.env,
        agent=args.agent,
        timesteps=args.timesteps,
        seed=0 if args.seed is None else args.seed,
        env_kwargs=env_kwargs,
        lam=args.lam,
        eval_episodes=args.episodes,
        n_envs=args.n_envs,
        **{key: value for key, value in optional.items() if value is not None},
    )
    if args.seed is not None and args.seeds is not None:
        raise ValueError(f"give --seed {args.seed} or --seeds {args.seeds}, not both")
    files = "model.zip, run.json, results.json, summary.md and training.png"
    if args.seeds is None:
        if args.executor != "local":
            raise ValueError("--executor ray trains one agent per seed: give --seeds, e.g. 0,1,2")
        print(train(config, args.out))
        print(f"{files} in {args.out}")
        return 0
    executor = _executor(args)
    try:
        summary, failed = train_seeds(config, args.seeds, args.out, executor)
    finally:
        executor.close()
    print(summary)
    print(f"{files} per seed in {args.out}/seed-<n>; the summary over seeds in {args.out}")
    return 1 if failed else 0


def _seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> ``(0, 1, 2)``: distinct seeds, in order."""
    seeds = [_integer(item, "a seed") for item in _items(text, "seeds, e.g. 0,1,2")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct seeds, e.g. 0,1,2")
    return tuple(seeds)


def _searches(text: str) -> list[str]:
    """``"random-search,cma-es"`` -> those names, which RunConfig checks; ``"none"`` -> ``[]``."""
    return [] if text.strip() == "none" else _items(text, "random-search, cma-es or none")


def _items(text: str, example: str) -> list[str]:
    """The comma-separated items of ``text``, stripped; an empty item is an error."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item: give {example}")
    return items


def _json_object(text: str) -> dict:
    """A JSON object's text -> dict (``--env-kwargs``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error})") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a JSON object, e.g. \'{{"reward": "loss"}}\''
        )
    return value


def _eval(args: argparse.Namespace) -> int:
    """Re-evaluate a saved agent against the baselines."""
    from agents.jobs import evaluate_saved

    print(evaluate_saved(args.model, args.episodes))
    return 0


def _finetune_step_counts(text: str) -> tuple[int | str, ...]:
    """``"200,matched"`` -> ``(200, "matched")`` (validated by ``BenchSpec``)."""
    return tuple(
        item if item == "matched" else _integer(item, "a number of steps or matched")
        for item in _items(text, "steps and/or matched, e.g. 200,matched")
    )


def _integer(text: str, meaning: str) -> int:
    try:
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not {meaning}") from error


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
    placement = argparse.ArgumentParser(add_help=False)
    placement.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where runs execute: one after another here (default), or as Ray tasks "
        "(pip install 'prune-gym[ray]')",
    )
    placement.add_argument(
        "--address", help="Ray cluster to join (auto: this machine's); default a local Ray"
    )
    placement.add_argument(
        "--cpus-per-run", type=float, default=1, help="CPUs (and torch threads) per Ray task"
    )
    placement.add_argument("--gpus-per-run", type=float, default=0, help="GPUs per Ray task")
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser(
        "list",
        parents=[common],
        help="list registered envs, tasks, metrics, fixed policies, training methods and suites",
    ).set_defaults(run=_list)
    train = verbs.add_parser(
        "train",
        parents=[common, placement],
        help="train an agent, then compare it with every baseline on the same budget",
        description="With no options: one PPO-Lagrangian policy on GlobalRatio-v0 for "
        "mnist1d-cnn over the params budgets 0.2 to 0.5, post-training (no fine-tuning), "
        "acting by density logits around global magnitude's allocation, then printed next "
        "to every fixed policy and to random search and CMA-ES at 3 budgets (under a "
        "minute on 2 cores).",
    )
    train.add_argument(
        "--env",
        default="prune_gym/GlobalRatio-v0",
        help="environment id: a prune-gym env, or an id registered for one (see --import)",
    )
    train.add_argument("--task", help="task name (default mnist1d-cnn)")
    train.add_argument(
        "--budget",
        action="append",
        help="one budget, as bench writes it: resource=fraction, several joined by + "
        "(flops=0.5+params=0.3); repeatable, the limits merged; resource=low:high trains "
        "one policy over a range, compared at its ends and log-middle (default "
        "params=0.2:0.5)",
    )
    train.add_argument(
        "--agent",
        default="ppo-lag",
        choices=("ppo-lag", "ppo", "panning", "random-search", "cma-es"),
        help="the learner: PPO-Lagrangian, PPO priced by --lam, the Panning agent (TD3), or "
        "a search baseline over the same action with the same env steps (default ppo-lag)",
    )
    train.add_argument("--timesteps", type=int, default=2048, help="env steps of training")
    train.add_argument("--seed", type=int, help="the agent's seed (default 0)")
    train.add_argument(
        "--seeds",
        type=_seeds,
        help="comma-separated seeds: one agent each (in --out/seed-<n>), then mean ± std "
        "over them; with --executor ray, in parallel",
    )
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
    train.add_argument("--reward", choices=("accuracy", "loss"), help="default accuracy")
    train.add_argument(
        "--reward-finetune-steps", type=int, help="fine-tuning before each reward (default 0)"
    )
    train.add_argument("--env-kwargs", type=_json_object, help="more env settings as a JSON object")
    train.add_argument(
        "--finetune-steps",
        type=int,
        help="training of every final mask before val/test accuracy (default 0: "
        "post-training; 600 for panning)",
    )
    train.add_argument(
        "--searches",
        type=_searches,
        help="search baselines run beside the agent at each budget with the same env steps "
        "in all: comma-separated random-search, cma-es, or none (default both, for "
        "ppo-lag and ppo on a one-step env)",
    )
    train.add_argument("--eval-freq", type=int, help="env steps between validation checks")
    train.add_argument("--lam", type=float, default=1.0, help="violation price for --agent ppo")
    train.add_argument("--episodes", type=int, default=1, help="evaluation episodes per policy")
    train.add_argument(
        "--n-envs",
        type=int,
        default=1,
        help="episodes collected at once; the ratio envs compute their rewards together "
        "(default 1)",
    )
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
        parents=[common, placement],
        help="compare pruning methods on the same tasks and budgets",
        description="Writes results.csv, results.json, summary.md and PNG plots to --out; "
        "runs already there are reused. SB3 policy zips are pickle: load only trusted files.",
        epilog="Exit status: 0: every run succeeded; 1: a run failed (recorded; see "
        "summary.md); 2: a usage error, nothing run (bad options, or an --out that cannot be "
        "used: not a writable folder, or held by another bench); 74: an I/O error while "
        "writing --out (a full disk, say); 130: interrupted.",
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
        type=_finetune_step_counts,
        help="fine-tuning of every policy's masks: steps, comma-separated budgets, and/or "
        "matched (GMP's total steps on the task), e.g. 200,matched (default 200)",
    )
    bench.add_argument(
        "--max-ratio", type=float, help="largest per-layer ratio one-shot methods may use (1.0)"
    )
    bench.add_argument("--policy", action="append", help="trained SB3 model zip (repeatable)")
    bench.add_argument("--algo", help="algorithm of --policy zips: ppo (default), a2c, sac, td3")
    bench.add_argument(
        "--device", help="torch device of one-shot and learned runs, e.g. cuda (default cpu)"
    )
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
    except (ValueError, FileNotFoundError, MissingExtra) as error:  # a message, no traceback
        parser.exit(2, f"prune-gym {args.verb}: error: {error}\n")
    except OSError as error:
        parser.exit(IO_ERROR, f"prune-gym {args.verb}: I/O error: {error}\n")
    except KeyboardInterrupt:
        print(f"\nprune-gym {args.verb}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
