"""Stacked masked copies: each copy trains and scores as its mask alone would."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from prune_gym.envs.context import get_context
from prune_gym.pruning import MaskSet
from prune_gym.pruning.masks import effective_weight
from prune_gym.tasks import evaluate_tensors
from prune_gym.tasks import make as make_task
from prune_gym.tasks.batched import MaskedCopies
from prune_gym.tasks.train import evaluate_copies


def random_masks(context, count, seed):
    rng = np.random.default_rng(seed)
    builder = context.builder()
    return [
        builder.from_ratios(dict(zip(context.layer_names, rng.uniform(0.1, 0.9, 8), strict=False)))
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    ("task_name", "structure"),
    [
        ("digits-cnn", "channel"),
        ("digits-cnn", "unstructured"),
        ("teacher-mlp", "unstructured"),
    ],
)
def test_each_copy_ends_where_finetune_of_its_mask_ends(task_name, structure):
    context = get_context(task_name, structure, ("magnitude",), "magnitude", 64, "cpu")
    task = context.task
    masks = random_masks(context, 3, seed=1)
    copies = task.finetune_copies(context.copy_template, masks, 5, seed=2)
    assert copies.mechanism == "layers"  # built from Linear, Conv2d, BatchNorm2d
    for index, mask_set in enumerate(masks):
        with context.masked(mask_set, 5, seed=2) as model:
            alone = {name: p.detach().clone() for name, p in model.named_parameters()}
            expected = evaluate_tensors(model, context.reward_inputs, context.reward_targets)
            masked_weights = {
                name: effective_weight(module)
                for name, module in model.named_modules()
                if name in mask_set.masks
            }
        stacked = {name: tensor.detach() for name, tensor in copies.copy_parameters(index).items()}
        for name, weight in masked_weights.items():
            copy_weight = stacked[f"{name}.weight"]
            torch.testing.assert_close(copy_weight, weight, rtol=1e-4, atol=1e-5)
            assert torch.all(copy_weight[~mask_set.masks[name]] == 0)  # pruned stay zero
        for name, tensor in stacked.items():
            if not name.endswith("weight") or name.removesuffix(".weight") not in mask_set.masks:
                original = alone.get(name, alone.get(f"{name}_orig"))
                torch.testing.assert_close(tensor, original, rtol=1e-4, atol=1e-5)
        result = evaluate_copies(copies, context.reward_inputs, context.reward_targets)[index]
        assert result["accuracy"] == pytest.approx(expected["accuracy"], abs=1 / 64)
        assert result["loss"] == pytest.approx(expected["loss"], rel=1e-4)


def one_by_one(count, steps, seed):
    """A digits-mlp context (nothing remembered), ``count`` masks and their single rewards."""
    context = get_context("digits-mlp", "unstructured", ("magnitude",), "magnitude", 100, "cpu")
    masks = random_masks(context, count, seed=seed)
    context.forget_results()
    alone = [context.reward_metrics(mask_set, steps, seed=0) for mask_set in masks]
    context.forget_results()
    return context, masks, alone


def test_reward_metrics_many_equals_reward_metrics_and_remembers():
    context, masks, alone = one_by_one(3, 10, seed=5)
    together = context.reward_metrics_many([*masks, masks[0]], 10, seed=0)
    assert together[0] == together[3]
    for single, batched in zip(alone, together, strict=False):
        assert batched["accuracy"] == single["accuracy"]
        assert batched["loss"] == pytest.approx(single["loss"], rel=1e-5)
    hits = context.reward_hits
    assert context.reward_metrics(masks[1], 10, seed=0) == together[1]
    assert context.reward_hits == hits + 1


def test_without_steps_the_copies_score_their_masks():
    task = make_task("digits-mlp")
    model = task.pretrained_model()
    dense = MaskSet.dense(model)
    inputs, targets = task.splits["val"].inputs[:50].float(), task.splits["val"].targets[:50]
    inputs = task.splits["val"].batch(slice(0, 50))
    copies = MaskedCopies(model, [dense, dense])
    results = evaluate_copies(copies, inputs, targets)
    expected = evaluate_tensors(model, inputs, targets)
    assert results[0] == results[1]
    assert results[0]["accuracy"] == expected["accuracy"]
    assert results[0]["loss"] == pytest.approx(expected["loss"], rel=1e-6)


def test_copies_refuse_no_masks_and_unknown_parameters():
    model = make_task("digits-mlp").build_model()
    with pytest.raises(ValueError, match="at least one MaskSet"):
        MaskedCopies(model, [])
    stray = MaskSet({"conv9": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"conv9\.weight"):
        MaskedCopies(model, [stray])


class MixesChannels(nn.Module):
    """A forward that a stacked layout would get wrong: a softmax over the features."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.softmax(self.fc1(x), dim=1))


class KeepsCopiesApart(MixesChannels):
    """The same layers, an element-wise activation between them."""

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize(
    ("cls", "mechanism"), [(MixesChannels, "vmap"), (KeepsCopiesApart, "layers")]
)
def test_stacked_layers_are_used_only_where_they_compute_the_copies(cls, mechanism):
    model = cls()
    torch.manual_seed(0)
    masks = [MaskSet({"fc1": torch.rand(5, 6) > p}) for p in (0.2, 0.6)]
    probe = torch.randn(8, 6)
    copies = MaskedCopies(model, masks, probe=probe)
    assert copies.mechanism == mechanism
    inputs = torch.randn(16, 6)
    outputs = copies(inputs)
    for index, mask_set in enumerate(masks):
        alone = copy.deepcopy(model)
        mask_set.apply(alone)
        torch.testing.assert_close(outputs[:, :, index], alone(inputs), rtol=1e-5, atol=1e-6)


def test_batches_hold_at_most_copies_per_batch_and_a_lone_mask_takes_the_single_path():
    context, masks, alone = one_by_one(5, 3, seed=9)
    sizes = []
    original = context.task.finetune_copies
    context.task.finetune_copies = lambda model, batch, *a, **k: (
        sizes.append(len(batch)) or original(model, batch, *a, **k)
    )
    context.__dict__["copies_per_batch"] = 2
    try:
        together = context.reward_metrics_many(masks, 3, seed=0)
    finally:
        del context.__dict__["copies_per_batch"], context.task.finetune_copies
    assert sizes == [2, 2]  # and the fifth alone, through reward_metrics
    assert together[4] == alone[4]  # the single path: the very same numbers
    for single, batched in zip(alone, together, strict=True):
        assert batched["loss"] == pytest.approx(single["loss"], rel=1e-5)


def test_a_large_model_on_a_cpu_trains_its_copies_one_after_another(monkeypatch):
    from prune_gym.envs import context as context_module

    context = get_context("digits-cnn", "unstructured", ("magnitude",), "magnitude", 100, "cpu")
    step_macs = context.cost_model.macs_dense * context.task.recipe.batch_size
    assert context.copies_per_batch == int(context_module.BATCH_MACS // step_macs) > 8
    monkeypatch.setattr(context_module, "BATCH_MACS", step_macs * 1.5)  # room for one copy
    monkeypatch.delitem(context.__dict__, "copies_per_batch")
    monkeypatch.setattr(context.task, "finetune_copies", None)  # never called
    context.forget_results()
    results = context.reward_metrics_many(random_masks(context, 3, seed=4), 2, seed=0)
    assert context.copies_per_batch == 1 and len(results) == 3
