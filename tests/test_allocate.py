"""MaskBuilder (cached ranks), uniform and ERK allocations."""

import math

import pytest
import torch
from torch import nn

from prune_gym.pruning import (
    MaskBuilder,
    MaskSet,
    allocate,
    erk_densities,
    prunable_layers,
    uniform_densities,
)
from prune_gym.pruning.allocate import (
    lowest_kept,
    percentile_ranks,
    stable_order,
    stable_ranks,
    whole_weight_sparsity,
)
from prune_gym.tasks.models import lenet5, resnet20


def test_builder_masks_equal_fresh_masks_for_every_ratio():
    model = lenet5()
    builder = MaskBuilder(model)
    for ratio in (0.0, 0.1, 0.5, 0.93, 1.0):
        ratios = {name: ratio for name, _ in prunable_layers(model)}
        cached = builder.from_ratios(ratios)
        fresh = MaskSet.from_ratios(model, ratios)
        assert all(torch.equal(cached[n], fresh[n]) for n in ratios)


def test_builder_global_threshold_hits_exact_sparsity():
    model = lenet5()
    builder = MaskBuilder(model)
    total = sum(m.weight.numel() for _, m in prunable_layers(model))
    for sparsity in (0.0, 0.3, 0.9, 0.99):
        masks = builder.global_threshold(sparsity)
        assert total - masks.num_kept() == round(sparsity * total)


def test_channel_global_threshold_removes_at_least_the_target_in_whole_channels():
    model = resnet20()
    builder = MaskBuilder(model, structure="channel", example_input=torch.zeros(1, 3, 32, 32))
    masks = builder.global_threshold(0.5)
    assert masks.sparsity() >= 0.5
    for name, mask in masks.masks.items():
        rows = mask.reshape(mask.shape[0], -1)
        assert torch.equal(rows.all(dim=1), rows.any(dim=1)), name
    assert masks.densities()["fc"] == 1.0


def test_uniform_densities():
    model = lenet5()
    assert set(uniform_densities(model, 0.75).values()) == {0.25}


def test_erk_densities_keep_exactly_the_target_and_favour_small_layers():
    model = resnet20()
    sizes = {name: m.weight.numel() for name, m in prunable_layers(model)}
    for sparsity in (0.5, 0.9, 0.98):
        densities = erk_densities(model, sparsity)
        kept = sum(densities[n] * sizes[n] for n in sizes)
        assert kept == pytest.approx((1 - sparsity) * sum(sizes.values()), rel=1e-9)
        assert all(0 < d <= 1 for d in densities.values())
    densities = erk_densities(model, 0.9)
    # the 3-channel stem (432 weights) is denser than a 64-channel 3x3 conv (36,864 weights)
    assert densities["conv1"] > densities["layer3.2.conv2"]


def test_erk_on_a_linear_stack_matches_the_closed_form():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 10))
    d = erk_densities(model, 0.9)
    raw = {"0": 200 / 10000, "1": 110 / 1000}
    eps = 0.1 * 11000 / (raw["0"] * 10000 + raw["1"] * 1000)
    assert d == pytest.approx({k: eps * v for k, v in raw.items()})


def test_percentile_ranks_are_scale_free_and_order_preserving():
    scores = {"a": torch.tensor([[3.0, 1e9]]), "b": torch.tensor([1e-9, 2.0])}
    ranks = percentile_ranks(scores)
    assert torch.equal(ranks["a"], torch.tensor([[2 / 3, 1.0]], dtype=torch.float64))
    assert torch.equal(ranks["b"], torch.tensor([0.0, 1 / 3], dtype=torch.float64))
    scaled = percentile_ranks({k: v * 1e6 for k, v in scores.items()})
    assert all(torch.equal(scaled[k], ranks[k]) for k in scores)


def test_builder_reports_unit_counts():
    model = resnet20()
    assert MaskBuilder(model).unit_count("conv1") == 3 * 16 * 9
    channel = MaskBuilder(model, structure="channel", example_input=torch.zeros(1, 3, 32, 32))
    assert channel.unit_count("conv1") == 16


def test_whole_weight_sparsity_never_keeps_a_weight_too_many():
    assert whole_weight_sparsity(0.8, 17024) == 13620 / 17024  # round() would give 13619
    assert whole_weight_sparsity(0.75, 100) == 0.75
    assert 1 - whole_weight_sparsity(1 - 0.9, 38160) <= 0.9


def _lowest_by_score_then_index(score: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask removing the ``count`` lowest (score, position) entries: the reference."""
    flat = score.reshape(-1).tolist()
    order = sorted(range(len(flat)), key=lambda i: (flat[i], i))
    keep = torch.ones(len(flat), dtype=torch.bool)
    keep[order[:count]] = False
    return keep.view(score.shape)


def _tied_scores(layers, values: int, seed: int) -> dict[str, torch.Tensor]:
    """Integer scores in ``[0, values)`` per weight of ``layers``: many ties."""
    generator = torch.Generator().manual_seed(seed)
    return {
        n: torch.randint(0, values, m.weight.shape, generator=generator).float() for n, m in layers
    }


def test_builder_masks_equal_a_sort_by_score_then_position_with_ties_and_pruned_weights():
    model = lenet5()
    layers = prunable_layers(model)
    scores = _tied_scores(layers, 5, seed=0)
    with torch.no_grad():  # already-pruned weights rank below every score
        layers[1][1].weight[:2] = 0.0
    builder = MaskBuilder(model, scores)
    for ratio in (0.05, 0.5, 0.97):
        masks = builder.from_ratios({name: ratio for name, _ in layers})
        for name, module in layers:
            score = scores[name].masked_fill(module.weight == 0, -float("inf"))
            expected = _lowest_by_score_then_index(score, round(ratio * score.numel()))
            assert torch.equal(masks[name], expected), (name, ratio)
    everything = torch.cat(
        [scores[n].masked_fill(m.weight == 0, -float("inf")).reshape(-1) for n, m in layers]
    )
    masks = builder.global_threshold(0.8)
    expected = _lowest_by_score_then_index(everything, round(0.8 * everything.numel()))
    assert torch.equal(torch.cat([masks[n].reshape(-1) for n, _ in layers]), expected)


def test_builder_keeps_at_most_8_bytes_per_weight_and_sorts_only_for_ratios():
    model = resnet20()
    weights = sum(m.weight.numel() for _, m in prunable_layers(model))
    builder = MaskBuilder(model)
    builder.global_threshold(0.9)
    assert builder.nbytes() == 8 * weights  # the float64 scores: a threshold needs no ranks
    builder.from_ratios({name: 0.5 for name in builder.layer_names})
    assert builder.nbytes() == 8 * weights  # int32 ranks, global and within the layer
    channels = MaskBuilder(model, structure="channel", example_input=torch.zeros(1, 3, 32, 32))
    channels.from_ratios({})
    assert channels.nbytes() < 0.1 * weights  # 16 bytes per channel


def _awkward_scores(count: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Many ties, signed zeros, infinities and NaNs among ordinary values."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(-4, 5, (count,), generator=generator).to(dtype) * 0.5
    scores[torch.randint(0, count, (count // 3,), generator=generator)] = torch.randn(
        count // 3, generator=generator
    ).to(dtype)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan], dtype=dtype)
    where = torch.randint(0, count, (count // 5,), generator=generator)
    scores[where] = special[torch.randint(0, 6, (where.numel(),), generator=generator)]
    return scores


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_stable_order_is_a_stable_float_sort(dtype):
    for seed in range(5):
        scores = _awkward_scores(3000, dtype, seed)
        assert torch.equal(stable_order(scores), torch.argsort(scores.double(), stable=True))


@pytest.mark.parametrize("zero_share", [None, 0.3, 0.95, 1.0])
def test_stable_ranks_skip_zeros_and_equal_a_stable_float_sort(zero_share):
    for seed in range(5):
        scores = _awkward_scores(3000, torch.float32, seed)
        if zero_share is None:  # no zero at all: the plain sort
            scores[scores == 0] = 0.25
        else:  # pruned weights: zeros (both signs) at random places
            chosen = torch.rand(3000, generator=torch.Generator().manual_seed(seed)) < zero_share
            scores[chosen] = torch.where(torch.arange(3000) % 2 == 0, 0.0, -0.0)[chosen]
        expected = torch.empty(3000, dtype=torch.int64)
        expected[torch.argsort(scores.double(), stable=True)] = torch.arange(3000)
        assert torch.equal(stable_ranks(scores), expected)


@pytest.mark.parametrize("chunk, sample", [(None, None), (333, 8)])
def test_lowest_kept_removes_the_fewest_lowest_units_that_are_enough(monkeypatch, chunk, sample):
    if chunk:  # many slices, and bucket bounds from a few scores (most beyond them)
        monkeypatch.setattr(allocate, "CACHE_CHUNK", chunk)
        monkeypatch.setattr(allocate, "RANGE_SAMPLE", sample)
    sizes = {"a": 700, "b": 1300, "c": 2000}
    cost = {"a": 1.0, "b": 5.0, "c": 0.25}  # e.g. MACs per weight
    total = sum(sizes.values())
    layer = torch.repeat_interleave(torch.arange(3), torch.tensor(list(sizes.values())))
    for seed in range(4):
        scores = _awkward_scores(total, torch.float64, seed)
        order = torch.argsort(scores, stable=True).tolist()
        for need in (0.0, 1.0, 777.0, 2500.0, 4000.0, 1e9):

            def enough(removed: dict[str, int], need=need) -> bool:
                spent = sum(cost[name] * count for name, count in removed.items())
                return spent >= need or sum(removed.values()) == total

            removed = dict.fromkeys(sizes, 0)
            expected = torch.ones(total, dtype=torch.bool)
            for index in order:
                if enough(removed):
                    break
                removed[list(sizes)[layer[index]]] += 1
                expected[index] = False
            assert torch.equal(lowest_kept(scores, sizes, enough), expected), (seed, need)


def test_least_removal_is_the_same_before_and_after_ranking_and_never_removes_inf():
    model = lenet5()
    layers = prunable_layers(model)
    scores = _tied_scores(layers, 3, seed=1)
    scores["fc3"][0] = math.inf
    unranked = MaskBuilder(model, scores)
    ranked = MaskBuilder(model, scores)
    ranked.from_ratios({})
    for target in (0, 10, 5000, 10**9):

        def enough(removed: dict[str, int], target=target) -> bool:
            return 3 * removed["conv1"] + sum(removed.values()) >= target

        a, b = unranked.least_removal(enough), ranked.least_removal(enough)
        assert all(torch.equal(a[n], b[n]) for n, _ in layers), target
        assert a["fc3"][0].all()
    channels = MaskBuilder(model, structure="channel", example_input=torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="global_threshold"):
        channels.least_removal(lambda removed: True)
