"""Benchmarks that put learned policies next to the classical methods on the same budget."""

from prune_gym.bench.planning import plan
from prune_gym.bench.report import COLUMNS, write_report
from prune_gym.bench.runner import run_benchmark, run_keys
from prune_gym.bench.spec import BenchSpec, available_suites, load_suite, parse_budgets
from prune_gym.bench.store import RecordStore, latest_records

__all__ = [
    "COLUMNS",
    "BenchSpec",
    "RecordStore",
    "available_suites",
    "latest_records",
    "load_suite",
    "parse_budgets",
    "plan",
    "run_benchmark",
    "run_keys",
    "write_report",
]
