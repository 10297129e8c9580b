"""``SparseTrainer``: the one training loop of every training-time pruning method.

It trains with the task's recipe on the train split, keeps a ``MaskSet`` applied and
enforced after every optimizer step (momentum buffers included), lets a ``Schedule`` change
masks, gradients and the loss, and selects the best checkpoint on VAL among those at the
final sparsity. Test accuracy is measured once, on the selected model only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prune_gym.baselines.methods.schedule import Schedule, stream_seed
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet, clone_model
from prune_gym.tasks import Task, TrainRecipe
from prune_gym.tasks.train import augment_batch, batch_indices, lr_factor, make_optimizer


@dataclass
class MethodResult:
    """What a training-time method returns: the selected sparse model and how it was found.

    ``model`` carries ``masks`` applied (``weight_orig * weight_mask``); ``val_accuracy`` is
    the selection criterion, ``test_accuracy`` is measured once on the selected model.
    ``train_steps`` counts every optimizer step the method took (all IMP rounds included).
    ``history`` has one entry per evaluation: step, sparsity, mean train loss, val accuracy.
    """

    method: str
    masks: MaskSet
    model: nn.Module
    val_accuracy: float
    test_accuracy: float
    sparsity: float
    selected_step: int
    train_steps: int
    wall_time: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Candidate:
    """A checkpoint eligible for selection: weights (cloned), masks, val accuracy, step."""

    state: dict[str, torch.Tensor]
    masks: MaskSet
    val_accuracy: float
    step: int


class SparseTrainer:
    """Trains ``task``'s model under ``schedule`` and returns the val-selected ``MethodResult``.

    Public state for schedules: ``model``, ``layers`` (its prunable ``(name, module)``),
    ``optimizer``, ``masks`` (current ``MaskSet``), ``step`` (completed optimizer steps),
    ``task``, ``seed`` and, when the schedule asks for them, ``dense_grads`` (layer ->
    gradient of the effective weight, pruned entries included). ``generator`` (seeded) draws
    minibatch order and augmentation. ``eval_every`` defaults to once per epoch; ``run`` once.
    """

    def __init__(
        self,
        task: Task,
        schedule: Schedule,
        recipe: TrainRecipe | None = None,
        *,
        seed: int = 0,
        eval_every: int | None = None,
    ) -> None:
        if eval_every is not None and eval_every < 1:
            raise ValueError(f"eval_every={eval_every!r} must be >= 1 or None (once per epoch)")
        self.task = task
        self.schedule = schedule
        self.recipe = task.recipe if recipe is None else recipe
        self.seed = seed
        self.generator = torch.Generator().manual_seed(stream_seed(seed, "batches"))
        steps_per_epoch = math.ceil(len(task.splits["train"]) / self.recipe.batch_size)
        self.eval_every = steps_per_epoch if eval_every is None else eval_every
        self.step = 0
        self.dense_grads: dict[str, torch.Tensor] = {}
        self.model = schedule.initial_model(task)
        self.layers = prunable_layers(self.model)
        self.masks = MaskSet.dense(self.model)
        self.masks.apply(self.model)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(params, self.recipe)
        self._lr_factor = lr_factor(self.recipe, schedule.lr_horizon)
        schedule.setup(self)

    # services for schedules -------------------------------------------------------------
    def set_masks(self, masks: MaskSet) -> None:
        """Apply new masks and zero what they prune, in weights and optimizer buffers.

        Entries pruned until now are already zero in ``weight_orig`` and in the buffers, so
        weights that the new masks regrow start at 0 with reset momentum.
        """
        masks.apply(self.model)
        masks.enforce(self.model, self.optimizer)
        self.masks = masks

    def reset_optimizer(self) -> None:
        """Forget the optimizer's state (momentum, Adam moments), as a freshly built one."""
        self.optimizer.state.clear()

    # the loop ---------------------------------------------------------------------------
    def run(self) -> MethodResult:
        """Train for ``schedule.total_steps`` steps, finish the schedule, select on val."""
        if self.step:
            raise RuntimeError(f"this trainer already ran {self.step} steps; build a new one")
        started = time.perf_counter()
        train = self.task.splits["train"]
        total = self.schedule.total_steps
        batches = batch_indices(len(train), self.recipe.batch_size, self.generator, total)
        history: list[dict[str, Any]] = []
        best: _Candidate | None = None
        losses: list[float] = []
        hooks = self._retain_dense_gradients() if self.schedule.needs_dense_gradients else []
        progress = tqdm(batches, total=total, desc=self.schedule.name, disable=None)
        try:
            for index in progress:
                loss = self._train_step(train.batch(index), train.targets[index])
                losses.append(loss)
                if self.step % self.eval_every == 0 and self.step < total:
                    best = self._evaluate(history, losses, best, self.schedule.is_final(self.step))
                    losses = []
                progress.set_postfix(loss=f"{loss:.3f}", refresh=False)
        finally:
            for hook in hooks:
                hook.remove()
        self.schedule.finish(self)
        best = self._evaluate(history, losses, best, eligible=True)
        return self._result(best, history, time.perf_counter() - started)

    def _train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimizer step with the schedule's hooks; returns the cross-entropy."""
        device = next(self.model.parameters()).device
        self.model.train()
        inputs = augment_batch(inputs, self.recipe.augment, self.generator)
        loss = F.cross_entropy(self.model(inputs.to(device)), targets.to(device))
        extra = self.schedule.extra_loss(self)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        if self.schedule.needs_dense_gradients:
            self.dense_grads = self._collect_dense_gradients()
        self.schedule.before_update(self)
        factor = self._lr_factor(self.schedule.lr_step(self.step))
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr * factor
        self.optimizer.step()
        self.masks.enforce(self.model, self.optimizer)
        self.step += 1
        self.schedule.after_update(self)
        return loss.item()

    def _retain_dense_gradients(self) -> list[torch.utils.hooks.RemovableHandle]:
        """Forward hooks that keep the gradient of each layer's effective weight.

        With the prune re-parametrisation ``weight = weight_orig * weight_mask`` is rebuilt in
        a forward pre-hook, and ``weight_orig.grad`` is zero where the mask is; the gradient of
        ``weight`` itself is the dense one that RigL and GraNet grow by.
        """

        def retain(module: nn.Module, inputs: Any, output: Any) -> None:
            if module.weight.requires_grad:
                module.weight.retain_grad()

        return [module.register_forward_hook(retain) for _, module in self.layers]

    def _collect_dense_gradients(self) -> dict[str, torch.Tensor]:
        """Gradient of each effective weight from the last backward pass (zeros if unused)."""
        grads = {}
        for name, module in self.layers:
            grad = module.weight.grad
            grads[name] = torch.zeros_like(module.weight) if grad is None else grad.detach()
        return grads

    # evaluation and selection -------------------------------------------------------------
    def _evaluate(
        self,
        history: list[dict[str, Any]],
        losses: list[float],
        best: _Candidate | None,
        eligible: bool,
    ) -> _Candidate | None:
        """Record val accuracy; keep a copy of the model if eligible and the best so far."""
        val = self.task.evaluate(self.model, "val")["accuracy"]
        history.append(
            {
                "step": self.step,
                "sparsity": self.masks.sparsity(),
                "train_loss": sum(losses) / len(losses) if losses else float("nan"),
                "val_accuracy": val,
            }
        )
        if eligible and (best is None or val > best.val_accuracy):
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return _Candidate(state, self.masks, val, self.step)
        return best

    def _result(
        self, best: _Candidate, history: list[dict[str, Any]], wall_time: float
    ) -> MethodResult:
        """Load the selected checkpoint and measure its test accuracy (the only test use)."""
        model = clone_model(self.model)
        model.load_state_dict(best.state)
        best.masks.apply(model)
        model.eval()
        return MethodResult(
            method=self.schedule.name,
            masks=best.masks,
            model=model,
            val_accuracy=best.val_accuracy,
            test_accuracy=self.task.evaluate(model, "test")["accuracy"],
            sparsity=best.masks.sparsity(),
            selected_step=best.step,
            train_steps=self.step,
            wall_time=wall_time,
            history=history,
        )
