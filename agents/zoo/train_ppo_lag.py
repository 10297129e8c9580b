"""Train ``PPOLagrangian`` with the RL Baselines3 Zoo, as the Zoo's algorithm ``ppo_lag``.

``python -m agents.zoo.train_ppo_lag --env prune_gym/GlobalRatio-v0 [any Zoo train flag]``

The script registers ``ppo_lag`` in the Zoo's algorithm table (the pattern of the Zoo's SBX
guide), imports ``prune_gym`` so its env ids are registered, defaults ``--algo ppo_lag`` and
``--conf-file`` to the ``hyperparams.yml`` next to it, then runs the Zoo's ``train``.
``rl_zoo3`` is optional for prune-gym, so it is imported only here. For ``enjoy``, call
``register_ppo_lag`` the same way before ``rl_zoo3.enjoy.enjoy()``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from agents.ppo_lagrangian import PPOLagrangian

ALGO_NAME = "ppo_lag"
HYPERPARAMS = Path(__file__).with_name("hyperparams.yml")
#: the Zoo modules that hold their own reference to the algorithm table.
ZOO_MODULES = ("rl_zoo3.train", "rl_zoo3.exp_manager", "rl_zoo3.enjoy")


def register_ppo_lag(zoo: ModuleType, modules: list[ModuleType]) -> None:
    """Add ``ppo_lag`` to ``zoo.ALGOS`` and point every module's ``ALGOS`` at that table."""
    zoo.ALGOS[ALGO_NAME] = PPOLagrangian
    for module in modules:
        module.ALGOS = zoo.ALGOS


def with_defaults(argv: list[str]) -> list[str]:
    """Zoo arguments with ``--algo ppo_lag`` and our ``--conf-file`` unless already given."""
    flags = {arg.split("=", 1)[0] for arg in argv}
    defaults = []
    if "--algo" not in flags:
        defaults += ["--algo", ALGO_NAME]
    if not flags & {"-conf", "--conf-file"}:
        defaults += ["--conf-file", str(HYPERPARAMS)]
    return [*defaults, *argv]


def main(argv: list[str] | None = None) -> None:
    """Register ``ppo_lag`` and run the Zoo's ``train`` on ``argv`` (default: the command line)."""
    if importlib.util.find_spec("rl_zoo3") is None:
        raise ImportError(
            "agents.zoo.train_ppo_lag needs the RL Baselines3 Zoo, which prune-gym does not "
            "install: pip install rl_zoo3"
        )
    import prune_gym  # noqa: F401  (registers the env ids the Zoo looks up)

    zoo = importlib.import_module("rl_zoo3")
    register_ppo_lag(zoo, [importlib.import_module(name) for name in ZOO_MODULES])
    arguments = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0], *with_defaults(arguments)]
    importlib.import_module("rl_zoo3.train").train()


if __name__ == "__main__":
    main()
