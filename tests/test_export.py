"""export_channel_pruned: same outputs as the masked model, MACs equal to macs_structural."""

import pytest
import torch
import torchvision

from prune_gym.pruning import CostModel, MaskSet, export_channel_pruned, prunable_layers
from prune_gym.pruning.masks import clone_model
from prune_gym.tasks.models import resnet20

CASES = {
    "resnet20": (resnet20, (3, 32, 32)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 64, 64)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_exported_model_matches_masked_model(name, ratio):
    factory, shape = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(2, *shape)
    layers = prunable_layers(model)
    ratios = {n: ratio for n, _ in layers[:-1]}  # every layer but the classifier
    masks = MaskSet.from_ratios(model, ratios, structure="channel", example_input=x)
    masked = masks.apply(clone_model(model))
    exported = export_channel_pruned(masked, masks, x)
    with torch.no_grad():
        assert torch.allclose(exported(x), masked(x), atol=1e-5, rtol=1e-4)
    masked_costs = CostModel(masked, x).costs(masks)
    exported_costs = CostModel(exported, x).costs()
    assert exported_costs["macs_dense"] == masked_costs["macs_structural"]
    assert exported_costs["params_dense"] == masked_costs["params_structural"]
    assert exported_costs["macs_dense"] < masked_costs["macs_dense"]
    assert hasattr(masked.conv1, "weight_orig")  # the source model is left masked


def test_export_of_a_mobilenet_keeps_depthwise_convs_consistent():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    ratios = {n: 0.5 for n, _ in prunable_layers(model)[:-1]}
    masks = MaskSet.from_ratios(model, ratios, structure="channel", example_input=x)
    masked = masks.apply(clone_model(model))
    exported = export_channel_pruned(masked, masks, x)
    with torch.no_grad():
        assert torch.allclose(exported(x), masked(x), atol=1e-5, rtol=1e-4)
    assert CostModel(exported, x).macs_dense == CostModel(masked, x).costs(masks)["macs_structural"]
