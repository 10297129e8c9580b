"""A pretrained-weights cache this process cannot write: a warm one loads, any other warns.

Read-only is made real, not mocked: the cache's folders are chmod 555 and, since root
ignores permission bits, a test run as root drops its effective uid to ``nobody`` while the
cache is used (``os.seteuid``, undone afterwards). The kernel then refuses every write, as
on a read-only share: mkdir, the lock file, temporary files, whichever code issues them
(filelock included), which monkeypatching ``os.access`` or ``open`` would not cover.
"""

import re
import warnings
from pathlib import Path

import pytest
import torch
from fs_helpers import read_only
from toy_tasks import blobs_task


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_warm_read_only_cache_loads_without_training(shared_tmp, monkeypatch, trainings):
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(shared_tmp / "cache"))
    trained = blobs_task().pretrained_model().state_dict()
    assert trainings == [1]
    before = contents(shared_tmp / "cache")
    with read_only(shared_tmp / "cache"), warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = blobs_task().pretrained_model().state_dict()
    assert trainings == [1]  # loaded, not trained again
    assert all(torch.equal(loaded[name], value) for name, value in trained.items())
    assert contents(shared_tmp / "cache") == before


@pytest.mark.parametrize("state", ["empty", "damaged"])
def test_an_unwritable_cache_warns_naming_its_folder_and_trains_in_memory(
    shared_tmp, monkeypatch, trainings, state
):
    cache = shared_tmp / "cache"
    monkeypatch.setenv("PRUNE_GYM_CACHE", str(cache))
    folder = blobs_task().cache_path().parent
    if state == "empty":
        cache.mkdir()  # not even its pretrained/ folder can be made
    else:
        blobs_task().pretrained_model()
        blobs_task().cache_path().write_bytes(b"\x00not a checkpoint")
        trainings.clear()
    before = contents(cache)
    for attempt in (1, 2):  # nothing cached: each new task trains again, with a warning
        with read_only(cache), pytest.warns(UserWarning) as caught:
            model = blobs_task().pretrained_model()
        assert trainings == [1] * attempt
        (warning,) = caught
        assert re.search(re.escape(str(folder)) + ".*cannot be written", str(warning.message))
        assert "trained in memory" in str(warning.message)
        assert warning.filename == __file__  # points at the caller
        inputs = torch.eye(4) * 4
        assert (model(inputs).argmax(1)[:3] == torch.arange(3)).all()  # it did learn
    assert contents(cache) == before
