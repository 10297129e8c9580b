"""A zoo of torchvision models with random weights: MACs, channel groups and export.

For every CNN and uniform 30/50/70% channel ratios on every layer but the classifier:
each of those layers loses channels in the exported model, removing channels saves at
least what zeroing them does (``macs_structural <= macs_nonzero``), the exported model
computes what the masked one does (with BatchNorm statistics away from their initial
values) and its dense MACs are the masked model's ``macs_structural``.
"""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prune_gym.pruning import (
    ChannelStructure,
    CostModel,
    MaskSet,
    compute_scores,
    export_channel_pruned,
    prunable_layers,
)
from prune_gym.pruning.masks import clone_model

#: model -> input side; small inputs keep the zoo fast (every model here accepts 32).
CNNS = {
    "resnet18": 32,
    "resnet50": 32,
    "mobilenet_v2": 32,
    "mobilenet_v3_small": 32,
    "efficientnet_b0": 32,
    "vgg11_bn": 32,
    "densenet121": 32,
    "resnext50_32x4d": 32,  # grouped 3x3 convs (32 groups)
    "regnet_x_400mf": 32,  # grouped convs of width 16
}
RATIOS = (0.3, 0.5, 0.7)


def with_trained_batchnorms(model: nn.Module) -> nn.Module:
    """Running statistics and affine terms away from their initial values, as after training."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(generator=generator)
    return model.eval()


@pytest.fixture(scope="module", params=list(CNNS))
def cnn(request):
    """(model, inputs, cost model) for one zoo CNN, built once for all its checks."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, request.param)(num_classes=10)
    model = with_trained_batchnorms(model)
    side = CNNS[request.param]
    inputs = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    return model, inputs, CostModel(model, inputs[:1])


def test_macs_match_flop_counter(cnn):
    model, inputs, costs = cnn
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs[:1])
    assert costs.macs_dense == pytest.approx(counter.get_total_flops() / 2, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", RATIOS)
def test_uniform_channel_ratios_export_to_the_masked_model(cnn, ratio):
    model, inputs, costs = cnn
    controlled = [n for n in costs.layer_names if n not in costs.channel_structure.output_layers]
    assert len(controlled) == len(costs.layer_names) - 1  # only the classifier is left out
    masks = MaskSet.from_ratios(
        model,
        dict.fromkeys(controlled, ratio),
        structure="channel",
        example_input=inputs[:1],
    )
    masked = masks.apply(clone_model(model))
    exported = export_channel_pruned(masked, masks, inputs[:1])

    widths = {name: module.weight.shape[0] for name, module in prunable_layers(model)}
    exported_widths = {name: module.weight.shape[0] for name, module in prunable_layers(exported)}
    assert [n for n in controlled if exported_widths[n] >= widths[n]] == []
    totals = costs.costs(masks)
    assert totals["macs_structural"] <= totals["macs_nonzero"]
    assert totals["macs_nonzero"] / totals["macs_dense"] == pytest.approx(1 - ratio, abs=0.02)
    with torch.no_grad():
        expected, got = masked(inputs), exported(inputs)
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()), rtol=1e-4)
    assert CostModel(exported, inputs[:1]).macs_dense == totals["macs_structural"]


def test_coupled_layers_rank_channels_per_dependency_group():
    """Layers feeding one residual stream remove the same channels, for any metric."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    structure = ChannelStructure.build(model, x[:1])
    stream = next(g for g in structure.producers if "layer1.0.conv2" in g)
    scores = compute_scores(model, "snip", (x, torch.arange(4)))
    masks = MaskSet.from_ratios(
        model, dict.fromkeys(stream, 0.5), scores, structure="channel", example_input=x[:1]
    )
    removed = {
        name: set(roots[~masks[name].reshape(len(roots), -1).any(dim=1)].tolist())
        for name, roots in stream.items()
    }
    assert all(len(channels) == 32 for channels in removed.values())  # half of 64
    assert len({frozenset(channels) for channels in removed.values()}) == 1
    group = structure.producers.index(stream)
    assert int(structure.removed_channels(masks)[group].sum()) == 32


def test_group_importance_is_the_mean_score_of_the_weights_a_channel_removal_takes():
    """Two convs added together, read by a third: a channel takes 2 rows and 1 column."""

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.a(x) + self.b(x))

    model = Residual()
    structure = ChannelStructure.build(model, torch.zeros(1, 3, 2, 2))
    scores = {name: torch.rand(m.weight.shape) for name, m in prunable_layers(model)}
    shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
    importance = structure.importance(scores, shapes)
    rows = scores["a"].reshape(4, 3).sum(1) + scores["b"].reshape(4, 3).sum(1)
    column = scores["head"].reshape(2, 4).sum(0)
    expected = (rows + column).double() / (3 + 3 + 2)
    assert torch.allclose(importance["a"], expected)
    assert torch.allclose(importance["b"], expected)


def test_a_grouped_conv_loses_the_same_positions_in_every_group():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 3),
    )
    model = with_trained_batchnorms(model)
    x = torch.randn(2, 3, 4, 4)
    structure = ChannelStructure.build(model, x[:1])
    feeding = structure.roots.index("0")
    # channels p and p + 4 sit at position p of the grouped conv's two groups
    assert structure.ties[feeding].tolist()[:4] == structure.ties[feeding].tolist()[4:]
    masks = MaskSet.from_ratios(
        model, {"0": 0.5, "3": 0.5}, structure="channel", example_input=x[:1]
    )
    masked = masks.apply(clone_model(model))
    exported = export_channel_pruned(masked, masks, x[:1])
    assert exported[3].weight.shape == (4, 2, 3, 3) and exported[3].groups == 2
    with torch.no_grad():
        assert torch.allclose(exported(x), masked(x), atol=1e-5)


class ViewShuffle(nn.Module):
    """ShuffleNet's channel shuffle written with view and transpose."""

    def forward(self, x):
        b, c, h, w = x.shape
        return x.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("shuffle", [nn.ChannelShuffle(2), ViewShuffle()], ids=type)
def test_channel_masks_refuse_a_channel_shuffle_naming_the_layer(shuffle):
    """Torch-Pruning maps a shuffle as if channels stayed put; exporting would be wrong."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        shuffle,
        nn.Conv2d(8, 8, 3, padding=1, groups=2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 3),
    ).eval()
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"layers \['0'\]: its channels are reordered"):
        MaskSet.from_ratios(model, {"0": 0.5}, structure="channel", example_input=x)
    # unstructured pruning and costs are unaffected; the shuffled channels never count
    # as removable, so structural MACs stay an upper bound
    masks = MaskSet.from_ratios(model, {"0": 0.5, "3": 0.5})
    totals = CostModel(model, x).costs(masks)
    assert totals["macs_nonzero"] < totals["macs_structural"] <= totals["macs_dense"]


def test_a_model_torch_pruning_cannot_trace_is_refused_for_channels_only():
    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="Torch-Pruning cannot trace the model"):
        MaskSet.from_ratios(model, {"conv1.0": 0.5}, structure="channel", example_input=x)
    costs = CostModel(model, x)
    masks = MaskSet.from_ratios(model, dict.fromkeys(costs.layer_names, 0.5))
    assert costs.costs(masks)["macs_nonzero"] / costs.macs_dense == pytest.approx(0.5, abs=0.01)


def test_a_vit_is_costed_like_flop_counter_and_pruned_unstructured():
    """torchvision's ViT: its Linear and patch-embedding layers; attention is uncounted."""
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    names = [name for name, _ in prunable_layers(model)]
    assert not any("out_proj" in name for name in names)  # attention uses it unhooked
    with pytest.raises(ValueError, match="MultiheadAttention"):
        CostModel(model, x)
    uncounted = ["*.self_attention", "*.self_attention.out_proj", "class_token", "*.pos_embedding"]
    costs = CostModel(model, x, uncounted=uncounted)
    assert costs.macs_dense == pytest.approx(_flops_of_prunable_layers(model, x) / 2, rel=0.01)
    masks = MaskSet.from_ratios(model, dict.fromkeys(names, 0.5))
    masked = masks.apply(clone_model(model))
    with torch.no_grad():
        out = masked(x)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert costs.costs(masks)["macs_nonzero"] == pytest.approx(costs.macs_dense / 2, rel=0.01)


def _flops_of_prunable_layers(model: nn.Module, x: torch.Tensor) -> float:
    """FlopCounterMode's count of each prunable layer run alone on the input it gets."""
    inputs = {}

    def record(module, args, _output):
        inputs[module] = args

    hooks = [module.register_forward_hook(record) for _, module in prunable_layers(model)]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        for module, args in inputs.items():
            module(*args)
    return counter.get_total_flops()
