"""Iterative magnitude pruning with weight rewinding (lottery tickets; Frankle et al.).

Rounds of: train a full round -> prune ``prune_fraction`` of the remaining weights by
global magnitude -> rewind every weight and buffer to its value at ``rewind_step`` of the
first round, keeping the new masks, with a fresh optimizer state. Later rounds resume the
learning-rate schedule at ``rewind_step`` (as OpenLTH does). The last round trains the
final ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from prune_gym.baselines.methods.schedule import MethodConfig, Schedule, geometric_sparsities
from prune_gym.checks import check_int
from prune_gym.pruning.masks import MaskSet

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer

#: ``rewind_step=None`` rewinds to this fraction of a round (OpenLTH's ResNet-20: 500 of
#: about 62,500 iterations, 0.8%; "a few percent" where rounds are short).
DEFAULT_REWIND_FRACTION = 0.02


@dataclass(frozen=True, kw_only=True)
class ImpConfig(MethodConfig):
    """IMP options: fraction pruned per round and the rewinding step (None: 2% of a round)."""

    prune_fraction: float
    rewind_step: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.prune_fraction < 1.0:
            raise ValueError(f"prune_fraction={self.prune_fraction!r} must be in (0, 1)")
        if self.rewind_step is not None:
            check_int(self.rewind_step, "rewind_step", low=0)


class ImpSchedule(Schedule):
    """As many rounds as needed to reach the target; the last prune lands exactly on it.

    ``train_steps`` is one round; the run is that round plus, per prune, the steps from
    ``rewind_step`` to the end of a round. Only checkpoints of the last round are eligible.
    """

    name = "imp"
    config_class = ImpConfig
    config: ImpConfig

    def __init__(self, sparsity: float, config: ImpConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        rewind = config.rewind_step
        if rewind is None:
            rewind = round(DEFAULT_REWIND_FRACTION * train_steps)
        if rewind >= train_steps:
            raise ValueError(
                f"rewind_step={rewind!r} must be below the {train_steps} steps of one round"
            )
        self.rewind_step = rewind
        self.round_steps = train_steps
        self.resumed_steps = train_steps - rewind
        sparsities = geometric_sparsities(sparsity, config.prune_fraction)
        self.prune_steps = {
            train_steps + k * self.resumed_steps: target for k, target in enumerate(sparsities)
        }
        self.last_round_start = max(self.prune_steps, default=0)
        self.rewind_state: dict[str, torch.Tensor] | None = None

    @property
    def total_steps(self) -> int:
        """The first round plus the resumed part of every later round."""
        return self.round_steps + len(self.prune_steps) * self.resumed_steps

    @property
    def lr_horizon(self) -> int:
        """The learning-rate schedule spans one round."""
        return self.round_steps

    def lr_step(self, step: int) -> int:
        """Position in the round: later rounds resume the schedule at ``rewind_step``."""
        if step < self.round_steps:
            return step
        return self.rewind_step + (step - self.round_steps) % self.resumed_steps

    def setup(self, trainer: SparseTrainer) -> None:
        """Rewinding to step 0 means to the initial weights."""
        if self.rewind_step == 0:
            self._snapshot(trainer)

    def after_update(self, trainer: SparseTrainer) -> None:
        """Snapshot at ``rewind_step``; at the end of a round, prune and rewind."""
        if trainer.step == self.rewind_step:
            self._snapshot(trainer)
        if trainer.step in self.prune_steps:
            sparsity = self.prune_steps[trainer.step]
            self.rewind(trainer, MaskSet.global_threshold(trainer.model, sparsity))

    def rewind(self, trainer: SparseTrainer, masks: MaskSet) -> None:
        """Restore the rewind-point weights and buffers under ``masks``; reset the optimizer."""
        trainer.model.load_state_dict(self.rewind_state)
        trainer.set_masks(masks)
        trainer.reset_optimizer()

    def is_final(self, step: int) -> bool:
        """The final ticket trains in the last round."""
        return step >= self.last_round_start

    def _snapshot(self, trainer: SparseTrainer) -> None:
        """Remember every weight and buffer now (the rewind point)."""
        self.rewind_state = {
            key: value.detach().clone() for key, value in trainer.model.state_dict().items()
        }
