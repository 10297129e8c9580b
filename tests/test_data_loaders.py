"""Dataset loaders read the real on-disk formats (tiny files written here) and fail clearly."""

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import prune_gym.tasks
from prune_gym.tasks import TrainRecipe, data, evaluate_split, evaluate_tensors
from prune_gym.tasks.data import Split
from prune_gym.tasks.train import run_steps

RNG = np.random.default_rng(0)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) in the idx format: big-endian magic, dims, then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    magic = 0x0800 | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 60, n_test: int = 20) -> dict:
    """Tiny MNIST-format files under ``root/folder/raw`` with balanced labels."""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 10) -> dict:
    """Tiny CIFAR-10 python batches (pickled dicts with b"data" and b"labels")."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        rows = RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        with (folder / name).open("wb") as file:
            pickle.dump({b"data": rows, b"labels": labels, b"batch_label": name.encode()}, file)
        batches[name] = (rows, labels)
    return batches


@pytest.mark.parametrize(
    ("task_name", "folder", "mean", "std"),
    [
        ("mnist-lenet5", "MNIST", 0.1307, 0.3081),
        ("mnist-lenet300", "MNIST", 0.1307, 0.3081),
        ("fashion-lenet5", "FashionMNIST", 0.2860, 0.3530),
    ],
)
def test_mnist_format_loads_through_make(tmp_path, task_name, folder, mean, std):
    arrays = write_mnist(tmp_path, folder)
    task = prune_gym.tasks.make(task_name, data_dir=tmp_path)
    splits = task.splits
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 40,
        "reward": 10,
        "val": 10,
        "test": 20,
    }
    test_images, test_labels = arrays["t10k"]
    assert splits["test"].inputs.shape == (20, 1, 28, 28)
    assert splits["test"].inputs.dtype == torch.uint8  # normalised per batch, not held
    expected = (torch.from_numpy(test_images).float() / 255 - mean) / std
    assert torch.allclose(splits["test"].batch(slice(None))[:, 0], expected)
    assert torch.equal(splits["test"].targets, torch.from_numpy(test_labels).long())
    model = task.build_model()
    assert task.evaluate(model, "test")["accuracy"] >= 0.0  # the model accepts the data


def test_cifar10_format_loads_through_make(tmp_path):
    batches = write_cifar10(tmp_path)
    task = prune_gym.tasks.make("cifar10-resnet20", data_dir=tmp_path)
    splits = task.splits
    assert len(splits["train"]) + len(splits["reward"]) + len(splits["val"]) == 60
    assert len(splits["test"]) == 10
    rows, labels = batches["test_batch"]
    image = splits["test"].batch(torch.tensor([3]))[0]
    assert image.shape == (3, 32, 32)
    # row layout: 1024 red, then green, then blue values, each row-major 32x32
    pixel = rows[3, 2 * 1024 + 5 * 32 + 7] / 255
    assert image[2, 5, 7].item() == pytest.approx((pixel - 0.4465) / 0.2616, abs=1e-5)
    assert splits["test"].targets.tolist() == labels
    assert splits["test"].inputs.dtype == torch.uint8 and image.dtype == torch.float32


def test_cifar10_malformed_batch_is_rejected(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with path.open("wb") as file:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, file)
    with pytest.raises(ValueError, match=r"data_batch_2.*\(N, 3072\)"):
        data.load_cifar10(tmp_path)


@pytest.mark.parametrize(
    ("task_name", "expected_file", "call"),
    [
        ("mnist-lenet5", "MNIST/raw/train-images-idx3-ubyte", "torchvision.datasets.MNIST("),
        (
            "fashion-lenet5",
            "FashionMNIST/raw/t10k-labels-idx1-ubyte",
            "torchvision.datasets.FashionMNIST(",
        ),
        (
            "cifar10-vgg16",
            "cifar-10-batches-py/data_batch_1",
            "torchvision.datasets.CIFAR10(",
        ),
    ],
)
def test_missing_files_error_names_paths_and_download(tmp_path, task_name, expected_file, call):
    task = prune_gym.tasks.make(task_name, data_dir=tmp_path)  # lazy: no error yet
    with pytest.raises(FileNotFoundError) as info:
        task.splits  # noqa: B018
    message = str(info.value)
    assert str(tmp_path / expected_file) in message
    assert f'{call}"{tmp_path}", download=True)' in message
    assert "PRUNE_GYM_DATA" in message


def test_missing_file_list_names_only_missing_files(tmp_path):
    write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(tmp_path)
    assert "t10k-images-idx3-ubyte" in str(info.value)
    assert "train-images-idx3-ubyte" not in str(info.value)


def test_default_data_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_GYM_DATA", str(tmp_path))
    assert data.default_data_dir() == tmp_path
    write_mnist(tmp_path, "MNIST")
    assert len(prune_gym.tasks.make("mnist-lenet300").splits["test"]) == 20
    monkeypatch.delenv("PRUNE_GYM_DATA")
    assert data.default_data_dir() == Path.home() / ".cache" / "prune_gym" / "data"


def test_tasks_over_the_same_files_share_tensors(tmp_path):
    write_mnist(tmp_path, "MNIST")
    first = prune_gym.tasks.make("mnist-lenet5", data_dir=tmp_path).splits
    second = prune_gym.tasks.make("mnist-lenet300", data_dir=str(tmp_path)).splits
    assert first["train"].inputs is second["train"].inputs


def test_digits_splits_fixed_stratified_and_scaled():
    train, test = data.load_digits_splits()
    again, test_again = data.load_digits_splits()
    assert (len(train), len(test)) == (1437, 360)
    assert torch.equal(test.inputs, test_again.inputs) and torch.equal(train.targets, again.targets)
    assert train.inputs.shape[1:] == (1, 8, 8)
    assert train.inputs.min() == 0.0 and train.inputs.max() == 1.0
    assert torch.bincount(test.targets).min() >= 35  # 20% of every class (~36)


def test_split_validates_dtypes_and_lengths():
    with pytest.raises(TypeError, match="float32"):
        Split(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"one target \(or target sequence\) per input"):
        Split(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="per input, got inputs"):
        Split(torch.zeros(3, 2), torch.zeros(3, 2, 2, dtype=torch.long))
    inputs, targets = Split(torch.zeros(3, 2), torch.arange(3))
    assert inputs.shape == (3, 2) and targets.tolist() == [0, 1, 2]
    # a language model's windows: token ids in, the next token at every position out
    tokens = torch.arange(12).view(3, 4)
    sequences = Split(tokens, tokens + 1)
    assert torch.equal(sequences.batch(torch.tensor([2])), tokens[2:])


def test_teacher_splits_reproducible_balanced_and_margin_filtered():
    from prune_gym.tasks.models import planted_teacher

    teacher, _, _ = planted_teacher()
    train, test = data.teacher_splits(teacher, 64, 300, 100, seed=0)
    train_again, _ = data.teacher_splits(teacher, 64, 300, 100, seed=0)
    assert torch.equal(train.inputs, train_again.inputs)
    assert torch.equal(train.targets, train_again.targets)
    assert (len(train), len(test)) == (300, 100)
    counts = torch.bincount(torch.cat([train.targets, test.targets]), minlength=10)
    assert counts.tolist() == [40] * 10
    with torch.no_grad():
        assert torch.equal(teacher(test.inputs).argmax(dim=1), test.targets)
    with pytest.raises(ValueError, match="keep_fraction=0"):
        data.teacher_splits(teacher, 64, 300, 100, seed=0, keep_fraction=0)


def test_cifar10_task_trains_with_augmentation_on_tiny_files(tmp_path):
    write_cifar10(tmp_path)
    task = prune_gym.tasks.make("cifar10-resnet20", data_dir=tmp_path, recipe={"epochs": 1})
    assert task.recipe.augment == "crop-flip" and task.recipe.schedule == "multistep"
    model = task.pretrained_model()
    assert task.evaluate(model, "val")["loss"] > 0
    assert task.cache_path().exists()


def _uint8_split(n: int = 40, seed: int = 0) -> Split:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=generator)
    return Split(images, torch.arange(n) % 2, data.CIFAR10_STATS)


def test_uint8_split_normalises_per_batch_to_the_same_floats_as_up_front():
    split = _uint8_split()
    everything = data.normalise(split.inputs, data.CIFAR10_STATS)
    index = torch.tensor([5, 0, 33])
    assert torch.equal(split.batch(index), everything[index])
    assert torch.equal(split.subset(index).batch(slice(None)), everything[index])
    inputs, targets = split
    assert torch.equal(inputs, everything) and targets is split.targets
    assert split.inputs.element_size() == 1


def test_uint8_split_trains_and_evaluates_exactly_as_its_floats():
    split = _uint8_split()
    floats = Split(data.normalise(split.inputs, data.CIFAR10_STATS), split.targets)
    recipe = TrainRecipe(optimizer="sgd", lr=0.1, batch_size=8, epochs=1)
    models = []
    for source in (split, floats):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
        run_steps(model, source, recipe, 10, seed=0)
        models.append(model)
    assert torch.equal(models[0][1].weight, models[1][1].weight)
    assert evaluate_split(models[0], split, limit=30) == evaluate_tensors(
        models[0], floats.inputs[:30], floats.targets[:30]
    )


@pytest.mark.parametrize(
    ("inputs", "stats", "match"),
    [
        (torch.zeros(4, 3, 2, 2, dtype=torch.uint8), None, "uint8 image inputs need stats"),
        (torch.zeros(4, 3, 2, 2), data.CIFAR10_STATS, "float32 inputs take none"),
        (torch.zeros(4, 1, 2, 2, dtype=torch.uint8), data.CIFAR10_STATS, "one mean and one std"),
    ],
)
def test_split_refuses_inconsistent_stats(inputs, stats, match):
    with pytest.raises(ValueError, match=match):
        Split(inputs, torch.zeros(4, dtype=torch.long), stats)
