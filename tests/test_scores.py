"""Tests for the importance-score registry: values, conventions, determinism, model safety."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from prune_gym.pruning import scores as scores_module
from prune_gym.pruning.scores import (
    GRASP_TEMPERATURE,
    available_metrics,
    compute_scores,
    register_metric,
)

BUILTIN = ["magnitude", "random", "snip", "taylor", "grasp", "synflow"]
NONNEGATIVE = ["magnitude", "random", "snip", "taylor", "synflow"]


def small_cnn() -> nn.Sequential:
    """Conv-BN-ReLU-Conv-ReLU-Linear on 1x8x8 inputs, 5 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 4 * 4, 5),
    )


def cnn_batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 8, 8, generator=generator), torch.randint(
        0, 5, (n,), generator=generator
    )


def masked_cnn() -> nn.Sequential:
    """``small_cnn`` with 50% of each layer pruned (torch.nn.utils.prune convention)."""
    model = small_cnn()
    for index in (0, 3, 6):
        prune.l1_unstructured(model[index], "weight", amount=0.5)
    return model


def snapshot(model: nn.Module) -> dict:
    """Everything compute_scores promises to leave untouched."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "dtypes": [p.dtype for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert value.dtype == after["state"][key].dtype, key
        assert torch.equal(value, after["state"][key]), key
    for old, new in zip(before["grads"], after["grads"], strict=True):
        assert (old is None and new is None) or torch.equal(old, new)
    for key in ("requires_grad", "modes", "dtypes"):
        assert before[key] == after[key], key


@pytest.fixture
def custom_metric_name():
    """A metric name that is removed from the registry after the test."""
    name = "test-negative-magnitude"
    yield name
    scores_module._METRICS.pop(name, None)


def test_builtin_metrics_are_registered():
    assert available_metrics()[: len(BUILTIN)] == BUILTIN


def test_magnitude_is_abs_of_effective_weight_on_masked_model():
    model = masked_cnn()
    result = compute_scores(model, "magnitude", None)
    for name, module in [("0", model[0]), ("3", model[3]), ("6", model[6])]:
        expected = (module.weight_orig * module.weight_mask).abs()
        assert torch.equal(result[name], expected)
        assert (result[name][module.weight_mask == 0] == 0).all()
        assert result[name].dtype == torch.float32


def test_snip_equals_hand_computed_gradient_on_linear_model():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    probs = torch.softmax(x @ model.weight.detach().T + model.bias.detach(), dim=1)
    grad = (probs - F.one_hot(y, 3).float()).T @ x / len(x)  # d mean-CE / dW
    result = compute_scores(model, "snip", (x, y))
    torch.testing.assert_close(result[""], (model.weight.detach() * grad).abs())


def test_taylor_sums_per_sample_contributions_and_differs_from_snip():
    model, (x, y) = small_cnn(), cnn_batch(6)
    model.eval()
    weights = [model[0].weight, model[3].weight, model[6].weight]
    expected = [torch.zeros_like(w) for w in weights]
    for xi, yi in zip(x, y, strict=True):
        loss = F.cross_entropy(model(xi[None]), yi[None])
        for total, w, g in zip(expected, weights, torch.autograd.grad(loss, weights), strict=True):
            total += (w.detach() * g).abs()
    model.train()
    taylor = compute_scores(model, "taylor", (x, y))
    snip = compute_scores(model, "snip", (x, y))
    for name, value in zip(("0", "3", "6"), expected, strict=True):
        torch.testing.assert_close(taylor[name], value)
        assert not torch.allclose(taylor[name], snip[name] * len(x))


def test_synflow_matches_closed_form_on_two_layer_linear_net():
    # y = W2 W1 x with x = 1: R = sum_ki |W2_ki| sum_j |W1_ij|, so
    # score(W1_ij) = |W1_ij| * sum_k |W2_ki| and score(W2_ki) = |W2_ki| * sum_j |W1_ij|.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    w1, w2 = model[0].weight.detach().abs(), model[1].weight.detach().abs()
    result = compute_scores(model, "synflow", None)
    torch.testing.assert_close(result["0"], w1 * w2.sum(dim=0)[:, None])
    torch.testing.assert_close(result["1"], w2 * w1.sum(dim=1)[None, :])


def test_synflow_input_shape_batch_and_inferred_shape_agree():
    model, batch = small_cnn(), cnn_batch()
    from_batch = compute_scores(model, "synflow", batch)
    from_shape = compute_scores(model, "synflow", None, input_shape=(1, 8, 8))
    from_inputs = compute_scores(model, "synflow", (batch[0][:1], None))
    for name in from_batch:
        assert torch.equal(from_batch[name], from_shape[name])
        assert torch.equal(from_batch[name], from_inputs[name])


def test_synflow_rescales_by_a_power_of_two_instead_of_overflowing_float32():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8, bias=False) for _ in range(30)])
    with torch.no_grad():
        for layer in model:
            layer.weight.mul_(40.0)
    reference = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in reference.parameters():
            p.abs_()
    grads = torch.autograd.grad(
        reference(torch.ones(1, 8, dtype=torch.float64)).sum(), list(reference.parameters())
    )
    exact = [(p * g).detach() for p, g in zip(reference.parameters(), grads, strict=True)]
    assert max(e.max() for e in exact) > torch.finfo(torch.float32).max

    result = compute_scores(model, "synflow", None)
    assert all(torch.isfinite(s).all() for s in result.values())
    factor = 2.0 ** torch.round(torch.log2(result["0"].double().max() / exact[0].max()))
    for name, value in zip(result, exact, strict=True):
        torch.testing.assert_close(result[name].double(), value * factor)


def test_grasp_is_minus_the_papers_score_from_a_direct_double_backward():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    weights = [model[0].weight, model[2].weight]

    def loss_of(inputs, targets):
        return F.cross_entropy(model(inputs) / GRASP_TEMPERATURE, targets)

    # authors' recipe (alecwangcq/GraSP): g from two half batches, then Hg per half
    halves = [(x[:4], y[:4]), (x[4:], y[4:])]
    half_grads = [torch.autograd.grad(loss_of(*half), weights) for half in halves]
    g = [a + b for a, b in zip(*half_grads, strict=True)]
    hg = [torch.zeros_like(w) for w in weights]
    for half in halves:
        grads = torch.autograd.grad(loss_of(*half), weights, create_graph=True)
        z = sum((gi.detach() * gr).sum() for gi, gr in zip(g, grads, strict=True))
        for total, h in zip(hg, torch.autograd.grad(z, weights), strict=True):
            total += h
    paper_scores = [-w.detach() * h for w, h in zip(weights, hg, strict=True)]  # S = -w Hg

    result = compute_scores(model, "grasp", (x, y))
    for name, paper in zip(("0", "2"), paper_scores, strict=True):
        torch.testing.assert_close(-4 * result[name], paper)  # even batch: authors' = 4x
    # GraSP removes the highest S; we remove the lowest importance: the same weights
    ours = torch.cat([result["0"].flatten(), result["2"].flatten()])
    theirs = torch.cat([s.flatten() for s in paper_scores])
    assert torch.equal(torch.topk(theirs, 10).indices, torch.topk(-ours, 10).indices)
    assert (ours < 0).any() and (ours > 0).any()


@pytest.mark.parametrize("metric", BUILTIN)
def test_metric_is_deterministic_and_leaves_model_unchanged(metric):
    model = masked_cnn()
    model.train()
    model[0].bias.requires_grad_(False)
    model[3].weight_orig.requires_grad_(False)  # a frozen prunable weight is still scored
    model[6].bias.grad = torch.full_like(model[6].bias, 3.0)
    hooked_weight = model[3].weight
    before = snapshot(model)
    first = compute_scores(model, metric, cnn_batch(), seed=7)
    assert_unchanged(model, before)
    assert model[3].weight is hooked_weight
    with torch.no_grad():  # callers inside no_grad (e.g. env steps) get the same scores
        second = compute_scores(model, metric, cnn_batch(), seed=7)
    assert first.keys() == second.keys() == {"0", "3", "6"}
    for name in first:
        assert torch.equal(first[name], second[name])
        assert first[name].dtype == torch.float32
        assert torch.isfinite(first[name]).all()


def test_metrics_differ_from_each_other_on_a_cnn():
    model, batch = small_cnn(), cnn_batch()
    results = {metric: compute_scores(model, metric, batch) for metric in BUILTIN}
    for a, b in itertools.combinations(BUILTIN, 2):
        flat_a = torch.cat([s.flatten() for s in results[a].values()])
        flat_b = torch.cat([s.flatten() for s in results[b].values()])
        assert not torch.allclose(flat_a / flat_a.norm(), flat_b / flat_b.norm()), (a, b)


def test_random_depends_on_seed_and_lies_in_unit_interval():
    model = small_cnn()
    a = compute_scores(model, "random", None, seed=0)
    b = compute_scores(model, "random", None, seed=1)
    assert not torch.equal(a["3"], b["3"])
    assert all(((s > 0) & (s <= 1)).all() for s in a.values())


@pytest.mark.parametrize("metric", BUILTIN)
def test_pruned_weights_get_the_lowest_score(metric):
    model = masked_cnn()
    result = compute_scores(model, metric, cnn_batch())
    for name, module in [("0", model[0]), ("3", model[3]), ("6", model[6])]:
        pruned = module.weight_mask == 0
        assert (result[name][pruned] == 0).all()
        if metric in NONNEGATIVE:
            assert (result[name] >= 0).all()


@pytest.mark.parametrize("metric", BUILTIN)
def test_channel_scores_are_per_output_channel_sums(metric):
    model, batch = masked_cnn(), cnn_batch()
    weights = compute_scores(model, metric, batch, seed=3)
    channels = compute_scores(model, metric, batch, seed=3, structure="channel")
    for name, per_weight in weights.items():
        assert channels[name].shape == (per_weight.shape[0],)
        expected = per_weight.reshape(per_weight.shape[0], -1).sum(dim=1)
        torch.testing.assert_close(channels[name], expected)


def test_custom_metric_registration_end_to_end(custom_metric_name):
    def negative_magnitude(model, layers, batch, generator):
        return {name: -module.weight_orig.detach().abs() for name, module in layers}

    register_metric(custom_metric_name, negative_magnitude, needs_data=False)
    assert custom_metric_name in available_metrics()
    model = masked_cnn()
    result = compute_scores(model, custom_metric_name, None, structure="channel")
    expected = -(model[3].weight_orig * model[3].weight_mask).abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(result["3"], expected)
    with pytest.raises(ValueError, match="already registered"):
        register_metric(custom_metric_name, negative_magnitude)
    register_metric(custom_metric_name, negative_magnitude, overwrite=True)


def test_custom_metric_with_wrong_shape_is_rejected(custom_metric_name):
    register_metric(custom_metric_name, lambda model, layers, batch, gen: {"0": torch.ones(2)})
    with pytest.raises(ValueError, match=r"scores\['0'\].*weight's shape"):
        compute_scores(small_cnn(), custom_metric_name, cnn_batch())


def test_error_messages():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"unknown metric 'l2'.*magnitude.*synflow"):
        compute_scores(model, "l2", None)
    with pytest.raises(ValueError, match=r"'snip' needs data"):
        compute_scores(model, "snip", None)
    with pytest.raises(ValueError, match=r"structure='filter'.*unstructured"):
        compute_scores(model, "magnitude", None, structure="filter")
    with pytest.raises(ValueError, match="synflow cannot infer the input shape"):
        compute_scores(model, "synflow", None)
    with pytest.raises(TypeError, match="batch must be a tuple"):
        compute_scores(model, "snip", cnn_batch()[0])
    with pytest.raises(TypeError, match="callable"):
        register_metric("not-a-function", 3)


def test_all_metrics_on_resnet20_with_masks():
    from prune_gym.pruning.masks import MaskSet
    from prune_gym.tasks.models import resnet20

    torch.manual_seed(0)
    model = resnet20()
    MaskSet.global_threshold(model, 0.5).apply(model)
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(8, 3, 32, 32, generator=generator),
        torch.randint(0, 10, (8,), generator=generator),
    )
    before = snapshot(model)
    for metric in BUILTIN:
        result = compute_scores(model, metric, batch, structure="channel")
        assert len(result) == 22
        assert result["fc"].shape == (10,)
        assert all(torch.isfinite(s).all() for s in result.values()), metric
    assert_unchanged(model, before)


def test_random_scores_do_not_replay_the_weight_initialisation_of_the_same_seed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    scores = compute_scores(model, "random", None, seed=0)
    weights = model[0].weight.detach().flatten()
    correlation = torch.corrcoef(torch.stack([scores["0"].flatten(), weights]))[0, 1]
    assert abs(float(correlation)) < 0.05
