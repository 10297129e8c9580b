"""Dataset loaders returning in-memory ``(train, test)`` splits as tensors.

scikit-learn's digits and the planted teacher need no files; MNIST-1D is generated
offline by the ``mnist1d`` package from its templates. MNIST, Fashion-MNIST and CIFAR-10
are read offline from torchvision's on-disk layout under ``data_dir``; when the files are
missing the error names them and the ``torchvision`` call that downloads them.
"""

from __future__ import annotations

import math
import os
import pickle
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Seed of the fixed digits train/test split (independent of a task's seed).
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2

MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"


#: per-channel ``(mean, std)`` of images in [0, 1], as torchvision's ``Normalize`` takes.
Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True, eq=False)
class Split:
    """One data split held in memory: ``inputs`` and int64 ``targets``.

    Targets are one class per sample ``(N,)``, or one per position ``(N, L)`` (a language
    model's next tokens). Inputs are float32 features, int64 token ids ``(N, L)``, or
    uint8 images ``(N, C, ...)`` with ``stats``: images
    stay uint8 in memory (a quarter of float32's bytes: CIFAR-10's train split is 154 MB,
    not 614 MB) and ``batch`` normalises only the samples asked for, to the same floats
    as normalising everything up front. Iterating yields ``(all inputs as ``batch`` gives
    them, targets)``, so ``x, y = split`` works (and materialises the floats). Splits returned by
    tasks are shared between tasks: treat the tensors as read-only.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    #: ``(mean, std)`` per channel for uint8 images (``(x / 255 - mean) / std``); else None.
    stats: Stats | None = None

    def __post_init__(self) -> None:
        if self.targets.dtype != torch.int64 or self.inputs.dtype not in (
            torch.float32,
            torch.uint8,
            torch.int64,
        ):
            raise TypeError(
                "Split needs float32 (uint8 images, int64 token ids) inputs and int64 "
                f"targets, got {self.inputs.dtype} and {self.targets.dtype}"
            )
        if (self.inputs.dtype == torch.uint8) != (self.stats is not None):
            raise ValueError(
                "uint8 image inputs need stats=(mean, std) per channel, and float32 inputs "
                f"take none; got {self.inputs.dtype} inputs with stats={self.stats!r}"
            )
        if self.stats is not None and not (
            self.inputs.ndim >= 2
            and len(self.stats[0]) == len(self.stats[1]) == self.inputs.shape[1]
        ):
            raise ValueError(
                f"stats={self.stats!r} must give one mean and one std per channel of inputs "
                f"of shape {tuple(self.inputs.shape)}"
            )
        if self.targets.ndim not in (1, 2) or len(self.inputs) != len(self.targets):
            raise ValueError(
                f"Split needs one target (or target sequence) per input, got inputs "
                f"{tuple(self.inputs.shape)} and targets {tuple(self.targets.shape)}"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.batch(slice(None)), self.targets))

    def batch(self, index: torch.Tensor | slice) -> torch.Tensor:
        """The model inputs at ``index`` (positions or a slice), normalised to float32 if
        stored as uint8."""
        inputs = self.inputs[index]
        return inputs if self.stats is None else normalise(inputs, self.stats)

    def subset(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (a long tensor of positions), as a new ``Split``."""
        return Split(self.inputs[index], self.targets[index], self.stats)


def default_data_dir() -> Path:
    """``$PRUNE_GYM_DATA`` if set, else ``~/.cache/prune_gym/data``."""
    env = os.environ.get("PRUNE_GYM_DATA")
    return Path(env) if env else Path.home() / ".cache" / "prune_gym" / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """``data_dir`` as an absolute path, or the default data directory when ``None``."""
    return (default_data_dir() if data_dir is None else Path(data_dir)).expanduser().resolve()


def load_digits_splits() -> tuple[Split, Split]:
    """scikit-learn's bundled 8x8 digits as ``(1, 8, 8)`` images in [0, 1].

    The test split is a fixed stratified 20% (seed ``DIGITS_SPLIT_SEED``), the same for
    every task seed, like the fixed test sets of MNIST and CIFAR-10.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_FRACTION,
        stratify=digits.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    data = Split(images, labels)
    return data.subset(torch.from_numpy(train_idx)), data.subset(torch.from_numpy(test_idx))


def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> tuple[Split, Split]:
    """MNIST-1D (Greydanus, 2020): 40-sample signals of 10 digits, made by ``mnist1d``.

    The package generates the data from its ten templates (no download), normalised, and
    splits it 80/20: with its defaults, 4000 train and 1000 test samples, the setting of its
    published results. ``mnist1d`` seeds Python's and numpy's global RNGs; their states
    are restored afterwards.
    """
    from mnist1d.data import ObjectView, get_dataset_args, make_dataset

    args = get_dataset_args(as_dict=True) | {"num_samples": int(num_samples), "seed": int(seed)}
    states = random.getstate(), np.random.get_state()
    try:
        dataset = make_dataset(ObjectView(args))
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])

    def split(inputs: np.ndarray, targets: np.ndarray) -> Split:
        return Split(torch.from_numpy(inputs).float(), torch.from_numpy(targets).long())

    return split(dataset["x"], dataset["y"]), split(dataset["x_test"], dataset["y_test"])


def teacher_splits(
    teacher: nn.Module,
    in_features: int,
    n_train: int,
    n_test: int,
    seed: int,
    keep_fraction: float = 0.1,
) -> tuple[Split, Split]:
    """Gaussian inputs labelled by the argmax of ``teacher``, with a clear margin.

    Draws ``(n_train + n_test) / keep_fraction`` standard-Gaussian candidates and keeps,
    in equal numbers per class, those with the largest teacher margin (top-1 minus top-2
    logit): without that the labels near the decision boundaries are too hard to learn
    from a few thousand samples. The inputs use a seed stream derived from ``seed`` that
    differs from the one ``planted_teacher(seed=seed)`` draws its weights from.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train={n_train!r} and n_test={n_test!r} must both be >= 1")
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction!r} must be in (0, 1]")
    stream = np.random.SeedSequence([seed, 1]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(stream))
    total = n_train + n_test
    candidates = torch.randn(math.ceil(total / keep_fraction), in_features, generator=generator)
    with torch.inference_mode():
        logits = teacher.eval()(candidates)
    top2 = logits.topk(2, dim=1).values
    margin, labels = top2[:, 0] - top2[:, 1], logits.argmax(dim=1)
    per_class = math.ceil(total / logits.shape[1])
    chosen = []
    for label in range(logits.shape[1]):
        index = torch.nonzero(labels == label).flatten()
        if len(index) < per_class:
            raise ValueError(
                f"the teacher labels only {len(index)} of {len(candidates)} candidates as "
                f"class {label}, fewer than the {per_class} needed; lower "
                f"keep_fraction={keep_fraction!r}"
            )
        chosen.append(index[margin[index].argsort(descending=True)[:per_class]])
    index = torch.cat(chosen)
    index = index[torch.randperm(len(index), generator=generator)[:total]]
    data = Split(candidates[index].clone(), labels[index].clone())
    return data.subset(torch.arange(n_train)), data.subset(torch.arange(n_train, total))


def carve_split(
    train: Split, fraction: float, seed: int, name: str = "fraction"
) -> tuple[Split, Split]:
    """Carve a stratified split out of ``train``: ``(train_rest, carved)``.

    Each class gives ``round(fraction * count)`` samples, chosen by a permutation seeded
    with ``seed``; carved samples come in a seeded random order, so any prefix of it is a
    random subset, and the rest keeps its original order. Samples whose target is a
    sequence (a language model's next tokens) have no class: they form one stratum.
    ``name`` names ``fraction`` in errors.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{name}={fraction!r} must be in (0, 1)")
    generator = torch.Generator().manual_seed(seed)
    strata = train.targets if train.targets.dim() == 1 else torch.zeros(len(train.targets))
    carved_parts, rest_parts = [], []
    for label in torch.unique(strata):
        index = torch.nonzero(strata == label).flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        count = round(fraction * len(index))
        carved_parts.append(index[:count])
        rest_parts.append(index[count:])
    carved_index = torch.cat(carved_parts)
    if len(carved_index) == 0:
        raise ValueError(
            f"{name}={fraction!r} of {len(train)} training samples leaves an empty "
            "split; use a larger fraction"
        )
    carved_index = carved_index[torch.randperm(len(carved_index), generator=generator)]
    rest_index = torch.sort(torch.cat(rest_parts)).values
    return train.subset(rest_index), train.subset(carved_index)


def mnist_files(data_dir: Path, folder: str = "MNIST") -> list[Path]:
    """The four idx files torchvision's ``MNIST``/``FashionMNIST`` read from ``data_dir``."""
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    names += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return [data_dir / folder / "raw" / name for name in names]


def cifar10_files(data_dir: Path) -> list[Path]:
    """The six pickled batches torchvision's ``CIFAR10`` reads from ``data_dir``."""
    names = (*CIFAR10_TRAIN_BATCHES, CIFAR10_TEST_BATCH)
    return [data_dir / "cifar-10-batches-py" / name for name in names]


def load_mnist(data_dir: str | os.PathLike[str]) -> tuple[Split, Split]:
    """MNIST ``(1, 28, 28)`` uint8 images, normalised per batch with the usual mean/std."""
    return _load_idx_dataset(Path(data_dir), "MNIST", MNIST_STATS)


def load_fashion_mnist(data_dir: str | os.PathLike[str]) -> tuple[Split, Split]:
    """Fashion-MNIST ``(1, 28, 28)`` uint8 images, normalised per batch (usual mean/std)."""
    return _load_idx_dataset(Path(data_dir), "FashionMNIST", FASHION_MNIST_STATS)


def load_cifar10(data_dir: str | os.PathLike[str]) -> tuple[Split, Split]:
    """CIFAR-10 ``(3, 32, 32)`` uint8 images, normalised per channel and per batch.

    Reads the python batches directly: torchvision's ``CIFAR10`` verifies md5 sums, which
    would reject anything but the exact official files.
    """
    files = cifar10_files(Path(data_dir))
    _require_files(files, f'torchvision.datasets.CIFAR10("{data_dir}", download=True)')
    train = [_read_cifar_batch(path) for path in files[:-1]]
    images = torch.cat([images for images, _ in train])
    labels = torch.cat([labels for _, labels in train])
    test_images, test_labels = _read_cifar_batch(files[-1])
    return (
        Split(images, labels, CIFAR10_STATS),
        Split(test_images, test_labels, CIFAR10_STATS),
    )


def _load_idx_dataset(
    data_dir: Path, folder: str, stats: tuple[tuple[float, ...], tuple[float, ...]]
) -> tuple[Split, Split]:
    """Load an MNIST-format dataset through torchvision after checking its files exist."""
    import torchvision

    _require_files(
        mnist_files(data_dir, folder),
        f'torchvision.datasets.{folder}("{data_dir}", download=True)',
    )
    dataset_cls = getattr(torchvision.datasets, folder)  # torchvision names folders by class
    splits = []
    for train in (True, False):
        dataset = dataset_cls(str(data_dir), train=train, download=False)
        images = dataset.data.unsqueeze(1)
        splits.append(Split(images, dataset.targets.long(), stats))
    return splits[0], splits[1]


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one pickled CIFAR-10 batch file."""
    # The official CIFAR-10 format is a pickle; only read dataset files you trust.
    with path.open("rb") as file:
        batch = pickle.load(file, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with data and labels")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(
            f"{path} holds data of shape {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) uint8 rows and N labels"
        )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32)), torch.from_numpy(labels)


def normalise(images: torch.Tensor, stats: Stats) -> torch.Tensor:
    """uint8 ``(N, C, ...)`` images -> float32 ``(x / 255 - mean) / std`` per channel."""
    shape = (1, -1) + (1,) * (images.ndim - 2)
    mean = torch.tensor(stats[0]).view(shape)
    std = torch.tensor(stats[1]).view(shape)
    return (images.float() / 255.0 - mean) / std


def _require_files(files: list[Path], download_call: str) -> None:
    """Raise ``FileNotFoundError`` listing every missing file and how to download it."""
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            "dataset files not found (prune-gym never downloads): "
            + ", ".join(missing)
            + f". Download them once with {download_call}, or pass data_dir= (or set "
            "$PRUNE_GYM_DATA) to the folder that holds them."
        )
