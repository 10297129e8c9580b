"""The per-task state every pruning environment shares, built once and reused across resets.

Building it trains or loads the dense model, counts its costs, computes every metric's
scores and picks the fixed reward samples. Environments over the same task, structure
and metrics in one process share one context, so a second env (or a vectorised copy)
costs nothing to create. Masks are applied to the shared model in place right before it
is evaluated, so sharing is safe for envs stepped one at a time.

Contexts live as long as an env uses them, plus the ``RECENT_CONTEXTS`` most recently
requested ones (so envs made one after another, as benchmarks do, share too); an env's
``close()`` releases its context at once.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from prune_gym.checks import check_choice, check_device_available, check_int, did_you_mean
from prune_gym.pruning import (
    MaskBuilder,
    MaskSet,
    available_metrics,
    compute_scores,
    export_channel_pruned,
    measure_latency,
)
from prune_gym.pruning.masks import check_structure
from prune_gym.tasks import Task, evaluate_split, evaluate_tensors
from prune_gym.tasks import make as make_task
from prune_gym.tasks.train import evaluate_copies

#: calibration samples for data-driven scores (class-balanced when the train split allows).
CALIBRATION_SAMPLES = 256
#: reward samples when none are asked for: the task's reward split, up to this many.
DEFAULT_REWARD_SAMPLES = 1000
WEIGHTS = ("pretrained", "init")
#: contexts kept after their last env is gone, most recently requested first out last.
RECENT_CONTEXTS = 4
#: on a CPU, the MACs of one training step's forward pass that a batch of masked copies
#: stays under: stacking copies pays where per-call overhead dominates (digits-cnn, 22M
#: per copy: 1.3x at 8 copies; MLPs: 3-4x), not where the arithmetic does (ResNet-20,
#: 5.2G per copy: 0.45x at 8 copies). Measured by ``benchmarks/env_speed.py --vector``.
BATCH_MACS = 1e9
#: reward evaluations remembered per context (a few hundred bytes each).
REWARD_CACHE_SIZE = 50_000


@dataclass(frozen=True)
class ContextKey:
    """What determines a context: two envs with equal keys share one."""

    task: str
    structure: str
    metrics: tuple[str, ...]
    rank_by: str
    reward_samples: int
    device: str
    weights: str


class PruningContext:
    """Dense model, costs, scores, mask builders and reward samples of one task.

    ``layer_names`` are the layers an environment controls: every prunable layer, except,
    with ``structure="channel"``, the layers that produce the model's output.
    ``weights="pretrained"`` prunes the task's trained dense model; ``"init"`` its seeded
    initialisation (pruning before training).
    """

    def __init__(self, task: Task, key: ContextKey) -> None:
        self.task = task
        self.key = key
        self.weights, self.structure = key.weights, key.structure
        self.metrics, self.rank_by = key.metrics, key.rank_by
        self.device = torch.device(key.device)
        model = task.pretrained_model() if key.weights == "pretrained" else task.build_model()
        self.model = model.to(self.device).eval()
        self.example_input = task.example_input().to(self.device)
        self.cost_model = task.cost_model(self.model, self.example_input)
        structural = self.structure == "channel"
        excluded = self.cost_model.channel_structure.output_layers if structural else ()
        self.layer_names = [n for n in self.cost_model.layer_names if n not in excluded]
        if not self.layer_names:
            raise ValueError(
                f"task {task.name!r}: with structure='channel' the layers producing the model's "
                f"output ({sorted(excluded)}) keep their channels, and the model has no other "
                "prunable layer; use structure='unstructured'"
            )
        self.layers = [layer for layer in self.cost_model.layers if layer.name not in excluded]
        self.calibration = _calibration_batch(task)
        self.scores = {metric: self.compute_scores(metric) for metric in self.metrics}
        self._unobserved_scores: dict[str, dict[str, torch.Tensor]] = {}
        self._builders: dict[str, MaskBuilder] = {}
        self.dense_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        MaskSet.dense(self.model).apply(self.model)
        reward = task.splits["reward"]
        order = torch.randperm(len(reward), generator=torch.Generator().manual_seed(task.seed))
        index = order[: key.reward_samples]
        self.reward_inputs = reward.batch(index).to(self.device)
        self.reward_targets = reward.targets[index].to(self.device)
        self._dense_latency: float | None = None
        self._results: OrderedDict[tuple[str, str, int, int], dict[str, float]] = OrderedDict()
        #: evaluations (rewards and assessments) answered from the cache, and computed.
        self.reward_hits = self.reward_misses = 0

    # scores and masks -------------------------------------------------------------------
    def compute_scores(self, metric: str, model: nn.Module | None = None) -> dict:
        """``metric``'s weight scores on the calibration batch (of ``model``, default ours)."""
        return compute_scores(
            self.model if model is None else model,
            metric,
            self.calibration,
            seed=self.task.seed,
            input_shape=self.task.input_shape,
        )

    def metric_scores(self, metric: str) -> dict[str, torch.Tensor]:
        """``metric``'s scores on the dense net: ``scores`` for an observed metric, else
        computed on first use and kept (an allocation's, such as OWL's Wanda scores)."""
        if metric in self.scores:
            return self.scores[metric]
        if metric not in self._unobserved_scores:
            self.dense_masks.apply(self.model)
            self._unobserved_scores[metric] = self.compute_scores(metric)
        return self._unobserved_scores[metric]

    def builder(self, metric: str | None = None) -> MaskBuilder:
        """The cached mask builder ranking by ``metric`` (default: ``rank_by``) on the dense net."""
        metric = self.rank_by if metric is None else metric
        if metric not in self._builders:
            self._builders[metric] = self.mask_builder(self.metric_scores(metric))
        return self._builders[metric]

    @cached_property
    def dense_masks(self) -> MaskSet:
        """Keep-everything masks covering all that any of this context's masks cover.

        Built by a mask builder so that, with channels, BatchNorm and bias masks are
        included too: applying it fully undoes an earlier episode's masks.
        """
        return MaskBuilder(
            self.model,
            structure=self.structure,
            channel_structure=self.cost_model.channel_structure,
        ).from_ratios({})

    def mask_builder(
        self,
        scores: dict[str, torch.Tensor] | None,
        masks: MaskSet | None = None,
        metric: str | None = None,
    ) -> MaskBuilder:
        """A builder ranking by ``scores`` (or ``metric``'s scores) on the net under ``masks``.

        ``masks`` defaults to none (the dense net): the shared model is set to exactly
        these masks first, since a builder ranks weights the model already prunes lowest.
        """
        (self.dense_masks if masks is None else masks).apply(self.model)
        if scores is None:
            scores = self.compute_scores(metric)
        return MaskBuilder(
            self.model,
            scores,
            structure=self.structure,
            channel_structure=self.cost_model.channel_structure,
        )

    # rewards ----------------------------------------------------------------------------
    @contextmanager
    def masked(self, masks: MaskSet, finetune_steps: int = 0, seed: int = 0) -> Iterator[nn.Module]:
        """The shared model under ``masks``, trained ``finetune_steps`` first, restored after.

        A pretrained net is fine-tuned at the task's fine-tuning rate; a mask on the
        initialisation is trained with the recipe (its rate and schedule over the steps).
        The original weights come back whatever happens, so no episode or evaluation
        leaks into the next.
        """
        masks.apply(self.model)
        try:
            if finetune_steps > 0:
                self.task.finetune(
                    self.model, masks, finetune_steps, seed=seed, **self._finetune_options()
                )
            yield self.model
        finally:
            if finetune_steps > 0:
                self.restore_dense_weights()

    def reward_metrics(self, masks: MaskSet, finetune_steps: int = 0, seed: int = 0) -> dict:
        """Accuracy and loss on the fixed reward samples under ``masks`` (see ``masked``).

        Remembered by mask (``MaskSet.digest``), steps and seed: an allocation revisited,
        by any env sharing this context, costs nothing.
        """

        def compute(model: nn.Module) -> dict[str, float]:
            return evaluate_tensors(model, self.reward_inputs, self.reward_targets)

        return self._remembered("reward", masks, finetune_steps, seed, compute)

    def reward_metrics_many(
        self, masks: Sequence[MaskSet], finetune_steps: int = 0, seed: int = 0
    ) -> list[dict[str, float]]:
        """``reward_metrics`` of every mask set in ``masks``, computed together.

        The sets not remembered are fine-tuned as stacked copies in one training loop
        (``Task.finetune_copies``) and scored in one pass over the reward samples; a
        copy's numbers equal ``reward_metrics``' up to floating-point round-off (one set
        alone takes ``reward_metrics``' own path). The results are remembered, so a
        ``reward_metrics`` of the same masks then costs nothing (how ``PruningVectorEnv``
        hands them to its sub-envs).
        """
        keys = [("reward", mask_set.digest(), finetune_steps, seed) for mask_set in masks]
        missing = {  # each distinct set once
            key: mask_set
            for key, mask_set in zip(keys, masks, strict=True)
            if key not in self._results
        }
        pending = list(missing.items())
        size = self.copies_per_batch
        for batch in (dict(pending[i : i + size]) for i in range(0, len(pending), size)):
            if len(batch) == 1:  # nothing to batch: exactly the single path
                self.reward_metrics(*batch.values(), finetune_steps, seed)
                continue
            copies = self.task.finetune_copies(
                self.copy_template,
                list(batch.values()),
                finetune_steps,
                seed=seed,
                **self._finetune_options(),
            )
            results = evaluate_copies(copies, self.reward_inputs, self.reward_targets)
            for key, result in zip(batch, results, strict=True):
                self._remember(key, result)
            self.reward_misses += len(batch)
        self.reward_hits += len(keys) - len(missing)
        return [dict(self._results[key]) for key in keys]

    @cached_property
    def copies_per_batch(self) -> int:
        """How many masked copies ``reward_metrics_many`` trains together.

        On a CPU, as many as keep one training step's forward under ``BATCH_MACS`` (at
        least 1: one after another, the single path); on a GPU, every one.
        """
        if self.device.type != "cpu":
            return 2**31
        step_macs = self.cost_model.macs_dense * self.task.recipe.batch_size
        return max(1, int(BATCH_MACS // step_macs))

    @cached_property
    def copy_template(self) -> nn.Module:
        """An unmasked copy of the dense model (eval mode) that ``MaskedCopies`` stack."""
        template = self.task.build_model().to(self.device)
        template.load_state_dict(self.dense_state)
        return template.eval()

    def _finetune_options(self) -> dict[str, float | bool | None]:
        """Learning rate and schedule of fine-tuning under a mask: a pretrained net at the
        task's fine-tuning rate; a mask on the initialisation with the recipe's rate and
        schedule over the steps."""
        from_init = self.weights == "init"
        return {"lr": self.task.recipe.lr if from_init else None, "schedule": from_init}

    def assess(self, masks: MaskSet, finetune_steps: int = 0, seed: int = 0) -> dict:
        """``val_accuracy``, ``val_loss``, ``test_accuracy`` and ``test_loss`` under
        ``masks`` (full splits; losses are mean cross-entropies per target, in nats).

        The final measure of every policy, after ``finetune_steps`` of training; cached
        like ``reward_metrics``. Nothing is selected on test: it is only reported.
        """
        val, test = self.task.splits["val"], self.task.splits["test"]

        def compute(model: nn.Module) -> dict[str, float]:
            val_result = evaluate_split(model, val)
            test_result = evaluate_split(model, test)
            return {
                "val_accuracy": val_result["accuracy"],
                "val_loss": val_result["loss"],
                "test_accuracy": test_result["accuracy"],
                "test_loss": test_result["loss"],
            }

        return self._remembered("assessment", masks, finetune_steps, seed, compute)

    def _remembered(
        self,
        kind: str,
        masks: MaskSet,
        finetune_steps: int,
        seed: int,
        compute: Callable[[nn.Module], dict[str, float]],
    ) -> dict[str, float]:
        """``compute`` on the model under ``masks`` (see ``masked``), or its remembered result."""
        key = (kind, masks.digest(), finetune_steps, seed)
        if key in self._results:
            self.reward_hits += 1
            self._results.move_to_end(key)
            return dict(self._results[key])
        self.reward_misses += 1
        with self.masked(masks, finetune_steps, seed) as model:
            result = compute(model)
        self._remember(key, result)
        return result

    def forget_results(self) -> None:
        """Forget every remembered reward and assessment (to time or compare computations)."""
        self._results.clear()

    def _remember(self, key: tuple[str, str, int, int], result: dict[str, float]) -> None:
        """Keep ``result`` under ``key``, forgetting the least recently used beyond the cap."""
        self._results[key] = dict(result)
        if len(self._results) > REWARD_CACHE_SIZE:
            self._results.popitem(last=False)

    def restore_dense_weights(self) -> None:
        """Put the pretrained dense weights back into the shared model (masks untouched)."""
        with torch.no_grad():
            for name, module in self.model.named_modules():
                for param_name, tensor in list(module.named_parameters(recurse=False)):
                    key = f"{name}.{param_name.removesuffix('_orig')}".lstrip(".")
                    tensor.copy_(self.dense_state[key])
                for buffer_name, tensor in list(module.named_buffers(recurse=False)):
                    key = f"{name}.{buffer_name}".lstrip(".")
                    if key in self.dense_state:
                        tensor.copy_(self.dense_state[key])

    def latency_ratio(self, masks: MaskSet) -> float:
        """Measured latency of the channel-pruned export over that of the dense model."""
        if self._dense_latency is None:
            dense = export_channel_pruned(self.model, MaskSet.dense(self.model), self.example_input)
            self._dense_latency = measure_latency(dense, self.example_input)
        exported = export_channel_pruned(self.model, masks, self.example_input)
        return measure_latency(exported, self.example_input) / self._dense_latency


#: every context some env still holds, so that envs with equal settings share it.
_LIVE: weakref.WeakValueDictionary[ContextKey, PruningContext] = weakref.WeakValueDictionary()
#: the most recently requested contexts, held even when no env is left.
_RECENT: OrderedDict[ContextKey, PruningContext] = OrderedDict()


def resolve_task(task: str | Task) -> Task:
    """A Task from a registered name or a Task object (TypeError otherwise)."""
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return make_task(task)
    raise TypeError(f"task must be a registered task name or a Task, got {type(task).__name__}")


def get_context(
    task: str | Task,
    structure: str,
    metrics: tuple[str, ...],
    rank_by: str,
    reward_samples: int | None,
    device: str,
    weights: str = "pretrained",
) -> PruningContext:
    """The shared context for these settings, built on first use (see the module docstring).

    Every setting is checked before anything is built: ``device`` must be one this
    machine can compute on (``check_device_available``).
    """
    check_structure(structure)
    device = check_device_available(device)
    known = available_metrics()
    for metric in (*metrics, rank_by):
        if metric not in known:
            raise ValueError(
                f"unknown metric {metric!r}; available metrics: {known}"
                + did_you_mean(metric, known)
            )
    check_choice(weights, "weights", WEIGHTS)
    task = resolve_task(task)
    reward_size = len(task.splits["reward"])
    if reward_samples is None:
        reward_samples = min(DEFAULT_REWARD_SAMPLES, reward_size)
    reward_samples = check_int(reward_samples, "reward_samples", low=1)
    if reward_samples > reward_size:
        raise ValueError(
            f"reward_samples={reward_samples} exceeds the {reward_size} samples of task "
            f"{task.name!r}'s reward split; use at most {reward_size}, or a task with a "
            "larger reward_fraction"
        )
    key = ContextKey(task.cache_key(), structure, metrics, rank_by, reward_samples, device, weights)
    context = _LIVE.get(key)
    if context is None:
        context = _LIVE[key] = PruningContext(task, key)
    _RECENT[key] = context
    _RECENT.move_to_end(key)
    while len(_RECENT) > RECENT_CONTEXTS:
        _RECENT.popitem(last=False)
    return context


def release_context(context: PruningContext) -> None:
    """Stop holding ``context`` for later envs; it is freed once no env uses it."""
    _RECENT.pop(context.key, None)


def _calibration_batch(task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    """A class-balanced calibration batch when possible, else a plain random one (always
    for sequence targets, a language model's)."""
    train = task.splits["train"]
    count = min(CALIBRATION_SAMPLES, len(train))
    if train.targets.dim() != 1:
        return task.calibration_batch(count, seed=task.seed)
    smallest_class = int(torch.bincount(train.targets, minlength=task.num_classes).min())
    if count >= task.num_classes and smallest_class >= count // task.num_classes:
        return task.calibration_batch(count, seed=task.seed, class_balanced=True)
    return task.calibration_batch(count, seed=task.seed)
