"""Model factories: architectures, parameter counts, layer names, traceability."""

import pytest
import torch
from torch import nn

from prune_gym.pruning.layers import prunable_layers
from prune_gym.tasks import models


def prunable_weights(model: nn.Module) -> int:
    return sum(module.weight.numel() for _, module in prunable_layers(model))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_lenet_300_100_has_266200_prunable_weights():
    model = models.lenet_300_100()
    assert prunable_weights(model) == 266_200
    assert [name for name, _ in prunable_layers(model)] == ["fc1", "fc2", "fc3"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_lenet5_is_the_classic_architecture():
    model = models.lenet5()
    shapes = {name: tuple(m.weight.shape) for name, m in prunable_layers(model)}
    assert shapes == {
        "conv1": (6, 1, 5, 5),
        "conv2": (16, 6, 5, 5),
        "fc1": (120, 400),
        "fc2": (84, 120),
        "fc3": (10, 84),
    }
    assert num_params(model) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_resnet20_size_and_option_b_shortcuts():
    model = models.resnet20()
    assert num_params(model) == 272_474  # ~0.27M; option-B shortcuts add 2,752
    convs = [m for _, m in prunable_layers(model) if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 18 + 2  # stem, 9 blocks x 2, two 1x1 shortcuts
    assert sum(m.kernel_size == (1, 1) for m in convs) == 2
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert models.resnet20(num_classes=100)(torch.zeros(1, 3, 32, 32)).shape == (1, 100)


def test_resnet20_channels_are_removable_by_torch_pruning():
    import torch_pruning as tp

    model = models.resnet20().eval()
    example = torch.zeros(1, 3, 32, 32)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    group = graph.get_pruning_group(model.layer2[0].conv1, tp.prune_conv_out_channels, [0, 1])
    group.prune()
    assert model.layer2[0].conv1.out_channels == 30
    assert model(example).shape == (1, 10)


def test_vgg16_cifar_has_13_bn_convs_and_one_linear():
    model = models.vgg16_cifar()
    layers = prunable_layers(model)
    assert sum(isinstance(m, nn.Conv2d) for _, m in layers) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13
    assert layers[-1][0] == "fc" and isinstance(layers[-1][1], nn.Linear)
    assert num_params(model) == pytest.approx(14.7e6, rel=0.01)


def test_digits_models_shapes_and_layers():
    cnn = models.digits_cnn()
    kinds = [type(m) for m in cnn]
    assert nn.Conv2d in kinds and nn.BatchNorm2d in kinds
    assert [name for name, _ in prunable_layers(cnn)] == ["conv1", "conv2", "fc1", "fc2"]
    assert isinstance(cnn[-1], nn.Linear) and cnn.fc1.in_features == 512
    mlp = models.digits_mlp()
    assert [name for name, _ in prunable_layers(mlp)] == ["fc1", "fc2", "fc3"]
    for model in (cnn, mlp):
        assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_mlp_validates_sizes():
    assert [m.out_features for m in models.mlp((5, 7, 3)) if isinstance(m, nn.Linear)] == [7, 3]
    with pytest.raises(ValueError, match=r"sizes=\(5,\)"):
        models.mlp((5,))


def test_planted_teacher_exact_density_and_reproducible():
    teacher, masks, support = models.planted_teacher(density=0.1, seed=3, support_size=None)
    again, masks_again, _ = models.planted_teacher(density=0.1, seed=3, support_size=None)
    student_names = [name for name, _ in prunable_layers(models.teacher_mlp())]
    assert list(masks) == student_names == ["fc1", "fc2", "fc3"]
    assert support.tolist() == list(range(64))  # no support: every input is read
    for name, mask in masks.items():
        layer = getattr(teacher, name)
        assert int(mask.sum()) == round(0.1 * mask.numel())
        assert torch.equal(layer.weight != 0, mask)
        assert torch.equal(mask, masks_again[name])
        assert torch.equal(layer.weight, getattr(again, name).weight)
    other, _, _ = models.planted_teacher(density=0.1, seed=4, support_size=None)
    assert not torch.equal(other.fc1.weight, teacher.fc1.weight)
    with pytest.raises(ValueError, match=r"density=1\.5"):
        models.planted_teacher(density=1.5)
    with pytest.raises(ValueError, match="support_size=65"):
        models.planted_teacher(support_size=65)


def test_planted_teacher_reads_only_its_input_support():
    teacher, masks, support = models.planted_teacher(seed=3)
    _, _, again = models.planted_teacher(seed=3)
    assert len(support) == 8 and torch.equal(support, again)
    read = torch.nonzero(masks["fc1"].any(dim=0)).flatten()
    assert torch.equal(read, support)  # the first layer reads the support and nothing else
    assert bool(masks["fc1"][:, support].all())
    assert int(masks["fc2"].sum()) == round(0.1 * 64 * 64)
    inputs = torch.randn(100, 64, generator=torch.Generator().manual_seed(0))
    shuffled = inputs.clone()
    outside = [i for i in range(64) if i not in set(support.tolist())]
    shuffled[:, outside] = torch.randn(100, len(outside))
    with torch.no_grad():  # the labels ignore every input outside the support
        assert torch.equal(teacher(inputs).argmax(dim=1), teacher(shuffled).argmax(dim=1))


def test_planted_teacher_labels_are_balanced():
    teacher, _, _ = models.planted_teacher()
    inputs = torch.randn(5000, 64, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        counts = torch.bincount(teacher(inputs).argmax(dim=1), minlength=10)
    assert counts.min() > 0.07 * 5000 and counts.max() < 0.13 * 5000
