"""The ``prune-gym`` console script.

``prune-gym list`` shows what is registered (environments, tasks, metrics); ``train``
trains an agent and compares it with every baseline; ``eval`` re-evaluates a saved agent;
``bench`` compares pruning methods (and trained policies) on the same tasks and budgets.

The command line is parsed before anything imports torch, so ``--help``, ``--version``
and usage errors of the parser answer at once; each verb imports what it needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prune_gym import __version__
from prune_gym.ids import EXECUTORS
from prune_gym.plugins import import_modules

if TYPE_CHECKING:  # imported by the verbs that need it: it imports torch
    from prune_gym.executors import Executor

#: exit code after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
#: exit code of an I/O error, e.g. a full disk (EX_IOERR of sysexits.h).
IO_ERROR = 74
#: exit code when stdout's reader has gone (128 + SIGPIPE), as shells report it.
BROKEN_PIPE = 141
#: exit code of a usage error (argparse's): bad options or input, nothing run.
USAGE_ERROR = 2
EXIT_STATUS = (
    "Exit status, every verb: 0: done; 1: a run failed (recorded: a bench run, or a seed "
    "of train --seeds); 2: a usage error, nothing run (bad options or input files, or an "
    "--out that cannot be used); 74: an I/O error while writing --out (a full disk, say); "
    "130: interrupted."
)
#: the agents ``train --agent`` takes (``agents.run_config.AGENTS``, which imports torch).
AGENTS = ("ppo-lag", "ppo", "panning", "random-search", "cma-es")


def _list(_args: argparse.Namespace) -> int:
    """Print what can be named: envs (prune-gym's and those ``--import`` registered), tasks,
    metrics, fixed policies, training methods and suites."""
    from prune_gym.baselines import ALL_POLICIES
    from prune_gym.baselines.methods import available_methods
    from prune_gym.bench import available_suites
    from prune_gym.envs import registered_pruning_env_ids
    from prune_gym.pruning import available_metrics
    from prune_gym.tasks import list_tasks

    print("envs:     " + ", ".join(registered_pruning_env_ids()))
    print("tasks:    " + ", ".join(list_tasks()))
    print("metrics:  " + ", ".join(available_metrics()))
    print("policies: " + ", ".join(ALL_POLICIES) + "  (one-shot fixed policies)")
    print("methods:  " + ", ".join(available_methods()) + "  (training-time methods)")
    print("suites:   " + ", ".join(available_suites()) + "  (prune-gym bench --suite)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    """Run a benchmark into ``--out`` and report its runs; exit code 1 if any run failed."""
    from agents.saved_runs import policy_warnings, saved_runs_spec
    from prune_gym.bench import BenchSpec, load_suite, parse_budgets, run_benchmark, write_report
    from prune_gym.bench.runner import BenchmarkInterrupted, hold_folder
    from prune_gym.checks import check_device_available

    given = {
        "tasks": tuple(args.task) if args.task else None,
        "budgets": tuple(parse_budgets(args.budgets)) if args.budgets else None,
        "methods": tuple(m.strip() for m in args.methods.split(",")) if args.methods else None,
        "seeds": _seed_setting(args),
        "env": args.env,
        "structure": args.structure,
        "finetune_steps": args.finetune_steps,
        "max_ratio": args.max_ratio,
        "device": args.device,
        "policies": tuple(args.policy) if args.policy else None,
        "policy_algorithm": args.algo,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if isinstance(given.get("seeds"), tuple):  # seeds named outright: none counted from a first
        given["first_seed"] = 0
    if args.suite:
        spec = dataclasses.replace(load_suite(args.suite), **given)
    elif args.policy and not (args.task or args.budgets):
        spec = dataclasses.replace(saved_runs_spec(args.policy), **given)
    else:
        missing = [
            flag
            for flag, key in (("--task", "tasks"), ("--budgets", "budgets"))
            if key not in given
        ]
        if missing:
            raise ValueError(
                f"give --suite, or {' and '.join(missing)}, or --policy alone to bench a "
                "train run's model.zip at the task and budgets it was trained for"
            )
        spec = BenchSpec(**given)
    if args.executor == "local":  # a Ray cluster's nodes may have GPUs this one lacks
        check_device_available(spec.device)
    if args.gpus_per_run and spec.device == "cpu":
        raise ValueError(
            f"--gpus-per-run {args.gpus_per_run:g} reserves GPUs that runs on device 'cpu' "
            "would not use: add --device cuda"
        )
    for warning in policy_warnings(spec, given_algorithm=args.algo):
        print(f"prune-gym bench: warning: {warning}", file=sys.stderr)
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
    from prune_gym.executors import make_executor

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
        "budget": budget or None,
        "finetune_steps": args.finetune_steps,
        "eval_freq": args.eval_freq,
        "searches": args.searches,
    }
    _seed_setting(args)  # refuses --seed with --seeds
    config = RunConfig(
        env=args.env,
        task=args.task,
        agent=args.agent,
        timesteps=args.timesteps,
        seed=0 if args.seed is None else args.seed,
        env_kwargs=env_kwargs,
        lam=args.lam,
        eval_episodes=args.episodes,
        n_envs=args.n_envs,
        **{key: value for key, value in optional.items() if value is not None},
    )
    files = "model.zip, run.json, results.json, summary.md and training.png"
    if args.seeds is None:
        if args.executor != "local":
            raise ValueError("--executor ray trains one agent per seed: give --seeds, e.g. 0,1,2")
        print(train(config, args.out))
        print(f"{files} in {args.out}")
        return 0
    seeds = tuple(range(args.seeds)) if isinstance(args.seeds, int) else args.seeds
    executor = _executor(args)
    try:
        summary, failed = train_seeds(config, seeds, args.out, executor)
    finally:
        executor.close()
    print(summary)
    print(f"{files} per seed in {args.out}/seed-<n>; the summary over seeds in {args.out}")
    return 1 if failed else 0


def _seed_setting(args: argparse.Namespace) -> int | tuple[int, ...] | None:
    """``--seed S`` as ``(S,)``, or ``--seeds`` (a count or seeds); not both."""
    if args.seed is not None and args.seeds is not None:
        raise ValueError(f"give --seed {args.seed} or --seeds {args.seeds}, not both")
    return (args.seed,) if args.seed is not None else args.seeds


def _seeds(text: str) -> int | tuple[int, ...]:
    """``"3"`` -> ``3`` (a count: seeds 0, 1, 2); ``"0,2,5"`` -> those seeds, distinct."""
    if "," not in text:
        count = _integer(text.strip(), "a number of seeds or comma-separated seeds, e.g. 0,1,2")
        if count < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give a number of seeds >= 1, seeds such as 0,1,2, or --seed S"
            )
        return count
    seeds = [_integer(item, "a seed") for item in _items(text, "seeds, e.g. 0,1,2")]
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct seeds >= 0, e.g. 0,1,2")
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


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless its text already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unstated = action.default in (None, False, [], argparse.SUPPRESS)
        if "default" in text or unstated or action.required or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _add_seed_options(parser: argparse.ArgumentParser, one: str, many: str) -> None:
    """``--seed`` and ``--seeds``, the same in every verb that takes them; ``one`` and
    ``many`` say what they seed, and their defaults."""
    parser.add_argument("--seed", type=int, help=f"one seed: {one}")
    parser.add_argument(
        "--seeds",
        type=_seeds,
        help=f"a number of seeds N (seeds 0 to N-1) or comma-separated seeds, e.g. 0,2,5: {many}",
    )


def _add_structure_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--structure",
        choices=("unstructured", "channel"),
        help="what a pruned unit is: single weights, or whole output channels (filters), "
        f"which shrink the exported model and cut its latency (default: {default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="prune-gym",
        description="Neural-network pruning as Gymnasium environments.",
        epilog=EXIT_STATUS,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"prune-gym {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (dotted name or .py path) first, so the tasks, metrics and envs "
        "it registers can be named; repeatable (default: none)",
    )
    placement = argparse.ArgumentParser(add_help=False)
    placement.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where runs execute: one after another here, or as Ray tasks "
        "(pip install 'prune-gym[ray]')",
    )
    placement.add_argument(
        "--address",
        help="Ray cluster to join (auto: this machine's) (default: a new local Ray)",
    )
    placement.add_argument(
        "--cpus-per-run", type=float, default=1, help="CPUs (and torch threads) per Ray task"
    )
    placement.add_argument(
        "--gpus-per-run", type=float, default=0, help="GPUs per Ray task (default: 0)"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{list,train,eval,bench}")

    def verb(name: str, parents: list[argparse.ArgumentParser], **kwargs: Any) -> Any:
        return verbs.add_parser(
            name, parents=parents, formatter_class=_HelpFormatter, epilog=EXIT_STATUS, **kwargs
        )

    verb(
        "list",
        [common],
        help="list registered envs, tasks, metrics, fixed policies, training methods and suites",
        description="With --import MODULE, also what MODULE registers: its tasks, metrics "
        "and env ids.",
    ).set_defaults(run=_list)
    train = verb(
        "train",
        [common, placement],
        help="train an agent, then compare it with every baseline on the same budget",
        description="With no options: one PPO-Lagrangian policy on GlobalRatio-v0 for "
        "mnist1d-cnn over the params budgets 0.2 to 0.5, post-training (no fine-tuning), "
        "acting by density logits around global magnitude's allocation, then printed next "
        "to every fixed policy and to random search and CMA-ES at 3 budgets (under a "
        "minute on 2 cores). The env settings train adds to the env's own defaults are "
        "listed by --action, --reference, --reward, --reward-finetune-steps and --max-ratio.",
    )
    train.add_argument(
        "--env",
        default="prune_gym/GlobalRatio-v0",
        help="environment id: a prune-gym env, or an id registered for one (see --import)",
    )
    train.add_argument("--task", default="mnist1d-cnn", help="task name (see prune-gym list)")
    train.add_argument(
        "--budget",
        action="append",
        help="one budget, as bench writes it: resource=fraction, several joined by + "
        "(flops=0.5+params=0.3); repeatable, the limits merged; resource=low:high trains "
        "one policy over a range, compared at its ends and log-middle (default: "
        "params=0.2:0.5)",
    )
    train.add_argument(
        "--agent",
        default="ppo-lag",
        choices=AGENTS,
        help="the learner: PPO-Lagrangian (ppo-lag), PPO priced by --lam (ppo), the Panning "
        "agent (TD3 on Panning-v0), or a search baseline (random-search, cma-es) over the "
        "same action with the same env steps",
    )
    train.add_argument("--timesteps", type=int, default=2048, help="env steps of training")
    _add_seed_options(
        train,
        "the task's, the agent's and every evaluation's, into --out (default: 0)",
        "one agent each, in --out/seed-<n>, then mean ± std over them; with --executor "
        "ray, in parallel (default: one agent, at --seed, in --out)",
    )
    _add_structure_option(train, "unstructured")
    train.add_argument(
        "--max-ratio",
        type=float,
        help="largest per-layer ratio an action maps to (default: 1.0, as bench; the env's "
        "own default is 0.99)",
    )
    train.add_argument(
        "--action",
        choices=("ratios", "logits"),
        help="GlobalRatio's action (default: logits, which meets the budget in every "
        "episode; the env's own default is ratios)",
    )
    train.add_argument(
        "--reference",
        help="logits' reference: best (the best fixed policy on val), global, erk, uniform "
        "(default: best at one budget, global over a range)",
    )
    train.add_argument(
        "--reward",
        choices=("accuracy", "loss"),
        help="accuracy or minus the loss on the reward split (default: accuracy)",
    )
    train.add_argument(
        "--reward-finetune-steps", type=int, help="fine-tuning before each reward (default: 0)"
    )
    train.add_argument(
        "--env-kwargs", type=_json_object, help="more env settings as a JSON object (default: {})"
    )
    train.add_argument(
        "--finetune-steps",
        type=int,
        help="training of every final mask before val/test accuracy (default: 0, "
        "post-training; 600 for panning)",
    )
    train.add_argument(
        "--searches",
        type=_searches,
        help="search baselines run beside the agent at each budget with the same env steps "
        "in all: comma-separated random-search, cma-es, or none (default: both, for "
        "ppo-lag and ppo on a one-step env; none otherwise)",
    )
    train.add_argument(
        "--eval-freq",
        type=int,
        help="env steps between validation checks (default: a tenth of --timesteps)",
    )
    train.add_argument("--lam", type=float, default=1.0, help="violation price for --agent ppo")
    train.add_argument(
        "--episodes",
        type=int,
        default=1,
        help="evaluation episodes (seeds seed, seed+1, ...) per policy in the comparison",
    )
    train.add_argument(
        "--n-envs",
        type=int,
        default=1,
        help="episodes collected at once; the ratio envs compute their rewards together",
    )
    train.add_argument("--out", default="runs/train", help="output folder")
    train.set_defaults(run=_train)
    evaluation = verb(
        "eval",
        [common],
        help="evaluate a saved agent against the baselines",
        description="Redoes train's comparison table for a model.zip, from the run.json "
        "beside it, reusing the runs done before. SB3 zips are pickle: load only trusted "
        "files.",
    )
    evaluation.add_argument("--model", required=True, help="model.zip written by train")
    evaluation.add_argument(
        "--episodes",
        type=int,
        help="evaluation episodes per policy (default: the run's own, as train assessed it)",
    )
    evaluation.set_defaults(run=_eval)
    bench = verb(
        "bench",
        [common, placement],
        help="compare pruning methods on the same tasks and budgets",
        description="Writes results.csv, results.json, summary.md and PNG plots to --out; "
        "runs already there are reused. Give --suite, or --task and --budgets, or only "
        "--policy with a model.zip that train wrote: that run's task, budgets, seeds and "
        "fine-tuning, as train compared it. SB3 policy zips are pickle: load only trusted "
        "files.",
    )
    bench.add_argument(
        "--suite",
        help="a built-in suite's name (see prune-gym list) or a suite YAML file's path; its "
        "settings are the defaults of the options given beside it (default: none)",
    )
    bench.add_argument(
        "--task",
        action="append",
        help="task name (repeatable) (default: the suite's, or a --policy run's)",
    )
    bench.add_argument(
        "--budgets",
        help="comma-separated budgets, e.g. params=0.1,flops=0.5+params=0.3, or sweep "
        "(default: the suite's, or a --policy run's)",
    )
    bench.add_argument("--methods", help="comma-separated method names, or all (default: all)")
    _add_seed_options(
        bench, "every run at seed S (default: --seeds)", "every run at each (default: 3)"
    )
    bench.add_argument(
        "--env", help="env the one-shot methods act on (default: prune_gym/GlobalRatio-v0)"
    )
    _add_structure_option(bench, "unstructured")
    bench.add_argument(
        "--finetune-steps",
        type=_finetune_step_counts,
        help="fine-tuning of every policy's masks: steps, comma-separated budgets, and/or "
        "matched (GMP's total steps on the task), e.g. 200,matched (default: 200)",
    )
    bench.add_argument(
        "--max-ratio",
        type=float,
        help="largest per-layer ratio one-shot methods may use (default: 1.0)",
    )
    bench.add_argument(
        "--policy",
        action="append",
        help="trained SB3 model zip (repeatable); one that train wrote acts as trained, by "
        "the run.json beside it (default: none)",
    )
    bench.add_argument(
        "--algo",
        help="algorithm of --policy zips without a run.json: ppo, a2c, sac, td3, ppo-lag "
        "(default: ppo; a run.json names its own)",
    )
    bench.add_argument(
        "--device", help="torch device of one-shot and learned runs, e.g. cuda (default: cpu)"
    )
    bench.add_argument("--out", default="runs/bench", help="output folder (resumable)")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prune-gym``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import_modules(args.imports)
        return args.run(args)
    except KeyboardInterrupt:
        print(f"\nprune-gym {args.verb}: interrupted{_left_behind(args)}", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # the reader went away (prune-gym list | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return BROKEN_PIPE
    except Exception as error:
        if _usage_error(error):  # a message, no traceback
            parser.exit(USAGE_ERROR, f"prune-gym {args.verb}: error: {error}\n")
        if isinstance(error, OSError):
            parser.exit(IO_ERROR, f"prune-gym {args.verb}: I/O error: {error}\n")
        raise


def _left_behind(args: argparse.Namespace) -> str:
    """What an interrupted verb leaves: ``train`` marks its unfinished folders."""
    if args.verb != "train":
        return ""
    from prune_gym.algorithms import INCOMPLETE_MARKER

    return (
        f"; unfinished runs in {args.out} are marked by an {INCOMPLETE_MARKER} file, which "
        "eval and bench --policy refuse: run the same command again"
    )


def _usage_error(error: Exception) -> bool:
    """Whether ``error`` is the user's input refused: a bad value or type, a missing file,
    or an optional dependency not installed."""
    from prune_gym.executors import MissingExtra

    return isinstance(error, (ValueError, TypeError, FileNotFoundError, MissingExtra))


if __name__ == "__main__":
    raise SystemExit(main())
