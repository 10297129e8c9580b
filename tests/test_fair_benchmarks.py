"""Benchmarks a reviewer would accept: MNIST-1D, val selection, compute, noise, the teacher."""

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import prune_gym.tasks
from prune_gym.baselines.methods import method_steps
from prune_gym.bench import BenchSpec, plan
from prune_gym.bench.overlap import read_inputs, support_recovery
from prune_gym.bench.plots import method_styles
from prune_gym.bench.report import at_chance, mean_std, mean_std_cell, write_summary
from prune_gym.cli import main
from prune_gym.pruning import Budget, MaskSet, compute_scores


# MNIST-1D ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mnist1d-mlp", "mnist1d-cnn"])
def test_mnist1d_tasks_on_a_reduced_size(name):
    python_state, numpy_state = random.getstate(), np.random.get_state()
    task = prune_gym.tasks.make(name, num_samples=500, recipe={"epochs": 10})
    sizes = {split: len(data) for split, data in task.splits.items()}
    held_in = sizes["train"] + sizes["reward"] + sizes["val"]
    assert held_in == 400 and sizes["test"] == 100  # the package's 80/20
    assert 35 <= sizes["val"] <= 45 and 35 <= sizes["reward"] <= 45  # 10% each, per class
    assert random.getstate() == python_state  # mnist1d reseeds the global RNGs: restored
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert task.input_shape == (40,) and task.splits["train"].inputs.dtype == torch.float32
    again = prune_gym.tasks.make(name, num_samples=500, recipe={"epochs": 10}, seed=1)
    assert torch.equal(again.splits["test"].inputs, task.splits["test"].inputs)
    model = task.pretrained_model()
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]
    if name == "mnist1d-cnn":  # the paper's: three Conv1d of 25 channels, stride 2
        assert [type(m).__name__ for m in layers] == ["Conv1d"] * 3 + ["Linear"]
        assert all(m.out_channels == 25 and m.stride == (2,) for m in layers[:3])
    else:
        widths = [(m.in_features, m.out_features) for m in layers]
        assert widths == [(40, 100), (100, 100), (100, 10)]
    assert task.evaluate(model, "test")["accuracy"] > 0.2  # chance is 0.1


# the summary -------------------------------------------------------------------------------
def record(method: str, seed: int, val: float, test: float, **extra) -> dict:
    return {
        "run_key": f"{method}-{seed}",
        "task": "digits-mlp",
        "budget": "params=0.1",
        "method": method,
        "seed": seed,
        "kind": "one-shot",
        "status": "ok",
        "settings": {"finetune_steps": 200},
        "val_accuracy": val,
        "test_accuracy": test,
        "params_ratio": 0.1,
        "macs_ratio": 0.1,
        "train_steps": 200,
        "feasible": True,
        "dense_accuracy": 0.97,
        "val_samples": 142,
        "test_samples": 360,
    } | extra


def summary_rows(text: str) -> dict[str, str]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return {row.split("|")[1].strip(): row for row in rows[1:]}


def test_the_best_is_chosen_on_val_and_indistinguishable_methods_are_marked(tmp_path):
    records = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        records.append(record("on-val", seed, 0.90, 0.80 + noise))  # best on val
        records.append(record("on-test", seed, 0.85, 0.95 + noise))  # best on test
        records.append(record("twin", seed, 0.80, 0.80 + noise))  # = on-val on test
        records.append(record("worse", seed, 0.70, 0.60 + noise / 2))  # clearly below
    rows = summary_rows(write_summary(records, tmp_path / "summary.md"))
    assert "**on-val**" in rows
    assert "twin ≈" in rows and "worse" in rows and "on-test" in rows  # 0.95 vs 0.80: no ≈
    assert next(iter(rows)) == "**on-val**"  # rows in val order
    text = (tmp_path / "summary.md").read_text()
    assert "Validation / test samples: digits-mlp 142 / 360" in text
    assert "teacher overlap" not in text and "support recovery" not in text  # no teacher here
    two_seeds = [r for r in records if r["seed"] < 2]
    assert "twin ≈" not in summary_rows(write_summary(two_seeds, tmp_path / "two.md"))


def test_sections_run_from_the_loosest_to_the_tightest_budget_per_task(tmp_path):
    order = [("digits-cnn", "params=0.01"), ("digits-cnn", "params=0.2")]
    order += [("digits-mlp", "params=0.05"), ("digits-cnn", "params=0.05")]
    records = [
        record(f"m{i}", 0, 0.9, 0.9, task=task, budget=budget, run_key=f"k{i}")
        for i, (task, budget) in enumerate(order)
    ]
    text = write_summary(records, tmp_path / "summary.md")
    sections = [line.split(" (")[0] for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## digits-cnn, budget params=0.2",
        "## digits-cnn, budget params=0.05",
        "## digits-cnn, budget params=0.01",
        "## digits-mlp, budget params=0.05",
    ]


def test_teacher_columns_appear_only_with_a_teacher(tmp_path):
    records = [
        record(m, s, 0.9, 0.9, mask_overlap=0.2, support_recovery=1.0)
        for m in ("a", "b")
        for s in range(2)
    ]
    text = write_summary(records, tmp_path / "summary.md")
    assert "support recovery" in text and "| 1.000 ± 0.000 |" in text


# compute ------------------------------------------------------------------------------------
def test_records_count_train_steps_and_one_shot_runs_at_gmp_matched_compute(tmp_path):
    code = main(
        [
            *("bench", "--task", "digits-mlp", "--budgets", "params=0.3", "--seeds", "1"),
            *("--methods", "uniform,gmp", "--finetune-steps", "20,matched", "--out", str(tmp_path)),
        ]
    )
    assert code == 0
    records = json.loads((tmp_path / "results.json").read_text())
    matched = method_steps("gmp", "digits-mlp")
    one_shot = sorted(r["train_steps"] for r in records if r["method"] == "uniform")
    assert one_shot == [20, matched]  # both fine-tuning step counts, each counted
    (gmp,) = (r for r in records if r["method"] == "gmp")
    assert gmp["train_steps"] == matched == 20 * 16  # 20 epochs of 16 steps on digits
    assert "uniform [finetune_steps=20]" in (tmp_path / "summary.md").read_text()


def test_plan_resolves_matched_per_task():
    budgets = (200, "matched")
    spec = BenchSpec(("digits-mlp",), ("params=0.1",), ("erk",), seeds=1, finetune_steps=budgets)
    steps = [run.settings["finetune_steps"] for run in plan(spec)]
    assert steps == [200, method_steps("gmp", "digits-mlp")]
    with pytest.raises(ValueError, match="finetune_steps"):
        BenchSpec(tasks=("digits-mlp",), budgets=("params=0.1",), finetune_steps=("all",))


# the planted teacher ---------------------------------------------------------------------
def test_support_recovery_is_one_for_the_support_and_chance_for_every_input():
    task = prune_gym.tasks.make("teacher-mlp", n_train=300, n_test=100)
    truth = task.true_masks
    assert support_recovery(truth, task.support, "fc1") == 1.0
    everything = MaskSet({name: torch.ones_like(mask) for name, mask in truth.masks.items()})
    assert support_recovery(everything, task.support, "fc1") == 8 / 64
    assert read_inputs(truth, "fc1") == set(task.support.tolist())


@pytest.mark.slow
def test_magnitude_recovers_the_support_at_the_teachers_sparsity_and_random_does_not():
    task = prune_gym.tasks.make("teacher-mlp")
    model = task.pretrained_model()
    magnitude = MaskSet.global_threshold(model, task.true_sparsity)
    assert support_recovery(magnitude, task.support, "fc1") >= 0.95
    scores = compute_scores(model, "random", None, seed=0)
    random_masks = MaskSet.global_threshold(model, task.true_sparsity, scores=scores)
    assert support_recovery(random_masks, task.support, "fc1") <= 0.2  # chance: 0.125


def test_the_teacher_suite_budget_is_the_teachers_density():
    from prune_gym.bench import load_suite

    task = prune_gym.tasks.make("teacher-mlp", n_train=300, n_test=100)
    kept = task.true_masks.num_kept()
    limits = [Budget.parse(b).limits["params"] for b in load_suite("teacher").budgets]
    assert any(int(limit * task.true_masks.num_weights()) == kept for limit in limits)


# figures ----------------------------------------------------------------------------------
def test_twenty_methods_get_twenty_styles_and_variants_share_their_method_colour():
    kinds = {f"method{i}": "one-shot" if i < 14 else "training" for i in range(20)}
    styles = method_styles(kinds)
    assert len({(s["color"], s["marker"]) for s in styles.values()}) == 20
    assert styles["method0"]["linestyle"] == "-" and styles["method15"]["linestyle"] == "--"
    labels = ("erk [finetune_steps=200]", "erk [finetune_steps=420]")
    variants = method_styles(dict.fromkeys(labels, "one-shot"))
    first, second = variants.values()
    assert first["color"] == second["color"] and first["linestyle"] != second["linestyle"]


def test_paired_p_values_handle_equal_and_constant_gaps():
    from prune_gym.bench.report import paired_p_value

    assert paired_p_value([0.8, 0.9, 0.7], [0.8, 0.9, 0.7]) == 1.0
    assert paired_p_value([0.95, 0.96, 0.94], [0.8, 0.81, 0.79]) == 0.0  # always 0.15 apart
    assert 0.05 < paired_p_value([0.80, 0.82, 0.78], [0.81, 0.80, 0.79]) < 1.0


def test_at_chance_flags_comparisons_where_every_method_is_broken():
    assert at_chance([0.089, 0.11], num_classes=10)  # both within 0.05 of 1/10
    assert not at_chance([0.089, 0.16], num_classes=10)  # one side learned something
    assert at_chance([0.45, 0.52], num_classes=2)  # chance is 1/2 there
    assert not at_chance([0.5, 0.7], num_classes=2)


def test_mean_std_cell_formats_a_mean_std_pair():
    assert mean_std_cell(mean_std([0.9, 1.0]), 3) == "0.950 ± 0.071"
    assert mean_std_cell(mean_std([0.5])) == "0.5000 ± 0.0000"
    assert mean_std_cell(None) == "n/a"
