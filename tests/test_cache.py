"""The pretrained-weights cache: verified loads, damaged files retrained, data keys, lock."""

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from torch import nn
from toy_tasks import blobs_task, load_blobs

import prune_gym.tasks
from prune_gym.tasks import Split, Task, TrainRecipe
from prune_gym.tasks import task as task_module


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    """The blobs task's cache files (name -> bytes) and its trained state dict."""
    folder = tmp_path_factory.mktemp("pristine")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNE_GYM_CACHE", str(folder))
        state = blobs_task().pretrained_model().state_dict()
        stored = blobs_task().cache_path().parent
    return {path.name: path.read_bytes() for path in stored.iterdir()}, state


@pytest.fixture
def cached(pristine, tmp_path, monkeypatch):
    """A fresh cache folder holding the pristine files; returns the weights file's path."""
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path))
    path = blobs_task().cache_path()
    path.parent.mkdir(parents=True)
    for name, data in pristine[0].items():
        (path.parent / name).write_bytes(data)
    return path


def assert_same_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    assert model.state_dict().keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(model.state_dict()[name], value), name


def assert_detected_and_repaired(path, trainings, reference) -> None:
    """A warning names ``path``, one retraining gives the same weights, then loads are silent."""
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        retrained = blobs_task().pretrained_model()
    assert trainings == [1]
    assert_same_weights(retrained, reference)  # seeded: the same weights again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_weights(blobs_task().pretrained_model(), reference)
    assert trainings == [1]


# round trip and key -------------------------------------------------------------------------
def test_pretrained_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path))
    first = blobs_task().pretrained_model()
    assert blobs_task().cache_path().parent == tmp_path / "pretrained"
    assert blobs_task().cache_path().exists()
    sidecar = json.loads(blobs_task().cache_path().with_suffix(".json").read_text())
    data = blobs_task().cache_path().read_bytes()
    assert sidecar == {
        "format": 2,
        "key": blobs_task().cache_key(),
        "task": "blobs",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }

    def fail(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded")

    monkeypatch.setattr(task_module, "train_dense", fail)
    second = blobs_task().pretrained_model()
    assert first.state_dict().keys() == second.state_dict().keys()
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert blobs_task(seed=1).cache_path() != blobs_task().cache_path()
    assert blobs_task(epochs=4).cache_key() != blobs_task().cache_key()


def test_data_fingerprint_keys_the_cache(tmp_path, monkeypatch, trainings):
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path))

    def register(shift: float) -> None:
        prune_gym.tasks.register_task(
            "blobs-fingerprint",
            lambda: blobs_task(load_data=lambda: load_blobs(shift)),
            overwrite=True,
        )

    register(0.0)
    first = prune_gym.tasks.make("blobs-fingerprint")
    first.pretrained_model()
    register(0.5)  # the same name, model and recipe over other data
    moved = prune_gym.tasks.make("blobs-fingerprint")
    assert moved.cache_key() != first.cache_key()
    assert moved.data_fingerprint() != first.data_fingerprint()
    moved.pretrained_model()
    assert trainings == [1, 1]  # the stale weights were not reused
    register(0.0)
    again = prune_gym.tasks.make("blobs-fingerprint")
    assert again.data_fingerprint() == first.data_fingerprint()
    assert re.fullmatch("[0-9a-f]{64}", again.data_fingerprint())
    assert again.cache_key() == first.cache_key()
    again.pretrained_model()
    assert trainings == [1, 1]  # loaded from the cache


# damaged files ------------------------------------------------------------------------------
TRUNCATIONS = [("bytes", 0), ("bytes", 1)] + [("sixteenths", i) for i in range(1, 16)]
TRUNCATIONS += [("last-byte", -1)]
EDITS = list(range(30))


@pytest.mark.parametrize(("unit", "amount"), TRUNCATIONS, ids=[f"{u}{a}" for u, a in TRUNCATIONS])
def test_truncated_weights_are_detected(cached, pristine, trainings, unit, amount):
    data = cached.read_bytes()
    size = {"bytes": amount, "sixteenths": len(data) * amount // 16}.get(unit, len(data) - 1)
    cached.write_bytes(data[:size])
    assert_detected_and_repaired(cached, trainings, pristine[1])


@pytest.mark.parametrize("seed", EDITS)
def test_edited_byte_in_weights_is_detected(cached, pristine, trainings, seed):
    data = bytearray(cached.read_bytes())
    generator = random.Random(seed)
    position = generator.randrange(len(data))
    data[position] = generator.choice([b for b in range(256) if b != data[position]])
    cached.write_bytes(bytes(data))
    assert_detected_and_repaired(cached, trainings, pristine[1])


@pytest.mark.parametrize("how", ["missing", "garbage", "wrong-digest", "wrong-size", "list"])
def test_damaged_sidecar_is_detected(cached, pristine, trainings, how):
    sidecar = cached.with_suffix(".json")
    if how == "missing":
        sidecar.unlink()
    elif how == "garbage":
        sidecar.write_bytes(b"\xff{not json")
    elif how == "list":
        sidecar.write_text("[]")
    else:
        record = json.loads(sidecar.read_text())
        record["sha256" if how == "wrong-digest" else "bytes"] = (
            "0" * 64 if how == "wrong-digest" else 1
        )
        sidecar.write_text(json.dumps(record))
    assert_detected_and_repaired(cached, trainings, pristine[1])


def corrupt(path, how: str) -> None:
    """Damage a cache file the way a crash, a disk error or a stale version would."""
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 20)
    else:
        payload = torch.load(path, weights_only=True)
        if how == "other-key":
            payload["key"] = "0" * 64
        else:
            payload["state_dict"]["0.weight"] = torch.zeros(2, 2)
        torch.save(payload, path)


@pytest.mark.parametrize("how", ["truncated", "garbage", "other-key", "wrong-shape"])
def test_unusable_cache_file_is_reported_and_retrained(cached, pristine, trainings, how):
    corrupt(cached, how)
    assert_detected_and_repaired(cached, trainings, pristine[1])


def rewrite_payload(path, how: str) -> None:
    """Store a well-formed file (with a matching sidecar) that does not fit the task."""
    from prune_gym.tasks import cache

    payload = torch.load(path, weights_only=True)
    if how == "other-key":
        payload["key"] = "0" * 64
    elif how == "wrong-shape":
        payload["state_dict"]["0.weight"] = torch.zeros(2, 2)
    elif how == "old-format":
        payload["format"] = 1
    else:
        payload["state_dict"] = [1, 2, 3]
    cache.write_weights(path, payload)


@pytest.mark.parametrize("how", ["other-key", "wrong-shape", "old-format", "state-not-a-dict"])
def test_well_formed_file_for_something_else_is_retrained(cached, pristine, trainings, how):
    rewrite_payload(cached, how)
    assert_detected_and_repaired(cached, trainings, pristine[1])


def test_garbage_with_a_matching_sidecar_is_retrained(cached, pristine, trainings):
    from prune_gym.tasks import cache

    garbage = b"\x00not a checkpoint" * 20
    cached.write_bytes(garbage)
    record = json.loads(cached.with_suffix(".json").read_text())
    record.update(bytes=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
    cached.with_suffix(".json").write_text(json.dumps(record))
    assert record["format"] == cache.CACHE_FORMAT
    assert_detected_and_repaired(cached, trainings, pristine[1])


def test_cache_path_that_is_a_directory_is_left_alone(tmp_path, monkeypatch, pristine, trainings):
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path))
    path = blobs_task().cache_path()
    (path / "keep-me").mkdir(parents=True)
    with pytest.warns(UserWarning, match=re.escape(str(path)) + ".*not cached"):
        model = blobs_task().pretrained_model()
    assert trainings == [1]
    assert_same_weights(model, pristine[1])
    assert (path / "keep-me").is_dir()
    with pytest.warns(UserWarning, match="not cached"):
        blobs_task().pretrained_model()
    assert trainings == [1, 1]


def test_cache_that_cannot_be_written_is_warned_about(tmp_path, monkeypatch, pristine, trainings):
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(tmp_path))
    sidecar = blobs_task().cache_path().with_suffix(".json")
    sidecar.mkdir(parents=True)  # os.replace cannot put the sidecar there
    with pytest.warns(
        UserWarning, match=re.escape(str(blobs_task().cache_path())) + ".*not cached"
    ):
        model = blobs_task().pretrained_model()
    assert trainings == [1]
    assert_same_weights(model, pristine[1])
    assert sidecar.is_dir()


# concurrency --------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import hashlib, pathlib, sys, time
    import torch
    torch.set_num_threads(1)
    import prune_gym.tasks
    from prune_gym.tasks import task as task_module

    original = task_module.train_dense
    def train_dense(*args, **kwargs):
        print("TRAINED", flush=True)
        return original(*args, **kwargs)
    task_module.train_dense = train_dense

    task = prune_gym.tasks.make("digits-mlp")
    task.cache_key()  # loads the data before the start line
    folder = pathlib.Path(sys.argv[1])
    (folder / f"ready-{sys.argv[2]}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
    digest = hashlib.sha256()
    for name, value in sorted(task.pretrained_model().state_dict().items()):
        digest.update(name.encode() + value.numpy().tobytes())
    print("HASH", digest.hexdigest(), flush=True)
    """
)


@pytest.mark.slow
def test_concurrent_processes_train_once(tmp_path):
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PRUNE_GYM_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(barrier), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        assert all(child.poll() is None for child in children), "a child process failed"
        time.sleep(0.05)
    (barrier / "go").touch()
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in outputs]
    lines = [out.split() for out, _ in outputs]
    assert sum(words.count("TRAINED") for words in lines) == 1
    hashes = {words[words.index("HASH") + 1] for words in lines}
    assert len(hashes) == 1


# data checks and the split cache ------------------------------------------------------------
def test_single_class_training_data_is_rejected():
    def one_class() -> tuple[Split, Split]:
        return Split(torch.randn(20, 4), torch.full((20,), 2)), Split(
            torch.randn(5, 4), torch.arange(5) % 3
        )

    task = Task("one-class", lambda: nn.Linear(4, 3), one_class, TrainRecipe(), (4,), 3)
    with pytest.raises(ValueError, match=r"'one-class'.*only label 2"):
        task.splits  # noqa: B018  (loads the data)


def test_split_cache_is_a_bounded_lru():
    loads: list[int] = []

    def task(index: int) -> Task:
        def load() -> tuple[Split, Split]:
            loads.append(index)
            return load_blobs()

        return Task(
            "lru", lambda: nn.Linear(4, 3), load, TrainRecipe(), (4,), 3, data_key=("lru", index)
        )

    first = task(0)
    kept = first.splits["train"]
    for index in range(1, 4):
        task(index).splits  # noqa: B018
    assert task(0).splits["train"] is kept  # shared while cached
    task(4).splits  # noqa: B018  (evicts the least recently used: 1)
    assert loads == [0, 1, 2, 3, 4]
    assert task(0).splits["train"] is kept
    task(1).splits  # noqa: B018
    assert loads == [0, 1, 2, 3, 4, 1]
    assert len(task_module._SPLIT_CACHE) <= 4
    assert first.splits["train"] is kept  # a task keeps its own splits after eviction
    for index in (5, 6, 7):  # evicts 3, 4 and then 0
        task(index).splits  # noqa: B018
    assert task(0).splits["train"] is not kept and loads[-1] == 0
