"""prune-gym: neural-network pruning as a family of Gymnasium environments.

Importing the package registers every environment id (``prune_gym/LayerRatio-v0``,
``prune_gym/GlobalRatio-v0``, ``prune_gym/MetricMix-v0``, ``prune_gym/Panning-v0``), and
the ratio envs' native vector envs (``gymnasium.make_vec``, ``prune_gym.envs.vector``).

Versioning: ``__version__`` is part of every benchmark run's key, of every record and of
the dense-weights cache key, so results made by other code are never reused. It is bumped
with every change that alters a number a run or a cached model produces (the minor part
while below 1.0), and the patch part for changes that keep every result. The reports show
the versions their records were made with.
"""

# before the imports below: modules they load read it (``prune_gym.tasks.task``)
__version__ = "0.5.0"

import importlib
from types import ModuleType

import gymnasium as gym

from prune_gym.ids import ENV_IDS, VECTOR_ENTRY_POINTS

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(
            id=_env_id,
            entry_point=_entry_point,
            vector_entry_point=VECTOR_ENTRY_POINTS.get(_env_id),
            disable_env_checker=True,
        )

#: the subpackages ``prune_gym.<name>`` imports on first use, so that ``import prune_gym``
#: (and ``prune-gym --help``) does not import torch.
SUBPACKAGES = (
    "algorithms",
    "baselines",
    "bench",
    "checks",
    "envs",
    "evaluation",
    "executors",
    "files",
    "plugins",
    "pruning",
    "sb3",
    "tasks",
    "wrappers",
)


def __getattr__(name: str) -> ModuleType:
    """``prune_gym.tasks`` and the other subpackages, imported when first named."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"prune_gym.{name}")
    raise AttributeError(f"module 'prune_gym' has no attribute {name!r}")


__all__ = ["ENV_IDS", "__version__"]
