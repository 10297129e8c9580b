"""The schedule interface that drives ``SparseTrainer``, and the options every method shares.

A schedule decides everything method-specific: the starting model, the initial masks, when
and how masks change (prune, regrow, rewind), extra loss terms and gradient changes. The
trainer owns the loop, the optimizer, evaluation and model selection, so every method is
trained, masked and selected the same way.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from prune_gym.checks import check_choice, check_int

if TYPE_CHECKING:
    from prune_gym.baselines.methods.trainer import SparseTrainer
    from prune_gym.tasks import Task

#: Where a method starts: the task's trained dense weights, or a fresh initialisation.
STARTS = ("pretrained", "init")


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Options shared by every method: the starting weights and the evaluation period.

    ``eval_every`` is in optimizer steps; ``None`` means once per epoch.
    """

    start: str
    eval_every: int | None = None

    def __post_init__(self) -> None:
        check_choice(self.start, "start", STARTS)
        if self.eval_every is not None:
            check_int(self.eval_every, "eval_every", low=1)


class Schedule:
    """Base schedule: dense training with the recipe, no mask change (subclass it per method).

    The trainer calls, in order: ``initial_model``, ``setup`` once; per step ``extra_loss``
    (after the forward pass), ``before_update`` (gradients ready, before the optimizer step)
    and ``after_update`` (after the step and the mask enforcement; ``trainer.step`` already
    counts it); ``finish`` once at the end. ``is_final(step)`` says whether the masks after
    ``step`` steps are at the final sparsity, i.e. whether a checkpoint there may be selected.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: Whether the trainer must keep the dense gradient of every effective weight.
    needs_dense_gradients: ClassVar[bool] = False

    def __init__(self, sparsity: float, config: MethodConfig, train_steps: int, seed: int) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        if train_steps < 1:
            raise ValueError(f"train_steps={train_steps!r} must be >= 1")
        self.sparsity = sparsity
        self.config = config
        self.train_steps = train_steps
        self.seed = seed

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run."""
        return self.train_steps

    @property
    def lr_horizon(self) -> int:
        """Length of one learning-rate schedule, in steps (a round for IMP)."""
        return self.total_steps

    def lr_step(self, step: int) -> int:
        """Position of optimizer step ``step`` in the learning-rate schedule."""
        return step

    def initial_model(self, task: Task) -> nn.Module:
        """The model training starts from: trained dense weights or a fresh initialisation."""
        return task.pretrained_model() if self.config.start == "pretrained" else task.build_model()

    def setup(self, trainer: SparseTrainer) -> None:
        """Prepare before the first step (e.g. set random sparse masks); default: nothing."""

    def extra_loss(self, trainer: SparseTrainer) -> torch.Tensor | None:
        """A term added to the cross-entropy of this step (e.g. SWD's penalty); default none."""
        return None

    def before_update(self, trainer: SparseTrainer) -> None:
        """Gradients are ready, the optimizer has not stepped yet; default: nothing."""

    def after_update(self, trainer: SparseTrainer) -> None:
        """The optimizer stepped and masks were enforced; default: nothing."""

    def finish(self, trainer: SparseTrainer) -> None:
        """Last change after training (e.g. SWD's hard prune); default: nothing."""

    def is_final(self, step: int) -> bool:
        """Whether the masks after ``step`` steps have the final sparsity; default: always."""
        return True


def cubic_sparsity(step: int, start: int, end: int, initial: float, final: float) -> float:
    """Zhu & Gupta: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(t_end - t0))^3, clamped to [t0, t_end]."""
    progress = min(max((step - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def geometric_sparsities(target: float, rate: float) -> list[float]:
    """Sparsities after each event that removes ``rate`` of the remaining weights.

    ``1 - (1 - rate)^k`` for k = 1..K with K the fewest events reaching ``target``; the last
    one is ``target`` itself (it removes less than ``rate`` when ``target`` is not of that form).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate={rate!r} must be in (0, 1)")
    if target == 0.0:
        return []
    events = max(1, math.ceil(math.log(1.0 - target) / math.log(1.0 - rate) - 1e-9))
    return [1.0 - (1.0 - rate) ** k for k in range(1, events)] + [target]


def step_of_fraction(fraction: float, total: int, what: str) -> int:
    """``round(fraction * total)``, validating ``fraction`` in [0, 1]."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"{what}={fraction!r} must be in [0, 1]")
    return round(fraction * total)


def stream_seed(seed: int, stream: str) -> int:
    """A seed for one random stream (``"batches"``, ``"masks"``, ...) derived from ``seed``.

    Streams must not share a seed with each other or with the task's weight initialisation
    (``torch.manual_seed(task.seed)``): random mask scores drawn from the same sequence as
    the weights would keep exactly the most negative weights of a layer.
    """
    digest = hashlib.sha256(f"prune_gym.methods:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
