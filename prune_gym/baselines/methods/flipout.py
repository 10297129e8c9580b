"""FlipOut (Apostol, Stol & Forré, 2020): prune weights that are small and flip sign often.

Every optimizer step counts, per weight, whether its sign changed (counts are never reset,
only zeroed where pruned). At evenly spaced events the globally lowest |w|^p / (flips + 1)
are pruned, each event halving the remaining weights; optional gradient noise scaled per
layer by ||g|| / sqrt(n) makes weights near zero oscillate, so the flips become informative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from prune_gym.baselines.methods.schedule import (
    MethodConfig,
    Schedule,
    geometric_sparsities,
    stream_seed,
)
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet, effective_weight, trainable_weight

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer


class FlipCounter:
    """Per-weight count of sign changes across optimizer steps, zero where pruned."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = prunable_layers(model)
        self.counts = {
            name: torch.zeros(module.weight.shape, dtype=torch.long) for name, module in self.layers
        }
        self._signs: dict[str, torch.Tensor] = {}

    def before_step(self) -> None:
        """Remember the signs of the effective weights before the optimizer step."""
        self._signs = {name: effective_weight(m).sign().cpu() for name, m in self.layers}

    def after_step(self, masks: MaskSet) -> None:
        """Count a flip where the sign changed since ``before_step``; zero pruned entries."""
        if not self._signs:
            raise RuntimeError("FlipCounter.after_step called without before_step")
        for name, module in self.layers:
            flipped = effective_weight(module).sign().cpu() != self._signs[name]
            self.counts[name] += flipped.long()
            self.counts[name].mul_(masks[name].long())
        self._signs = {}


@dataclass(frozen=True, kw_only=True)
class FlipoutConfig(MethodConfig):
    """FlipOut options: rate per event, exponent p, gradient-noise scale λ (0 = off)."""

    prune_rate: float
    power: float
    noise_scale: float
    noise_only_prunable: bool

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.prune_rate < 1.0:
            raise ValueError(f"prune_rate={self.prune_rate!r} must be in (0, 1)")
        if not self.power > 0.0:
            raise ValueError(f"power={self.power!r} must be > 0")
        if not self.noise_scale >= 0.0:
            raise ValueError(f"noise_scale={self.noise_scale!r} must be >= 0")


class FlipoutSchedule(Schedule):
    """K prune events at steps k T / (K + 1), sparsity 1 - (1 - rate)^k, the last exactly target.

    FlipOut prunes every ``prune_freq`` epochs and its final sparsity is 1 - 0.5^k; here the
    target is given, so K is the fewest events that reach it, spread evenly with training
    after the last one, and the last event prunes to the target itself.
    """

    name = "flipout"
    config_class = FlipoutConfig
    config: FlipoutConfig

    def __init__(self, sparsity: float, config: FlipoutConfig, train_steps: int, seed: int) -> None:
        super().__init__(sparsity, config, train_steps, seed)
        sparsities = geometric_sparsities(sparsity, config.prune_rate)
        events = len(sparsities)
        if train_steps < events + 1:
            raise ValueError(
                f"FlipOut needs {events} prune events for sparsity {sparsity}, each followed "
                f"by training: at least {events + 1} steps, got {train_steps}"
            )
        steps = [round(k * train_steps / (events + 1)) for k in range(1, events + 1)]
        self.events = dict(zip(steps, sparsities, strict=True))
        self.last_event = max(steps, default=0)
        self.counter: FlipCounter | None = None
        self.noise_generator = torch.Generator().manual_seed(stream_seed(seed, "noise"))

    def setup(self, trainer: SparseTrainer) -> None:
        """Start counting flips on the trainer's model."""
        self.counter = FlipCounter(trainer.model)

    def scores(self) -> dict[str, torch.Tensor]:
        """FlipOut's saliency |w|^p / (flips + 1) of every prunable weight."""
        return {
            name: effective_weight(module).abs().cpu() ** self.config.power
            / (self.counter.counts[name] + 1)
            for name, module in self.counter.layers
        }

    def before_update(self, trainer: SparseTrainer) -> None:
        """Add the gradient noise (if any), then remember the signs before the step."""
        if self.config.noise_scale > 0:
            self._add_gradient_noise(trainer)
        self.counter.before_step()

    def after_update(self, trainer: SparseTrainer) -> None:
        """Count flips; at an event prune globally by the FlipOut score."""
        self.counter.after_step(trainer.masks)
        if trainer.step in self.events:
            sparsity = self.events[trainer.step]
            trainer.set_masks(
                MaskSet.global_threshold(trainer.model, sparsity, scores=self.scores())
            )

    def is_final(self, step: int) -> bool:
        """The target is reached at the last event."""
        return step >= self.last_event

    @torch.no_grad()
    def _add_gradient_noise(self, trainer: SparseTrainer) -> None:
        """g += λ (||g|| / sqrt(n)) N(0, I) per parameter; pruned entries stay gradient-free."""
        masks = {id(trainable_weight(m)): trainer.masks[name] for name, m in trainer.layers}
        if self.config.noise_only_prunable:
            params = [trainable_weight(module) for _, module in trainer.layers]
        else:
            params = list(trainer.model.parameters())
        for param in params:
            if param.grad is None:
                continue
            grad = param.grad
            scale = self.config.noise_scale * grad.norm() / grad.numel() ** 0.5
            noise = torch.randn(grad.shape, generator=self.noise_generator).to(grad.device)
            if id(param) in masks:
                noise.mul_(masks[id(param)].to(grad.device))
            grad.add_(noise * scale)
