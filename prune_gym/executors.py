"""Where independent jobs run: here, one after another, or as Ray tasks on a cluster.

A benchmark is hundreds of independent runs and ``train --seeds`` one agent per seed.
An executor calls ``function(job)`` for every job and yields an ``Outcome`` as each one
finishes; the caller (the driver) writes every record itself, so a record is written
once, whichever worker ran the job and however often it was retried. ``function`` must
record its own deterministic failures in its result: an executor's ``Outcome.error`` is
reserved for jobs it lost (a worker that kept dying).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import torch

from prune_gym.checks import check_int, check_number
from prune_gym.ids import EXECUTORS
from prune_gym.plugins import import_modules, resolved

RAY_HINT = "pip install 'prune-gym[ray]'"
#: times Ray re-runs a job whose worker died (killed process, lost node).
DEFAULT_RETRIES = 3

Job = TypeVar("Job")


class MissingExtra(RuntimeError):
    """An optional dependency (a ``pip install 'prune-gym[extra]'``) is not installed."""


@dataclass(frozen=True)
class Outcome(Generic[Job]):
    """A finished job: ``function(job)``'s result, or why the executor lost the job."""

    job: Job
    result: Any = None
    error: str | None = None


class Executor(Protocol):
    """Runs ``function`` on every job, yielding outcomes in the order they finish."""

    name: str

    def map_unordered(
        self, function: Callable[[Job], Any], jobs: Iterable[Job]
    ) -> Iterator[Outcome[Job]]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every job in this process, in order: what ``--executor local`` (the default) does."""

    name = "local"

    def map_unordered(
        self, function: Callable[[Job], Any], jobs: Iterable[Job]
    ) -> Iterator[Outcome[Job]]:
        """``Outcome(job, function(job))`` for each job, in order; exceptions propagate."""
        for job in jobs:
            yield Outcome(job, function(job))

    def close(self) -> None:
        """Nothing to release."""


class RayExecutor:
    """Each job a Ray task with ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs.

    Connects to the Ray instance at ``address`` (``"auto"``: the cluster this machine
    belongs to), or starts a local one when ``address`` is None, unless Ray is already
    initialised in this process (then that instance is used, and left running). A job
    whose worker dies is re-run up to ``max_retries`` times by Ray; an exception raised
    by ``function`` is not retried. Workers import ``imports`` (``--import`` modules)
    before their first job and use ``cpus_per_run`` torch threads.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_run: float = 1,
        gpus_per_run: float = 0,
        imports: Sequence[str] = (),
        max_retries: int = DEFAULT_RETRIES,
    ) -> None:
        ray = require_ray()
        self.cpus_per_run = check_number(cpus_per_run, "cpus_per_run", 0.0, low_open=True)
        self.gpus_per_run = check_number(gpus_per_run, "gpus_per_run", 0.0)
        self.max_retries = check_int(max_retries, "max_retries", 0)
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address)
        self._imports = resolved(imports)
        self._task = ray.remote(_in_worker).options(
            num_cpus=self.cpus_per_run,
            num_gpus=self.gpus_per_run,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )

    def map_unordered(
        self, function: Callable[[Job], Any], jobs: Iterable[Job]
    ) -> Iterator[Outcome[Job]]:
        """Submit every job at once; yield each outcome as its task finishes.

        A job still running when the caller stops iterating (an interrupt) is cancelled.
        """
        import ray

        threads = max(1, int(self.cpus_per_run))
        pending = {self._task.remote(function, job, self._imports, threads): job for job in jobs}
        try:
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                yield self._outcome(pending.pop(ready), ready)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def _outcome(self, job: Job, ref: Any) -> Outcome[Job]:
        """The result behind ``ref``, or why Ray could not produce it."""
        import ray

        try:
            return Outcome(job, ray.get(ref))
        except ray.exceptions.RayTaskError as error:  # raised in the worker, e.g. by an import
            cause = error.cause if error.cause is not None else error
            return Outcome(job, error=f"{type(cause).__name__} in the worker: {cause}")
        except ray.exceptions.RayError as error:  # its worker died every attempt, or cancelled
            attempts = self.max_retries + 1
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return Outcome(
                job, error=f"{type(error).__name__} after {attempts} attempt(s): {first_line}"
            )

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def require_ray() -> Any:
    """The ``ray`` module, or ``MissingExtra`` saying how to install it."""
    try:
        import ray
    except ImportError as error:
        message = f"--executor ray needs Ray, which is not installed: {RAY_HINT}"
        raise MissingExtra(message) from error
    return ray


def make_executor(
    kind: str = "local",
    *,
    address: str | None = None,
    cpus_per_run: float = 1,
    gpus_per_run: float = 0,
    imports: Sequence[str] = (),
) -> Executor:
    """The executor named ``kind`` (``"local"`` or ``"ray"``); Ray options need ``"ray"``."""
    if kind == "local":
        ray_only = {
            "address": address is not None,
            "cpus_per_run": cpus_per_run != 1,
            "gpus_per_run": gpus_per_run != 0,
        }
        given = [name for name, is_given in ray_only.items() if is_given]
        if given:
            raise ValueError(
                f"{', '.join(given)} given with executor 'local': they place runs on a Ray "
                "cluster; use executor 'ray' (--executor ray)"
            )
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, cpus_per_run, gpus_per_run, imports)
    raise ValueError(f"executor {kind!r} is not one of {EXECUTORS}")


def _in_worker(function: Callable[[Job], Any], job: Job, imports: Sequence[str], threads: int):
    """A Ray task's body: the user's modules, the thread count, then the job.

    Workers draw no progress bars (``TQDM_DISABLE``): the driver shows one over the jobs.
    """
    os.environ["TQDM_DISABLE"] = "1"
    import_modules(imports)
    torch.set_num_threads(threads)
    return function(job)
