"""Conv1d through every layer of the stack; parameters the costs would miss are refused."""

import gymnasium as gym
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import prune_gym  # noqa: F401  (registers the env ids)
from prune_gym.pruning import (
    CostModel,
    MaskSet,
    available_metrics,
    compute_scores,
    count_costs,
    export_channel_pruned,
    prunable_layers,
)
from prune_gym.pruning.masks import clone_model
from prune_gym.tasks import Split, Task, TrainRecipe


def conv1d_net() -> nn.Module:
    """The MNIST-1D paper's CNN shape: three Conv1d (25 channels, stride 2), then a Linear."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 40)),
        nn.Conv1d(1, 25, 5, stride=2, padding=1),
        nn.BatchNorm1d(25),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(25 * 5, 10),
    )


def with_trained_batchnorm_statistics(model: nn.Module) -> nn.Module:
    """Running statistics away from their initial values, as after training."""
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_(generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(generator=generator)
    return model.eval()


def test_conv1d_layers_are_prunable_and_costed_like_flop_counter():
    model = conv1d_net().eval()
    x = torch.randn(3, 40)
    assert [name for name, _ in prunable_layers(model)] == ["1", "4", "6", "9"]
    with FlopCounterMode(display=False) as counter:
        model(x)
    costs = count_costs(model, x[:1])
    assert costs["macs_dense"] == counter.get_total_flops() / 2 / x.shape[0]
    assert costs["params_dense"] == sum(m.weight.numel() for _, m in prunable_layers(model))
    conv = next(row for row in costs["layers"] if row["name"] == "4")
    assert conv["kind"] == "conv" and conv["macs_dense"] == 25 * 25 * 3 * 10  # 10 positions
    layer = next(layer for layer in CostModel(model, x[:1]).layers if layer.name == "4")
    assert layer.kernel_size == (3,) and layer.stride == (2,) and layer.output_size == (25, 10)


@pytest.mark.parametrize("metric", available_metrics())
def test_every_metric_scores_conv1d_weights(metric):
    model = conv1d_net().eval()
    x = torch.randn(20, 40, generator=torch.Generator().manual_seed(0))
    scores = compute_scores(model, metric, (x, torch.arange(20) % 10))
    for name, module in prunable_layers(model):
        assert scores[name].shape == module.weight.shape
        assert torch.isfinite(scores[name]).all()


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_conv1d_channel_export_matches_the_masked_model(ratio):
    torch.manual_seed(0)
    model = with_trained_batchnorm_statistics(conv1d_net())
    x = torch.randn(4, 40)
    ratios = {name: ratio for name in ("1", "4", "6")}
    masks = MaskSet.from_ratios(model, ratios, structure="channel", example_input=x[:1])
    masked = masks.apply(clone_model(model))
    exported = export_channel_pruned(masked, masks, x[:1])
    with torch.no_grad():
        assert torch.allclose(exported(x), masked(x), atol=1e-5)
    kept = 25 - round(ratio * 25)  # round(ratio * n) channels removed
    assert [m.out_channels for m in exported.modules() if isinstance(m, nn.Conv1d)] == [kept] * 3
    structural = count_costs(model, x[:1], masks)
    assert count_costs(exported, x[:1])["macs_dense"] == structural["macs_structural"]
    assert structural["macs_structural"] <= structural["macs_nonzero"]


def conv1d_task(seed: int = 0) -> Task:
    """A user's Conv1d task on random 40-sample signals (10 classes)."""

    def data():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(600, 40, generator=generator)
        y = torch.arange(600) % 10
        return Split(x[:500], y[:500]), Split(x[500:], y[500:])

    recipe = TrainRecipe(optimizer="adam", lr=1e-2, batch_size=100, epochs=1)
    return Task("conv1d-user", conv1d_net, data, recipe, (40,), 10, seed=seed)


def test_an_env_on_a_conv1d_model_reports_the_true_sparsity_and_macs():
    env = gym.make("prune_gym/GlobalRatio-v0", task=conv1d_task(), budget={"params": 0.5})
    assert env.unwrapped.layer_names == ["1", "4", "6", "9"]
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    model = env.unwrapped.context.model
    weights = [module.weight for _, module in prunable_layers(model)]
    true_sparsity = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert info["sparsity"] == pytest.approx(true_sparsity)
    assert info["params_ratio"] == pytest.approx(1 - true_sparsity)
    macs = CostModel(model, torch.zeros(1, 40)).macs_dense
    assert macs == env.unwrapped.context.cost_model.macs_dense > 25 * 25 * 3 * 10


class RecurrentNet(nn.Module):
    """An LSTM with a Linear head and a learned scale: two modules costs cannot count."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 64, batch_first=True)
        self.head = nn.Linear(64, 2)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1]) * self.scale


def test_parameters_outside_prunable_layers_are_refused_by_name():
    x = torch.zeros(1, 5, 8)
    lstm_params = sum(p.numel() for p in nn.LSTM(8, 64).parameters())
    with pytest.raises(ValueError, match=rf"'lstm' \(LSTM, {lstm_params:,} parameters\)") as error:
        count_costs(RecurrentNet(), x)
    assert "'scale' (RecurrentNet, 1 parameter)" in str(error.value)
    assert "uncounted=['scale', 'lstm']" in str(error.value)  # in module order
    costs = count_costs(RecurrentNet(), x, uncounted=["lstm", "scale"])
    assert costs["params_dense"] == 64 * 2  # the head's weight, knowingly alone
    with pytest.raises(ValueError, match=r"\['scal'\] match no parameter"):
        count_costs(RecurrentNet(), x, uncounted=["lstm", "scal"])
    with pytest.raises(TypeError, match="list of names"):
        count_costs(RecurrentNet(), x, uncounted="lstm")


def test_biases_normalisation_and_masks_are_not_uncounted_parameters():
    model = conv1d_net()
    masks = MaskSet.from_ratios(
        model, {"4": 0.5}, structure="channel", example_input=torch.zeros(1, 40)
    )
    masks.apply(model)  # weight_orig / bias_orig now live in the masked layer
    nn.utils.prune.l1_unstructured(model[2], "weight", 0.5)  # a masked BatchNorm too
    assert count_costs(model, torch.zeros(1, 40))["params_dense"] > 0


def recurrent_task(uncounted=()) -> Task:
    def data():
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(300, 5, 8, generator=generator)
        y = (x[:, :, 0].mean(dim=1) > 0).long()
        return Split(x[:250], y[:250]), Split(x[250:], y[250:])

    recipe = TrainRecipe(optimizer="adam", lr=1e-2, batch_size=50, epochs=1)
    return Task("recurrent-user", RecurrentNet, data, recipe, (5, 8), 2, uncounted=uncounted)


def test_an_env_refuses_a_model_it_would_cost_wrongly_unless_told():
    with pytest.raises(ValueError, match="'lstm'"):
        gym.make("prune_gym/GlobalRatio-v0", task=recurrent_task(), budget={"params": 0.5})
    env = gym.make(
        "prune_gym/GlobalRatio-v0",
        task=recurrent_task(uncounted=["lstm", "scale"]),
        budget={"params": 0.5},
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert env.unwrapped.layer_names == ["head"]
    assert 0.0 <= info["accuracy"] <= 1.0
