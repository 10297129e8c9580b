"""Training-time methods (GMP, GraNet, FlipOut, SWD, IMP, RigL) on the shared SparseTrainer."""

import dataclasses
import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

import prune_gym.tasks
from prune_gym.baselines.methods import (
    METHODS,
    PAPER_DEFAULTS,
    TASK_DEFAULTS,
    FlipCounter,
    ImpSchedule,
    available_methods,
    build_trainer,
    defaults_for,
    gradual,
    random_masks,
    rigl,
    run_method,
)
from prune_gym.baselines.methods.schedule import cubic_sparsity, geometric_sparsities
from prune_gym.baselines.methods.topology import exact_counts
from prune_gym.pruning.layers import prunable_layers
from prune_gym.pruning.masks import MaskSet, effective_weight, trainable_weight
from prune_gym.tasks.train import TrainRecipe

SPARSITY = 0.9
#: A few epochs per method on digits-mlp (21 steps per epoch): each run takes well under 1 s
#: and ends well above chance (10%).
FAST = {
    "gmp": {"epochs": 3, "update_every": 5},
    "granet": {"epochs": 8, "update_every": 20},
    "flipout": {"epochs": 6},
    "swd": {"epochs": 8},
    "imp": {"epochs": 2},
    "rigl": {"epochs": 8, "update_every": 20},
}
VARIANTS = [(name, {}) for name in FAST] + [("granet", {"variant": "sparse-to-sparse"})]
VARIANT_IDS = [name if not extra else f"{name}-{extra['variant']}" for name, extra in VARIANTS]


@pytest.fixture(scope="module")
def task():
    """digits-mlp: 17,024 prunable weights, trains in seconds."""
    return prune_gym.tasks.make("digits-mlp")


@pytest.fixture(scope="module")
def results(task):
    """Each variant run once at SPARSITY with seed 0, shared by the tests of this module."""
    return {
        key: run_method(name, task, SPARSITY, seed=0, **FAST[name], **extra)
        for key, (name, extra) in zip(VARIANT_IDS, VARIANTS, strict=True)
    }


def expected_kept(model: nn.Module, sparsity: float) -> int:
    """Weights a method must keep: all prunable weights minus ``round(sparsity * N)``."""
    total = sum(module.weight.numel() for _, module in prunable_layers(model))
    return total - round(sparsity * total)


# registry and options ---------------------------------------------------------------------
def test_registry_lists_the_design_methods():
    assert available_methods() == ["gmp", "granet", "flipout", "swd", "imp", "rigl"]
    assert set(METHODS) == set(PAPER_DEFAULTS)


@pytest.mark.parametrize("name", list(METHODS))
def test_defaults_build_a_config_for_any_task(name):
    config_class = METHODS[name].config_class
    config_class(**defaults_for(name, "some-custom-task"))
    accepted = {f.name for f in dataclasses.fields(config_class)}
    accepted |= {f.name for f in dataclasses.fields(TrainRecipe)}
    for (method, _), options in TASK_DEFAULTS.items():
        if method == name:
            assert set(options) <= accepted


@pytest.mark.parametrize(
    ("name", "sparsity", "overrides", "match"),
    [
        ("magnitude", 0.5, {}, "unknown method 'magnitude'"),
        ("gmp", 1.0, {}, r"sparsity=1.0 is outside \[0, 1\)"),
        ("gmp", -0.1, {}, r"sparsity=-0.1 is outside"),
        ("gmp", math.nan, {}, "sparsity=nan"),
        ("gmp", True, {}, "sparsity=True"),
        ("gmp", 0.5, {"bogus": 1}, r"unknown options \['bogus'\].*update_every.*epochs"),
        ("gmp", 0.5, {"start": "middle"}, "start='middle'"),
        ("gmp", 0.5, {"end_fraction": 0.0}, "end_fraction=0.0"),
        ("rigl", 0.5, {"distribution": "normal"}, "distribution='normal'"),
        ("granet", 0.3, {"variant": "sparse-to-sparse"}, "init_density >= 0.7"),
        ("granet", 0.5, {"variant": "sideways"}, "variant='sideways'"),
        ("swd", 0.5, {"structure": "channel"}, "no prunable layer.*feeds a BatchNorm"),
        ("swd", 0.5, {"structure": "block"}, "structure='block'"),
        ("imp", 0.5, {"epochs": 1, "rewind_step": 21}, "rewind_step=21"),
        ("flipout", 0.9, {"epochs": 1, "batch_size": 1000}, "at least 5 steps, got 2"),
        ("gmp", 0.5, {"epochs": 0}, "epochs=0"),
    ],
)
def test_bad_arguments_raise_value_error(task, name, sparsity, overrides, match):
    with pytest.raises(ValueError, match=match):
        build_trainer(name, task, sparsity, **overrides)


def test_channel_swd_rejects_an_unreachable_target():
    with pytest.raises(ValueError, match=r"at most sparsity 0\.1245"):
        build_trainer("swd", "digits-cnn", 0.5, structure="channel")


# every method ---------------------------------------------------------------------------------
@pytest.mark.parametrize("key", VARIANT_IDS)
def test_reaches_the_target_sparsity_exactly(results, key):
    result = results[key]
    assert result.masks.num_kept() == expected_kept(result.model, SPARSITY)
    assert result.sparsity == pytest.approx(SPARSITY, abs=1 / result.masks.num_weights())
    for name, module in prunable_layers(result.model):
        assert torch.equal(module.weight_mask.bool(), result.masks[name])
        assert not effective_weight(module)[~result.masks[name]].any()


@pytest.mark.parametrize("key", VARIANT_IDS)
def test_result_is_the_selected_model(task, results, key):
    result = results[key]
    assert result.method == key.split("-")[0]
    assert task.evaluate(result.model, "val")["accuracy"] == result.val_accuracy
    assert result.val_accuracy > 0.5 and result.test_accuracy > 0.5
    assert result.history[-1]["step"] >= result.selected_step > 0
    assert {"step", "sparsity", "train_loss", "val_accuracy"} <= set(result.history[0])
    assert result.wall_time > 0


@pytest.mark.parametrize("key", VARIANT_IDS)
def test_pruned_weights_and_momentum_stay_zero(task, key):
    name, extra = VARIANTS[VARIANT_IDS.index(key)]
    trainer = build_trainer(
        name, task, SPARSITY, optimizer="sgd", lr=0.05, momentum=0.9, **FAST[name], **extra
    )
    revived = []

    def check(module, inputs):
        if module.training and module.weight_orig[~module.weight_mask.bool()].any():
            revived.append(trainer.step)

    hooks = [m.register_forward_pre_hook(check) for _, m in prunable_layers(trainer.model)]
    trainer.run()
    for hook in hooks:
        hook.remove()
    assert revived == []
    for layer, module in trainer.layers:
        pruned = ~trainer.masks[layer]
        assert pruned.sum() > 0
        assert not module.weight_orig[pruned].any()
        assert not trainer.optimizer.state[module.weight_orig]["momentum_buffer"][pruned].any()


def test_same_seed_same_result_other_seed_other_masks(task):
    first, again = (run_method("rigl", task, 0.8, seed=3, **FAST["rigl"]) for _ in range(2))
    other = run_method("rigl", task, 0.8, seed=4, **FAST["rigl"])
    for name in first.masks:
        assert torch.equal(first.masks[name], again.masks[name])
    assert (first.val_accuracy, first.test_accuracy) == (again.val_accuracy, again.test_accuracy)
    assert any(not torch.equal(first.masks[n], other.masks[n]) for n in first.masks)


def test_flipout_noise_is_seeded(task):
    runs = [run_method("flipout", task, 0.75, seed=1, **FAST["flipout"]) for _ in range(2)]
    assert all(torch.equal(runs[0].masks[n], runs[1].masks[n]) for n in runs[0].masks)
    assert runs[0].val_accuracy == runs[1].val_accuracy


def test_selection_uses_val_and_touches_test_once(task, monkeypatch):
    calls = []
    evaluate = task.evaluate

    def counting(model, split="val", limit=None):
        calls.append(split)
        return evaluate(model, split, limit)

    monkeypatch.setattr(task, "evaluate", counting)
    trainer = build_trainer("gmp", task, 0.8, epochs=4, update_every=5)
    result = trainer.run()
    assert calls.count("test") == 1 and calls[-1] == "test"
    assert calls.count("val") == len(result.history)
    eligible = [h for h in result.history if trainer.schedule.is_final(h["step"])]
    assert result.history[-1] in eligible
    assert result.val_accuracy == max(h["val_accuracy"] for h in eligible)
    assert result.selected_step >= trainer.schedule.end_step


# schedules ------------------------------------------------------------------------------------
def test_cubic_and_geometric_schedules():
    assert cubic_sparsity(10, 10, 110, 0.0, 0.9) == 0.0
    assert cubic_sparsity(60, 10, 110, 0.0, 0.9) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cubic_sparsity(500, 10, 110, 0.5, 0.9) == 0.9
    assert geometric_sparsities(0.75, 0.5) == [0.5, 0.75]
    assert geometric_sparsities(0.9, 0.5) == [0.5, 0.75, 0.875, 0.9]
    assert geometric_sparsities(0.0, 0.2) == []
    assert len(geometric_sparsities(0.9, 0.2)) == 11  # 0.8^10 > 0.1 >= 0.8^11


def test_gmp_prunes_on_the_cubic_schedule(task):
    trainer = build_trainer("gmp", task, 0.8, epochs=4, update_every=5)
    schedule = trainer.schedule
    seen = {}
    set_masks = trainer.set_masks

    def record(masks):
        set_masks(masks)
        seen[trainer.step] = masks.num_kept()

    trainer.set_masks = record
    trainer.run()
    total = trainer.masks.num_weights()
    # 4 epochs of 16 steps (1008 digits / batch 64); pruning ends at half of them
    assert sorted(seen) == sorted(schedule.prune_steps) == [5, 10, 15, 20, 25, 30, 32]
    for step, kept in seen.items():
        assert kept == total - round(schedule.sparsity_at(step) * total)


def spy_on_regrowth(monkeypatch, module):
    """Record (masks in, masks out) of every prune-and-regrow call made by ``module``."""
    calls = []
    original = module.prune_and_regrow

    def spy(model, masks, *args):
        new = original(model, masks, *args)
        calls.append((masks, new))
        return new

    monkeypatch.setattr(module, "prune_and_regrow", spy)
    return calls


@pytest.mark.parametrize(("name", "module"), [("granet", gradual), ("rigl", rigl)])
def test_regrowth_changes_masks_but_not_densities(task, monkeypatch, name, module):
    calls = spy_on_regrowth(monkeypatch, module)
    trainer = build_trainer(name, task, SPARSITY, **FAST[name])
    trainer.run()
    assert len(calls) >= 3
    for before, after in calls:
        assert after.densities() == before.densities()
    assert any(not torch.equal(b[n], a[n]) for b, a in calls for n in b)
    after_window = [a for (b, a) in calls[-2:]]  # GraNet: after the window, only regrowth
    assert all(a.num_kept() == expected_kept(trainer.model, SPARSITY) for a in after_window)


def test_regrown_weights_start_at_zero_with_reset_momentum(task):
    trainer = build_trainer("rigl", task, SPARSITY, optimizer="sgd", lr=0.05, **FAST["rigl"])
    grown_counts = []
    set_masks = trainer.set_masks

    def check(masks):
        old = trainer.masks
        set_masks(masks)
        for layer, module in trainer.layers:
            grown = masks[layer] & ~old[layer]
            grown_counts.append(int(grown.sum()))
            buffer = trainer.optimizer.state[module.weight_orig]["momentum_buffer"]
            assert not module.weight_orig[grown].any() and not buffer[grown].any()

    trainer.set_masks = check
    trainer.run()
    assert sum(grown_counts) > 0


def test_random_masks_hit_the_exact_count_with_erk_shape(task):
    model = task.build_model()
    masks = random_masks(model, 0.9, "erk", seed=0)
    assert masks.num_kept() == expected_kept(model, 0.9)
    densities = masks.densities()
    assert densities["fc3"] > densities["fc1"]  # ERK: the small layer stays denser
    assert exact_counts({"a": 0.5, "b": 0.5, "c": 0.5}, {"a": 3, "b": 3, "c": 3}, 5) == {
        "a": 2,
        "b": 2,
        "c": 1,
    }


def test_flip_counter_counts_a_planted_sign_change():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(3, 2, bias=False)))
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[0.1, 0.5, -0.5], [0.3, -0.2, 0.4]]))
    masks = MaskSet.dense(model)
    masks.apply(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    counter = FlipCounter(model)

    def step(grad):
        counter.before_step()
        model.fc.weight_orig.grad = torch.tensor(grad)
        optimizer.step()
        counter.after_step(masks)

    step([[0.3, 0.0, 0.0], [0.1, 0.0, 0.0]])  # w00: 0.1 -> -0.2 flips; w10: 0.3 -> 0.2 does not
    assert counter.counts["fc"].tolist() == [[1, 0, 0], [0, 0, 0]]
    step([[-0.3, 0.0, 0.0], [0.0, 0.0, 0.0]])  # w00 flips back: counts accumulate
    assert counter.counts["fc"].tolist() == [[2, 0, 0], [0, 0, 0]]
    masks = MaskSet({"fc": torch.tensor([[False, True, True], [True, True, True]])})
    masks.apply(model)
    step([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # a pruned weight's count is zeroed
    assert counter.counts["fc"].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_flipout_scores_see_flips_and_pruned_counts_are_zero(task):
    trainer = build_trainer("flipout", task, 0.75, **FAST["flipout"])
    schedule = trainer.schedule
    flips_at_events = []
    scores = schedule.scores

    def spy():
        flips_at_events.append(sum(int(c.sum()) for c in schedule.counter.counts.values()))
        return scores()

    schedule.scores = spy
    trainer.run()
    assert len(flips_at_events) == 2 and flips_at_events[0] > 0
    counts = schedule.counter.counts
    assert all(not counts[n][~trainer.masks[n]].any() for n in counts)


def test_swd_penalty_only_touches_weights_below_the_threshold(task):
    trainer = build_trainer("swd", task, 0.5, epochs=1)
    schedule = trainer.schedule
    keep = schedule.target_masks(trainer)
    assert keep.num_kept() == expected_kept(trainer.model, 0.5)
    schedule.extra_loss(trainer).backward()
    a0 = schedule.config.a_min
    for layer, module in trainer.layers:
        weight, grad = module.weight_orig.detach(), module.weight_orig.grad
        assert not grad[keep[layer]].any()
        assert grad[~keep[layer]].ne(0).all()
        expected = schedule.config.mu * a0 * weight * ~keep[layer]
        assert torch.allclose(grad, expected)
    assert schedule.coefficient(schedule.total_steps) == pytest.approx(schedule.config.a_max)


def test_channel_swd_penalises_bn_scales_and_prunes_whole_channels():
    trainer = build_trainer("swd", "digits-cnn", 0.05, structure="channel", epochs=2)
    schedule = trainer.schedule
    keep = schedule.target_masks(trainer)
    schedule.extra_loss(trainer).backward()
    for layer, bn in (("conv1", trainer.model.bn1), ("conv2", trainer.model.bn2)):
        removed = ~keep[layer].reshape(keep[layer].shape[0], -1).any(dim=1)
        assert bn.weight.grad[removed].ne(0).all() and not bn.weight.grad[~removed].any()
    assert all(trainable_weight(m).grad is None for _, m in trainer.layers)

    result = trainer.run()
    total = result.masks.num_weights()
    removed_weights = total - result.masks.num_kept()
    channel_size = trainer.model.conv2.weight_orig[0].numel()
    assert round(0.05 * total) <= removed_weights < round(0.05 * total) + channel_size
    assert result.masks.structure == "channel"
    gone = ~result.masks["conv2"].reshape(32, -1).any(dim=1)
    assert gone.any() and not result.model.bn2.weight[gone].any()
    assert not result.model.bn2.bias[gone].any()


def test_imp_rewinds_kept_weights_to_their_early_values(task, monkeypatch):
    rewinds = []
    original = ImpSchedule.rewind

    def spy(self, trainer, masks):
        original(self, trainer, masks)
        weights = {n: m.weight_orig.detach().clone() for n, m in trainer.layers}
        rewinds.append((self.rewind_state, masks, weights, dict(trainer.optimizer.state)))

    monkeypatch.setattr(ImpSchedule, "rewind", spy)
    trainer = build_trainer("imp", task, 0.36, epochs=2, rewind_step=5)
    result = trainer.run()
    schedule = trainer.schedule
    # rounds of 2 epochs of 16 steps (1008 digits / batch 64), resumed from step 5
    assert len(rewinds) == 2 and sorted(schedule.prune_steps) == [32, 59]
    assert schedule.total_steps == 32 + 2 * 27 and schedule.lr_step(32) == 5
    initial = dict(task.build_model().named_parameters())
    for state, masks, weights, optimizer_state in rewinds:
        assert optimizer_state == {}
        for name, weight in weights.items():
            early = state[f"{name}.weight_orig"]
            assert torch.equal(weight, early * masks[name])
            assert not torch.equal(early, initial[f"{name}.weight"])  # 5 steps were trained
    assert rewinds[-1][1].num_kept() == result.masks.num_kept()
    assert result.masks.num_kept() == expected_kept(result.model, 0.36)
