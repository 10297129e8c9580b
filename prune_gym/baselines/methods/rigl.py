"""RigL (Evci et al., ICML 2020): sparse from the start, topology updated by gradients.

Random masks at the target with ERK per-layer densities; every ``update_every`` steps until
``end_fraction`` of training each layer drops a cosine-decayed fraction of its smallest
weights and grows as many zero positions with the largest dense gradient (grown at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prune_gym.baselines.methods.schedule import MethodConfig, Schedule, step_of_fraction
from prune_gym.baselines.methods.topology import DISTRIBUTIONS, prune_and_regrow, random_masks
from prune_gym.checks import check_choice, check_int

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer


@dataclass(frozen=True, kw_only=True)
class RiglConfig(MethodConfig):
    """RigL options: ΔT, initial drop fraction α, when updates stop, density allocation."""

    update_every: int
    drop_fraction: float
    end_fraction: float
    distribution: str

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.update_every, "update_every", low=1)
        if not 0.0 <= self.drop_fraction <= 1.0:
            raise ValueError(f"drop_fraction={self.drop_fraction!r} must be in [0, 1]")
        check_choice(self.distribution, "distribution", sorted(DISTRIBUTIONS))


class RiglSchedule(Schedule):
    """Fixed density; drop α_t = (α/2)(1 + cos(π t / T_end)) of each layer's kept weights.

    The drop count is ``floor(α_t * kept)`` per layer, as in the authors' code. Every
    checkpoint is at the target density, so all of them are eligible for selection.
    """

    name = "rigl"
    config_class = RiglConfig
    config: RiglConfig
    needs_dense_gradients = True

    def __init__(self, sparsity: float, config: RiglConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        self.end_step = step_of_fraction(config.end_fraction, train_steps, "end_fraction")
        self.update_steps = set(range(config.update_every, self.end_step, config.update_every))

    def drop_fraction_at(self, step: int) -> float:
        """α_t: cosine decay of ``drop_fraction`` to 0 at the end of the update window."""
        return 0.5 * self.config.drop_fraction * (1.0 + math.cos(math.pi * step / self.end_step))

    def setup(self, trainer: SparseTrainer) -> None:
        """Seeded random masks at the target sparsity."""
        trainer.set_masks(
            random_masks(trainer.model, self.sparsity, self.config.distribution, self.seed)
        )

    def after_update(self, trainer: SparseTrainer) -> None:
        """Drop by magnitude and grow by dense gradient at the update steps."""
        if trainer.step in self.update_steps:
            fraction = self.drop_fraction_at(trainer.step)
            trainer.set_masks(
                prune_and_regrow(
                    trainer.model, trainer.masks, trainer.dense_grads, fraction, math.floor
                )
            )
