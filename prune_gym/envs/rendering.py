"""Pictures and text of an episode's outcome: per-layer ratios against the budget."""

from __future__ import annotations

from typing import Any

import numpy as np


def summary(info: dict[str, Any]) -> str:
    """One line with the episode's accuracy and costs, or a note that none has ended yet."""
    if "accuracy" not in info:
        return "no episode has ended yet"
    return (
        f"accuracy {info['accuracy']:.4f}  MACs {info['macs_ratio']:.4f}  "
        f"params {info['params_ratio']:.4f}  feasible {info['feasible']}"
    )


def ratios_text(ratios: dict[str, float], info: dict[str, Any]) -> str:
    """A plain-text table of per-layer ratios, then the episode's accuracy and costs."""
    width = max(len(name) for name in ratios)
    lines = [f"{name:<{width}}  {ratio:6.3f}" for name, ratio in ratios.items()]
    return "\n".join([*lines, summary(info)])


def ratios_chart(ratios: dict[str, float], info: dict[str, Any], title: str = "") -> np.ndarray:
    """An RGB image (H, W, 3, uint8) of per-layer pruning ratios, with cost and accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names, values = zip(*ratios.items(), strict=True)
    figure = Figure(figsize=(max(4.0, 0.45 * len(names) + 2.0), 3.2), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar(range(len(names)), values, color="tab:blue")
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes.set_ylim(0.0, 1.0)
    axes.set_ylabel("pruning ratio")
    axes.set_title(f"{title}: {summary(info)}", fontsize=8)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
