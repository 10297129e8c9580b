"""What the plots show (read back from their figures) and the times of train's rows."""

import csv
import json

import pytest

from agents.comparison import comparison_rows, comparison_table, seeds_table
from agents.run_config import RunConfig
from prune_gym.bench.plots import accuracy_vs_compression, layer_densities, training_curves
from prune_gym.bench.report import summarise, write_summary

# training.png ---------------------------------------------------------------------------------
STEPS = (64, 128, 192, 256)


def write_progress(path, rows):
    """A ``progress.csv`` as SB3 writes it: one row per dump, blank cells where not logged."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path


def progress_rows(cost, std=(1.0, 0.8, 0.6, 0.5), val=(0.55, 0.6, 0.65, 0.7)):
    """The untrained policy's check, then four rollouts; one multiplier update (at 0)."""
    rows = [{"eval/val_accuracy": val[0], "eval/timesteps": 0}]
    for index, step in enumerate(STEPS):
        rows.append(
            {
                "eval/val_accuracy": val[index],
                "eval/timesteps": step,
                "time/total_timesteps": step,
                "rollout/ep_rew_mean": 0.2 + 0.1 * index,
                "rollout/ep_cost_params_mean": cost[index],
                "train/lambda_params": 0.0 if index == 1 else "",
                "train/std": std[index] if index else "",
            }
        )
    return rows


def draw_training(tmp_path, rows, prunes_to_budget, dense=0.9):
    """``training.png`` of ``rows`` at the budget params <= 0.3: its panels by y label."""
    figure = training_curves(
        write_progress(tmp_path / "progress.csv", rows),
        tmp_path / "training.png",
        title="ppo-lag on GlobalRatio",
        budget={"params": 0.3},
        finetune_steps=0,
        kept_timesteps=256,
        best=("snip", 0.6),
        dense_val_accuracy=dense,
        prunes_to_budget=prunes_to_budget,
    )
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"
    return {ax.get_ylabel().split("\n")[0]: ax for ax in figure.axes}


def line(ax, label):
    """The line of ``ax`` with this legend label."""
    return next(line for line in ax.get_lines() if line.get_label() == label)


def test_a_cost_on_its_limit_is_a_line_through_a_wide_pale_band(tmp_path):
    panels = draw_training(tmp_path, progress_rows(cost=[0.3] * 4), prunes_to_budget=False)
    ax = panels["episode cost"]
    used, limit = line(ax, "params used"), line(ax, "params limit")
    assert list(used.get_ydata()) == list(limit.get_ydata()[:1]) * 4  # on the limit
    assert used.get_marker() == "o" and used.get_zorder() > limit.get_zorder()
    assert limit.get_linewidth() >= 4 * used.get_linewidth()
    assert limit.get_alpha() <= 0.5 and used.get_alpha() in (None, 1.0)


def test_the_multiplier_panel_starts_at_zero_and_shows_a_single_update(tmp_path):
    panels = draw_training(tmp_path, progress_rows(cost=[0.4] * 4), prunes_to_budget=False)
    ax = panels["Lagrange multiplier"]
    low, high = ax.get_ylim()
    assert low == 0.0 and high >= 0.1  # not the ±0.04 range matplotlib gives one point
    (multiplier,) = ax.get_lines()
    assert len(multiplier.get_xdata()) == 1 and multiplier.get_marker() == "o"  # visible


def test_when_actions_meet_the_budget_the_panels_are_reward_val_and_policy_std(tmp_path):
    panels = draw_training(tmp_path, progress_rows(cost=[0.3] * 4), prunes_to_budget=True)
    assert list(panels) == ["episode reward", "val acc. after", "policy action std"]
    (std,) = panels["policy action std"].get_lines()
    assert list(std.get_ydata()) == [0.8, 0.6, 0.5]  # it moves: the panel says something
    assert panels["policy action std"].get_ylim()[0] == 0.0
    title = panels["episode reward"].get_title()
    assert "meets the budget by construction" in title


def test_checks_over_their_budget_are_ringed_on_the_val_panel(tmp_path):
    rows = progress_rows(cost=[0.4] * 4)
    for row, feasible in zip(rows, (1.0, 1.0, 0.0, 0.0, 1.0), strict=True):
        row["eval/feasible"] = feasible
    ax = draw_training(tmp_path, rows, prunes_to_budget=False)["val acc. after"]
    ringed = line(ax, "over budget")
    assert list(ringed.get_xdata()) == [128, 192] and ringed.get_markerfacecolor() == "none"


def test_the_learned_val_line_is_drawn_above_the_dense_line_it_touches(tmp_path):
    rows = progress_rows(cost=[0.3] * 4, val=(0.9, 0.9, 0.9, 0.9))
    ax = draw_training(tmp_path, rows, prunes_to_budget=True, dense=0.9)["val acc. after"]
    learned, dense, best = line(ax, "learned"), line(ax, "dense"), line(ax, "snip")
    assert set(learned.get_ydata()) == set(dense.get_ydata()) == {0.9}
    assert learned.get_zorder() > max(dense.get_zorder(), best.get_zorder())
    assert learned.get_color() != dense.get_color() and learned.get_linestyle() == "-"
    assert dense.get_linestyle() == ":"


# bench plots ----------------------------------------------------------------------------------
def record(method, budget, seed, test, ratio, kind="one-shot", **extra):
    """A successful bench record on digits-mlp (val accuracy = test accuracy)."""
    return {
        "run_key": f"{method}-{budget}-{seed}",
        "task": "digits-mlp",
        "budget": budget,
        "method": method,
        "seed": seed,
        "kind": kind,
        "status": "ok",
        "settings": {},
        "val_accuracy": test,
        "test_accuracy": test,
        "params_ratio": ratio,
        "macs_ratio": ratio,
        "train_steps": 0,
        "feasible": True,
        "dense_accuracy": 0.97,
        "val_samples": 142,
        "test_samples": 360,
    } | extra


def errorbars(figure):
    """Each method's ErrorbarContainer of the first panel, by label."""
    return {c.get_label(): c for c in figure.axes[0].containers}


def test_with_one_budget_each_method_gets_a_row_and_its_error_bar_runs_along_it(tmp_path):
    records = [
        record(method, "params=0.2", seed, test + 0.01 * seed, 0.2)
        for method, test in (("uniform", 0.5), ("global-magnitude", 0.7), ("gmp", 0.7))
        for seed in range(2)
    ]
    figure = accuracy_vs_compression(summarise(records), tmp_path / "a.png")
    bars = errorbars(figure)
    assert set(bars) == {"uniform", "global-magnitude", "gmp"}
    positions = []
    for bar in bars.values():
        (x,), (y,) = bar.lines[0].get_xdata(), bar.lines[0].get_ydata()
        positions.append(y if bar.has_xerr else x)  # across the error bar's direction
        assert bar.has_xerr != bar.has_yerr
    assert len(set(positions)) == 3  # no two methods' error bars on one line
    assert "global-magnitude = gmp" in figure.axes[0].get_title()
    assert "hollow" not in figure.legends[0].get_title().get_text()  # rows hide nothing


def test_coincident_curves_are_named_in_the_title_and_the_top_one_is_hollow(tmp_path):
    records = [
        record(method, f"params={ratio}", 0, test * ratio / 0.2, ratio)
        for method, test in (("uniform", 0.5), ("global-magnitude", 0.7), ("gmp", 0.7))
        for ratio in (0.1, 0.2)
    ]
    figure = accuracy_vs_compression(summarise(records), tmp_path / "a.png")
    title = figure.axes[0].get_title()
    assert "global-magnitude = gmp" in title and "uniform" not in title
    bars = errorbars(figure)
    assert bars["gmp"].lines[0].get_markerfacecolor() == "none"  # drawn on global-magnitude
    assert bars["global-magnitude"].lines[0].get_markerfacecolor() != "none"
    assert "hollow marker" in figure.legends[0].get_title().get_text()


def test_layer_ratios_span_a_decade_so_rounding_noise_stays_flat(tmp_path):
    ratios = [{"fc1": 0.8, "fc2": 0.80005}, {"fc1": 0.8, "fc2": 0.8}]
    records = [
        record("uniform", "params=0.2", seed, 0.5, 0.2, ratios=ratios[seed]) for seed in (0, 1)
    ]
    labels = {r["run_key"]: r["method"] for r in records}
    figure = layer_densities(records, labels, tmp_path / "layers.png")
    low, high = figure.axes[0].get_ylim()
    assert low <= 0.1 and high >= 1.0  # not 0.19995 to 0.2


def test_layer_ratios_name_methods_with_the_same_allocation(tmp_path):
    same = {"fc1": 0.7, "fc2": 0.9}
    records = [
        record("uniform", "params=0.2", 0, 0.5, 0.2, ratios=same),
        record("policy:model.zip", "params=0.2", 0, 0.5, 0.2, kind="learned", ratios=same),
        record("global-magnitude", "params=0.2", 0, 0.5, 0.2, ratios={"fc1": 0.6, "fc2": 0.95}),
        record("gmp", "params=0.2", 0, 0.5, 0.2, ratios={"fc1": 0.603, "fc2": 0.95}),  # -0.75%
        record("erk", "params=0.2", 0, 0.5, 0.2, ratios={"fc1": 0.5, "fc2": 0.95}),
    ]
    labels = {r["run_key"]: r["method"] for r in records}
    figure = layer_densities(records, labels, tmp_path / "layers.png")
    ax = figure.axes[0]
    note = ax.get_title().split("\n")[1]
    assert "policy:model.zip = uniform" in note and "global-magnitude = gmp" in note
    assert "erk" not in note
    assert line(ax, "uniform").get_markerfacecolor() == "none"
    assert line(ax, "policy:model.zip").get_markerfacecolor() != "none"


def test_summary_prints_no_spread_for_one_seed(tmp_path):
    one = write_summary([record("uniform", "params=0.2", 0, 0.5, 0.2)], tmp_path / "s.md")
    table = [row for row in one.splitlines() if row.startswith(("| **uniform", "## "))]
    assert "| 0.5000 |" in table[1] and not any("±" in row for row in table)
    two = [record("uniform", "params=0.2", seed, 0.5 + seed / 10, 0.2) for seed in (0, 1)]
    assert "0.5500 ± 0.0707" in write_summary(two, tmp_path / "s.md")


# times of train's rows ------------------------------------------------------------------------
def trained_run(folder, train_time):
    """A ``train`` folder's model and results.json, as the comparison finds them."""
    folder.mkdir()
    (folder / "model.zip").write_bytes(b"")
    rows = [{"policy": "learned (ppo-lag)", "kind": "learned", "train_time": train_time}]
    (folder / "results.json").write_text(json.dumps(rows))
    return f"policy:{folder / 'model.zip'}"


def comparison_records(model, seed=0):
    """A learned policy's record (an assessment of 0.005 s) and a fixed policy's (1.5 s)."""
    learned = record(model, "params=0.3", seed, 0.8, 0.3, kind="learned", wall_time=0.005)
    uniform = record("uniform", "params=0.3", seed, 0.6, 0.3, wall_time=1.5)
    return [
        learned | {"policy": "learned (ppo-lag)", "ratios": {"fc1": 0.7}},
        uniform | {"policy": "uniform", "ratios": {"fc1": 0.7}},
    ]


@pytest.fixture
def config():
    return RunConfig(task="digits-mlp", budget={"params": 0.3}, timesteps=256, searches=[])


def test_train_rows_name_training_and_assessment_times_and_the_table_shows_both(tmp_path, config):
    records = comparison_records(trained_run(tmp_path / "run", 363.0))
    rows = {row["policy"]: row for row in comparison_rows(config, records)}  # as eval does
    learned, uniform = rows["learned (ppo-lag)"], rows["uniform"]
    assert (learned["train_time"], learned["eval_time"]) == (363.0, 0.005)
    assert (uniform["train_time"], uniform["eval_time"]) == (0.0, 1.5)
    assert not any("wall_time" in row for row in rows.values())
    given = comparison_rows(config, records, train_time=20.0)  # as train does
    assert given[0]["train_time"] == 20.0
    table = comparison_table(config, list(rows.values()))
    header = next(line for line in table.splitlines() if line.startswith("| policy"))
    assert header.endswith("| train time (s) | eval time (s) |")
    assert "| learned (ppo-lag) |" in table and "| 256 | 363 | 0.005 |" in table
    assert "| uniform (*) |" in table and "| 0 | 0 | 1.5 |" in table


def test_the_seeds_table_shows_mean_train_and_eval_times(tmp_path, config):
    records = comparison_records(trained_run(tmp_path / "seed-0", 100.0), seed=0)
    records += comparison_records(trained_run(tmp_path / "seed-1", 120.0), seed=1)
    table = seeds_table(config, records, [0, 1], {})
    header = next(line for line in table.splitlines() if line.startswith("| policy"))
    assert header.endswith("| train time (s) | eval time (s) |")
    learned = next(line for line in table.splitlines() if line.startswith("| learned"))
    assert learned.endswith("| 110 ± 14 | 0.005 ± 0 |")
    one = seeds_table(config, comparison_records(trained_run(tmp_path / "one", 9.0)), [0], {})
    learned = next(line for line in one.splitlines() if line.startswith("| learned"))
    assert "±" not in learned and learned.endswith("| 9 | 0.005 |")
