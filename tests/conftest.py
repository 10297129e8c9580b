"""Shared pytest fixtures."""

import pytest
import torch

# Two threads on a two-core machine shared with other processes make small models
# many times slower (threads wait on each other); one thread gives the same numbers.
torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _prune_gym_cache(tmp_path_factory):
    """Point $PRUNE_GYM_CACHE at a per-session temporary folder (never the user's cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRUNE_GYM_CACHE", str(tmp_path_factory.mktemp("prune_gym_cache")))
        yield


@pytest.fixture(scope="session")
def smoke_output(tmp_path_factory):
    """The smoke suite run once through the CLI, as CI users run it: (folder, exit code)."""
    from prune_gym.cli import main

    out = tmp_path_factory.mktemp("smoke")
    code = main(["bench", "--suite", "smoke", "--out", str(out)])
    return out, code
