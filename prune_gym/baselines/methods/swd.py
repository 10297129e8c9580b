"""Selective Weight Decay, SWD (Tessier et al., 2020): decay only what would be pruned.

Every batch, the weights (or channels) that a global threshold at the target would remove
are recomputed from the current weights and get an extra decay 0.5 mu a(t) ||w (1 - m_t)||^2,
with a(t) growing exponentially from ``a_min`` to ``a_max`` over the run. At the end the
network is hard-pruned at the target, without fine-tuning (the paper's setting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from prune_gym.baselines.methods.schedule import MethodConfig, Schedule
from prune_gym.checks import check_choice
from prune_gym.pruning.allocate import MaskBuilder
from prune_gym.pruning.layers import ChannelStructure
from prune_gym.pruning.masks import STRUCTURES, MaskSet, trainable_weight

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer


@dataclass(frozen=True, kw_only=True)
class SwdConfig(MethodConfig):
    """SWD options: penalty weight mu, the range of a(t), and the pruning structure."""

    mu: float
    a_min: float
    a_max: float
    structure: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.mu > 0:
            raise ValueError(f"mu={self.mu!r} must be > 0")
        if not 0 < self.a_min <= self.a_max:
            raise ValueError(
                f"a_min={self.a_min!r} and a_max={self.a_max!r} must satisfy 0 < a_min <= a_max"
            )
        check_choice(self.structure, "structure", STRUCTURES)


class SwdSchedule(Schedule):
    """Penalise what the target threshold would remove; hard-prune at the end.

    ``structure="unstructured"``: one global magnitude threshold over the prunable weights.
    ``structure="channel"``: channels are ranked globally by the |gamma| of the BatchNorm they
    feed, per weight of the channel (the paper bisects one threshold on gamma itself); gamma
    and beta of the channels below the threshold are penalised, and the end removes those
    channels (within one channel of the target). Layers feeding no BatchNorm keep all theirs.
    """

    name = "swd"
    config_class = SwdConfig
    config: SwdConfig

    def __init__(self, sparsity: float, config: SwdConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        self.channels: ChannelStructure | None = None

    def coefficient(self, step: int) -> float:
        """a(t) = a_min (a_max / a_min)^(t / T) for the step about to be taken."""
        ratio = self.config.a_max / self.config.a_min
        return self.config.a_min * ratio ** (step / self.total_steps)

    def setup(self, trainer: SparseTrainer) -> None:
        """Channel variant: trace channel dependencies and check the target is reachable."""
        if self.config.structure == "channel":
            self.channels = ChannelStructure.build(trainer.model, trainer.task.example_input())
            self._check_reachable(trainer)

    def extra_loss(self, trainer: SparseTrainer) -> torch.Tensor:
        """0.5 mu a(t) times the squared norm of what the target threshold would remove."""
        factor = 0.5 * self.config.mu * self.coefficient(trainer.step)
        if self.config.structure == "channel":
            return factor * self._channel_penalty(trainer)
        return factor * self._weight_penalty(trainer)

    def finish(self, trainer: SparseTrainer) -> None:
        """Hard-prune at the target (no fine-tuning afterwards)."""
        trainer.set_masks(self.target_masks(trainer))

    def is_final(self, step: int) -> bool:
        """Only the hard-pruned network at the end is at the target."""
        return False

    def target_masks(self, trainer: SparseTrainer) -> MaskSet:
        """Masks of a global threshold at the target on the current weights (or BN gammas)."""
        if self.config.structure == "unstructured":
            scores = {
                name: trainable_weight(module).detach().abs() for name, module in trainer.layers
            }
            return MaskSet.global_threshold(trainer.model, self.sparsity, scores=scores)
        builder = MaskBuilder(
            trainer.model,
            self._channel_scores(trainer),
            structure="channel",
            channel_structure=self.channels,
        )
        return builder.global_threshold(self.sparsity)

    # unstructured ---------------------------------------------------------------------------
    def _weight_penalty(self, trainer: SparseTrainer) -> torch.Tensor:
        """Sum of squares of the weights below the global magnitude threshold."""
        keep = self.target_masks(trainer)
        total = torch.zeros(())
        for name, module in trainer.layers:
            weight = trainable_weight(module)
            total = total + weight.masked_fill(keep[name].to(weight.device), 0.0).square().sum()
        return total

    # channel ----------------------------------------------------------------------------------
    def _batchnorms(self, trainer: SparseTrainer) -> dict[str, list[nn.Module]]:
        """Prunable layer -> affine BatchNorms it feeds, for layers whose channels may go."""
        modules = dict(trainer.model.named_modules())
        found = {
            name: [modules[bn] for bn in bns if getattr(modules[bn], "affine", False)]
            for name, bns in self.channels.batchnorms.items()
            if name not in self.channels.output_layers
        }
        return {name: bns for name, bns in found.items() if bns}

    def _channel_scores(self, trainer: SparseTrainer) -> dict[str, torch.Tensor]:
        """|gamma| per channel (the max over the BatchNorms a layer feeds); +inf without one.

        ``MaskBuilder`` ranks channels globally by score per weight of the channel, so a
        large channel must have a proportionally larger gamma to be kept.
        """
        batchnorms = self._batchnorms(trainer)
        scores = {}
        for name, module in trainer.layers:
            if name in batchnorms:
                gammas = torch.stack([_gamma(bn).abs() for bn in batchnorms[name]])
                scores[name] = gammas.amax(dim=0).cpu()
            else:
                scores[name] = torch.full((trainable_weight(module).shape[0],), math.inf)
        return scores

    def _channel_penalty(self, trainer: SparseTrainer) -> torch.Tensor:
        """Sum of squares of gamma and beta of the channels below the gamma threshold."""
        keep = self.target_masks(trainer)
        total = torch.zeros(())
        for name, bns in self._batchnorms(trainer).items():
            mask = keep[name]
            removed = ~mask.reshape(mask.shape[0], -1).any(dim=1)
            for bn in bns:
                for param in (bn.weight, bn.bias):
                    total = total + param[removed.to(param.device)].square().sum()
        return total

    def _check_reachable(self, trainer: SparseTrainer) -> None:
        """Raise if no channel can be removed, or the target needs more than those channels."""
        batchnorms = self._batchnorms(trainer)
        if not batchnorms:
            raise ValueError(
                f"swd with structure='channel' penalises BatchNorm scales, but no prunable "
                f"layer of {type(trainer.model).__name__} (task {trainer.task.name!r}) feeds a "
                "BatchNorm; use structure='unstructured'"
            )
        sizes = {name: trainable_weight(module).numel() for name, module in trainer.layers}
        reachable = sum(sizes[name] for name in batchnorms) / sum(sizes.values())
        if self.sparsity > reachable:
            raise ValueError(
                f"channel SWD can remove only the channels of {sorted(batchnorms)} (the layers "
                f"feeding a BatchNorm), at most sparsity {reachable:.4f}; got {self.sparsity}"
            )


def _gamma(bn: nn.Module) -> torch.Tensor:
    """A BatchNorm's scale, detached (``weight_orig`` if masked)."""
    return trainable_weight(bn).detach()
