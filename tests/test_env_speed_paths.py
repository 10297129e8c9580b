"""The one-pass budget search and sort-free mixes give exactly the masks of the old path.

The reference is the straightforward method: a float64 stable argsort of the scores
(weights the net already prunes at -inf), ``round(s * N)`` lowest weights removed, and a
bisection on ``s`` judged by the env's own ``fits`` on real masks.
"""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from prune_gym.envs import metric_mix
from prune_gym.envs.allocations import least_feasible
from prune_gym.envs.metric_mix import mix_percentiles
from prune_gym.pruning import MaskSet, allocate, prunable_layers
from prune_gym.pruning.allocate import whole_weight_sparsity

BUDGETS = [{"flops": 0.5}, {"params": 0.3}, {"flops": 0.4, "params": 0.6}, {"params": 0.02}]
MIXES = [[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.1, 0.6, 0.0, 0.3], [0, 0, 0, 1]]


def _flat(tensors: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([tensors[name].reshape(-1).to(torch.float64) for name in names])


def _percentiles(scores: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """Percentile of every score among all, ties by position (the old ``percentile_ranks``)."""
    flat = _flat(scores, names)
    ranks = torch.empty(flat.numel(), dtype=torch.float64)
    ranks[torch.argsort(flat, stable=True)] = torch.arange(flat.numel(), dtype=torch.float64)
    return ranks / (flat.numel() - 1)


def _mix(percentiles: list[torch.Tensor], weights) -> torch.Tensor:
    return sum(float(w) * p for w, p in zip(weights, percentiles, strict=True))


def _pruned_at_minus_inf(score: torch.Tensor, model: torch.nn.Module, names: list[str]):
    modules = dict(model.named_modules())
    zero = torch.cat(
        [(modules[n].weight_orig * modules[n].weight_mask).reshape(-1) == 0 for n in names]
    )
    return score.masked_fill(zero, -math.inf)


def _removing(score: torch.Tensor, count: int, shapes: dict[str, torch.Size]) -> MaskSet:
    keep = torch.ones(score.numel(), dtype=torch.bool)
    keep[torch.argsort(score, stable=True)[:count]] = False
    parts = keep.split([math.prod(shape) for shape in shapes.values()])
    return MaskSet({n: p.view(s) for (n, s), p in zip(shapes.items(), parts, strict=True)})


def _reference_budget_masks(env, score: torch.Tensor, shapes) -> MaskSet:
    total = score.numel()

    def fits(sparsity: float) -> bool:
        return env.fits(_removing(score, round(sparsity * total), shapes))

    return _removing(score, round(least_feasible(fits, 0.0, 1.0) * total), shapes)


def _same(a: MaskSet, b: MaskSet) -> bool:
    return a.masks.keys() == b.masks.keys() and all(torch.equal(a[n], b[n]) for n in a.masks)


@pytest.mark.parametrize("budget", BUDGETS)
def test_metric_mix_masks_equal_a_sort_and_a_bisection(budget):
    env = gym.make("prune_gym/MetricMix-v0", task="digits-cnn", budget=budget).unwrapped
    model = env.context.model
    shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
    names = list(shapes)
    percentiles = [_percentiles(env.context.scores[m], names) for m in env.metrics]
    for weights in MIXES:
        env.reset(seed=0)
        action = env.weights_to_action(weights)
        env.step(action)
        env.context.dense_masks.apply(model)
        acted = env.action_to_weights(action)  # the float32 action's weights, not ``weights``
        score = _pruned_at_minus_inf(_mix(percentiles, acted), model, names)
        assert _same(env.last_masks, _reference_budget_masks(env, score, shapes)), weights


def test_metric_mix_ranks_weights_already_zero_below_every_mix():
    context = gym.make("prune_gym/MetricMix-v0", task="digits-mlp").unwrapped.context
    model = context.model
    with torch.no_grad():  # zero some weights of the shared dense net (restored below)
        model.fc2.weight_orig[:3] = 0.0
    try:
        env = gym.make("prune_gym/MetricMix-v0", task="digits-mlp", budget={"params": 0.5})
        env = env.unwrapped
        shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
        names = list(shapes)
        percentiles = [_percentiles(env.context.scores[m], names) for m in env.metrics]
        env.reset(seed=0)
        action = env.weights_to_action(MIXES[2])
        env.step(action)
        assert not env.last_masks["fc2"][:3].any()
        env.context.dense_masks.apply(model)
        score = _pruned_at_minus_inf(_mix(percentiles, env.action_to_weights(action)), model, names)
        assert _same(env.last_masks, _reference_budget_masks(env, score, shapes))
    finally:
        context.restore_dense_weights()


@pytest.mark.parametrize("budget", BUDGETS[:3])
def test_budget_masks_of_a_cached_builder_equal_a_sort_and_a_bisection(budget):
    env = gym.make("prune_gym/GlobalRatio-v0", task="digits-cnn", budget=budget).unwrapped
    model = env.context.model
    shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
    for metric in env.metrics:
        builder = env.context.builder(metric)
        env.context.dense_masks.apply(model)
        score = _pruned_at_minus_inf(_flat(env.context.scores[metric], list(shapes)), model, shapes)
        expected = _reference_budget_masks(env, score, shapes)
        assert _same(env.budget_masks(builder), expected), metric
        builder.from_ratios({})  # ranked now: the search runs on the ranks, same masks
        assert _same(env.budget_masks(builder), expected), metric


def test_panning_steps_equal_a_sort_of_the_mix_of_fresh_percentiles():
    env = gym.make("prune_gym/Panning-v0", task="digits-cnn", iterations=4, target=0.9).unwrapped
    context, model = env.context, env.context.model
    shapes = {name: m.weight.shape for name, m in prunable_layers(model)}
    names = list(shapes)
    env.reset(seed=0)
    for step, weights in enumerate([[1, 0, 0], [0.2, 0.5, 0.3], [0, 0, 1], [1 / 3] * 3]):
        env.masks.apply(model)
        percentiles = [_percentiles(context.compute_scores(m), names) for m in env.metrics]
        action = env.weights_to_action(np.asarray(weights, dtype=np.float64))
        score = _pruned_at_minus_inf(_mix(percentiles, env.action_to_weights(action)), model, names)
        sparsity = whole_weight_sparsity(1 - env.keep_fraction(step), score.numel())
        expected = _removing(score, round(sparsity * score.numel()), shapes)
        env.step(action)
        assert _same(env.masks, expected), step


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 18])
def test_mix_percentiles_is_the_left_to_right_sum_whatever_the_slices(monkeypatch, chunk):
    monkeypatch.setattr(allocate, "CACHE_CHUNK", chunk)
    monkeypatch.setattr(metric_mix, "CACHE_CHUNK", chunk)
    generator = torch.Generator().manual_seed(0)
    percentiles = {m: torch.rand(1000, generator=generator, dtype=torch.float64) for m in "abcd"}
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    assert torch.equal(
        mix_percentiles(percentiles, weights), _mix(list(percentiles.values()), weights)
    )
