"""``Task``: a model factory, its data splits and its training recipe, with cached weights.

A task is what an environment prunes: it builds the model, holds the train / reward /
val / test splits in memory, trains and caches the dense weights, evaluates and
fine-tunes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prune_gym import __version__
from prune_gym.checks import check_choice, check_int, check_number, is_integer
from prune_gym.pruning.cost import CostModel
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet
from prune_gym.tasks import cache, data
from prune_gym.tasks.batched import MaskedCopies
from prune_gym.tasks.data import Split
from prune_gym.tasks.train import TrainRecipe, evaluate_split, run_steps, train_dense

#: ``train`` fits weights, ``reward`` scores an env's rewards, ``val`` selects (checkpoints,
#: the best fixed policy) and ``test`` is only reported: four disjoint splits.
SPLIT_NAMES = ("train", "reward", "val", "test")
#: Seed of the random model and inputs ``Task`` probes with (``model_fingerprint``, and
#: the check of ``MaskedCopies``' stacked layers).
_PROBE_SEED = 0
#: Splits (and the data's fingerprint) shared by tasks with the same ``(data_key,
#: val_fraction, reward_fraction, seed)``: the most recently used few. Tasks keep their
#: own splits, so eviction only stops the sharing.
_SPLIT_CACHE: OrderedDict[Hashable, tuple[dict[str, Split], str]] = OrderedDict()
_SPLIT_CACHE_SIZE = 4
#: random inputs on which ``MaskedCopies`` checks that stacked layers compute the copies.
COPIES_PROBE_BATCH = 8


def cache_dir() -> Path:
    """``$PRUNE_GYM_CACHE`` if set, else ``~/.cache/prune_gym`` (read at each call)."""
    env = os.environ.get("PRUNE_GYM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prune_gym"


class Task:
    """A model factory, its data and its training recipe: what a pruning environment prunes.

    ``load_data()`` returns the ``(train, test)`` splits; validation (``val_fraction``)
    and then the reward split (``reward_fraction``, both of the loaded training data) are
    carved out of train, stratified and seeded, so that what an agent is rewarded on is
    never what its checkpoints are selected on. ``data_key`` (hashable) names the data so
    tasks over the same data share the tensors in memory; ``data_options`` are the
    settings that change the data and so key the pretrained-weights cache. ``uncounted``
    names parameters outside the prunable layers (an LSTM, an embedding) that costs may
    knowingly leave out (``prune_gym.pruning.cost.check_costed``); without it such a
    model is refused by every env, so that its costs are never silently partial.
    """

    #: whether reports give the perplexity (``exp`` of the mean loss per target) beside
    #: the accuracy: a language model's measure.
    reports_perplexity = False

    def __init__(
        self,
        name: str,
        build_model: Callable[[], nn.Module],
        load_data: Callable[[], tuple[Split, Split]],
        recipe: TrainRecipe,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        val_fraction: float = 0.1,
        reward_fraction: float = 0.1,
        seed: int = 0,
        data_key: Hashable | None = None,
        data_options: Mapping[str, Any] | None = None,
        uncounted: Sequence[str] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"task name={name!r} must be a non-empty string")
        if not isinstance(recipe, TrainRecipe):
            raise TypeError(f"recipe must be a TrainRecipe, got {type(recipe).__name__}")
        if not input_shape or any(not is_integer(d) or d < 1 for d in input_shape):
            raise ValueError(f"input_shape={input_shape!r} must be a tuple of positive sizes")
        if isinstance(uncounted, str):
            raise TypeError(f"uncounted must be a list of names or patterns, not {uncounted!r}")
        self.name = name
        self._build_model = build_model
        self._load_data = load_data
        self.recipe = recipe
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = check_int(num_classes, "num_classes", low=2)
        self.val_fraction = check_number(
            val_fraction, "val_fraction", 0, 1, low_open=True, high_open=True
        )
        self.reward_fraction = check_number(
            reward_fraction, "reward_fraction", 0, 1, low_open=True, high_open=True
        )
        if self.val_fraction + self.reward_fraction >= 1:
            raise ValueError(
                f"val_fraction={val_fraction!r} and reward_fraction={reward_fraction!r} "
                "leave no training data; their sum must be below 1"
            )
        self.seed = check_int(seed, "seed")
        self.data_key = data_key
        self.data_options = dict(data_options or {})
        self.uncounted = tuple(uncounted)
        self._splits: dict[str, Split] | None = None
        self._data_fingerprint: str | None = None
        self._pretrained_state: dict[str, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"Task({self.name!r}, seed={self.seed}, input_shape={self.input_shape})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the in-memory data and weights (they reload lazily)."""
        return {**self.__dict__, "_splits": None, "_pretrained_state": None}

    # model ------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A freshly initialised model; the same task seed gives the same weights.

        The global RNG is seeded inside a fork, so the caller's RNG state is untouched.
        """
        return self._build_seeded(self.seed)

    def _build_seeded(self, seed: int) -> nn.Module:
        """``build_model`` with the global RNG seeded to ``seed`` inside a fork."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self._build_model()
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"task {self.name!r}: build_model returned {type(model).__name__}, "
                "expected an nn.Module"
            )
        return model

    def model_fingerprint(self) -> str:
        """sha256 of the model's architecture, initialisation and function, apart from seed.

        Hashes, for a model built at a fixed probe seed: its ``repr``, every parameter and
        buffer (so a new initialisation shows), and its outputs on a fixed random input
        (so a changed ``forward``, relu to tanh say, shows though ``repr`` is the same).
        Outputs are rounded to 6 significant digits, so that round-off between machines
        does not change the key.
        """
        model = self._build_seeded(_PROBE_SEED).eval()
        digest = hashlib.sha256(repr(model).encode())
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            _hash_tensor(digest, name, tensor)
        with torch.no_grad():
            outputs = model(self.probe_input(2))
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        for index, output in enumerate(outputs):
            rounded = [f"{value:.6g}" for value in output.detach().double().flatten().tolist()]
            digest.update(f"output {index}:{tuple(output.shape)}:{','.join(rounded)};".encode())
        return digest.hexdigest()

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero batch of ``input_shape``, for tracing and cost counting."""
        return torch.zeros(batch_size, *self.input_shape)

    def probe_input(self, batch_size: int) -> torch.Tensor:
        """A fixed random batch shaped like ``example_input`` (its zeros where the input
        is not floating point), to tell models apart by what they compute."""
        probe = self.example_input(batch_size)
        if probe.is_floating_point():
            generator = torch.Generator().manual_seed(_PROBE_SEED)
            probe = torch.randn(probe.shape, generator=generator, dtype=probe.dtype)
        return probe

    def cost_model(
        self, model: nn.Module | None = None, example_input: torch.Tensor | None = None
    ) -> CostModel:
        """The costs of ``model`` (default a fresh one) with this task's ``uncounted``."""
        return CostModel(
            self.build_model() if model is None else model,
            self.example_input() if example_input is None else example_input,
            uncounted=self.uncounted,
        )

    # data -------------------------------------------------------------------------------
    @property
    def splits(self) -> dict[str, Split]:
        """The ``SPLIT_NAMES`` splits, loaded on first use and kept in memory."""
        if self._splits is None:
            if self.data_key is None:
                self._splits, self._data_fingerprint = self._load_splits()
            else:
                key = (self.data_key, self.val_fraction, self.reward_fraction, self.seed)
                if key in _SPLIT_CACHE:
                    _SPLIT_CACHE.move_to_end(key)
                else:
                    _SPLIT_CACHE[key] = self._load_splits()
                    while len(_SPLIT_CACHE) > _SPLIT_CACHE_SIZE:
                        _SPLIT_CACHE.popitem(last=False)
                self._splits, self._data_fingerprint = _SPLIT_CACHE[key]
        return dict(self._splits)

    def _load_splits(self) -> tuple[dict[str, Split], str]:
        """Load ``(train, test)``, fingerprint them, and carve val and reward out of train."""
        loaded = self._load_data()
        if not (isinstance(loaded, tuple) and len(loaded) == 2):
            raise TypeError(f"task {self.name!r}: load_data must return a (train, test) tuple")
        train, test = loaded
        for split in (train, test):
            if not isinstance(split, Split):
                raise TypeError(f"task {self.name!r}: load_data returned {type(split).__name__}")
            if len(split) and int(split.targets.max()) >= self.num_classes:
                raise ValueError(
                    f"task {self.name!r}: label {int(split.targets.max())} found, but "
                    f"num_classes={self.num_classes}"
                )
        labels = torch.unique(train.targets).tolist()
        if len(labels) < 2:
            held = f"only label {labels[0]}" if labels else "no samples"
            raise ValueError(
                f"task {self.name!r}: the training data hold {held}; a classifier needs "
                "at least 2 classes"
            )
        rest, val = data.carve_split(train, self.val_fraction, self.seed, "val_fraction")
        # reward_fraction is of the loaded training data: rescale it to what val left.
        of_rest = self.reward_fraction / (1 - self.val_fraction)
        rest, reward = data.carve_split(rest, of_rest, self.seed + 1, "reward_fraction")
        splits = {"train": rest, "reward": reward, "val": val, "test": test}
        return splits, _fingerprint(train, test)

    def calibration_batch(
        self, n: int, seed: int = 0, class_balanced: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` seeded random training samples ``(inputs, targets)`` for data-driven scores.

        ``class_balanced`` takes ``n // num_classes`` samples of every class instead
        (GraSP's samples-per-class convention), grouped by class.
        """
        train = self.splits["train"]
        if not 1 <= n <= len(train):
            raise ValueError(f"n={n!r} must be between 1 and the {len(train)} training samples")
        generator = torch.Generator().manual_seed(seed)
        if not class_balanced:
            index = torch.randperm(len(train), generator=generator)[:n]
            return train.batch(index), train.targets[index]
        if train.targets.dim() != 1:
            raise ValueError(
                f"task {self.name!r} has sequence targets (a label per position), so no "
                "class-balanced batch; use class_balanced=False"
            )
        if n < self.num_classes:
            raise ValueError(
                f"class_balanced batch needs n >= num_classes={self.num_classes}, got n={n}"
            )
        per_class = n // self.num_classes
        parts = []
        for label in range(self.num_classes):
            pool = torch.nonzero(train.targets == label).flatten()
            if len(pool) < per_class:
                raise ValueError(
                    f"class {label} has {len(pool)} training samples, fewer than the "
                    f"{per_class} a class_balanced batch of n={n} needs"
                )
            parts.append(pool[torch.randperm(len(pool), generator=generator)[:per_class]])
        index = torch.cat(parts)
        return train.batch(index), train.targets[index]

    # training and evaluation ---------------------------------------------------------
    def evaluate(
        self, model: nn.Module, split: str = "val", limit: int | None = None
    ) -> dict[str, float]:
        """``{"accuracy", "loss"}`` of ``model`` on a split (its first ``limit`` samples)."""
        check_choice(split, "split", SPLIT_NAMES)
        if limit is not None and limit < 1:
            raise ValueError(f"limit={limit!r} must be a positive int or None")
        return evaluate_split(model, self.splits[split], limit)

    def finetune(
        self,
        model: nn.Module,
        masks: MaskSet,
        steps: int,
        *,
        lr: float | None = None,
        seed: int | None = None,
        schedule: bool = False,
    ) -> nn.Module:
        """Apply ``masks`` and train ``steps`` steps on train, keeping pruned weights zero.

        Uses the recipe's optimizer at ``lr`` (default ``recipe.finetune_lr``, else
        ``recipe.lr / 10``), constant unless ``schedule`` (the recipe's schedule over the
        ``steps``); ``masks.enforce`` runs after every step, optimizer buffers included.
        Deterministic for a ``seed`` (default: the task's); returns the model in eval mode.
        """
        if steps < 0:
            raise ValueError(f"steps={steps!r} must be >= 0")
        masks.apply(model)
        self._finetune_steps(
            model, steps, lr, seed, schedule, after_step=partial(_enforce, masks, model)
        )
        # ``weight`` is only recomputed in a forward pass; re-applying refreshes it now.
        return masks.apply(model)

    def finetune_copies(
        self,
        model: nn.Module,
        masks: Sequence[MaskSet],
        steps: int,
        *,
        lr: float | None = None,
        seed: int | None = None,
        schedule: bool = False,
    ) -> MaskedCopies:
        """``finetune`` of one copy of ``model`` per mask set, all trained together.

        The copies (``MaskedCopies``, checked on ``COPIES_PROBE_BATCH`` random inputs to
        run as stacked layers) share ``finetune``'s minibatches, optimizer and
        learning rate, so copy i ends where ``finetune(model, masks[i], ...)`` would, up to
        floating-point round-off; ``model`` itself is left as it was.
        """
        if steps < 0:
            raise ValueError(f"steps={steps!r} must be >= 0")
        device = next(model.parameters()).device
        copies = MaskedCopies(model, masks, probe=self.probe_input(COPIES_PROBE_BATCH).to(device))
        self._finetune_steps(copies, steps, lr, seed, schedule, loss_fn=copies.loss, fused=True)
        return copies

    def _finetune_steps(
        self,
        model: nn.Module,
        steps: int,
        lr: float | None,
        seed: int | None,
        schedule: bool,
        **options: Any,
    ) -> None:
        """``run_steps`` on train with the fine-tuning defaults (``finetune``'s rate, the
        task's seed); ``options`` go to ``run_steps``."""
        run_steps(
            model,
            self.splits["train"],
            self.recipe,
            steps,
            seed=self.seed if seed is None else seed,
            lr=self.recipe.default_finetune_lr if lr is None else lr,
            schedule=schedule,
            desc=f"{self.name}: fine-tuning",
            **options,
        )

    # pretrained weights ----------------------------------------------------------------
    def data_fingerprint(self) -> str:
        """sha256 of the loaded ``(train, test)`` data (dtype, shape and bytes of each tensor).

        Keys the weights by the data itself, so a task re-registered with other data
        (user tasks usually have no ``data_options``) never gets stale weights. Taken
        before validation is carved out, so every seed of a task shares it.
        """
        self.splits  # noqa: B018  (loads the data and its fingerprint once)
        return self._data_fingerprint

    def definition_key(self) -> str:
        """sha256 of what defines the task apart from its seed: name, recipe, model, data.

        The model enters by ``model_fingerprint()`` (architecture, initialisation, forward).
        Loads the data on first use: the key includes ``data_fingerprint()``.
        """
        description = {
            "task": self.name,
            "recipe": dataclasses.asdict(self.recipe),
            "val_fraction": self.val_fraction,
            "reward_fraction": self.reward_fraction,
            "model": self.model_fingerprint(),
            "data": self.data_options,
            "data_fingerprint": self.data_fingerprint(),
        }
        text = json.dumps(description, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def cache_key(self) -> str:
        """sha256 of everything that determines the dense weights: the definition, the seed
        and the package version (bumped whenever a change alters results)."""
        text = f"{self.definition_key()}:seed={self.seed}:version={__version__}"
        return hashlib.sha256(text.encode()).hexdigest()

    def cache_path(self, key: str | None = None) -> Path:
        """Where ``pretrained_model`` stores the dense weights (for ``key``, default ours)."""
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", self.name)
        key = self.cache_key() if key is None else key
        return cache_dir() / "pretrained" / f"{stem}-{key[:16]}.pt"

    def pretrained_model(self) -> nn.Module:
        """The dense model trained with the task's recipe, in eval mode.

        Trained on first use and cached on disk (``cache_path()``, verified by a sha256
        sidecar, see ``prune_gym.tasks.cache``); a cache file that is damaged or does not
        match this task is reported with a warning and replaced by retraining, never used.
        """
        model = self.build_model()
        if self._pretrained_state is None:
            self._pretrained_state = self._load_or_train(model)
        model.load_state_dict(self._pretrained_state)
        return model.eval()

    def _load_or_train(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Dense weights from the verified cache file, else trained (once across processes).

        A model with nothing to prune is refused (``prunable_layers``) before any training.
        """
        prunable_layers(model)

        def train() -> dict[str, torch.Tensor]:
            train_dense(model, self.splits["train"], self.recipe, seed=self.seed, desc=self.name)
            return {
                name: value.detach().cpu().clone() for name, value in model.state_dict().items()
            }

        key = self.cache_key()
        return cache.load_or_train(self.cache_path(key), key, self.name, model, train)


def _hash_tensor(digest: Any, name: str, tensor: torch.Tensor) -> None:
    """Add ``tensor``'s name, dtype, shape and bytes to a hashlib ``digest``."""
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy())


def _fingerprint(*splits: Split) -> str:
    """sha256 over the dtype, shape and bytes of every tensor of ``splits``, in order."""
    digest = hashlib.sha256()
    for index, split in enumerate(splits):
        if split.stats is not None:
            digest.update(f"{index}:stats={split.stats!r};".encode())
        for tensor in (split.inputs, split.targets):
            _hash_tensor(digest, str(index), tensor)
    return digest.hexdigest()


def _enforce(masks: MaskSet, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """``masks.enforce(model, optimizer)``, in the argument order ``run_steps`` calls."""
    masks.enforce(model, optimizer)
