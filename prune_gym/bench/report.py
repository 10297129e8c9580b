"""Benchmark reports: ``summary.md`` (mean ± std per method and budget) and PNG plots."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

SUMMARY_FIELDS = ("test_accuracy", "val_accuracy", "params_ratio", "macs_ratio")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (task, budget, method): mean/std of the summary fields, feasible rate, run count."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("status") == "ok":
            groups[record["task"], record["budget"], record["method"]].append(record)
    summary = {}
    for key, group in groups.items():
        row: dict[str, Any] = {"runs": len(group), "kind": group[0]["kind"]}
        for field in SUMMARY_FIELDS:
            row[field] = mean_std([r[field] for r in group])
        row["feasible"] = sum(bool(r["feasible"]) for r in group) / len(group)
        row["dense_accuracy"] = mean_std([r["dense_accuracy"] for r in group])
        overlaps = [r["mask_overlap"] for r in group if r.get("mask_overlap") is not None]
        row["mask_overlap"] = mean_std(overlaps) if overlaps else None
        summary[key] = row
    return summary


def _cell(pair: tuple[float, float] | None, digits: int = 4) -> str:
    return "n/a" if pair is None else f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def write_summary(records: list[dict[str, Any]], path: Path) -> str:
    """Write ``summary.md``: one table per task and budget, the best feasible method in bold."""
    summary = summarise(records)
    lines = ["# Benchmark summary", ""]
    lines.append(
        "Mean ± std over seeds. Accuracy is test accuracy (reported only; nothing is "
        "selected on test). **Bold**: best mean test accuracy among methods feasible in "
        "every run."
    )
    for task, budget in dict.fromkeys((t, b) for t, b, _ in summary):
        rows = {m: r for (t, b, m), r in summary.items() if (t, b) == (task, budget)}
        dense = next(iter(rows.values()))["dense_accuracy"]
        feasible = [m for m, r in rows.items() if r["feasible"] == 1.0]
        best = max(feasible, key=lambda m: rows[m]["test_accuracy"][0], default=None)
        lines += ["", f"## {task}, budget {budget} (dense test accuracy {_cell(dense)})", ""]
        header = "| method | kind | test acc. | val acc. | params ratio | MACs ratio | feasible |"
        lines += [header + " teacher overlap | runs |", "|---|---|---|---|---|---|---|---|---|"]
        for method, row in sorted(rows.items(), key=lambda item: -item[1]["test_accuracy"][0]):
            name = f"**{method}**" if method == best else method
            lines.append(
                f"| {name} | {row['kind']} | {_cell(row['test_accuracy'])} | "
                f"{_cell(row['val_accuracy'])} | {_cell(row['params_ratio'])} | "
                f"{_cell(row['macs_ratio'])} | {row['feasible']:.0%} | "
                f"{_cell(row['mask_overlap'], 3)} | {row['runs']} |"
            )
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        lines += ["", f"## Failed runs ({len(failed)})", ""]
        lines += [
            f"- {r['task']} {r['budget']} {r['method']} seed {r['seed']}: {r['error']}"
            for r in failed
        ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot_accuracy_vs_compression(records: list[dict[str, Any]], path: Path) -> None:
    """Test accuracy (mean ± std) against compression = 1 / params ratio, a line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = summarise(records)
    tasks = list(dict.fromkeys(t for t, _, _ in summary))
    figure = Figure(figsize=(8.0, 3.8 * len(tasks)), dpi=100)
    FigureCanvasAgg(figure)
    for index, task in enumerate(tasks, start=1):
        axes = figure.add_subplot(len(tasks), 1, index)
        for method in dict.fromkeys(m for t, _, m in summary if t == task):
            rows = sorted(
                (r for (t, _, m), r in summary.items() if t == task and m == method),
                key=lambda r: r["params_ratio"][0],
                reverse=True,
            )
            x = [1.0 / r["params_ratio"][0] for r in rows]
            y = [r["test_accuracy"][0] for r in rows]
            err = [r["test_accuracy"][1] for r in rows]
            axes.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2, label=method)
        axes.set_xscale("log", base=2)
        axes.set_xlabel("compression (dense params / kept params)")
        axes.set_ylabel("test accuracy")
        axes.set_title(task)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path)


def plot_layer_ratios(records: list[dict[str, Any]], path: Path) -> None:
    """Mean per-layer pruning ratio of every method, one panel per task and budget."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups: dict[tuple[str, str], dict[str, list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in records:
        if record.get("status") == "ok" and record.get("ratios"):
            groups[record["task"], record["budget"]][record["method"]].append(record["ratios"])
    figure = Figure(figsize=(9.0, 3.2 * max(len(groups), 1)), dpi=100)
    FigureCanvasAgg(figure)
    for index, ((task, budget), methods) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(max(len(groups), 1), 1, index)
        layers = list(next(iter(methods.values()))[0])
        width = 0.8 / len(methods)
        for offset, (method, runs) in enumerate(methods.items()):
            means = [statistics.fmean(r[layer] for r in runs) for layer in layers]
            positions = [i + offset * width for i in range(len(layers))]
            axes.bar(positions, means, width=width, label=method)
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, fontsize=7)
        axes.set_ylim(0, 1)
        axes.set_ylabel("pruning ratio")
        axes.set_title(f"{task}, {budget}", fontsize=9)
        axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path)


def write_report(records: list[dict[str, Any]], out_dir: Path) -> str:
    """``summary.md``, ``accuracy_vs_compression.png`` and ``layer_ratios.png`` in ``out_dir``."""
    text = write_summary(records, out_dir / "summary.md")
    if any(r.get("status") == "ok" for r in records):
        plot_accuracy_vs_compression(records, out_dir / "accuracy_vs_compression.png")
        plot_layer_ratios(records, out_dir / "layer_ratios.png")
    return text
