"""Executors run independent jobs (MTL runs) and yield each result as soon as it finishes.

``Executor.map_runs(fn, jobs)`` is the one seam: in-process (``InlineExecutor``), local worker
processes (``ProcessExecutor``, spawn context so CUDA and torch threads start clean), or a Ray
cluster (``RayExecutor``, when ``ray`` is installed). ``fn`` and the jobs must be picklable for the
process and Ray executors (a module-level function or an instance of a module-level class).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from ..errors import InputError, InputTypeError

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "RayExecutor", "make_executor"]

J = TypeVar("J")
R = TypeVar("R")


class Executor(ABC):
    """Runs ``fn(job)`` for each job; results come back in completion order as ``(job, result)``.
    An exception raised by a job propagates from the iterator (finished results already yielded
    stay valid, which is what a resumable study needs)."""

    @abstractmethod
    def map_runs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """Run ``fn`` on every job and yield ``(job, result)`` pairs as they finish."""

    def close(self) -> None:
        """Release workers (a no-op for executors without any)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineExecutor(Executor):
    """Runs jobs one after another in this process (the default; easiest to debug)."""

    def map_runs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        for job in jobs:
            yield job, fn(job)


def _init_worker(threads: int) -> None:
    # each worker gets its share of the cores; without this every process spins up all cores and
    # they fight over them (much slower than one thread each)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        import torch
    except ModuleNotFoundError:  # a user train callable need not use torch
        return
    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    """``workers`` local processes (spawn context); each uses ``threads`` intra-op threads
    (default: cores // workers, at least 1). The pool lives until ``close()``."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise InputTypeError(f"workers must be an int, got {type(workers).__name__}")
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def map_runs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        pool = self._get_pool()
        pending: dict[Future[R], J] = {}
        it = iter(jobs)
        # keep only ~2 jobs per worker in flight so a long job list is not pickled up front
        for job in it:
            pending[pool.submit(fn, job)] = job
            if len(pending) >= 2 * self.workers:
                break
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    yield job, fut.result()
                    nxt = next(it, _END)
                    if nxt is not _END:
                        pending[pool.submit(fn, nxt)] = nxt  # type: ignore[arg-type]
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_END: Any = object()


class RayExecutor(Executor):
    """Jobs as Ray tasks on a running cluster (``ray.init(address=...)`` is the caller's business;
    without one, Ray starts a local instance). ``resources`` are per-job Ray resources, e.g.
    ``{"num_gpus": 1}``. Needs ``pip install ray``."""

    def __init__(self, resources: dict[str, float] | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError as exc:
            raise InputError("RayExecutor needs the 'ray' package (pip install 'mtgfast[ray]')"
                             ) from exc
        self.resources = dict(resources or {})

    def map_runs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        import ray

        remote = ray.remote(**self.resources)(fn) if self.resources else ray.remote(fn)
        refs = {remote.remote(job): job for job in jobs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                yield refs.pop(ref), ray.get(ref)


def make_executor(workers: int = 1) -> Executor:
    """``InlineExecutor`` for one worker, ``ProcessExecutor(workers)`` otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise InputTypeError(f"workers must be an int, got {type(workers).__name__}")
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    return InlineExecutor() if workers == 1 else ProcessExecutor(workers)
