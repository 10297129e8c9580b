"""A user's own task, metric and env id, registered on import (``--import my_lab``)."""

import gymnasium as gym
import torch
from torch import nn

from prune_gym.pruning import register_metric
from prune_gym.tasks import Split, Task, TrainRecipe, register_task


def sensor_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean(dim=(1, 2)) > x[:, 0, 4:].mean(dim=(1, 2))).long()
    return Split(x[:500], y[:500]), Split(x[500:], y[500:])


def sensor_net():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)
    )


def sensor_task(seed=0):
    recipe = TrainRecipe(optimizer="adam", lr=3e-3, batch_size=50, epochs=2)
    return Task("sensor-cnn", sensor_net, sensor_data, recipe, (1, 8, 8), 2, seed=seed)


register_task("sensor-cnn", sensor_task, overwrite=True)
register_metric(
    "squared",
    lambda model, layers, batch, generator: {n: m.weight.detach() ** 2 for n, m in layers},
    needs_data=False,
    overwrite=True,
)
if "my_lab/SensorGlobal-v0" not in gym.registry:
    gym.register(id="my_lab/SensorGlobal-v0", entry_point="prune_gym.envs:GlobalRatioEnv")
