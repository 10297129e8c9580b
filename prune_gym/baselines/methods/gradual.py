"""Gradual magnitude pruning (Zhu & Gupta, 2017) and GraNet (Liu et al., NeurIPS 2021).

GMP prunes by global magnitude on the cubic schedule every ``update_every`` steps of the
pruning window, then keeps training. GraNet adds zero-cost neuroregeneration: after every
update, each layer swaps a decaying fraction of its smallest weights for the zero positions
with the largest dense gradient, until the end of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prune_gym.baselines.methods.schedule import (
    MethodConfig,
    Schedule,
    cubic_sparsity,
    step_of_fraction,
)
from prune_gym.baselines.methods.topology import DISTRIBUTIONS, prune_and_regrow, random_masks
from prune_gym.checks import check_choice, check_int
from prune_gym.pruning.masks import MaskSet

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer

GRANET_VARIANTS = ("dense-to-sparse", "sparse-to-sparse")


@dataclass(frozen=True, kw_only=True)
class GmpConfig(MethodConfig):
    """GMP options: the pruning window as fractions of training and ΔT in optimizer steps."""

    start_fraction: float
    end_fraction: float
    update_every: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.start_fraction < self.end_fraction <= 1.0:
            raise ValueError(
                f"start_fraction={self.start_fraction!r} and end_fraction="
                f"{self.end_fraction!r} must satisfy 0 <= start_fraction < end_fraction <= 1"
            )
        check_int(self.update_every, "update_every", low=1)


class GmpSchedule(Schedule):
    """Zhu & Gupta's cubic schedule, global magnitude, from s_i = 0 to the target.

    Prunes after steps t0 + k ΔT inside the window and always at t_end, so the target is
    reached exactly: ``round(s_t N)`` weights each time. Pruned and zero-valued weights rank
    below every live one (the role of GraNet's strict ``>``), so masks only grow.
    """

    name = "gmp"
    config_class = GmpConfig
    config: GmpConfig

    def __init__(self, sparsity: float, config: GmpConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        self.start_step = step_of_fraction(config.start_fraction, train_steps, "start_fraction")
        self.end_step = step_of_fraction(config.end_fraction, train_steps, "end_fraction")
        if self.end_step <= self.start_step:
            raise ValueError(
                f"the pruning window [{config.start_fraction}, {config.end_fraction}] of "
                f"{train_steps} steps is empty; train longer or widen the window"
            )
        window = range(self.start_step + config.update_every, self.end_step, config.update_every)
        self.prune_steps = {*window, self.end_step}
        self.initial_sparsity = 0.0

    def sparsity_at(self, step: int) -> float:
        """Target sparsity after ``step`` optimizer steps (cubic in the window)."""
        return cubic_sparsity(
            step, self.start_step, self.end_step, self.initial_sparsity, self.sparsity
        )

    def after_update(self, trainer: SparseTrainer) -> None:
        """Prune by global magnitude to s_t at the scheduled steps."""
        if trainer.step in self.prune_steps:
            sparsity = self.sparsity_at(trainer.step)
            trainer.set_masks(MaskSet.global_threshold(trainer.model, sparsity))

    def is_final(self, step: int) -> bool:
        """The target is reached at the end of the pruning window."""
        return step >= self.end_step


@dataclass(frozen=True, kw_only=True)
class GranetConfig(GmpConfig):
    """GraNet options: GMP's plus the variant, the regrowth rate and the sparse start."""

    variant: str
    init_density: float
    distribution: str
    prune_rate: float
    min_prune_rate: float

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.variant, "variant", GRANET_VARIANTS)
        check_choice(self.distribution, "distribution", sorted(DISTRIBUTIONS))
        if not 0.0 < self.init_density <= 1.0:
            raise ValueError(f"init_density={self.init_density!r} must be in (0, 1]")
        if not 0.0 <= self.min_prune_rate <= self.prune_rate <= 1.0:
            raise ValueError(
                f"min_prune_rate={self.min_prune_rate!r} and prune_rate={self.prune_rate!r} "
                "must satisfy 0 <= min_prune_rate <= prune_rate <= 1"
            )


class GranetSchedule(GmpSchedule):
    """GMP plus per-layer prune-and-regrow after every update, until the end of training.

    The regrowth rate r_t decays from ``prune_rate`` to ``min_prune_rate`` by a cosine over
    the whole run. ``sparse-to-sparse`` starts from random masks at ``init_density``
    (``distribution`` allocation, ERK by default) and prunes from there.
    """

    name = "granet"
    config_class = GranetConfig
    config: GranetConfig
    needs_dense_gradients = True

    def __init__(self, sparsity: float, config: GranetConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        if config.variant == "sparse-to-sparse":
            self.initial_sparsity = 1.0 - config.init_density
            if self.initial_sparsity > sparsity:
                raise ValueError(
                    f"sparse-to-sparse GraNet starts at init_density={config.init_density} "
                    f"(sparsity {self.initial_sparsity:g}), above the target sparsity "
                    f"{sparsity}; pass init_density >= {1.0 - sparsity:g}"
                )
        self.regrow_steps = set(
            range(self.start_step + config.update_every, train_steps, config.update_every)
        )

    def regrowth_rate(self, step: int) -> float:
        """r_t: cosine decay from ``prune_rate`` to ``min_prune_rate`` over all steps."""
        low, high = self.config.min_prune_rate, self.config.prune_rate
        return low + (high - low) * 0.5 * (1.0 + math.cos(math.pi * step / self.train_steps))

    def setup(self, trainer: SparseTrainer) -> None:
        """Sparse-to-sparse: seeded random masks at the initial sparsity."""
        if self.config.variant == "sparse-to-sparse":
            trainer.set_masks(
                random_masks(
                    trainer.model, self.initial_sparsity, self.config.distribution, self.seed
                )
            )

    def after_update(self, trainer: SparseTrainer) -> None:
        """Prune on GMP's schedule, then swap weights by magnitude out, gradient in."""
        super().after_update(trainer)
        if trainer.step in self.regrow_steps:
            rate = self.regrowth_rate(trainer.step)
            trainer.set_masks(
                prune_and_regrow(trainer.model, trainer.masks, trainer.dense_grads, rate)
            )
