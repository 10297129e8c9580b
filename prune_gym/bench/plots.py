"""Benchmark figures, drawn from the summarised records, and an agent's training curves.

Every method keeps one style across figures: its own colour and marker (20 distinct
before any repeats), and a line style by kind (one-shot solid, or dash-dot for its other
fine-tuning step counts; training-time dashed; learned dotted), so the families stay apart at
a glance and a method's variants share its colour. Legends sit outside the axes; every
figure says what its points and error bars are. Methods drawn on the same points are
named in the panel's title, the one on top with a hollow marker.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from prune_gym.bench.spec import loosest_first
from prune_gym.files import write_atomically

COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
    "#c5b0d5", "#c49c94", "#f7b6d2", "#525252", "#dbdb8d", "#9edae5",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = {"one-shot": "-", "training": "--", "learned": ":"}
#: line styles of a method's second, third... variants (other fine-tuning step counts, say).
VARIANT_LINESTYLES = ("-.", (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)))
#: densities are drawn on a log axis; a layer removed entirely is drawn at this floor.
DENSITY_FLOOR = 1e-3
#: the density axis reaches at least this low (a decade below 1).
DENSITY_SPAN_BOTTOM = 0.1
#: relative differences below which two methods' points are drawn on each other
#: (``coincident``): results (accuracy, compression) and layer densities (a log axis).
SAME_RESULT = 1e-3
SAME_DENSITY = 0.01
#: the multiplier axis reaches at least this high, so a multiplier at 0 is a line on a scale.
MULTIPLIER_AXIS_TOP = 0.1
#: the policy's action std, logged by PPO: the curve besides reward and val accuracy that
#: moves when every action meets the budget by construction.
POLICY_STD = "train/std"


def natural_order(label: str) -> tuple[Any, ...]:
    """Sort key: labels alphabetically, numbers inside them by value (200 before 1000)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label))


def method_styles(kinds: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{label: matplotlib style}`` (``kinds``: variant label -> kind), in order.

    Labels ``method [setting=value]`` of one method share its colour and marker; its
    first variant gets the kind's line style, the next ones ``VARIANT_LINESTYLES``.
    """
    methods = list(dict.fromkeys(label.split(" [")[0] for label in kinds))
    seen: dict[str, int] = defaultdict(int)
    styles = {}
    for label, kind in kinds.items():
        method = label.split(" [")[0]
        index, variant = methods.index(method), seen[method]
        seen[method] += 1
        line = LINESTYLES.get(kind, "-.")
        if variant:
            line = VARIANT_LINESTYLES[(variant - 1) % len(VARIANT_LINESTYLES)]
        styles[label] = {
            "color": COLORS[index % len(COLORS)],
            "marker": MARKERS[(index + index // len(COLORS)) % len(MARKERS)],
            "linestyle": line,
        }
    return styles


def _figure(
    rows: int, cols: int, width: float, height: float, sharex: bool = False
) -> tuple[Any, list[Any]]:
    """A figure of ``rows`` x ``cols`` panels (Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, sharex=sharex, squeeze=False)
    return figure, [ax for row in axes for ax in row]


def _plain_formatter() -> Any:
    """Log-axis tick labels as plain numbers (``0.05``, not ``5 x 10^-2``), only at 1, 2
    and 5 times a power of ten, so that labels never crowd."""
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _position: int) -> str:
        leading = round(value / 10 ** math.floor(math.log10(value) + 1e-9)) if value > 0 else 0
        return f"{value:g}" if leading in (1, 2, 5) else ""

    return FuncFormatter(label)


def save_png(figure: Any, path: Path) -> None:
    """Save a figure as PNG, replacing ``path`` whole: no half image is ever seen or left."""
    image = io.BytesIO()
    figure.savefig(image, format="png", bbox_inches="tight")
    write_atomically(path, image.getvalue())


def _shared_legend(figure: Any, axes: list[Any], note: str) -> None:
    """One legend for every panel, right of the panels, with ``note`` as its title."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.legend(
        handles.values(),
        handles.keys(),
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        title=note,
        title_fontsize=8,
        frameon=False,
    )


def coincident(curves: dict[str, Sequence[float]], tolerance: float) -> dict[str, str]:
    """``{label: earlier label}`` for every curve whose values all equal an earlier one's
    (within ``tolerance``, relative; NaN equal to NaN): drawn on top, it would hide it."""
    firsts: dict[str, Sequence[float]] = {}
    same = {}
    for label, values in curves.items():
        match = next(
            (first for first, seen in firsts.items() if _same(values, seen, tolerance)), None
        )
        if match is None:
            firsts[label] = values
        else:
            same[label] = match
    return same


def _same(ours: Sequence[float], theirs: Sequence[float], tolerance: float) -> bool:
    """Whether two curves' values match one for one (``coincident``)."""
    return len(ours) == len(theirs) and all(
        (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-9)
        for a, b in zip(ours, theirs, strict=True)
    )


def _same_note(same: dict[str, str], what: str) -> str:
    """A title's second line naming each group of ``coincident`` curves (``a = b = c``)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for label, first in same.items():
        groups[first].append(label)
    text = "; ".join(" = ".join([first, *rest]) for first, rest in groups.items())
    return f"\n{what}: {text}" if text else ""


def _drawn_style(style: dict[str, Any], on_top: bool) -> dict[str, Any]:
    """A method's plotting keywords; a curve drawn on a ``coincident`` one gets a larger,
    hollow marker, so the hidden one's marker shows inside it."""
    drawn = {"markersize": 5} | style
    if on_top:
        drawn |= {"markersize": 10, "markerfacecolor": "none", "markeredgewidth": 1.4}
    return drawn


def _hollow_note(axes: list[Any], meaning: str) -> str:
    """A legend title's line saying what a hollow marker means, if any panel has one."""
    lines = (line for ax in axes for line in ax.get_lines())
    hollow = any(line.get_markerfacecolor() == "none" for line in lines)
    return f"\nhollow marker: {meaning} (title)" if hollow else ""


def _measures(cells: dict[tuple[str, str], dict[str, Any]]) -> tuple[str, str]:
    """The summary fields a task's panel draws: test and dense perplexity where every row
    has one (a language model), test and dense accuracy otherwise."""
    if all(row["test_perplexity"] is not None for row in cells.values()):
        return "test_perplexity", "dense_perplexity"
    return "test_accuracy", "dense_accuracy"


def accuracy_vs_compression(summary: dict[tuple[str, str, str], dict[str, Any]], path: Path) -> Any:
    """Test accuracy (mean ± std over seeds) against compression, one panel per task.

    Compression is dense / kept prunable weights. A task with several budgets gets a line
    per method (``_accuracy_lines``), one with one budget a row per method
    (``_accuracy_dots``: at one compression every error bar would overlap). Methods whose
    points coincide are named in the panel's title, the one drawn on top hollow. A task
    whose rows give the test perplexity (a language model) is drawn by it instead, on a
    log axis. The figure is tall enough for the shared legend (one entry per method).
    Returns the figure.
    """
    tasks = list(dict.fromkeys(t for t, _, _ in summary))
    kinds = {m: row["kind"] for (_, _, m), row in summary.items()}
    kinds = dict(sorted(kinds.items(), key=lambda item: natural_order(item[0])))
    styles = method_styles(kinds)
    height = max(3.6 * len(tasks), 0.2 * len(kinds) + 2.0)
    figure, axes = _figure(len(tasks), 1, 9.5, height)
    for ax, task in zip(axes, tasks, strict=True):
        cells = {(b, m): row for (t, b, m), row in summary.items() if t == task}
        one_budget = len({budget for budget, _ in cells}) == 1
        (_accuracy_dots if one_budget else _accuracy_lines)(ax, task, cells, styles)
        ax.grid(alpha=0.3)
    _shared_legend(
        figure,
        axes,
        "mean ± std over seeds\nsolid: one-shot (dash-dot: its\nother fine-tuning step count)\n"
        "dashed: training\ndotted: learned" + _hollow_note(axes, "on the same\npoints as another"),
    )
    figure.tight_layout()
    save_png(figure, path)
    return figure


def _accuracy_lines(
    ax: Any, task: str, cells: dict[tuple[str, str], dict[str, Any]], styles: dict[str, Any]
) -> None:
    """A task at several budgets: each method's line against compression (log axis), one
    tick per budget at the median compression measured there, the dense model's value as a
    dashed grey line."""
    measure, dense_measure = _measures(cells)
    curves = {}
    for method in styles:
        rows = [row for (_, m), row in cells.items() if m == method]
        if rows:
            curves[method] = sorted(rows, key=lambda row: row["params_ratio"][0], reverse=True)
    points = {
        method: [v for row in rows for v in (row["params_ratio"][0], row[measure][0])]
        for method, rows in curves.items()
    }
    same = coincident(points, SAME_RESULT)
    for method, rows in curves.items():
        ax.errorbar(
            [1.0 / row["params_ratio"][0] for row in rows],
            [row[measure][0] for row in rows],
            yerr=[row[measure][1] for row in rows],
            capsize=2,
            linewidth=1.3,
            label=method,
            **_drawn_style(styles[method], method in same),
        )
    dense = next(iter(cells.values()))[dense_measure][0]
    ax.axhline(dense, color="0.45", linestyle=(0, (6, 3)), linewidth=1.2, label="dense")
    ax.set_xscale("log")
    if measure == "test_perplexity":
        ax.set_yscale("log")
    by_budget: dict[str, list[float]] = defaultdict(list)
    for (budget, _), row in cells.items():
        by_budget[budget].append(1.0 / row["params_ratio"][0])
    ticks = sorted(statistics.median(values) for values in by_budget.values())
    ax.set_xticks(ticks, [f"{value:.3g}×" for value in ticks])
    ax.minorticks_off()
    ax.set_xlabel("compression (dense / kept prunable weights)")
    ax.set_ylabel(measure.replace("_", " "))
    ax.set_title(task + _same_note(same, "same points"), fontsize=10)


def _accuracy_dots(
    ax: Any, task: str, cells: dict[tuple[str, str], dict[str, Any]], styles: dict[str, Any]
) -> None:
    """A task at one budget: one row per method, best at the top, its mean ± std as a dot
    with horizontal error bars; the dense model's value as a dashed grey line, the median
    compression measured in the title."""
    measure, dense_measure = _measures(cells)
    perplexity = measure == "test_perplexity"
    rows = {method: row for (_, method), row in cells.items()}
    names = sorted(rows, key=natural_order)
    points = {m: (rows[m]["params_ratio"][0], rows[m][measure][0]) for m in names}
    same = coincident(points, SAME_RESULT)
    order = sorted(names, key=lambda m: rows[m][measure][0], reverse=perplexity)
    for y, method in enumerate(order):
        ax.errorbar(
            rows[method][measure][0],
            y,
            xerr=rows[method][measure][1],
            capsize=2,
            label=method,
            **_drawn_style(styles[method], False) | {"linestyle": "none"},
        )
    ax.set_yticks(range(len(order)), order, fontsize=7)
    ax.set_ylim(-0.7, len(order) - 0.3)
    dense = next(iter(rows.values()))[dense_measure][0]
    ax.axvline(dense, color="0.45", linestyle=(0, (6, 3)), linewidth=1.2, label="dense")
    if perplexity:
        ax.set_xscale("log")
    ax.set_xlabel(measure.replace("_", " "))
    (budget,) = {budget for budget, _ in cells}
    compression = statistics.median(1.0 / row["params_ratio"][0] for row in rows.values())
    title = f"{task}, {budget} (compression {compression:.3g}×)"
    ax.set_title(title + _same_note(same, "same results"), fontsize=10)


def layer_densities(records: list[dict[str, Any]], labels: dict[str, str], path: Path) -> Any:
    """Kept fraction of every layer (mean over seeds), one panel per task and budget.

    Densities are drawn on a log axis (high-sparsity differences show) from 1 down to at
    least 0.1, so rounding noise never fills a panel; layers are labelled by name and what
    they are (``conv 16→32 3x3``). A variant that does not control a layer (channel runs:
    the output layer) has no point there. Methods with the same allocation are named in
    the panel's title, the one drawn on top hollow. Returns the figure.
    """
    panels: dict[tuple[str, str], dict[str, list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    kinds, descriptions = {}, {}
    for record in records:
        label = labels[record["run_key"]]
        panels[record["task"], record["budget"]][label].append(record["ratios"])
        kinds[label] = record["kind"]
        descriptions.setdefault(record["task"], record.get("layers", {}))
    kinds = dict(sorted(kinds.items(), key=lambda item: natural_order(item[0])))
    styles = method_styles(kinds)
    panels = {pair: panels[pair] for pair in loosest_first(panels)}
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure, axes = _figure(rows, cols, 4.6 * cols + 1.0, 3.4 * rows + 0.6)
    for ax, ((task, budget), methods) in zip(axes, panels.items(), strict=False):
        layers = list(dict.fromkeys(n for runs in methods.values() for r in runs for n in r))
        curves = {
            method: _densities(methods[method], layers)
            for method in sorted(methods, key=natural_order)
        }
        same = coincident(curves, SAME_DENSITY)
        for method, densities in curves.items():
            ax.plot(
                range(len(layers)),
                densities,
                label=method,
                **_drawn_style(styles[method], method in same),
            )
        names = descriptions.get(task, {})
        ax.set_xticks(
            range(len(layers)),
            [f"{n}\n{names[n]}" if n in names else n for n in layers],
            fontsize=7,
            rotation=30,
            ha="right",
        )
        ax.set_yscale("log")
        ax.set_ylim(*_density_limits([d for ds in curves.values() for d in ds]))
        ax.yaxis.set_major_formatter(_plain_formatter())
        ax.yaxis.set_minor_formatter(_plain_formatter())
        ax.set_ylabel("kept fraction (log)")
        note = _same_note(same, f"same allocation (within {SAME_DENSITY:.0%})")
        ax.set_title(f"{task}, {budget}{note}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _shared_legend(
        figure,
        axes[: len(panels)],
        "mean over seeds" + _hollow_note(axes, "same\nallocation as another"),
    )
    figure.tight_layout()
    save_png(figure, path)
    return figure


def _densities(runs: list[dict[str, float]], layers: list[str]) -> list[float]:
    """Each layer's kept fraction, mean over ``runs`` (pruned ratios), at least
    ``DENSITY_FLOOR``; NaN for a layer the runs do not control."""
    return [
        max(DENSITY_FLOOR, 1.0 - sum(r[n] for r in runs) / len(runs)) if n in runs[0] else math.nan
        for n in layers
    ]


def _density_limits(densities: list[float]) -> tuple[float, float]:
    """The log y-range of a density panel: from 1 (with room for markers) down to below
    the lowest density and at least to ``DENSITY_SPAN_BOTTOM``, so equal densities do not
    stretch rounding noise over the panel."""
    lowest = min((d for d in densities if not math.isnan(d)), default=1.0)
    return min(DENSITY_SPAN_BOTTOM, lowest / 1.5), 1.3


def read_progress(path: Path) -> dict[str, list[tuple[float, float]]]:
    """SB3's ``progress.csv`` as column -> [(timesteps, value)] for rows that hold a value.

    The check of the untrained policy has a row of its own, stamped by ``eval/timesteps``.
    """
    if not path.exists():
        return {}
    columns: dict[str, list[tuple[float, float]]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            steps = row.get("time/total_timesteps") or row.get("eval/timesteps")
            if not steps:
                continue
            for key, value in row.items():
                if value not in ("", None) and key != "time/total_timesteps":
                    columns.setdefault(key, []).append((float(steps), float(value)))
    return columns


def training_curves(
    progress: Path,
    path: Path,
    *,
    title: str,
    budget: dict[str, float | Sequence[float]],
    finetune_steps: int,
    kept_timesteps: int | None,
    best: tuple[str, float] | None,
    dense_val_accuracy: float,
    prunes_to_budget: bool,
) -> Any:
    """``training.png`` from SB3's ``progress.csv``: what the run's action can change.

    Always the episode reward and the val accuracy (``_validation_panel``). Where actions
    may overspend, the episode costs against their limits and the Lagrange multipliers;
    where every action meets the budget by construction (``prunes_to_budget``: density
    logits), costs equal their limits and multipliers stay 0, so the policy's action std
    (``POLICY_STD``: how far it still explores) is drawn instead. Panels the run did not
    log are left out. Returns the figure, None when nothing was logged.
    """
    columns = read_progress(progress)
    colors = {resource: f"C{index}" for index, resource in enumerate(budget)}
    costs = [r for r in budget if f"rollout/ep_cost_{r}_mean" in columns]
    lambdas = [r for r in budget if f"train/lambda_{r}" in columns]
    validation = partial(
        _validation_panel,
        finetune_steps=finetune_steps,
        kept_timesteps=kept_timesteps,
        best=best,
        dense_val_accuracy=dense_val_accuracy,
    )
    cost = partial(_cost_panel, budget=budget, resources=costs, colors=colors)
    panels = [draw for draw, present in (
        (_reward_panel, "rollout/ep_rew_mean" in columns),
        (validation, "eval/val_accuracy" in columns),
        (cost, costs and not prunes_to_budget),
        (partial(_multiplier_panel, colors=colors), lambdas and not prunes_to_budget),
        (_std_panel, POLICY_STD in columns and prunes_to_budget),
    ) if present]  # fmt: skip
    if not panels:
        return None
    figure, axes = _figure(len(panels), 1, 7.5, 2.4 * len(panels) + 0.6, sharex=True)
    for ax, draw in zip(axes, panels, strict=True):
        draw(ax, columns)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("env steps")
    if prunes_to_budget:
        title += "\nevery action meets the budget by construction: no cost or multiplier panel"
    axes[0].set_title(title, fontsize=9)
    figure.tight_layout()
    save_png(figure, path)
    return figure


def _reward_panel(ax: Any, columns: dict[str, list[tuple[float, float]]]) -> None:
    """The mean episode reward of each rollout."""
    ax.plot(*zip(*columns["rollout/ep_rew_mean"], strict=True), "o-", ms=3, color="tab:green")
    ax.set_ylabel("episode reward")


def _validation_panel(
    ax: Any,
    columns: dict[str, list[tuple[float, float]]],
    *,
    finetune_steps: int,
    kept_timesteps: int | None,
    best: tuple[str, float] | None,
    dense_val_accuracy: float,
) -> None:
    """The checks' val accuracy, the checkpoint kept starred and the checks over their
    budget ringed (kept only when none meets it), drawn above the lines of the dense model
    and of the ``best`` fixed policy (name, val accuracy), which it may touch."""
    checks = columns["eval/val_accuracy"]
    ax.plot(*zip(*checks, strict=True), "o-", color="C0", lw=2, zorder=3, label="learned")
    kept = [(step, value) for step, value in checks if step == kept_timesteps]
    if kept:
        ax.plot(*kept[0], "*", ms=14, color="C3", zorder=4, label="kept checkpoint")
    feasible = dict(columns.get("eval/feasible", []))
    if over := [(step, value) for step, value in checks if feasible.get(step, 1.0) < 1.0]:
        ring = {"ms": 11, "mfc": "none", "mec": "C3", "mew": 1.5, "zorder": 4}
        ax.plot(*zip(*over, strict=True), "o", **ring, label="over budget")
    if best is not None:
        ax.axhline(best[1], ls="--", color="gray", zorder=2, label=best[0])
    ax.axhline(dense_val_accuracy, ls=":", color="black", zorder=2, label="dense")
    ax.set_ylabel(f"val acc. after\n{finetune_steps} steps")
    ax.legend(fontsize=7)


def _cost_panel(
    ax: Any,
    columns: dict[str, list[tuple[float, float]]],
    *,
    budget: dict[str, float | Sequence[float]],
    resources: list[str],
    colors: dict[str, str],
) -> None:
    """Each logged resource's mean episode cost, a thin line with dots, over its limit drawn as a
    wide pale band of the same colour (a budget range: its span shaded), so a cost on its
    limit shows as a line through the band."""
    highest = 0.0
    for resource in resources:
        used = columns[f"rollout/ep_cost_{resource}_mean"]
        color = colors[resource]
        label = f"{resource} used"
        ax.plot(*zip(*used, strict=True), "o-", ms=3, lw=1.3, color=color, zorder=3, label=label)
        limit = budget[resource]
        if isinstance(limit, Sequence):  # a budget range: one limit per episode
            ax.axhspan(*limit, color=color, alpha=0.15, zorder=1, label=f"{resource} limits")
            limit = max(limit)
        else:
            ax.axhline(limit, color=color, lw=8, alpha=0.25, zorder=1, label=f"{resource} limit")
        highest = max(highest, limit, *(value for _, value in used))
    ax.set_ylim(0.0, 1.15 * highest)  # a cost on its limit stays off the frame
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_ylabel("episode cost")
    ax.legend(fontsize=7)


def _multiplier_panel(
    ax: Any, columns: dict[str, list[tuple[float, float]]], *, colors: dict[str, str]
) -> None:
    """Each Lagrange multiplier, one dot per update (a single update still shows), on an
    axis from 0 (they are never negative) to at least ``MULTIPLIER_AXIS_TOP``."""
    highest = 0.0
    for resource, color in colors.items():
        values = columns.get(f"train/lambda_{resource}")
        if values:
            style = {"color": color, "clip_on": False}  # unclipped: a dot at 0 shows whole
            ax.plot(*zip(*values, strict=True), "o-", ms=3, label=f"λ {resource}", **style)
            highest = max(highest, *(value for _, value in values))
    ax.set_ylim(0.0, max(MULTIPLIER_AXIS_TOP, 1.15 * highest))
    ax.set_ylabel("Lagrange multiplier")
    ax.legend(fontsize=7)


def _std_panel(ax: Any, columns: dict[str, list[tuple[float, float]]]) -> None:
    """The policy's action std after each update (``POLICY_STD``), from 0."""
    ax.plot(*zip(*columns[POLICY_STD], strict=True), "o-", ms=3, color="tab:purple")
    ax.set_ylim(0.0, 1.15 * max(value for _, value in columns[POLICY_STD]))
    ax.set_ylabel("policy action std\n(exploration)")
