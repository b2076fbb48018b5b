"""Executors run independent jobs (MTL runs) and report each attempt as soon as it finishes.

One small base class, :class:`Executor`: it keeps at most ``max_in_flight`` jobs running, yields a
:class:`RunOutcome` per finished attempt in completion order, and retries a job that raised up to
``max_retries`` times (each failed attempt is reported with its traceback, so the study records
it). Subclasses only say how to start, wait for and cancel one job:

- :class:`InProcessExecutor` — one job after another in this process (default; easiest to debug);
- :class:`LocalExecutor` — ``workers`` local processes (spawn), optionally one GPU per worker
  through ``CUDA_VISIBLE_DEVICES``; a worker that dies is restarted and its job retried;
- :class:`RayExecutor` — Ray tasks on a local or remote cluster, ``ray.wait`` in completion order;
  a worker process that dies is retried by Ray itself. ``ray`` is imported only here, lazily.

``fn`` and the jobs must be picklable for the process and Ray executors (a module-level function
or an instance of a module-level class). :func:`make_executor` builds one from plain options.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import re
import signal
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ..checks import check_int, check_real, describe, is_int
from ..errors import InputError, InputTypeError

__all__ = ["EXECUTOR_KINDS", "Executor", "InProcessExecutor", "InlineExecutor", "LocalExecutor",
           "ProcessExecutor", "RayExecutor", "RunOutcome", "check_picklable", "make_executor"]

J = TypeVar("J")
R = TypeVar("R")

#: the kinds :func:`make_executor` knows
EXECUTOR_KINDS = ("auto", "inprocess", "local", "ray")


@dataclass(frozen=True)
class RunOutcome:
    """One finished attempt of a job: its value, or the traceback of what it raised.
    ``final`` is False for a failed attempt that will be retried."""

    job: Any
    value: Any = None
    error: str | None = None
    attempt: int = 1
    final: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


class JobFailed(RuntimeError):
    """Raised by :meth:`Executor.map_runs` when a job failed for good (the traceback inside)."""


def _check_count(value: object, what: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (numpy integers too; bool, float, str refused)."""
    return check_int(what, value, minimum)


def check_picklable(obj: object, what: str, where: str) -> None:
    """``InputError`` naming ``what`` when ``obj`` cannot be sent to another process."""
    try:
        pickle.dumps(obj)
    except Exception as exc:  # PicklingError, AttributeError (local objects), TypeError...
        name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
        raise InputError(f"{what} {name!r} cannot be sent to {where} ({exc}); define it at "
                         "module level (a function or an instance of a module-level class), "
                         "or use the in-process executor") from exc


class Executor(ABC):
    """Runs ``fn(job)`` for every job, at most ``max_in_flight`` at once, and yields a
    :class:`RunOutcome` per finished attempt; a job that raised is retried up to ``max_retries``
    times. Subclasses implement ``_submit``, ``_wait`` and ``_cancel``."""

    #: short name (the ``kind`` of :func:`make_executor`)
    kind: ClassVar[str] = "executor"
    #: whether jobs run in this process (no pickling needed)
    in_process: ClassVar[bool] = False

    def __init__(self, *, max_retries: int = 0, max_in_flight: int = 1) -> None:
        self.max_retries = _check_count(max_retries, "max_retries", 0)
        self.max_in_flight = _check_count(max_in_flight, "max_in_flight", 1)
        #: the most jobs that were in flight at once during the last ``run_jobs``
        self.peak_in_flight = 0

    @abstractmethod
    def _submit(self, fn: Callable[[Any], Any], job: Any) -> Any:
        """Start one attempt of ``fn(job)``; returns a handle."""

    @abstractmethod
    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any, str | None]]:
        """Block until at least one handle is done: ``[(handle, value, traceback or None)]``."""

    def _cancel(self, handles: list[Any]) -> None:
        """Best-effort cancel of unfinished attempts (the iterator was closed early)."""

    def check_callable(self, fn: object, what: str = "the train callable") -> None:
        """Fail at once when ``fn`` cannot run on this executor (not picklable for workers)."""
        if not self.in_process:
            check_picklable(fn, what, f"the {self.kind} executor's worker processes")

    def run_jobs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[RunOutcome]:
        """Run ``fn`` on every job; yield each finished attempt in completion order. A ``fn``
        that is not callable or ``jobs`` that are not iterable fail here, before any job runs."""
        if not callable(fn):
            raise InputTypeError(f"fn must be a callable job -> result, got {describe(fn)}")
        if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Iterable):
            raise InputTypeError(f"jobs must be an iterable of jobs, got {describe(jobs)}")
        return self._run(fn, deque((job, 1) for job in jobs))

    def _run(self, fn: Callable[[J], R], queue: deque[tuple[Any, int]]) -> Iterator[RunOutcome]:
        inflight: dict[Any, tuple[Any, int]] = {}
        self.peak_in_flight = 0
        try:
            while queue or inflight:
                while queue and len(inflight) < self.max_in_flight:
                    job, attempt = queue.popleft()
                    inflight[self._submit(fn, job)] = (job, attempt)
                self.peak_in_flight = max(self.peak_in_flight, len(inflight))
                for handle, value, error in self._wait(list(inflight)):
                    job, attempt = inflight.pop(handle)
                    if error is None:
                        yield RunOutcome(job, value, None, attempt, True)
                        continue
                    final = attempt > self.max_retries
                    yield RunOutcome(job, None, error, attempt, final)
                    if not final:
                        queue.append((job, attempt + 1))
        finally:
            if inflight:
                self._cancel(list(inflight))

    def map_runs(self, fn: Callable[[J], R], jobs: Iterable[J]) -> Iterator[tuple[J, R]]:
        """``(job, result)`` pairs in completion order; raises :class:`JobFailed` when a job
        fails for good (results already yielded stay valid)."""
        for out in self.run_jobs(fn, jobs):
            if out.ok:
                yield out.job, out.value
            elif out.final:
                raise JobFailed(f"job {out.job!r} failed {out.attempt} time(s); last "
                                f"traceback:\n{out.error}")

    def close(self) -> None:
        """Release workers (a no-op for executors without any)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(max_retries={self.max_retries}, "
                f"max_in_flight={self.max_in_flight})")


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class InProcessExecutor(Executor):
    """Runs jobs one after another in this process (the default; easiest to debug)."""

    kind = "inprocess"
    in_process = True

    def __init__(self, *, max_retries: int = 0) -> None:
        super().__init__(max_retries=max_retries, max_in_flight=1)
        self._done: tuple[Any, Any, str | None] = (None, None, None)

    def _submit(self, fn: Callable[[Any], Any], job: Any) -> Any:
        handle = object()
        try:
            self._done = (handle, fn(job), None)
        except Exception as exc:  # recorded as a failed attempt, not raised
            self._done = (handle, None, _format(exc))
        return handle

    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any, str | None]]:
        return [self._done]


#: the 0.1 name
InlineExecutor = InProcessExecutor


_WORKER_INDEX: Any = None


def _exit_with_parent(parent: int, period: float = 0.5) -> None:
    """End this worker when the process that started it is gone (killed with SIGKILL, say, so it
    could not shut its pool down): an orphaned worker would otherwise wait for jobs forever,
    holding its memory and its GPU. A daemon thread; POSIX reparents an orphan, so its parent
    pid changes."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(0)

    threading.Thread(target=watch, name="mtgfast-parent-watch", daemon=True).start()


def _quiet_interrupt(signum: int, frame: object) -> None:
    os._exit(128 + signum)


def _init_worker(threads: int, gpus: tuple[str, ...], counter: Any,
                 parent: int | None = None) -> None:
    # each worker gets its share of the cores (else every process spins up all of them and they
    # fight), and its own GPU when gpus are given -- set before torch is imported
    global _WORKER_INDEX
    if parent is not None:
        _exit_with_parent(parent)
    # Ctrl-C reaches the terminal's whole process group: a worker ends at once and quietly (the
    # driver reports the interruption once; a half-run job stays unfinished in the store)
    signal.signal(signal.SIGINT, _quiet_interrupt)
    with counter.get_lock():
        _WORKER_INDEX = int(counter.value)
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[_WORKER_INDEX % len(gpus)]
    # torch reads these when the first job imports it (importing it here would slow every
    # worker's start, and a user's train callable need not use torch)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)


class LocalExecutor(Executor):
    """``workers`` local processes (spawn context, so CUDA and torch threads start clean); each
    uses ``threads`` intra-op threads (default: cores // workers). ``gpus``: device ids, worker
    ``i`` sees only ``gpus[i % len(gpus)]`` (``CUDA_VISIBLE_DEVICES``). A worker that dies breaks
    the pool: it is restarted and the jobs in flight count one failed attempt each."""

    kind = "local"

    def __init__(self, workers: int, threads: int | None = None, *, max_retries: int = 0,
                 max_in_flight: int | None = None, gpus: Sequence[str | int] = ()) -> None:
        w = _check_count(workers, "workers", 1)
        super().__init__(max_retries=max_retries,
                         max_in_flight=w if max_in_flight is None else max_in_flight)
        self.workers = w
        self.threads = (max(1, (os.cpu_count() or 1) // w) if threads is None
                        else _check_count(threads, "threads", 1))
        given: object = (gpus,) if isinstance(gpus, str) or is_int(gpus) else gpus
        if not isinstance(given, Iterable):
            raise InputTypeError(f"gpus must be device ids (str or int), got {describe(gpus)}")
        ids = tuple(given)
        for g in ids:
            if not ((isinstance(g, str) and g.strip()) or (is_int(g) and int(g) >= 0)):
                raise InputError(f"gpus must be device ids (non-empty str or int >= 0), got "
                                 f"{describe(g)} in {list(ids)}")
        self.gpus = tuple(str(g) for g in ids)
        self._pool: ProcessPoolExecutor | None = None
        self._pool_of: dict[Future[Any], ProcessPoolExecutor] = {}

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx,
                                             initializer=_init_worker,
                                             initargs=(self.threads, self.gpus, ctx.Value("i", 0),
                                                       os.getpid()))
        return self._pool

    def _submit(self, fn: Callable[[Any], Any], job: Any) -> Any:
        try:
            pool = self._get_pool()
            fut = pool.submit(fn, job)
        except BrokenProcessPool:
            self._restart()
            pool = self._get_pool()
            fut = pool.submit(fn, job)
        self._pool_of[fut] = pool
        return fut

    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any, str | None]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        out: list[tuple[Any, Any, str | None]] = []
        for fut in done:
            pool = self._pool_of.pop(fut, None)
            exc = fut.exception()
            if exc is None:
                out.append((fut, fut.result(), None))
            elif isinstance(exc, BrokenProcessPool):
                # a worker died: restart the pool once (not again for its other victims)
                if pool is not None and pool is self._pool:
                    self._restart()
                out.append((fut, None, f"a worker process died while running this job ({exc})"))
            else:
                out.append((fut, None, _format(exc)))
        return out

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _cancel(self, handles: list[Future[Any]]) -> None:
        for fut in handles:
            fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __repr__(self) -> str:
        return (f"LocalExecutor(workers={self.workers}, threads={self.threads}, "
                f"gpus={list(self.gpus)}, max_retries={self.max_retries})")


#: the 0.1 name
ProcessExecutor = LocalExecutor


def _ray_call(fn: Callable[[Any], Any], job: Any) -> Any:
    return fn(job)


def _import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise InputError("the ray executor needs the 'ray' package: pip install "
                         "'mtgfast[ray]'") from exc
    return ray


#: ray.remote's option names -> the cluster's resource names
_RAY_NAMES = {"num_cpus": "CPU", "num_gpus": "GPU"}


class RayExecutor(Executor):
    """Jobs as Ray tasks. ``address``: None (a local Ray instance, started if none runs),
    ``"auto"`` (the cluster of ``ray start`` on this machine) or ``"ray://host:port"`` (Ray
    Client); ignored when ``ray.init`` was already called. ``resources_per_run``: ``num_cpus``,
    ``num_gpus`` and custom resources of each run. At most ``max_in_flight`` runs are submitted
    at once (default: the cluster's CPUs / ``num_cpus``); a run that raises is retried up to
    ``max_retries`` times by this driver, a worker process that dies up to ``max_retries`` times
    by Ray."""

    kind = "ray"

    def __init__(self, address: str | None = None,
                 resources_per_run: Mapping[str, float] | None = None, *, max_retries: int = 2,
                 max_in_flight: int | None = None,
                 init_options: Mapping[str, Any] | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address or not (
                address == "auto" or address.startswith("ray://") or ":" in address)):
            raise InputError(f"address must be None, 'auto', 'ray://host:port' or 'host:port', "
                             f"got {address!r}")
        if resources_per_run is not None and not isinstance(resources_per_run, Mapping):
            raise InputTypeError(f"resources_per_run must be a mapping resource name -> number, "
                                 f"got {describe(resources_per_run)}")
        res = dict(resources_per_run or {"num_cpus": 1, "num_gpus": 0})
        for k, v in res.items():
            if not isinstance(k, str) or not k:
                raise InputTypeError(f"resources_per_run must map resource names (str) to "
                                     f"numbers >= 0, got the key {describe(k)}")
            res[k] = check_real(f"resources_per_run[{k!r}]", v, 0)
        self._ray = _import_ray()
        super().__init__(max_retries=max_retries,
                         max_in_flight=1 if max_in_flight is None else max_in_flight)
        self._auto_in_flight = max_in_flight is None
        self.address = address
        self.resources_per_run = res
        self.init_options = dict(init_options or {})
        self._owns_ray = False
        self._remote: Any = None
        self._fn_refs: dict[int, Any] = {}

    def _ensure(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            opts = {"include_dashboard": False, "log_to_driver": True, **self.init_options}
            ray.init(address=self.address, **opts)
            self._owns_ray = True
        if self._remote is None:
            try:
                self._check_feasible()   # Ray would wait forever for a run no node can hold
            except InputError:
                self.close()   # leave no Ray instance of ours behind
                raise
            res = dict(self.resources_per_run)
            opts = {"num_cpus": res.pop("num_cpus", 1), "num_gpus": res.pop("num_gpus", 0),
                    "max_retries": self.max_retries, "retry_exceptions": False}
            if res:
                opts["resources"] = res
            self._remote = ray.remote(**opts)(_ray_call)
        if self._auto_in_flight:
            cpus = float(ray.cluster_resources().get("CPU", 1))
            per = float(self.resources_per_run.get("num_cpus", 1)) or 1.0
            self.max_in_flight = max(1, int(cpus // per))

    def _check_feasible(self) -> None:
        """InputError when no node of the cluster has every resource one run asks for: Ray
        leaves such a task pending forever (it logs only an autoscaler line)."""
        ray = self._ray
        want = {_RAY_NAMES.get(k, k): float(v) for k, v in self.resources_per_run.items()
                if float(v) > 0}
        if not want:
            return
        try:
            nodes = [dict(nd.get("Resources", {})) for nd in ray.nodes() if nd.get("Alive", True)]
        except Exception:   # no per-node view: the cluster's totals  # noqa: BLE001
            nodes = [dict(ray.cluster_resources())]
        if any(all(float(nd.get(k, 0.0)) >= v for k, v in want.items()) for nd in nodes):
            return
        total = ray.cluster_resources()
        have = ", ".join(f"{k}={float(total.get(k, 0.0)):g}" for k in want)
        largest = ", ".join(f"{k}={max((float(nd.get(k, 0.0)) for nd in nodes), default=0.0):g}"
                            for k in want)
        asked = ", ".join(f"{k}={v:g}" for k, v in want.items())
        raise InputError(f"each run asks for {asked} (resources_per_run="
                         f"{self.resources_per_run}), but no node of the Ray cluster has that "
                         f"much (cluster total: {have}; largest node: {largest}): the runs could "
                         "never be scheduled. Ask for less (gpus_per_run=0 without a GPU) or "
                         "add a node that has it")

    def _run(self, fn: Callable[[J], R], queue: deque[tuple[Any, int]]) -> Iterator[RunOutcome]:
        self._ensure()
        self._fn_refs = {id(fn): self._ray.put(fn)}   # ship the callable once, not per run
        try:
            yield from super()._run(fn, queue)
        finally:
            self._fn_refs = {}

    def _submit(self, fn: Callable[[Any], Any], job: Any) -> Any:
        ref = self._fn_refs.get(id(fn), fn)
        return self._remote.remote(ref, job)

    def _wait(self, handles: list[Any]) -> list[tuple[Any, Any, str | None]]:
        ray = self._ray
        done, _ = ray.wait(handles, num_returns=1)
        out: list[tuple[Any, Any, str | None]] = []
        for ref in done:
            try:
                out.append((ref, ray.get(ref), None))
            except ray.exceptions.RayTaskError as exc:   # the run raised: its traceback
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(exc, "traceback_str", "") or exc))
                out.append((ref, None, "Traceback (most recent call last, in a Ray worker):\n"
                            + text))
            except ray.exceptions.RayError as exc:       # worker died beyond Ray's retries...
                out.append((ref, None, f"{type(exc).__name__}: {exc}"))
        return out

    def _cancel(self, handles: list[Any]) -> None:
        for ref in handles:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished, or the cluster is gone  # noqa: S110
                pass

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False
        self._remote = None

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, resources_per_run="
                f"{self.resources_per_run}, max_retries={self.max_retries}, "
                f"max_in_flight={self.max_in_flight})")


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
    except ModuleNotFoundError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def make_executor(kind: str = "auto", *, workers: int = 1, address: str | None = None,
                  gpus_per_run: float = 0.0, max_retries: int = 2) -> Executor:
    """An executor from plain options (what the CLI passes): ``kind`` is "inprocess", "local"
    (``workers`` processes; ``gpus_per_run`` > 0 gives each worker one visible GPU), "ray"
    (``address``; ``workers`` caps the runs in flight when > 1) or "auto" (local when
    ``workers`` > 1, else in-process). ``max_retries``: retries of a run that failed."""
    if is_int(kind):   # the 0.1 call make_executor(k)
        kind, workers = "auto", int(kind)
    if not isinstance(kind, str) or kind not in EXECUTOR_KINDS:
        raise InputError(f"executor kind must be one of {', '.join(EXECUTOR_KINDS)}; got {kind!r}")
    workers = _check_count(workers, "workers", 1)
    max_retries = _check_count(max_retries, "max_retries", 0)
    gpus_per_run = check_real("gpus_per_run", gpus_per_run, 0)
    if address is not None and kind != "ray":
        raise InputError(f"address={address!r} is only used by the ray executor (kind='ray'), "
                         f"not {kind!r}")
    if kind == "auto":
        kind = "local" if workers > 1 else "inprocess"
    if kind == "ray":
        return RayExecutor(address, {"num_cpus": 1, "num_gpus": float(gpus_per_run)},
                           max_retries=max_retries,
                           max_in_flight=workers if workers > 1 else None)
    if kind == "inprocess":
        if workers != 1:
            raise InputError(f"the in-process executor runs one job at a time; got "
                             f"workers={workers} (use kind='local')")
        return InProcessExecutor(max_retries=max_retries)
    if gpus_per_run > 0:
        if gpus_per_run > 1:
            raise InputError(f"gpus_per_run={gpus_per_run}: a local worker uses at most one GPU "
                             "(use the ray executor for multi-GPU runs)")
        gpus = _visible_gpus()
        if not gpus:
            raise InputError(f"gpus_per_run={gpus_per_run} but no GPU is visible "
                             "(CUDA_VISIBLE_DEVICES / torch.cuda)")
        return LocalExecutor(workers, threads=1, max_retries=max_retries, gpus=gpus)
    return LocalExecutor(workers, max_retries=max_retries)
