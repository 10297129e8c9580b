"""Benchmark figures, drawn from the summarised records, and an agent's training curves.

Every method keeps one style across figures: its own colour and marker (20 distinct
before any repeats), and a line style by kind (one-shot solid, or dash-dot for its other
fine-tuning step counts; training-time dashed; learned dotted), so the families stay apart at
a glance and a method's variants share its colour. Legends sit outside the axes; every
figure says what its points and error bars are.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
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


def accuracy_vs_compression(
    summary: dict[tuple[str, str, str], dict[str, Any]], path: Path
) -> None:
    """Test accuracy (mean ± std over seeds) against compression, one panel per task.

    Compression is dense / kept prunable weights; one tick per budget, at the median
    compression measured there; the dashed grey line is the dense model's test accuracy.
    A task whose rows give the test perplexity (a language model) is drawn by it
    instead, on a log axis. The figure is tall enough for the shared legend (one entry
    per method).
    """
    tasks = list(dict.fromkeys(t for t, _, _ in summary))
    kinds = {m: row["kind"] for (_, _, m), row in summary.items()}
    kinds = dict(sorted(kinds.items(), key=lambda item: natural_order(item[0])))
    styles = method_styles(kinds)
    height = max(3.6 * len(tasks), 0.2 * len(kinds) + 2.0)
    figure, axes = _figure(len(tasks), 1, 9.5, height)
    for ax, task in zip(axes, tasks, strict=True):
        cells = {(b, m): row for (t, b, m), row in summary.items() if t == task}
        perplexity = all(row["test_perplexity"] is not None for row in cells.values())
        measure = "test_perplexity" if perplexity else "test_accuracy"
        dense_measure = "dense_perplexity" if perplexity else "dense_accuracy"
        by_budget: dict[str, list[float]] = {}
        for (budget, _), row in cells.items():
            by_budget.setdefault(budget, []).append(1.0 / row["params_ratio"][0])
        for method in kinds:
            if not any(m == method for _, m in cells):
                continue
            rows = sorted(
                (row for (_, m), row in cells.items() if m == method),
                key=lambda row: row["params_ratio"][0],
                reverse=True,
            )
            x = [1.0 / row["params_ratio"][0] for row in rows]
            ax.errorbar(
                x,
                [row[measure][0] for row in rows],
                yerr=[row[measure][1] for row in rows],
                capsize=2,
                markersize=5,
                linewidth=1.3,
                label=method,
                **styles[method],
            )
        dense = next(iter(cells.values()))[dense_measure][0]
        ax.axhline(dense, color="0.45", linestyle=(0, (6, 3)), linewidth=1.2, label="dense")
        ax.set_xscale("log")
        if perplexity:
            ax.set_yscale("log")
        ticks = sorted(statistics.median(values) for values in by_budget.values())
        ax.set_xticks(ticks, [f"{value:.3g}×" for value in ticks])
        ax.minorticks_off()
        ax.set_xlabel("compression (dense / kept prunable weights)")
        ax.set_ylabel("test perplexity" if perplexity else "test accuracy")
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
    _shared_legend(
        figure,
        axes,
        "mean ± std over seeds\nsolid: one-shot (dash-dot: its\nother fine-tuning step count)\n"
        "dashed: training\ndotted: learned",
    )
    figure.tight_layout()
    save_png(figure, path)


def layer_densities(records: list[dict[str, Any]], labels: dict[str, str], path: Path) -> None:
    """Kept fraction of every layer (mean over seeds), one panel per task and budget.

    Densities are drawn on a log axis (high-sparsity differences show); layers are
    labelled by name and what they are (``conv 16→32 3x3``). A variant that does not
    control a layer (channel runs: the output layer) has no point there.
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
        for method, runs in sorted(methods.items(), key=lambda item: natural_order(item[0])):
            densities = [
                max(DENSITY_FLOOR, 1.0 - sum(r[n] for r in runs) / len(runs))
                if n in runs[0]
                else math.nan
                for n in layers
            ]
            ax.plot(range(len(layers)), densities, label=method, markersize=5, **styles[method])
        names = descriptions.get(task, {})
        ax.set_xticks(
            range(len(layers)),
            [f"{n}\n{names[n]}" if n in names else n for n in layers],
            fontsize=7,
            rotation=30,
            ha="right",
        )
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_plain_formatter())
        ax.yaxis.set_minor_formatter(_plain_formatter())
        ax.set_ylabel("kept fraction (log)")
        ax.set_title(f"{task}, {budget}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    _shared_legend(figure, axes[: len(panels)], "mean over seeds")
    figure.tight_layout()
    save_png(figure, path)


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
) -> None:
    """``training.png`` from SB3's ``progress.csv``: reward, val accuracy, costs, multipliers.

    Only panels the run logged appear (no multiplier panel without a Lagrangian); the val
    panel marks the checkpoint kept and draws the ``best`` fixed policy's (name, val
    accuracy) and the dense model's val accuracy as horizontal lines.
    """
    columns = read_progress(progress)
    costs = [r for r in budget if f"rollout/ep_cost_{r}_mean" in columns]
    lambdas = [r for r in budget if f"train/lambda_{r}" in columns]

    def validation(ax: Any) -> None:
        checks = columns["eval/val_accuracy"]
        ax.plot(*zip(*checks, strict=True), "o-", label="learned")
        kept = [(step, value) for step, value in checks if step == kept_timesteps]
        if kept:
            ax.plot(*kept[0], "*", markersize=14, color="C3", label="kept checkpoint")
        if best is not None:
            ax.axhline(best[1], ls="--", color="gray", label=best[0])
        ax.axhline(dense_val_accuracy, ls=":", color="black", label="dense")
        ax.set_ylabel(f"val acc. after\n{finetune_steps} steps")

    def cost(ax: Any) -> None:
        highest = 0.0
        for resource in costs:
            used = columns[f"rollout/ep_cost_{resource}_mean"]
            (line,) = ax.plot(*zip(*used, strict=True), label=f"{resource} used")
            limit = budget[resource]
            if isinstance(limit, Sequence):  # a budget range: one limit per episode
                ax.axhspan(*limit, color=line.get_color(), alpha=0.15, label=f"{resource} limits")
                limit = max(limit)
            else:
                ax.axhline(limit, ls="--", color=line.get_color(), label=f"{resource} limit")
            highest = max(highest, limit, *(value for _, value in used))
        ax.set_ylim(0.0, 1.15 * highest)  # a cost on its limit stays off the frame
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel("episode cost")

    def multipliers(ax: Any) -> None:
        for resource in lambdas:
            values = columns[f"train/lambda_{resource}"]
            ax.plot(*zip(*values, strict=True), label=f"lambda {resource}")
        ax.set_ylabel("Lagrange multiplier")

    def reward(ax: Any) -> None:
        ax.plot(*zip(*columns["rollout/ep_rew_mean"], strict=True), color="tab:green")
        ax.set_ylabel("episode reward")

    panels = [draw for draw, present in (
        (reward, "rollout/ep_rew_mean" in columns),
        (validation, "eval/val_accuracy" in columns),
        (cost, bool(costs)),
        (multipliers, bool(lambdas)),
    ) if present]  # fmt: skip
    if not panels:
        return
    figure, axes = _figure(len(panels), 1, 7.5, 2.4 * len(panels) + 0.6, sharex=True)
    for ax, draw in zip(axes, panels, strict=True):
        draw(ax)
        if draw is not reward:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("env steps")
    axes[0].set_title(title, fontsize=9)
    figure.tight_layout()
    save_png(figure, path)
