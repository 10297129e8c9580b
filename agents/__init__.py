"""Learning agents built on Stable-Baselines3 (docs/design.md, Agents).

Importing the package registers ``ppo-lag`` (``PPOLagrangian``) in
``prune_gym.algorithms``, so saved runs and benchmarks can load it by name.
"""

from agents.lagrange import LagrangeRule, PIDLagrange, SGDLagrange
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian
from prune_gym.algorithms import register_algorithm

register_algorithm("ppo-lag", PPOLagrangian)

__all__ = ["LagrangeRule", "PIDLagrange", "PPOLagrangian", "PanningAgent", "SGDLagrange"]
