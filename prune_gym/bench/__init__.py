"""Benchmarks that put learned policies next to the classical methods on the same budget."""

from prune_gym.bench.report import write_report
from prune_gym.bench.runner import COLUMNS, plan, run_benchmark
from prune_gym.bench.spec import BenchSpec, load_suite, parse_budgets

__all__ = [
    "COLUMNS",
    "BenchSpec",
    "load_suite",
    "parse_budgets",
    "plan",
    "run_benchmark",
    "write_report",
]
