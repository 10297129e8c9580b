"""Training-time pruning methods: GMP, GraNet, FlipOut, SWD, IMP and RigL.

See docs/design.md, Layers.

Every method is a ``Schedule`` driving the one training loop ``SparseTrainer``:
``run_method("granet", task, 0.9, seed=0, epochs=20)`` returns a ``MethodResult`` with the
val-selected sparse model and its test accuracy.
"""

from prune_gym.baselines.methods.defaults import PAPER_DEFAULTS, TASK_DEFAULTS, defaults_for
from prune_gym.baselines.methods.flipout import FlipCounter, FlipoutConfig, FlipoutSchedule
from prune_gym.baselines.methods.gradual import (
    GmpConfig,
    GmpSchedule,
    GranetConfig,
    GranetSchedule,
)
from prune_gym.baselines.methods.imp import ImpConfig, ImpSchedule
from prune_gym.baselines.methods.registry import (
    METHODS,
    available_methods,
    build_trainer,
    method_steps,
    resolve_options,
    run_method,
)
from prune_gym.baselines.methods.rigl import RiglConfig, RiglSchedule
from prune_gym.baselines.methods.schedule import MethodConfig, Schedule
from prune_gym.baselines.methods.swd import SwdConfig, SwdSchedule
from prune_gym.baselines.methods.topology import prune_and_regrow, random_masks
from prune_gym.baselines.methods.trainer import MethodResult, SparseTrainer

__all__ = [
    "METHODS",
    "PAPER_DEFAULTS",
    "TASK_DEFAULTS",
    "FlipCounter",
    "FlipoutConfig",
    "FlipoutSchedule",
    "GmpConfig",
    "GmpSchedule",
    "GranetConfig",
    "GranetSchedule",
    "ImpConfig",
    "ImpSchedule",
    "MethodConfig",
    "MethodResult",
    "RiglConfig",
    "RiglSchedule",
    "Schedule",
    "SparseTrainer",
    "SwdConfig",
    "SwdSchedule",
    "available_methods",
    "build_trainer",
    "defaults_for",
    "method_steps",
    "prune_and_regrow",
    "random_masks",
    "resolve_options",
    "run_method",
]
