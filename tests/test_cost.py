"""count_costs against torch.utils.flop_counter, and nonzero/structural accounting."""

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prune_gym.pruning import (
    Budget,
    CostModel,
    MaskSet,
    count_costs,
    measure_latency,
    prunable_layers,
)
from prune_gym.tasks.models import lenet5, resnet20

MODELS = {
    "lenet5": (lenet5, (1, 28, 28)),
    "resnet20": (resnet20, (3, 32, 32)),
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (3, 64, 64)),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), (3, 64, 64)),
}


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> float:
    """MACs per sample of ``model(x)`` by ``torch.utils.flop_counter`` (FLOPs / 2)."""
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2 / x.shape[0]


@pytest.mark.parametrize("name", MODELS)
def test_dense_macs_agree_with_flop_counter(name):
    factory, shape = MODELS[name]
    model = factory().eval()
    x = torch.randn(2, *shape)
    reference = flop_counter_macs(model, x)
    costs = count_costs(model, x)
    assert costs["macs_dense"] == pytest.approx(reference, rel=0.01)
    assert costs["params_dense"] == sum(m.weight.numel() for _, m in prunable_layers(model))


class SharedLayerTwice(nn.Module):
    """One Linear applied twice in ``forward`` (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.shared(torch.relu(self.shared(x)))))


class ConvLoop(nn.Module):
    """A conv applied a fixed 3 times in a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 6 * 6, 2)

    def forward(self, x):
        x = self.stem(x)
        for _ in range(3):
            x = torch.relu(self.block(x))
        return self.head(x.flatten(1))


class DataDependentLoop(nn.Module):
    """A Linear applied as many times as the input's sign says: no fixed cost."""

    def __init__(self) -> None:
        super().__init__()
        self.step = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for _ in range(1 + int(x.sum() > 0)):
            x = self.step(x)
        return self.head(x)


@pytest.mark.parametrize(
    ("factory", "shape", "calls"),
    [
        (SharedLayerTwice, (8,), {"shared": (2, 2 * 8 * 8)}),
        (ConvLoop, (1, 6, 6), {"block": (3, 3 * (4 * 4 * 3 * 3) * (6 * 6))}),
    ],
)
def test_a_layer_applied_several_times_costs_every_call(factory, shape, calls):
    model = factory().eval()
    x = torch.randn(2, *shape)
    reference = flop_counter_macs(model, x)
    cost_model = CostModel(model, x)
    assert cost_model.macs_dense == pytest.approx(reference)
    by_name = {layer.name: layer for layer in cost_model.layers}
    for name, (count, macs) in calls.items():
        assert (by_name[name].calls, by_name[name].macs) == (count, macs)
    # pruning the shared layer saves its MACs at every call
    masks = MaskSet.from_ratios(model, {name: 0.5 for name in calls})
    saved = cost_model.macs_dense - count_costs(model, x, masks)["macs_nonzero"]
    assert saved == pytest.approx(sum(by_name[name].macs for name in calls) / 2, rel=0.02)


def test_a_layer_whose_number_of_calls_depends_on_the_data_is_refused():
    with pytest.raises(ValueError, match=r"'step' ran 1 time\(s\) on the example input and 2"):
        CostModel(DataDependentLoop(), torch.zeros(1, 4) - 1)


def test_nonzero_costs_scale_each_layer_by_its_density():
    model = lenet5()
    x = torch.zeros(1, 1, 28, 28)
    masks = MaskSet.from_ratios(model, {name: 0.5 for name, _ in prunable_layers(model)})
    costs = count_costs(model, x, masks)
    for row in costs["layers"]:
        assert row["macs_nonzero"] == pytest.approx(row["macs_dense"] * row["density"])
    assert costs["params_nonzero"] == masks.num_kept()
    assert costs["macs_nonzero"] == pytest.approx(0.5 * costs["macs_dense"], rel=1e-3)


def test_costs_default_to_the_masks_the_model_carries():
    model = lenet5()
    x = torch.zeros(1, 1, 28, 28)
    masks = MaskSet.global_threshold(model, 0.9)
    expected = count_costs(model, x, masks)
    masks.apply(model)
    assert count_costs(model, x)["params_nonzero"] == expected["params_nonzero"]


def test_structural_macs_count_only_channels_removed_in_every_coupled_layer():
    model = resnet20()
    x = torch.zeros(1, 3, 32, 32)
    cost_model = CostModel(model, x)
    # one conv inside a block: its output and the next conv's input shrink by half
    masks = MaskSet.from_ratios(
        model, {"layer1.0.conv1": 0.5}, structure="channel", example_input=x
    )
    rows = {row["name"]: row for row in cost_model.costs(masks)["layers"]}
    assert rows["layer1.0.conv1"]["macs_structural"] == rows["layer1.0.conv1"]["macs_dense"] / 2
    assert rows["layer1.0.conv2"]["macs_structural"] == rows["layer1.0.conv2"]["macs_dense"] / 2
    # a conv on the residual stream alone: zero rows, but no channel can be removed
    masks = MaskSet.from_ratios(
        model, {"layer1.0.conv2": 0.5}, structure="channel", example_input=x
    )
    costs = cost_model.costs(masks)
    assert costs["macs_structural"] == costs["macs_dense"]
    assert costs["macs_nonzero"] < costs["macs_dense"]


def test_measure_latency_returns_a_positive_median():
    model = nn.Sequential(nn.Linear(32, 32))
    assert measure_latency(model, torch.zeros(1, 32), repeats=5) > 0
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, torch.zeros(1, 32), repeats=0)


def test_budget_parsing_and_validation():
    budget = Budget.parse("flops=0.5 + params=0.3")
    assert budget.limits == {"flops": 0.5, "params": 0.3}
    assert budget.violation({"flops": 0.6, "params": 0.2}) == pytest.approx(0.1)
    assert budget.is_met({"flops": 0.5, "params": 0.3})
    for bad in ({"flops": 0.0}, {"flops": 1.5}, {"flops": float("nan")}, {"energy": 0.5}, {}):
        with pytest.raises(ValueError):
            Budget(bad)
    with pytest.raises(ValueError, match="resource=fraction"):
        Budget.parse("flops0.5")
    assert Budget.parse(budget.label) == budget and budget.label == "flops=0.5+params=0.3"
    with pytest.raises(ValueError, match=r"join one budget's resources with '\+'"):
        Budget.parse("flops=0.5,params=0.3")  # a comma separates budgets (bench --budgets)


def test_budget_violation_ignores_float_round_off_only():
    budget = Budget({"params": 1 - 0.9})  # 0.09999999999999998
    assert budget.violation({"params": 0.1}) == 0.0
    assert budget.is_met({"params": 0.1})
    assert budget.violation({"params": 0.1 + 1e-9}) == pytest.approx(1e-9 + 2e-17)


def test_used_fractions_equal_the_evaluated_totals():
    model = resnet20()
    x = torch.zeros(1, 3, 32, 32)
    cost_model = CostModel(model, x)
    masks = MaskSet.global_threshold(model, 0.7)
    costs = cost_model.costs(masks)
    assert cost_model.used_fractions(masks) == {
        "params": costs["params_nonzero"] / costs["params_dense"],
        "flops": costs["macs_nonzero"] / costs["macs_dense"],
    }
    channels = MaskSet.from_ratios(
        model, {"layer1.0.conv1": 0.5}, structure="channel", example_input=x
    )
    costs = cost_model.costs(channels)
    assert cost_model.used_fractions(channels, structural=True) == {
        "params": costs["params_structural"] / costs["params_dense"],
        "flops": costs["macs_structural"] / costs["macs_dense"],
    }


def test_fractions_removing_prices_counts_exactly_as_used_fractions_prices_masks():
    model = lenet5()
    cost_model = CostModel(model, torch.zeros(1, 1, 28, 28))
    generator = torch.Generator().manual_seed(0)
    masks = MaskSet(
        {
            name: torch.rand(m.weight.shape, generator=generator) > 0.3 * (i + 1)
            for i, (name, m) in enumerate(prunable_layers(model))
        }
    )
    removed = {name: int((~mask).sum()) for name, mask in masks.masks.items()}
    assert cost_model.fractions_removing(removed) == cost_model.used_fractions(masks)
    assert cost_model.fractions_removing({}) == {"params": 1.0, "flops": 1.0}
