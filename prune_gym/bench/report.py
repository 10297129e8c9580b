"""Benchmark reports, rebuilt from the records: tables, ``summary.md`` and PNG plots.

Records of the same method that differ in a setting (fine-tuning steps, env, a method
option, the package version, ...) are never merged: each variant is its own row, labelled
by the settings that tell it apart, e.g. ``uniform [finetune_steps=50]``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from prune_gym.bench.store import write_atomically

#: the DESIGN §8 columns first, then what identifies and explains a run.
COLUMNS = (
    "task",
    "method",
    "budget",
    "seed",
    "val_accuracy",
    "test_accuracy",
    "dense_accuracy",
    "sparsity",
    "params_ratio",
    "macs_ratio",
    "speedup",
    "feasible",
    "wall_time",
    "kind",
    "env",
    "structure",
    "finetune_steps",
    "max_ratio",
    "mask_overlap",
    "status",
    "error",
    "run_key",
)
SUMMARY_FIELDS = ("test_accuracy", "val_accuracy", "params_ratio", "macs_ratio")
#: settings holding a digest, shortened to this many characters in labels.
DIGEST_CHARS = 8


def variant_labels(records: list[dict[str, Any]]) -> dict[str, str]:
    """Run key -> method name, suffixed with the settings that differ within its method.

    Within each (task, budget, method), settings with more than one value across the
    records are named in the label; a method run under one setting keeps its bare name.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["task"], record["budget"], record["method"]].append(record)
    labels = {}
    for (_, _, method), group in groups.items():
        names = sorted(set().union(*(r.get("settings", {}) for r in group)))
        differing = [
            name
            for name in names
            if len({_setting_text(r.get("settings", {}).get(name)) for r in group}) > 1
        ]
        for record in group:
            settings = record.get("settings", {})
            suffix = ", ".join(f"{n}={_setting_text(settings.get(n))}" for n in differing)
            labels[record["run_key"]] = f"{method} [{suffix}]" if suffix else method
    return labels


def _setting_text(value: Any) -> str:
    """A short, stable text for a setting's value (digests cut to ``DIGEST_CHARS``)."""
    if isinstance(value, str) and len(value) >= 20 and all(c in "0123456789abcdef" for c in value):
        return value[:DIGEST_CHARS]
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def write_tables(records: list[dict[str, Any]], out_dir: Path) -> None:
    """``results.json`` (whole records) and ``results.csv`` (the columns, ratios as JSON)."""
    write_atomically(out_dir / "results.json", json.dumps(records, indent=1, default=float))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=[*COLUMNS, "ratios"], extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow(record | {"ratios": json.dumps(record.get("ratios", {}))})
    write_atomically(out_dir / "results.csv", text.getvalue())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (task, budget, method variant): mean/std of the summary fields, feasibility, runs."""
    ok = [record for record in records if record.get("status") == "ok"]
    labels = variant_labels(ok)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in ok:
        groups[record["task"], record["budget"], labels[record["run_key"]]].append(record)
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
    write_atomically(path, text)
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
    save_png(figure, path)


def plot_layer_ratios(records: list[dict[str, Any]], path: Path) -> None:
    """Mean per-layer pruning ratio of every method, one panel per task and budget."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [record for record in records if record.get("status") == "ok" and record.get("ratios")]
    labels = variant_labels(ok)
    groups: dict[tuple[str, str], dict[str, list[dict[str, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for record in ok:
        groups[record["task"], record["budget"]][labels[record["run_key"]]].append(record["ratios"])
    figure = Figure(figsize=(9.0, 3.2 * max(len(groups), 1)), dpi=100)
    FigureCanvasAgg(figure)
    for index, ((task, budget), methods) in enumerate(groups.items(), start=1):
        axes = figure.add_subplot(max(len(groups), 1), 1, index)
        # a variant that does not control a layer (channel runs: the output layer) has no bar
        layers = list(dict.fromkeys(name for runs in methods.values() for r in runs for name in r))
        width = 0.8 / len(methods)
        for offset, (method, runs) in enumerate(methods.items()):
            means = [
                statistics.fmean(r[layer] for r in runs) if layer in runs[0] else math.nan
                for layer in layers
            ]
            positions = [i + offset * width for i in range(len(layers))]
            axes.bar(positions, means, width=width, label=method)
        axes.set_xticks([i + 0.4 - width / 2 for i in range(len(layers))], layers, fontsize=7)
        axes.set_ylim(0, 1)
        axes.set_ylabel("pruning ratio")
        axes.set_title(f"{task}, {budget}", fontsize=9)
        axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    save_png(figure, path)


def save_png(figure: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG through a temporary file, so no half image remains."""
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png")
    temporary.replace(path)


def write_report(records: list[dict[str, Any]], out_dir: Path) -> str:
    """Rebuild every report in ``out_dir`` from ``records``: tables, summary and plots.

    ``results.json`` / ``results.csv``, ``summary.md``, ``accuracy_vs_compression.png``
    and ``layer_ratios.png``; returns the summary's text.
    """
    write_tables(records, out_dir)
    text = write_summary(records, out_dir / "summary.md")
    if any(r.get("status") == "ok" for r in records):
        plot_accuracy_vs_compression(records, out_dir / "accuracy_vs_compression.png")
        plot_layer_ratios(records, out_dir / "layer_ratios.png")
    return text
