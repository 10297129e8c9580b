"""Learning agents built on Stable-Baselines3 (DESIGN §7)."""

from agents.lagrange import LagrangeRule, PIDLagrange, SGDLagrange
from agents.panning_agent import PanningAgent
from agents.ppo_lagrangian import PPOLagrangian

__all__ = ["LagrangeRule", "PIDLagrange", "PPOLagrangian", "PanningAgent", "SGDLagrange"]
