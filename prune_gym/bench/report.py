"""Benchmark reports, rebuilt from the records: tables, ``summary.md`` and PNG plots.

Records of the same method that differ in a setting (fine-tuning steps, env, a method
option, the package version, ...) are never merged: each variant is its own row, labelled
by the settings that tell it apart, e.g. ``uniform [finetune_steps=50]``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from scipy.stats import ttest_rel

from prune_gym.bench.plots import accuracy_vs_compression, layer_densities
from prune_gym.bench.spec import loosest_first
from prune_gym.envs.policy_names import RANDOM, RANDOM_WEIGHTS
from prune_gym.files import write_atomically

#: the record columns first (see docs/design.md, Records), then what identifies and explains
#: a run.
COLUMNS = (
    "task",
    "method",
    "budget",
    "seed",
    "val_accuracy",
    "test_accuracy",
    "dense_accuracy",
    "test_perplexity",
    "dense_perplexity",
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
    "train_steps",
    "val_samples",
    "test_samples",
    "mask_overlap",
    "support_recovery",
    "status",
    "error",
    "version",
    "run_key",
)
#: the files ``write_report`` rebuilds in a benchmark folder.
REPORT_FILES = (
    "results.json",
    "results.csv",
    "summary.md",
    "accuracy_vs_compression.png",
    "layer_ratios.png",
)
#: the fixed policies that act at random: they lose every tie (``best_on_val``).
RANDOM_POLICIES = (RANDOM, RANDOM_WEIGHTS)
SUMMARY_FIELDS = (
    "val_accuracy",
    "test_accuracy",
    "test_perplexity",
    "params_ratio",
    "macs_ratio",
    "train_steps",
)
#: the summary's columns of mean ± std, in order.
MEAN_STD_COLUMNS = ("val_accuracy", "test_accuracy", "params_ratio", "macs_ratio")
#: p-value at or above which a method is marked as not distinguishable from the best.
NOISE_LEVEL = 0.05
#: settings holding a digest, shortened to this many characters in labels.
DIGEST_CHARS = 8


def variant_labels(records: list[dict[str, Any]], ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Run key -> method name, suffixed with the settings that differ within its method.

    Within each (task, budget, method), settings with more than one value across the
    records are named in the label; a method run under one setting keeps its bare name.
    Settings in ``ignore`` are left out (they do not change what is being shown).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["task"], record["budget"], record["method"]].append(record)
    labels = {}
    for (_, _, method), group in groups.items():
        names = sorted(set().union(*(r.get("settings", {}) for r in group)) - set(ignore))
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
        extra = {"ratios": json.dumps(record.get("ratios", {})), "version": _version(record)}
        writer.writerow(record | extra)
    write_atomically(out_dir / "results.csv", text.getvalue())


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(
    records: list[dict[str, Any]], ignore: tuple[str, ...] = ()
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Per (task, budget, method variant): mean/std of the fields, feasibility, seeds.

    Variants are told apart by every setting but those in ``ignore`` (``variant_labels``).
    """
    ok = [record for record in records if record.get("status") == "ok"]
    labels = variant_labels(ok, ignore)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in ok:
        groups[record["task"], record["budget"], labels[record["run_key"]]].append(record)
    summary = {}
    for key, group in groups.items():
        row: dict[str, Any] = {"runs": len(group), "kind": group[0]["kind"]}
        for name in SUMMARY_FIELDS:
            values = [r[name] for r in group if r.get(name) is not None]
            row[name] = mean_std(values) if values else None
        row["feasible"] = sum(bool(r["feasible"]) for r in group) / len(group)
        row["dense_accuracy"] = mean_std([r["dense_accuracy"] for r in group])
        dense_perplexity = [r["dense_perplexity"] for r in group if "dense_perplexity" in r]
        row["dense_perplexity"] = mean_std(dense_perplexity) if dense_perplexity else None
        for name in ("mask_overlap", "support_recovery"):
            values = [r[name] for r in group if r.get(name) is not None]
            row[name] = mean_std(values) if values else None
        row["test_by_seed"] = {r["seed"]: r["test_accuracy"] for r in group}
        summary[key] = row
    return summary


def best_on_val(rows: dict[str, dict[str, Any]]) -> str | None:
    """The method with the best mean val accuracy among those feasible in every run.

    A tie (equal means) goes to a method that is not a random policy (``random``,
    ``random-weights``), then to the name first in alphabetical order: the choice never
    depends on the rows' order, and a random policy is chosen only when it alone is best.
    """
    feasible = sorted(m for m, row in rows.items() if row["feasible"] == 1.0)
    return max(
        feasible,
        key=lambda m: (rows[m]["val_accuracy"][0], m.split(" [")[0] not in RANDOM_POLICIES),
        default=None,
    )


def paired_p_value(ours: list[float], theirs: list[float]) -> float:
    """Two-sided paired t-test p-value; 1 for equal pairs, 0 for one constant nonzero gap."""
    gaps = [a - b for a, b in zip(ours, theirs, strict=True)]
    if max(gaps) - min(gaps) <= 1e-12:  # no spread: the test's variance is 0
        return 1.0 if abs(gaps[0]) <= 1e-12 else 0.0
    return float(ttest_rel(ours, theirs).pvalue)


def indistinguishable(row: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether a two-sided paired t-test over common seeds keeps test accuracies equal.

    Needs at least 3 seeds run by both.
    """
    seeds = sorted(set(row["test_by_seed"]) & set(best["test_by_seed"]))
    if len(seeds) < 3:
        return False
    ours = [row["test_by_seed"][s] for s in seeds]
    theirs = [best["test_by_seed"][s] for s in seeds]
    return paired_p_value(ours, theirs) >= NOISE_LEVEL


def at_chance(mean_accuracies: list[float], num_classes: int, margin: float = 0.05) -> bool:
    """True when every mean accuracy is below chance (1 / ``num_classes``) + ``margin``.

    Methods compared there are all broken: which one "wins" is noise, not a result.
    """
    return max(mean_accuracies) < 1.0 / num_classes + margin


def mean_std_cell(
    pair: tuple[float, float] | None, digits: int = 4, runs: int | None = None
) -> str:
    """A ``mean_std`` pair as a table cell: ``0.9713 ± 0.0042`` (``n/a`` for None).

    ``runs``: how many values the pair is over; for 1, the mean alone (``0.9713``): the
    spread of one value would read as a measured 0.
    """
    if pair is None:
        return "n/a"
    mean = f"{pair[0]:.{digits}f}"
    return mean if runs == 1 else f"{mean} ± {pair[1]:.{digits}f}"


def _steps(pair: tuple[float, float] | None) -> str:
    return "n/a" if pair is None else f"{pair[0]:,.0f}"


def _sizes(records: list[dict[str, Any]]) -> str:
    """``task val / test`` sample counts, as recorded."""
    sizes = {
        r["task"]: (r["val_samples"], r["test_samples"])
        for r in records
        if r.get("status") == "ok" and "val_samples" in r
    }
    return "; ".join(f"{task} {val} / {test}" for task, (val, test) in sizes.items())


def _version(record: dict[str, Any]) -> str:
    """The prune-gym version a record was made with ("unknown" for records without one)."""
    return record.get("settings", {}).get("version", "unknown")


def write_summary(records: list[dict[str, Any]], path: Path) -> str:
    """Write ``summary.md``: per task and budget, methods by val accuracy, the best in bold."""
    summary = summarise(records)
    lines = [
        "# Benchmark summary",
        "",
        "Mean ± std over seeds (the mean alone for one seed). *val acc.*: accuracy on the "
        "validation split, the only selection criterion. *test acc.*: accuracy on the test "
        "split, reported only. Both after the method's fine-tuning or training. *params "
        "ratio*: kept prunable weights / dense; *MACs ratio*: nonzero MACs / dense "
        "(structural with channels). *train steps*: optimizer steps spent after dense "
        "pre-training, fine-tuning included (for a learned policy, its rewards' fine-tuning "
        "too, at most). *feasible*: share of runs within the budget. **Bold**: best mean val "
        "accuracy among methods feasible in every run. ≈: not distinguishable from the bold "
        f"method (two-sided paired t-test over seeds on test accuracy, p >= {NOISE_LEVEL}; "
        "needs >= 3 common seeds). A language model's accuracy is its next-token accuracy, "
        "and its *test perplexity* the exponential of the mean next-token cross-entropy on "
        "the test split.",
    ]
    if sizes := _sizes(records):
        lines += ["", f"Validation / test samples: {sizes}."]
    versions = Counter(_version(record) for record in records)
    made_with = ", ".join(f"{v} ({n} runs)" for v, n in sorted(versions.items()))
    lines += ["", f"prune-gym version of the records: {made_with}."]
    for task, budget in loosest_first((t, b) for t, b, _ in summary):
        rows = {m: r for (t, b, m), r in summary.items() if (t, b) == (task, budget)}
        best = best_on_val(rows)
        first = next(iter(rows.values()))  # its runs measured the dense model too
        extra = [
            (name, title)
            for name, title in (
                ("test_perplexity", "test perplexity"),
                ("support_recovery", "support recovery"),
                ("mask_overlap", "teacher overlap"),
            )
            if any(row[name] is not None for row in rows.values())
        ]
        dense_text = (
            f"dense test accuracy {mean_std_cell(first['dense_accuracy'], runs=first['runs'])}"
        )
        if (perplexity := first["dense_perplexity"]) is not None:
            dense_text += f", perplexity {mean_std_cell(perplexity, 3, first['runs'])}"
        lines += ["", f"## {task}, budget {budget} ({dense_text})", ""]
        header = "| method | kind | val acc. | test acc. | params ratio | MACs ratio | train steps "
        header += "| feasible | " + "".join(f"{title} | " for _, title in extra) + "runs |"
        lines += [header, "|" + "---|" * (9 + len(extra))]
        for method, row in sorted(rows.items(), key=lambda item: -item[1]["val_accuracy"][0]):
            name = method
            if method == best:
                name = f"**{method}**"
            elif best is not None and indistinguishable(row, rows[best]):
                name = f"{method} ≈"
            runs = row["runs"]
            cells = [
                name,
                row["kind"],
                *(mean_std_cell(row[key], runs=runs) for key in MEAN_STD_COLUMNS),
                _steps(row["train_steps"]),
                f"{row['feasible']:.0%}",
                *(mean_std_cell(row[key], 3, runs) for key, _ in extra),
                str(row["runs"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
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


def write_report(records: list[dict[str, Any]], out_dir: Path) -> str:
    """Rebuild every report in ``out_dir`` from ``records``: tables, summary and plots.

    ``results.json`` / ``results.csv``, ``summary.md``, ``accuracy_vs_compression.png``
    and ``layer_ratios.png`` (``REPORT_FILES``), each replaced whole (a reader never sees
    a part of one); without a successful record, plots of earlier ones are removed.
    Returns the summary's text.
    """
    write_tables(records, out_dir)
    text = write_summary(records, out_dir / "summary.md")
    ok = [record for record in records if record.get("status") == "ok"]
    plots = out_dir / "accuracy_vs_compression.png", out_dir / "layer_ratios.png"
    if ok:
        accuracy_vs_compression(summarise(records), plots[0])
        with_ratios = [record for record in ok if record.get("ratios")]
        labels = variant_labels(ok, ignore=("finetune_steps",))  # same allocation
        layer_densities(with_ratios, labels, plots[1])
    else:
        for path in plots:
            path.unlink(missing_ok=True)
    return text
