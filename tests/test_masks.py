"""MaskSet: construction, exact ratios, torch.nn.utils.prune interoperability, enforcement."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from prune_gym.pruning import MaskSet, prunable_layers
from prune_gym.pruning.masks import clone_model, effective_weight
from prune_gym.tasks.models import lenet5, resnet20


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 7), nn.ReLU(), nn.Linear(7, 3))


def test_from_ratios_removes_exactly_round_ratio_times_n_lowest_magnitudes():
    model = small_mlp()
    ratios = {"0": 0.25, "2": 0.5, "4": 1 / 3}
    masks = MaskSet.from_ratios(model, ratios)
    for name, module in prunable_layers(model):
        n = module.weight.numel()
        removed = int((~masks[name]).sum())
        assert removed == round(ratios[name] * n)
        # the removed weights are exactly the lowest magnitudes
        magnitudes = module.weight.detach().abs().flatten()
        threshold = magnitudes.sort().values[removed - 1]
        assert magnitudes[~masks[name].flatten()].max() == threshold
        assert (magnitudes[masks[name].flatten()] > threshold).all()
    sizes = {"0": 200, "2": 140, "4": 21}
    expected = {name: round(ratios[name] * n) / n for name, n in sizes.items()}
    assert masks.ratios() == pytest.approx(expected)


def test_from_ratios_uses_given_scores():
    model = small_mlp()
    scores = {name: -m.weight.detach().abs() for name, m in prunable_layers(model)}
    masks = MaskSet.from_ratios(model, {"0": 0.5}, scores=scores)
    kept = model[0].weight.detach().abs()[masks["0"]]
    dropped = model[0].weight.detach().abs()[~masks["0"]]
    assert kept.max() < dropped.min()  # inverted scores keep the smallest weights


def test_global_threshold_equals_torch_global_unstructured():
    model = lenet5()
    reference = clone_model(model)
    params = [(m, "weight") for _, m in prunable_layers(reference)]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.8)
    ours = MaskSet.global_threshold(model, 0.8)
    theirs = MaskSet.from_model(reference)
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    assert ours.sparsity() == pytest.approx(0.8, abs=1e-5)


def test_apply_follows_torch_prune_convention_and_reapplying_updates_in_place():
    model = small_mlp()
    masks = MaskSet.from_ratios(model, {"0": 0.5, "2": 0.5})
    masks.apply(model)
    layer = model[0]
    assert hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask")
    assert prune.is_pruned(model)
    out = model(torch.randn(4, 10))
    assert out.shape == (4, 3)
    assert torch.equal(layer.weight == 0, ~masks["0"])
    buffer = layer.weight_mask
    denser = MaskSet.from_ratios(model, {"0": 0.1, "2": 0.1})
    denser.apply(model)
    assert layer.weight_mask is buffer  # updated in place, no re-parametrisation
    assert int((layer.weight == 0).sum()) == round(0.1 * 200)


def test_masks_read_back_from_a_model_pruned_by_pytorch():
    model = small_mlp()
    prune.l1_unstructured(model[2], "weight", amount=0.3)
    masks = MaskSet.from_model(model)
    assert masks.densities()["2"] == pytest.approx(1 - round(0.3 * 140) / 140)
    assert masks.densities()["0"] == 1.0


def test_remove_makes_masks_permanent():
    model = small_mlp()
    masks = MaskSet.from_ratios(model, {"4": 0.5})
    masks.apply(model).eval()
    before = model(torch.ones(2, 10))
    masks.remove(model)
    assert not hasattr(model[4], "weight_orig")
    assert isinstance(model[4].weight, nn.Parameter)
    assert int((model[4].weight == 0).sum()) == round(0.5 * 21)
    assert torch.allclose(model(torch.ones(2, 10)), before)


def test_enforce_zeroes_pruned_weights_and_momentum_after_a_step():
    model = small_mlp()
    masks = MaskSet.from_ratios(model, {"0": 0.5, "2": 0.5, "4": 0.5})
    masks.apply(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        optimizer.step()
        masks.enforce(model, optimizer)
    for name, module in prunable_layers(model):
        pruned = ~masks[name]
        assert (module.weight_orig[pruned] == 0).all()
        assert (optimizer.state[module.weight_orig]["momentum_buffer"][pruned] == 0).all()
        assert (optimizer.state[module.weight_orig]["momentum_buffer"][~pruned] != 0).any()


def test_channel_masks_remove_whole_rows_and_zero_batchnorm():
    model = resnet20().eval()
    x = torch.randn(2, 3, 32, 32)
    masks = MaskSet.from_ratios(
        model, {"layer1.0.conv1": 0.5}, structure="channel", example_input=x
    )
    rows = masks["layer1.0.conv1"].reshape(16, -1)
    assert rows.all(dim=1).sum() == 8 and (~rows).all(dim=1).sum() == 8
    assert masks.ratios()["layer1.0.conv1"] == 0.5
    masks.apply(model)
    removed = ~rows.all(dim=1)
    assert (model.layer1[0].bn1.weight[removed] == 0).all()
    features = {}
    model.layer1[0].bn1.register_forward_hook(lambda m, i, o: features.setdefault("bn", o))
    model(x)
    assert (features["bn"][:, removed] == 0).all()


def test_channel_masks_refuse_to_prune_the_output_layer():
    model = resnet20()
    with pytest.raises(ValueError, match="output"):
        MaskSet.from_ratios(
            model, {"fc": 0.5}, structure="channel", example_input=torch.zeros(1, 3, 32, 32)
        )


def test_channel_masks_need_an_example_input():
    with pytest.raises(ValueError, match="example_input"):
        MaskSet.from_ratios(resnet20(), {"conv1": 0.5}, structure="channel")


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5"])
def test_ratio_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="ratio"):
        MaskSet.from_ratios(small_mlp(), {"0": bad})


def test_unknown_layer_and_bad_structure_are_rejected():
    with pytest.raises(ValueError, match="unknown layers"):
        MaskSet.from_ratios(small_mlp(), {"nope": 0.5})
    with pytest.raises(ValueError, match="structure"):
        MaskSet.from_ratios(small_mlp(), {"0": 0.5}, structure="blocks")
    with pytest.raises(ValueError, match="sparsity"):
        MaskSet.global_threshold(small_mlp(), 1.2)


def test_rescoring_a_masked_model_keeps_masks_nested():
    model = small_mlp()
    first = MaskSet.global_threshold(model, 0.5)
    first.apply(model)
    second = MaskSet.global_threshold(model, 0.7)
    for name in first:
        assert not (second[name] & ~first[name]).any()
    assert effective_weight(model[0]).eq(0).sum() == (~first["0"]).sum()


def test_digest_is_equal_for_equal_masks_and_changes_with_one_bit():
    model = lenet5()
    masks = MaskSet.global_threshold(model, 0.7)
    same = MaskSet({name: mask.clone() for name, mask in masks.masks.items()})
    assert masks.digest() == same.digest()
    flipped = {name: mask.clone() for name, mask in masks.masks.items()}
    first = next(iter(flipped))
    flipped[first].view(-1)[5] = ~flipped[first].view(-1)[5]
    assert MaskSet(flipped).digest() != masks.digest()
    channel = MaskSet(masks.masks, structure="channel")
    assert channel.digest() != masks.digest()  # the structure is part of the identity
