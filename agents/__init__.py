"""Learning agents built on Stable-Baselines3 (docs/design.md, Agents).

Importing the package registers ``ppo-lag`` (``PPOLagrangian``) and ``search``
(``ActionSearch``: random search and CMA-ES) in ``prune_gym.algorithms``, so saved runs
and benchmarks can load them by name.
"""

from agents.lagrange import LagrangeRule, PIDLagrange, SGDLagrange
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian
from agents.search import ActionSearch
from prune_gym.algorithms import register_algorithm

register_algorithm("ppo-lag", PPOLagrangian)
register_algorithm("search", ActionSearch)

__all__ = [
    "ActionSearch",
    "LagrangeRule",
    "PIDLagrange",
    "PPOLagrangian",
    "PanningAgent",
    "SGDLagrange",
]
