"""Small user-style tasks shared by the tests: they train in a fraction of a second."""

import torch
import torch.nn.functional as F
from torch import nn

from prune_gym.tasks import Split, Task, TrainRecipe


def load_blobs(shift: float = 0.0) -> tuple[Split, Split]:
    """Three well separated Gaussian blobs in 4-d (moved by ``shift``): 240 train, 60 test."""
    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(300) % 3
    inputs = torch.randn(300, 4, generator=generator) + 4 * F.one_hot(targets, 4).float() + shift
    return Split(inputs[:240], targets[:240]), Split(inputs[240:], targets[240:])


def blobs_task(seed: int = 0, load_data=load_blobs, **recipe) -> Task:
    """A user-style custom task: tiny MLP on random blobs."""
    return Task(
        "blobs",
        build_model=lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)),
        load_data=load_data,
        recipe=TrainRecipe(**{"lr": 1e-2, "batch_size": 32, "epochs": 3, **recipe}),
        input_shape=(4,),
        num_classes=3,
        seed=seed,
    )
