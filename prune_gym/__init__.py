"""prune-gym: neural-network pruning as a family of Gymnasium environments.

Importing the package registers every environment id (``prune_gym/LayerRatio-v0``,
``prune_gym/GlobalRatio-v0``, ``prune_gym/MetricMix-v0``, ``prune_gym/Panning-v0``).
"""

import gymnasium as gym

from prune_gym.envs import ENV_IDS

__version__ = "0.1.0"

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point, disable_env_checker=True)

__all__ = ["ENV_IDS", "__version__"]
