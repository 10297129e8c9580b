"""The learned policy next to every fixed policy on the same task and budget: a bench run.

A run's comparison is a benchmark (``prune_gym.bench``) of its task and budget, so train
and bench give the same numbers by construction: the fixed policies act on the training
env's settings with plain ratio actions (so density logits never distort them), the
learned policy (``model.zip`` beside its ``run.json``) on the env it was trained on, and
every final mask is fine-tuned ``finetune_steps`` and measured on the full val and test
splits. Episode i is the bench seed ``seed + i`` (its task, policy and fine-tuning seed).
The records live in a bench folder (``<out>/bench``), which reuses the runs done before;
the fixed policies' runs are also shared by every comparison through the cache folder
(``share_baselines``), so a second run on the same task, budget and seed reuses them in
another folder. The best fixed policy is chosen on validation accuracy (``best_on_val``),
never on test.
"""

from __future__ import annotations

import json
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import prune_gym  # noqa: F401  (registers the env ids)
from agents.run_config import RunConfig
from prune_gym.baselines import supported_policies
from prune_gym.bench import BenchSpec, RecordStore, latest_records, run_benchmark, run_keys
from prune_gym.bench.report import best_on_val, mean_std_cell, summarise
from prune_gym.bench.runner import hold_folder
from prune_gym.bench.spec import loosest_first
from prune_gym.tasks import Task
from prune_gym.tasks.task import cache_dir

#: env settings that only shape a learned policy's actions or reward.
LEARNING_ONLY_SETTINGS = ("action", "reference", "density_factor")
#: settings of a learned policy's runs that change from one training seed to the next.
PER_TRAINING_SETTINGS = ("policy_sha256", "policy_env_kwargs")
SUMMARY_FIELDS = ("val_accuracy", "test_accuracy", "macs_ratio", "params_ratio")
#: the bench folder of a run's comparison, inside the run's folder.
BENCH_FOLDER = "bench"
#: the record store of the fixed policies' runs of every comparison, in the cache folder.
SHARED_FOLDER = "baselines"
#: seconds a comparison waits for another one reading or adding to the shared records.
SHARED_WAIT = 60.0


def comparison_spec(
    config: RunConfig, task: Task, policy: Path | None = None, projection: bool = False
) -> BenchSpec:
    """The bench of ``config``'s comparison: every fixed policy of its env, and ``policy``.

    The fixed policies get the training env's settings without the learning-only ones and
    without fine-tuning in the reward; seeds ``seed`` .. ``seed + eval_episodes - 1``;
    ``projection``: the learned policy also behind ``BudgetProjection``. Makes the env
    once (on ``task``), so bad settings raise here, before any file is written.
    """
    settings = {
        key: value
        for key, value in config.env_settings(task=task, reward_finetune_steps=0).items()
        if key not in LEARNING_ONLY_SETTINGS
    }
    names = tuple(supported_policies(gym.make(config.env, **settings)))
    del settings["task"], settings["budget"]
    return BenchSpec(
        tasks=(config.task,),
        budgets=tuple(budget.label for budget in config.evaluation_budgets),
        methods=names,
        seeds=config.eval_episodes,
        first_seed=config.seed,
        env=config.env,
        structure=settings.pop("structure", "unstructured"),
        finetune_steps=config.finetune_steps,
        max_ratio=settings.pop("max_ratio", None),
        device=settings.pop("device", "cpu"),
        env_kwargs=settings,
        policies=() if policy is None else (str(policy),),
        policy_algorithm=config.algorithm,  # a policy with no run.json beside its zip
        projection=projection,
    )


def run_comparison(
    config: RunConfig,
    task: Task,
    folder: Path,
    policy: Path | None = None,
    projection: bool = False,
) -> list[dict[str, Any]]:
    """The records of ``comparison_spec``'s runs, run in ``folder`` or reused from it or
    from the shared fixed policies' runs (``share_baselines``), each with its ``policy``
    name; ``RuntimeError`` naming the runs that failed."""
    records = share_baselines(comparison_spec(config, task, policy, projection), folder)
    failed = [record for record in records if record["status"] != "ok"]
    if failed:
        errors = "; ".join(f"{r['method']} seed {r['seed']}: {r['error']}" for r in failed)
        raise RuntimeError(f"the comparison's runs failed (records in {folder}): {errors}")
    return [record | {"policy": policy_name(record, config.agent)} for record in records]


def share_baselines(spec: BenchSpec, folder: Path) -> list[dict[str, Any]]:
    """``run_benchmark(spec, folder)``, reusing the fixed policies' runs of every comparison.

    A fixed policy's run depends only on its key (task definition, budget, settings, seed
    and version), not on the agent, yet the fixed policies take about a third of a short
    ``train``. So every comparison shares their runs through one record store,
    ``SHARED_FOLDER`` in the cache folder (``$PRUNE_GYM_CACHE``): its successful records
    under ``spec``'s keys are copied into ``folder`` first, where the bench reuses them,
    and the successful fixed-policy records the bench adds are copied there after. A
    second ``train`` on the same task, budget and seed thus redoes none, even into another
    ``--out``. Learned policies' runs and failed runs are never shared. The store is held
    (``RecordStore.lock``) only to read or add, waiting up to ``SHARED_WAIT`` s for
    another comparison; one that cannot be used (a read-only cache) is skipped with a
    warning.
    """
    keys = run_keys(spec)  # bad settings raise here, before any file is written
    shared = RecordStore(cache_dir() / SHARED_FOLDER)
    try:
        with shared.lock(wait=SHARED_WAIT):
            known = [r for r in latest_records(shared.read(), keys) if r["status"] == "ok"]
    except (ValueError, OSError) as error:
        warnings.warn(f"fixed policies' runs not shared: {error}", stacklevel=3)
        return run_benchmark(spec, folder)
    with hold_folder(folder) as store:
        done = {record["run_key"] for record in store.read() if record["status"] == "ok"}
        for record in known:
            if record["run_key"] not in done:
                store.append(record)
        records = run_benchmark(spec, folder)
    reused = {record["run_key"] for record in known}
    new = [
        record
        for record in records
        if record["status"] == "ok"
        and record["kind"] != "learned"
        and record["run_key"] not in reused
    ]
    if new:
        try:
            with shared.lock(wait=SHARED_WAIT):
                for record in new:
                    shared.append(record)
        except (ValueError, OSError) as error:
            warnings.warn(f"fixed policies' runs not shared: {error}", stacklevel=3)
    return records


def policy_name(record: dict[str, Any], agent: str, search: bool = False) -> str:
    """A record's row name: the fixed policy, or ``learned (<agent>)`` (a ``search``: the
    agent's name) [``+ projection``]."""
    if record["kind"] != "learned":
        return record["method"]
    projected = record["settings"].get("projection", False)
    return (agent if search else f"learned ({agent})") + (" + projection" if projected else "")


def searched_policies(records: list[dict[str, Any]]) -> set[str]:
    """The policy names of the records of search baselines (``search`` set)."""
    return {record["policy"] for record in records if record.get("search")}


def policy_summary(
    records: list[dict[str, Any]], ignore: tuple[str, ...] = ()
) -> dict[tuple[str, str], dict[str, Any]]:
    """``bench.report.summarise`` per (budget, ``policy`` name): means ± std over runs,
    the tightest budget first; at each budget the learned policy, then the search
    baselines (``searched_policies``), then the fixed policies.

    ``ignore``: settings that do not tell runs of one policy apart.
    """
    summary = summarise([record | {"method": record["policy"]} for record in records], ignore)
    rows = {(budget, policy): row for (_, budget, policy), row in summary.items()}
    tightest_first = [b for _, b in loosest_first((t, b) for t, b, _ in summary)][::-1]
    searches = searched_policies(records)

    def order(item: tuple[tuple[str, str], dict[str, Any]]) -> tuple[int, int]:
        (budget, policy), row = item
        rank = 1 if policy in searches else 0 if row["kind"] == "learned" else 2
        return tightest_first.index(budget), rank

    return dict(sorted(rows.items(), key=order))


def comparison_rows(
    config: RunConfig, records: list[dict[str, Any]], **learned: Any
) -> list[dict[str, Any]]:
    """One row per budget and policy, learned first at each budget: its means over the
    runs, ``best_on_val`` marking the fixed policy chosen on val at that budget;
    ``learned``: more fields of the learned rows.

    Two times, in seconds: ``train_time``, spent training the policy (a learned or
    searched policy's ``saved_train_time`` unless ``learned`` gives it; 0 for a fixed
    policy), and ``eval_time``, spent assessing it here (its runs' ``wall_time`` summed:
    acting, fine-tuning and measuring; a reused run counts the time it took when it ran).
    """
    summary = policy_summary(records)
    searches = searched_policies(records)
    fixed: dict[str, dict[str, dict[str, Any]]] = {budget: {} for budget, _ in summary}
    for (budget, name), row in summary.items():
        if row["kind"] != "learned":
            fixed[budget][name] = row
    best = {budget: best_on_val(rows) for budget, rows in fixed.items()}
    rows = []
    for (budget, name), stats in summary.items():
        mine = row_records(records, budget, name)
        is_search = name in searches
        is_learned = stats["kind"] == "learned" and not is_search
        kind = "search" if is_search else "learned" if is_learned else "baseline"
        row: dict[str, Any] = {"policy": name, "kind": kind}
        row["budget"] = budget
        row["episodes"] = stats["runs"]
        row |= {key: stats[key][0] for key in SUMMARY_FIELDS}
        if stats["test_perplexity"] is not None:  # a language model
            row["test_perplexity"] = stats["test_perplexity"][0]
        row |= {"feasible": stats["feasible"], "best_on_val": name == best[budget]}
        row["ratios"] = min(mine, key=lambda record: record["seed"])["ratios"]
        row["finetune_steps"] = config.finetune_steps
        row["timesteps"] = (
            config.timesteps if is_learned else config.search_timesteps if is_search else 0
        )
        row["train_time"] = 0.0 if kind == "baseline" else saved_train_time(mine[0])
        row["eval_time"] = sum(record["wall_time"] for record in mine)
        rows.append(row | (learned if is_learned else {}))
    return rows


def saved_train_time(record: dict[str, Any]) -> float | None:
    """Seconds ``train`` spent training a learned record's policy: the ``train_time`` of
    the ``results.json`` it wrote beside the ``model.zip``; None without one (a policy
    trained elsewhere, or a run from before ``train_time``)."""
    results = Path(record["method"].removeprefix("policy:")).with_name("results.json")
    try:
        rows = json.loads(results.read_text())
    except (OSError, ValueError):
        return None
    return next((r["train_time"] for r in rows if r.get("kind") == "learned"), None)


def row_records(records: list[dict[str, Any]], budget: str, policy: str) -> list[dict[str, Any]]:
    """The records of a ``policy_summary`` row: ``policy`` at ``budget`` (a variant
    label's suffix, if any, ignored)."""
    name = policy.split(" [")[0]
    return [r for r in records if r["policy"] == name and r["budget"] == budget]


def train_times(records: list[dict[str, Any]]) -> list[float | None]:
    """The training seconds of every model behind one policy's records, one per model
    (``saved_train_time``); ``[0.0]`` for a fixed policy."""
    if all(record["kind"] != "learned" for record in records):
        return [0.0]
    models = {record["method"]: record for record in records}
    return [saved_train_time(record) for record in models.values()]


def seconds(times: Sequence[float | None]) -> str:
    """Seconds as a table cell: the mean to 3 significant digits (``0.00512``, ``21.3``,
    ``363``), ``± std`` over several values; unknown ones (None) left out, ``n/a`` if all."""
    values = [time for time in times if time is not None]
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    text = f"{mean:.3g}" if mean < 1000 else f"{mean:,.0f}"
    return text + (f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else "")


def best_baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row of the fixed policy chosen on val (``best_on_val``) at the rows' first
    (tightest) budget, None if none always met it."""
    first = rows[0]["budget"] if rows else None
    return next((r for r in rows if r.get("best_on_val") and r["budget"] == first), None)


def budget_text(config: RunConfig) -> str:
    """The run's budget for table titles: ``flops <= 0.5, params <= 0.6``, or a range's
    ``params in [0.02, 0.2]``."""
    return ", ".join(
        f"{k} in [{v[0]:g}, {v[1]:g}]" if isinstance(v, list | tuple) else f"{k} <= {v:g}"
        for k, v in config.budget.items()
    )


#: the comparison table's columns after the budget.
COLUMNS = (
    "policy",
    "val acc.",
    "test acc.",
    "MACs ratio",
    "params ratio",
    "feasible rate",
    "env steps",
    "train time (s)",
    "eval time (s)",
)


def comparison_table(config: RunConfig, rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows, the best baseline at each budget (chosen on val) marked;
    a budget column when the rows span several budgets (a budget range)."""
    budgets = list(dict.fromkeys(row["budget"] for row in rows))
    several = len(budgets) > 1
    perplexity = all("test_perplexity" in row for row in rows)
    columns = (*COLUMNS[:3], "test ppl.", *COLUMNS[3:]) if perplexity else COLUMNS
    bests = {row["budget"]: row["policy"] for row in rows if row.get("best_on_val")}
    chosen = ", ".join(bests.get(b, "none") + (f" at {b}" if several else "") for b in budgets)
    lines = [
        f"# {config.agent} on {config.env}, task {config.task}, budget {budget_text(config)}",
        "",
        f"Deterministic policies, {config.eval_episodes} episode(s) each (bench seeds "
        f"{config.seed} to {config.seed + config.eval_episodes - 1}); every final mask "
        f"trained {config.finetune_steps} steps before val/test accuracy. (*): the best "
        f"baseline, chosen on val accuracy among those always feasible: {chosen}. The "
        "learned policy is the training checkpoint best on val (the untrained one "
        "included); test accuracy is only reported. *train time*: seconds spent training "
        "the policy (0 for a fixed policy); *eval time*: seconds spent assessing it here "
        "(acting, fine-tuning and measuring val and test, summed over its episodes; a run "
        "reused from before counts the time it took then).",
        "",
        ("| budget " if several else "") + f"| {' | '.join(columns)} |",
        ("|---" if several else "") + "|---" * len(columns) + "|",
    ]
    for row in rows:
        mark = " (*)" if row.get("best_on_val") else ""
        ppl = f"| {row['test_perplexity']:.3f} " if perplexity else ""
        lines.append(
            (f"| {row['budget']} " if several else "")
            + f"| {row['policy']}{mark} | {row['val_accuracy']:.4f} | {row['test_accuracy']:.4f} "
            f"{ppl}| {row['macs_ratio']:.4f} | {row['params_ratio']:.4f} | {row['feasible']:.0%} "
            f"| {row['timesteps']} | {seconds([row['train_time']])} "
            f"| {seconds([row['eval_time']])} |"
        )
    return "\n".join(lines) + "\n"


def seeds_table(
    config: RunConfig, records: list[dict[str, Any]], seeds: Sequence[int], failed: dict[int, str]
) -> str:
    """Markdown table of every policy's mean ± std over the runs of every training seed.

    ``records``: the seeds' comparison records; a fixed policy's run that two seeds share
    (their bench seeds overlap) counts once. Each seed's own table is in its folder.
    """
    budget = budget_text(config)
    done = [seed for seed in seeds if seed not in failed]
    lines = [
        f"# {config.agent} on {config.env}, task {config.task}, budget {budget}: "
        f"{len(done)} seed(s)",
        "",
        f"Mean ± std (sample) over the runs of seeds {', '.join(map(str, done)) or 'none'}, "
        f"{config.eval_episodes} bench seed(s) each; each seed's table is in its folder "
        "(seed-<n>/summary.md). Test accuracy is only reported. *train time*: seconds spent "
        "training the policy, mean ± std over its models (0 for a fixed policy); *eval "
        "time*: seconds spent assessing it, per run (acting, fine-tuning and measuring).",
        "",
        "| policy | runs | val acc. | test acc. | MACs ratio | params ratio | feasible rate "
        "| train time (s) | eval time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    records = latest_records(records)
    summary = policy_summary(records, ignore=PER_TRAINING_SETTINGS)
    several = len({budget for budget, _ in summary}) > 1
    if several:
        lines[-2:] = [f"| budget {lines[-2]}", f"|---{lines[-1]}"]
    for (budget, policy), row in summary.items():
        cells = " | ".join(mean_std_cell(row[key], runs=row["runs"]) for key in SUMMARY_FIELDS)
        mine = row_records(records, budget, policy)
        times = f"{seconds(train_times(mine))} | {seconds([r['wall_time'] for r in mine])}"
        start = f"| {budget} " if several else ""
        lines.append(
            f"{start}| {policy} | {row['runs']} | {cells} | {row['feasible']:.0%} | {times} |"
        )
    for seed, error in failed.items():
        lines.append(f"\nSeed {seed} failed: {error}")
    return "\n".join(lines) + "\n"
