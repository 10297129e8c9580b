"""The text corpus of the language-model tasks, shipped with the package: no download.

The corpus is the Python 3.11.7 Language Reference as CPython ships it (``pydoc_data``),
stored gzipped in ``prune_gym/tasks/corpus/`` under the PSF License (``LICENSE-PSF.txt``
beside it). Every install reads the same bytes, and a sha256 check makes sure of it:
``CORPUS_SHA256`` keys the tasks' cached weights and every benchmark record through the
tasks' ``data_options``.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import torch

from prune_gym.checks import check_int, check_number
from prune_gym.tasks.data import Split

CORPUS_FILE = Path(__file__).with_name("corpus") / "python-reference.txt.gz"
#: sha256 of the corpus's UTF-8 bytes (466,273 of them), checked at every load.
CORPUS_SHA256 = "71f2ff5d99bdc1f9c48c5c2353ad138201c5ca1c377e0226857ef8fa89b8bcee"
#: bytes are the tokens: a vocabulary of 256.
VOCAB_SIZE = 256
#: seed of the fixed test windows, the same for every task seed (like MNIST's test set).
CORPUS_SPLIT_SEED = 0


def corpus_bytes(path: Path = CORPUS_FILE) -> bytes:
    """The corpus's bytes; ``ValueError`` if they are not the ones the package shipped."""
    with gzip.open(path, "rb") as file:
        data = file.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(
            f"corpus {path} has sha256 {digest}, not the shipped {CORPUS_SHA256}: the file "
            "is corrupt or was replaced; reinstall prune-gym"
        )
    return data


def load_corpus_windows(
    context: int = 64, test_fraction: float = 0.1, path: Path = CORPUS_FILE
) -> tuple[Split, Split]:
    """``(train, test)`` next-token windows of the corpus, as a ``Task`` loads its data.

    The byte stream is cut into non-overlapping windows of ``context + 1`` bytes, so no
    byte is both in a test window and a training one; a window's inputs are its first
    ``context`` bytes and its targets the ``context`` bytes after each. The test windows
    are a fixed random ``test_fraction`` of them (seed ``CORPUS_SPLIT_SEED``).
    """
    context = check_int(context, "context", 1)
    test_fraction = check_number(
        test_fraction, "test_fraction", 0, 1, low_open=True, high_open=True
    )
    tokens = torch.frombuffer(bytearray(corpus_bytes(path)), dtype=torch.uint8).long()
    count = len(tokens) // (context + 1)
    windows = tokens[: count * (context + 1)].view(count, context + 1)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(CORPUS_SPLIT_SEED))
    test_count = round(test_fraction * count)
    train_index = torch.sort(order[test_count:]).values
    test_index = torch.sort(order[:test_count]).values

    def split(index: torch.Tensor) -> Split:
        return Split(windows[index, :-1].contiguous(), windows[index, 1:].contiguous())

    return split(train_index), split(test_index)
