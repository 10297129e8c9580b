"""Training recipes, the seeded dense training loop, masked fine-tuning and evaluation.

Everything here works on in-memory tensors (``Split``) and draws its randomness from
``torch.Generator`` objects, so the same seed gives the same numbers on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prune_gym.checks import check_choice
from prune_gym.pruning.layers import eval_mode
from prune_gym.tasks.data import Split

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "multistep")
AUGMENTATIONS = (None, "crop-flip")


@dataclass(frozen=True)
class TrainRecipe:
    """How a task's dense model is trained (and, at ``finetune_lr``, fine-tuned).

    Built-in tasks use scaled-down versions of the published recipes so that they run on
    a CPU; each task's recipe comment gives the paper default next to ours. ``milestones``
    are fractions of the total steps (``"multistep"`` only); ``finetune_lr=None`` means
    ``lr / 10``.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 10
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    augment: str | None = None
    finetune_lr: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_choice(self.augment, "augment", AUGMENTATIONS)
        for field_name in ("lr", "batch_size"):
            if not getattr(self, field_name) > 0:
                raise ValueError(f"{field_name}={getattr(self, field_name)!r} must be > 0")
        if self.epochs < 0 or self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"epochs={self.epochs!r}, momentum={self.momentum!r} and "
                f"weight_decay={self.weight_decay!r} must all be >= 0"
            )
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise ValueError(f"finetune_lr={self.finetune_lr!r} must be > 0 or None")

    @property
    def default_finetune_lr(self) -> float:
        """The learning rate ``finetune`` uses when none is given."""
        return self.lr / 10 if self.finetune_lr is None else self.finetune_lr


def make_optimizer(
    params: list[nn.Parameter], recipe: TrainRecipe, lr: float | None = None, fused: bool = False
) -> torch.optim.Optimizer:
    """The recipe's optimizer (SGD with momentum or Adam) over ``params``.

    ``fused``: PyTorch's fused kernels, the same update in one kernel per parameter
    (several times faster on the large stacked tensors of ``MaskedCopies``).
    """
    lr = recipe.lr if lr is None else lr
    fused_option = {"fused": True} if fused else {}
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            **fused_option,
        )
    return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay, **fused_option)


def lr_factor(recipe: TrainRecipe, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each optimizer step, per the recipe."""
    total_steps = max(total_steps, 1)
    if recipe.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if recipe.schedule == "multistep":
        bounds = [round(m * total_steps) for m in recipe.milestones]
        return lambda step: recipe.gamma ** sum(step >= b for b in bounds)
    return lambda step: 1.0


def batch_indices(
    n: int, batch_size: int, generator: torch.Generator, steps: int
) -> Iterator[torch.Tensor]:
    """``steps`` minibatch index tensors from consecutive seeded shuffles of ``range(n)``.

    The last batch of each shuffle may be smaller; every sample is seen once per epoch.
    """
    if n < 1:
        raise ValueError(f"cannot draw minibatches from an empty split (n={n!r})")
    drawn = 0
    while drawn < steps:
        for index in torch.randperm(n, generator=generator).split(batch_size):
            if drawn == steps:
                return
            drawn += 1
            yield index


def augment_batch(
    inputs: torch.Tensor, kind: str | None, generator: torch.Generator
) -> torch.Tensor:
    """Apply the recipe's augmentation: ``"crop-flip"`` = pad-4 random crop + horizontal flip."""
    if kind is None:
        return inputs
    if inputs.ndim != 4:
        raise ValueError(f"augment={kind!r} needs image batches (N, C, H, W), got {inputs.shape}")
    n, _, height, width = inputs.shape
    padded = F.pad(inputs, (4, 4, 4, 4))
    rows = torch.randint(0, 9, (n, 1), generator=generator) + torch.arange(height)
    cols = torch.randint(0, 9, (n, 1), generator=generator) + torch.arange(width)
    batch = torch.arange(n).view(n, 1, 1)
    cropped = padded[batch, :, rows.view(n, height, 1), cols.view(n, 1, width)]
    cropped = cropped.permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(n, 1, 1, 1), cropped.flip(3), cropped)


def run_steps(
    model: nn.Module,
    data: Split,
    recipe: TrainRecipe,
    steps: int,
    *,
    seed: int,
    lr: float | None = None,
    schedule: bool = True,
    after_step: Callable[[torch.optim.Optimizer], None] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    fused: bool = False,
    desc: str | None = None,
) -> nn.Module:
    """Train ``model`` in place for ``steps`` optimizer steps on ``data``; leave it in eval mode.

    ``after_step(optimizer)`` runs after every optimizer step (e.g. to re-apply masks).
    ``schedule=False`` keeps the learning rate constant. ``loss_fn(outputs, targets)`` is
    the loss minimised (``MaskedCopies.loss`` for stacked copies); ``fused`` picks the
    optimizer's fused kernels (``make_optimizer``). Shows a tqdm bar on a TTY.
    """
    if steps < 0:
        raise ValueError(f"steps={steps!r} must be >= 0")
    generator = torch.Generator().manual_seed(seed)
    device = _device_of(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, recipe, lr, fused=fused)
    factor = lr_factor(recipe, steps) if schedule else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    batches = batch_indices(len(data), recipe.batch_size, generator, steps)
    progress = tqdm(batches, total=steps, desc=desc, disable=None)
    for index in progress:
        inputs = augment_batch(data.batch(index), recipe.augment, generator).to(device)
        loss = loss_fn(model(inputs), data.targets[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(optimizer)
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return model.eval()


def train_dense(
    model: nn.Module, data: Split, recipe: TrainRecipe, *, seed: int = 0, desc: str | None = None
) -> nn.Module:
    """Train ``model`` in place with the full recipe (``epochs`` passes over ``data``)."""
    steps = recipe.epochs * math.ceil(len(data) / recipe.batch_size)
    return run_steps(model, data, recipe, steps, seed=seed, desc=desc or "dense training")


def evaluate_tensors(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 1024
) -> dict[str, float]:
    """Top-1 ``accuracy`` and mean cross-entropy ``loss`` of ``model`` on the given samples.

    Runs batched under ``torch.inference_mode()`` in eval mode, then restores the model's
    train/eval mode. The single evaluation routine used by tasks and environments.
    """
    return _evaluate(model, _sliced(inputs, targets), targets, batch_size)[0]


def evaluate_copies(
    copies: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 1024
) -> list[dict[str, float]]:
    """``evaluate_tensors`` of every copy of a module whose logits are ``(batch, classes,
    copies)`` (``MaskedCopies``), in one pass over the samples."""
    return _evaluate(copies, _sliced(inputs, targets), targets, batch_size)


def evaluate_split(
    model: nn.Module, split: Split, limit: int | None = None, batch_size: int = 1024
) -> dict[str, float]:
    """``evaluate_tensors`` on a split's first ``limit`` samples, normalised batch by batch."""
    targets = split.targets[:limit]
    return _evaluate(
        model, lambda start, stop: split.batch(slice(start, stop)), targets, batch_size
    )[0]


def _sliced(inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    """Reads ``inputs[start:stop]``, after checking there is one target per input."""
    if len(inputs) != len(targets):
        raise ValueError(
            f"need one target per input, got {len(inputs)} inputs and {len(targets)} targets"
        )
    return lambda start, stop: inputs[start:stop]


def _evaluate(
    model: nn.Module,
    inputs: Callable[[int, int], torch.Tensor],
    targets: torch.Tensor,
    batch_size: int,
) -> list[dict[str, float]]:
    """Accuracy and mean loss per target over ``targets``, reading inputs ``[start, stop)``
    on demand.

    A target is a class label (targets ``(samples,)``, logits ``(samples, classes)``) or
    a sequence of them (a language model's next tokens: targets ``(samples, length)``,
    logits ``(samples, classes, length)``); both are averaged over every label. One
    result per copy: logits with one more trailing dimension are stacked copies, each
    scored on every sample.
    """
    if len(targets) == 0:
        raise ValueError("need a non-empty batch to evaluate, got 0 samples")
    device = _device_of(model)
    correct, loss = 0, 0.0
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            stop = min(start + batch_size, len(targets))
            x = inputs(start, stop).to(device)
            y = targets[start:stop].to(device)
            logits = model(x)
            summed = tuple(range(y.dim()))  # every label; per copy, all but the copies' dim
            if logits.dim() == y.dim() + 2:
                y = y.unsqueeze(-1).expand(*y.shape, logits.shape[-1])
            batch_loss = F.cross_entropy(logits, y, reduction="none").sum(summed)
            loss = loss + np.asarray(batch_loss.tolist())
            correct = correct + np.asarray((logits.argmax(dim=1) == y).sum(summed).tolist())
    count = targets.numel()
    return [
        {"accuracy": int(right) / count, "loss": float(total) / count}
        for right, total in zip(np.atleast_1d(correct), np.atleast_1d(loss), strict=True)
    ]


def _device_of(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameterless model)."""
    return next(model.parameters(), torch.empty(0)).device
