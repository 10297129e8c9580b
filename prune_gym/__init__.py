"""prune-gym: neural-network pruning as a family of Gymnasium environments."""

__version__ = "0.1.0"
