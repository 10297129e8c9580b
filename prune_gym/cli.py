"""The ``prune-gym`` console script.

``prune-gym list`` shows what is registered (environments, tasks, metrics). The ``train``,
``eval`` and ``bench`` verbs of DESIGN §8 arrive with the environments, baselines and
agents that they drive.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from prune_gym.envs import ENV_IDS
from prune_gym.pruning import available_metrics
from prune_gym.tasks import list_tasks


def _list(_args: argparse.Namespace) -> int:
    """Print the registered environments, tasks and importance metrics."""
    print("envs:    " + ", ".join(ENV_IDS))
    print("tasks:   " + ", ".join(list_tasks()))
    print("metrics: " + ", ".join(available_metrics()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the console script, one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="prune-gym", description="Neural-network pruning as Gymnasium environments."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="list registered envs, tasks and metrics").set_defaults(run=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prune-gym``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
