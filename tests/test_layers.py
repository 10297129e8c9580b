"""prunable_layers and ChannelStructure on user, CIFAR and torchvision models."""

import pytest
import torch
import torchvision
from torch import nn

from prune_gym.pruning import ChannelStructure, prunable_layers
from prune_gym.pruning.layers import eval_mode, weight_shapes
from prune_gym.tasks.models import resnet20


class SkipOrder(nn.Module):
    """Registers its layers in the opposite order to the one its forward uses them in."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Linear(8, 3)
        self.early = nn.Linear(4, 8)

    def forward(self, x):
        return self.late(torch.relu(self.early(x)))


def test_prunable_layers_finds_linear_conv_grouped_and_depthwise():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3),
        nn.Conv2d(8, 8, 3, groups=8),
        nn.Conv2d(8, 8, 1, groups=2),
        nn.BatchNorm2d(8),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 2),
    )
    names = [name for name, _ in prunable_layers(model)]
    assert names == ["0", "1", "2", "5"]


def test_prunable_layers_follow_forward_order_with_example_input():
    model = SkipOrder()
    assert [n for n, _ in prunable_layers(model)] == ["late", "early"]
    assert [n for n, _ in prunable_layers(model, torch.zeros(1, 4))] == ["early", "late"]


def test_model_without_prunable_layer_is_rejected():
    with pytest.raises(ValueError, match="no prunable layer"):
        prunable_layers(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_resnet20_residual_convs_share_a_channel_group():
    model = resnet20()
    structure = ChannelStructure.build(model, torch.zeros(1, 3, 32, 32))
    assert structure.output_layers == {"fc"}
    stage1 = next(g for g in structure.producers if "layer1.0.conv2" in g)
    # the stem and every block's second conv feed the same residual stream
    assert {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stage1)
    assert structure.batchnorms["layer1.0.conv1"] == ["layer1.0.bn1"]


def test_torchvision_resnet18_output_layer_and_groups():
    model = torchvision.models.resnet18(num_classes=10)
    structure = ChannelStructure.build(model, torch.zeros(1, 3, 32, 32))
    assert structure.output_layers == {"fc"}
    grouped = [name for group in structure.producers for name in group]
    assert len(grouped) == len(set(grouped)) == len(prunable_layers(model)) - 1


def test_weight_shapes_follow_prunable_layers():
    model = resnet20()
    shapes = weight_shapes(model)
    assert list(shapes) == [name for name, _ in prunable_layers(model)]
    assert shapes["conv1"] == (16, 3, 3, 3) and shapes["fc"] == (10, 64)


def test_eval_mode_restores_every_module_s_own_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model[2].eval()  # a mixed state: the container trains, its BatchNorm does not
    with eval_mode(model):
        assert not any(module.training for module in model.modules())
    assert [module.training for module in model.modules()] == [True, True, True, False]
