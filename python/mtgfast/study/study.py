"""``Study``: measure task combinations, fit an estimator, choose the groups (Algorithm 1 end to end).

A study needs only a problem: a measure callable ``train(tasks: tuple[str, ...], seed) ->
{task: metric}`` or ``{task: (valid metric, test metric)}``, the task names, one metric direction per
task and a fingerprint (a :class:`~mtgfast.mtl.study_adapter.StudyProblem`; a ``TaskSuite`` is
turned into one by the MTL layer's adapter). The gain store is the single source of truth: every
requested run is a row (waiting, running, complete, failed) with an owner and a heartbeat, the
active loop's choices are rows too, and the loop reads measured gains from the store. So a study
killed at any moment (SIGKILL) and resumed makes exactly the choices, and returns exactly the
grouping, of an uninterrupted run with the same seed. Runs execute on an
:class:`~mtgfast.study.executors.Executor` (in-process, local processes, Ray); the driver writes
each result to the store as it completes. Torch is imported only when a suite or MTG-Net is
used.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ..checks import check_bool, check_int, check_real, is_int, is_real
from ..errors import InputError, InputTypeError, MtgfastError, StoreError
from ..gains import FloatArray, GainTable, real_matrix
from ..masks import all_masks, as_masks, check_n_tasks, k_subsets, mask_to_indices
from ..progress import progress
from ..mtl.study_adapter import StudyProblem
from ..store import MAX_SEED, GainStore, RunStatus
from .active import LoopState, Selection
from .executors import Executor, make_executor
from .registry import ESTIMATORS as _REGISTRY
from .registry import estimator_names, estimator_spec, make_estimator

if TYPE_CHECKING:  # pragma: no cover
    from ..estimators.base import GainEstimator
    from ..grouping import Grouping

__all__ = ["ESTIMATORS", "RunFailedError", "StoreLoopState", "Study", "StudyResult", "describe",
           "group_stored"]

TrainFn = Callable[[tuple[str, ...], int], Mapping[str, Any]]
#: the estimator names a study accepts (the registry's)
ESTIMATORS = estimator_names()
#: candidates are all 2^N - 1 combinations up to this N; beyond it, combinations of <= 3 tasks
#: plus every measured one (pass ``candidates=`` for another set)
MAX_ALL_CANDIDATES = 16
_ACTIVE_OPTIONS = ("selector", "selector_options", "seed", "include_full", "refit_interval")
#: key of the study's stored config holding what the study's choices depend on (compared on resume)
STUDY_OPTIONS_KEY = "study_options"


class RunFailedError(MtgfastError, RuntimeError):
    """A training run failed on every attempt; its traceback is in the message and the store."""


class _RunJob:
    """Picklable ``(mask, seed) -> (raw output, seconds)`` around a measure callable."""

    def __init__(self, train: TrainFn, task_names: tuple[str, ...]) -> None:
        self.train = train
        self.task_names = task_names

    def __call__(self, job: tuple[int, int]) -> tuple[Any, float]:
        mask, seed = job
        tasks = tuple(self.task_names[j] for j in mask_to_indices(mask))
        start = time.perf_counter()
        out = self.train(tasks, seed)
        return out, time.perf_counter() - start


def _number(v: object, task: str, where: str) -> float:
    if not is_real(v):
        raise InputError(f"the train callable returned {v!r} for task {task!r} of {where}; "
                         "expected a number or (valid, test)")
    f = float(v)
    if not math.isfinite(f):
        raise InputError(f"the train callable returned {f} for task {task!r} of {where}; "
                         "metrics must be finite")
    return f


def _split_metrics(out: object, tasks: tuple[str, ...],
                   where: str = "the combination") -> tuple[dict[str, float], dict[str, float]]:
    """``{task: v}`` or ``{task: (valid, test)}`` -> (valid dict, test dict; empty if not given);
    errors name the task and the combination."""
    if not isinstance(out, Mapping):
        raise InputTypeError(f"the train callable must return a mapping task -> metric, got "
                             f"{type(out).__name__} ({out!r:.60}) for {where}")
    if set(out) != set(tasks):
        raise InputError(f"the train callable returned metrics for {sorted(map(str, out))} on "
                         f"{where}, expected exactly {sorted(tasks)}")
    valid, test = {}, {}
    for t in tasks:
        v = out[t]
        if isinstance(v, (tuple, list)):
            if len(v) != 2:
                raise InputError(f"metric of task {t!r} of {where} must be a number or "
                                 f"(valid, test), got {v!r}")
            valid[t], test[t] = _number(v[0], t, where), _number(v[1], t, where)
        else:
            valid[t] = _number(v, t, where)
    if test and set(test) != set(tasks):
        raise InputError(f"the train callable returned (valid, test) for tasks {sorted(test)} but "
                         f"one number for {sorted(set(tasks) - set(test))} of {where}; give test "
                         "metrics for every task of a combination or for none")
    return valid, test


@dataclass(frozen=True)
class StudyResult:
    """Chosen groups by task name, with the estimated and (where measured) actual mean gain over
    training every task alone, on validation and test data."""

    groups: tuple[tuple[str, ...], ...]
    assignment: dict[str, tuple[str, ...]]
    estimated_gain: float
    measured_valid_gain: float
    measured_test_gain: float
    grouping: Any
    #: how sure the estimate is (ensemble spread, measured vs estimated on verified groups);
    #: None for estimators that give no spread and verified nothing
    confidence: Any = None

    def format(self) -> str:
        lines = [f"{len(self.groups)} group(s) (a task is served by the group where it gains most):"]
        for g in self.groups:
            served = [t for t, grp in self.assignment.items() if tuple(grp) == tuple(g)]
            lines.append("  {" + ", ".join(g) + "}" +
                         (f"  -> serves {', '.join(served)}" if served else "  -> serves none"))
        lines.append(f"estimated mean gain over single-task training: {self.estimated_gain:+.2%}")
        if math.isfinite(self.measured_valid_gain):
            lines.append(f"measured mean gain, validation: {self.measured_valid_gain:+.2%}")
        if math.isfinite(self.measured_test_gain):
            lines.append(f"measured mean gain, test:       {self.measured_test_gain:+.2%}")
        if self.confidence is not None:
            lines.append(self.confidence.format())
        return "\n".join(lines)


def _default_selector() -> tuple[str, dict[str, Any]]:
    """The sampler of ``estimator="mtgnet"`` unless ``active_options`` name one: the replay's
    best configuration (the search sampler, ``study.replay_methods``). Refits stay cold in a
    study: a warm-started chain of fits would depend on the refit history, and a killed study
    must resume to exactly the choices of an uninterrupted one."""
    from .replay_methods import METHOD_DEFAULTS, REPLAY_METHODS, SELECTOR_OPTIONS

    opts = {k: v for k, v in METHOD_DEFAULTS["mtgnet"].items() if k in SELECTOR_OPTIONS}
    return REPLAY_METHODS["mtgnet"], opts


def _upgraded_options(stored: Mapping[str, Any], mine: Mapping[str, Any]) -> dict[str, Any]:
    """The stored options of a study made before ``estimator_target`` was stored, in today's
    names: its ``"mtgnet"`` was MTG-Net alone (today's ``"mtgnet-plain"``); other names kept
    their meaning."""
    out = dict(stored)
    if "estimator_target" not in out:
        if out.get("estimator") == "mtgnet":
            out["estimator"] = "mtgnet-plain"
            out["estimator_target"] = estimator_spec("mtgnet-plain").target
        else:
            out["estimator_target"] = mine.get("estimator_target")
    return out


class StoreLoopState(LoopState):
    """The active loop's state in the gain store: its choices are the store's selection rows and
    a combination is measured when every seed's run is complete. A chosen combination whose run
    failed stays pending: rerunning the study retries it (a failure stops the study, so the
    choices after it are those an uninterrupted run makes)."""

    def __init__(self, store: GainStore, study: str, seeds: Sequence[int],
                 config: Mapping[str, Any] | None = None) -> None:
        self.store, self.study, self.seeds = store, study, tuple(seeds)
        self.config = dict(config or {})
        # only runs of the study's own procedure are measured (the gain table holds only those)
        self.fingerprint = store.get_study(study).fingerprint

    def selections(self) -> list[Selection]:
        return [Selection(s.mask, s.round, s.task, s.source)  # type: ignore[arg-type]
                for s in self.store.selections(self.study)]

    def slots_used(self) -> int:
        return self.store.slots_used(self.study)

    def add_batch(self, slot_start: int, slot_count: int, chosen: Sequence[Selection]) -> None:
        self.store.add_selection_batch(self.study, slot_start=slot_start, slot_count=slot_count,
                                       selections=[(s.mask, s.round, s.task, s.source)
                                                   for s in chosen],
                                       seeds=self.seeds, config=self.config)

    def measured(self) -> dict[int, FloatArray]:
        wanted = set(self.seeds)
        done = Counter(r.mask for r in self.store.runs(self.study, status=RunStatus.COMPLETE,
                                                       fingerprint=self.fingerprint)
                       if r.seed in wanted)
        masks = sorted(m for m, c in done.items() if c == len(wanted) and m & (m - 1))
        if not masks:
            return {}
        rows = self.store.gain_table(self.study, "valid").lookup(np.array(masks, np.uint64))
        return {m: rows[i] for i, m in enumerate(masks)}


def _check_budget(budget: object, n_tasks: int) -> int:
    return check_int("budget (the number of groups)", budget, 1, n_tasks)


class _Heartbeat:
    """A daemon thread refreshing the heartbeat of this owner's running rows (own connection)."""

    def __init__(self, path: str, study: str, owner: str, interval: float) -> None:
        self._stop = threading.Event()
        self._args = (path, study, owner, interval)
        self._thread = threading.Thread(target=self._beat, daemon=True, name="mtgfast-heartbeat")
        self._thread.start()

    def _beat(self) -> None:
        path, study, owner, interval = self._args
        try:
            with GainStore(path) as store:
                while not self._stop.wait(interval):
                    store.heartbeat(study, owner)
        except (StoreError, OSError):  # the driver reports store problems itself
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _dead(owner: str) -> bool:
    """Whether ``owner`` (host:pid:token) is a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Study:
    """A grouping study over one problem: a train callable, a ``TaskSuite`` (with ``config``) or
    a :class:`~mtgfast.mtl.study_adapter.StudyProblem`.

    ``estimator``: a registry name ("mtgnet": active loop of Algorithm 1, MTG-Net blended with
    a per-task ridge surrogate; "mtgnet-plain": the network alone; "hoa": every pair;
    "tag": one all-task run with lookahead affinities, or pass ``affinity=``; "oracle": every
    candidate) or a ``GainEstimator`` instance (run through the active loop). ``seeds``: each
    combination is trained once per seed; metrics are averaged. For a callable, give
    ``task_names``, the metric direction (``higher_is_better``) and a ``fingerprint`` that changes
    whenever the training procedure does. ``executor``: an :class:`Executor` (default: from
    ``workers``). ``budget``/``rounds``: checked here, used by :meth:`result`/:meth:`run`.
    ``stale_after``: seconds without heartbeat after which another driver's running row is
    taken back. ``final``: what the grouping chooses from — ``"measured"`` (only measured groups,
    the active loop's default, as the replay's best configuration ``mtgnet``) or ``"estimate"``
    (measured gains where measured, the estimator's predictions elsewhere; the default of the
    other estimators). ``candidates``: the only combinations trained by the active loop (the
    full set only if it is one) and chosen by the grouping. Every parameter is checked before
    anything is trained. What the choices depend on (estimator and its options, seeds, the
    active loop's selector, options, seed, include_full, refit_interval and candidates) is stored
    with the study: resuming an active-loop study with other values raises ``StoreError`` naming
    the option (progress, workers and the executor may change).
    """

    def __init__(self, problem: object, store: str | os.PathLike[str] | GainStore = "mtgfast.db",
                 estimator: str | GainEstimator = "mtgnet", name: str | None = None,
                 config: object = None, seeds: Sequence[int] | int = (0,), workers: int = 1,
                 *, task_names: Sequence[str] | None = None, metric: str | Sequence[str] = "metric",
                 higher_is_better: bool | Sequence[bool] = False, fingerprint: str | None = None,
                 candidates: object = None, executor: Executor | None = None,
                 estimator_options: Mapping[str, Any] | None = None,
                 active_options: Mapping[str, Any] | None = None, affinity: object = None,
                 progress: bool = True, budget: int | None = None, rounds: int | None = None,
                 stale_after: float = 60.0, final: str | None = None) -> None:
        # -- every parameter first: nothing is trained (nor the store created) on a bad one --
        self.seeds = self._check_seeds(seeds)
        self.progress = check_bool("progress", progress)
        if estimator_options is not None and not isinstance(estimator_options, Mapping):
            raise InputTypeError(f"estimator_options must be a mapping of options, got "
                                 f"{type(estimator_options).__name__}")
        self.estimator_options = dict(estimator_options or {})
        self.active_options = self._check_active_options(active_options)
        if isinstance(estimator, str):
            spec = estimator_spec(estimator)
            self._collect = spec.collect
            make_estimator(estimator, **self.estimator_options)   # bad options fail now
        elif hasattr(estimator, "fit") and hasattr(estimator, "predict") and \
                hasattr(estimator, "get_params"):
            self._check_instance(estimator, self.estimator_options)
            self._collect = "active"
        else:
            raise InputTypeError("estimator must be a registry name "
                                 f"({', '.join(ESTIMATORS)}) or a GainEstimator instance")
        self.estimator = estimator
        self.final = self._check_final(final, self._collect)
        self.problem = self._resolve_problem(problem, config, task_names, metric,
                                             higher_is_better, fingerprint)
        self.task_names = self.problem.task_names
        self.n_tasks = check_n_tasks(len(self.task_names))
        self.fingerprint = self.problem.fingerprint
        self.train_fn: TrainFn = self.problem.measure
        if self._collect == "active" and self.n_tasks < 2:
            raise InputError(f"the active loop (estimator {self._estimator_label(estimator)}) "
                             f"needs at least 2 tasks, got {list(self.task_names)}")
        self.budget = None if budget is None else _check_budget(budget, self.n_tasks)
        self.rounds = None if rounds is None else check_int("rounds", rounds, 0)
        self.stale_after = check_real("stale_after", stale_after, 0.0,
                                      expected="a positive number of seconds")
        if self.stale_after == 0.0:
            raise InputError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InputError(f"name must be a non-empty string, got {name!r}")
        self.name = name if name is not None else self.problem.name
        self.affinity = affinity
        if affinity is not None:
            a = real_matrix(affinity, "affinity")   # text or ragged: a type error, not numpy's
            if a.shape != (self.n_tasks, self.n_tasks) or not np.all(np.isfinite(a)):
                raise InputError(f"affinity must be a finite ({self.n_tasks}, {self.n_tasks}) "
                                 f"matrix, got shape {a.shape}")
        if self._collect == "affinity" and affinity is None and self.problem.affinity is None:
            raise InputError("estimator 'tag' on a train callable needs affinity= (an N x N "
                             "matrix of inter-task affinities)")
        self._candidates = None if candidates is None else as_masks(candidates, self.n_tasks,
                                                                    name="candidates")
        if self.budget is not None:
            self._check_cover(self.budget)
        self._loop_options = self._resolve_loop_options()
        if executor is not None:
            if not isinstance(executor, Executor):
                raise InputTypeError(f"executor must be an Executor (see make_executor), got "
                                     f"{type(executor).__name__}")
            if workers != 1:
                raise InputError("give either workers= or executor=, not both")
            self._executor, self._own_executor = executor, False
        else:
            self._executor, self._own_executor = make_executor("auto", workers=workers), True
        self._job = _RunJob(self.train_fn, self.task_names)
        self._executor.check_callable(self.train_fn, "the train callable")
        if self._collect == "affinity" and self.affinity is None:
            self._executor.check_callable(self.problem.affinity, "the affinity callable")
        # -- then the store: the single source of truth --
        own_store = not isinstance(store, GainStore)
        try:
            self.store: GainStore = store if isinstance(store, GainStore) else GainStore(store)
            options = self._study_options()
            self.info = self.store.create_study(self.name, self.task_names,
                                                metrics=self.problem.metrics,
                                                higher_is_better=self.problem.higher_is_better,
                                                fingerprint=self.fingerprint,
                                                config={**self.problem.config,
                                                        STUDY_OPTIONS_KEY: options})
            self._compare_options(self.info.config.get(STUDY_OPTIONS_KEY), options)
        except BaseException:
            # a refused study leaves nothing open: the store this call opened, its own workers
            if own_store and hasattr(self, "store"):
                self.store.close()
            if self._own_executor:
                self._executor.close()
            raise
        self._own_store = own_store
        self._config_dict = dict(self.problem.config)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        #: runs trained by this object (not read back from the store)
        self.n_trained = 0
        self.estimator_: GainEstimator | None = None
        self.loop_: Any = None

    # -- validation helpers -------------------------------------------------------------------
    @staticmethod
    def _check_seeds(seeds: Sequence[int] | int) -> tuple[int, ...]:
        if is_int(seeds):
            seeds = (int(seeds),)
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
            raise InputTypeError(f"seeds must be an int or a sequence of ints, got {seeds!r}")
        seeds = list(seeds)
        for s in seeds:
            if not is_int(s):
                raise InputTypeError(f"seeds must be ints, got {s!r} in {seeds}")
        out = tuple(int(s) for s in seeds)
        if not out or len(set(out)) != len(out) or min(out) < 0 or max(out) > MAX_SEED:
            raise InputError(f"seeds must be distinct ints in [0, 2**63 - 1], got {list(seeds)}")
        return out

    @staticmethod
    def _check_final(final: object, collect: str) -> str:
        from .final import FINAL_CHOICES
        from .replay_methods import METHOD_DEFAULTS

        if final is None:
            return str(METHOD_DEFAULTS["mtgnet"]["final"]) if collect == "active" else "estimate"
        if not isinstance(final, str):
            raise InputTypeError(f"final must be one of {', '.join(FINAL_CHOICES)} (str), got "
                                 f"{type(final).__name__}")
        if final not in FINAL_CHOICES:
            raise InputError(f"final must be one of {', '.join(FINAL_CHOICES)}, got {final!r}")
        if final == "shrunk" and collect != "active":
            raise InputError("final='shrunk' needs the active loop's estimator (estimator="
                             "'mtgnet'): it shrinks measured gains towards its out-of-fold "
                             "estimate")
        return final

    @staticmethod
    def _check_active_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
        from .active import make_selector

        opts = dict(options or {})
        unknown = sorted(set(opts) - set(_ACTIVE_OPTIONS))
        if unknown:
            raise InputError(f"unknown active_options {unknown}; known: {list(_ACTIVE_OPTIONS)}")
        name, default_opts = _default_selector()
        if "selector" in opts and not isinstance(opts["selector"], str):
            raise InputTypeError(f"active_options['selector'] must be a selector name (str), got "
                                 f"{type(opts['selector']).__name__}")
        if "selector_options" in opts and not isinstance(opts["selector_options"], Mapping):
            raise InputTypeError("active_options['selector_options'] must be a mapping of "
                                 f"options, got {type(opts['selector_options']).__name__}")
        make_selector(opts.get("selector", name),
                      **opts.get("selector_options", default_opts if "selector" not in opts else {}))
        if "seed" in opts:
            check_int("active_options['seed']", opts["seed"], 0, MAX_SEED)
        if "include_full" in opts:   # "false" is not False
            opts["include_full"] = check_bool("active_options['include_full']",
                                              opts["include_full"])
        if "refit_interval" in opts and not callable(opts["refit_interval"]):
            raise InputTypeError("active_options['refit_interval'] must be a callable")
        return opts

    @staticmethod
    def _check_instance(estimator: Any, options: Mapping[str, Any]) -> None:
        """An estimator instance gets the checks a registry name gets (its hyper-parameters), and
        is refused when the active loop cannot fit it: all before anything is trained."""
        if options:
            raise InputError(f"estimator_options {sorted(options)} apply to an estimator name; an "
                             f"estimator instance ({type(estimator).__name__}) carries its own "
                             "options")
        target = f"{type(estimator).__module__}:{type(estimator).__qualname__}"
        for key, spec in _REGISTRY.items():
            if spec.target == target and spec.collect == "pairs":
                raise InputError(f"a {type(estimator).__name__} instance needs the gains of every "
                                 "pair, which the active loop does not measure; pass "
                                 f"estimator={key!r} (every pair is trained)")
        check = getattr(estimator, "_check_params", None)   # as make_estimator does for a name
        if callable(check):
            check()
        params = estimator.get_params()
        if not isinstance(params, Mapping):
            raise InputTypeError(f"{type(estimator).__name__}.get_params() must return a mapping "
                                 f"of constructor options, got {type(params).__name__}")
        try:   # the loop refits fresh copies built from these parameters
            type(estimator)(**params)
        except TypeError as exc:
            raise InputError(f"{type(estimator).__name__}(**get_params()) fails ({exc}); the "
                             "active loop builds a fresh estimator that way for each "
                             "refit") from exc

    @staticmethod
    def _estimator_label(estimator: object) -> str:
        return repr(estimator) if isinstance(estimator, str) else type(estimator).__name__

    def _largest_group(self) -> int | None:
        """The largest group the final grouping can choose (None when the loop may measure any
        size): the largest candidate, or 3 for the default candidates beyond 16 tasks."""
        if self._candidates is not None:
            return max((int(m).bit_count() for m in self._candidates.tolist()), default=1)
        if self.n_tasks > MAX_ALL_CANDIDATES and self._collect != "active":
            return 3
        return None

    def _check_cover(self, budget: int) -> None:
        """Refuse a budget the candidates cannot cover: each task needs a group (a task left
        uncovered is a singleton group), so budget * largest group size must reach N."""
        largest = self._largest_group()
        if largest is not None and budget * largest < self.n_tasks:
            raise InputError(f"budget {budget} cannot cover {self.n_tasks} tasks: the largest "
                             f"candidate group has {largest} task(s), so {budget} group(s) cover "
                             f"at most {budget * largest}; raise the budget to at least "
                             f"{-(-self.n_tasks // largest)} or pass larger candidates=")

    def _resolve_loop_options(self) -> dict[str, Any]:
        """The active loop's effective options (selector name and options, seed, include_full,
        refit_interval), checked against this study's tasks, candidates and estimator."""
        from .active import make_selector, paper_refit_interval

        if self._collect != "active":
            return {}
        opts = dict(self.active_options)
        name, sel_opts = _default_selector()
        if "selector" in opts:
            name, sel_opts = opts["selector"], {}
        sel_opts = dict(opts.get("selector_options", sel_opts))
        selector = make_selector(name, **sel_opts)
        full = (1 << self.n_tasks) - 1
        full_allowed = self._candidates is None or full in set(self._candidates.tolist())
        include_full = opts.get("include_full", full_allowed)
        if include_full and not full_allowed:
            raise InputError("active_options include_full=True trains the full set of "
                             f"{self.n_tasks} tasks, which is not one of candidates=; drop "
                             "include_full or add the full set to the candidates")
        refit = opts.get("refit_interval", paper_refit_interval)
        for n_measured in (0, self.n_tasks + 1):   # both branches of the paper's schedule
            eta = refit(n_measured, self.n_tasks)
            if not is_int(eta) or int(eta) < 1:
                raise InputError(f"active_options['refit_interval']({n_measured}, "
                                 f"{self.n_tasks}) returned {eta!r}; it must be an int >= 1")
        if selector.needs_std and not isinstance(self.estimator, str) and \
                not _accepts_keyword(self.estimator.predict, "return_std"):
            raise InputError(f"selector {selector.name!r} needs an estimator whose predict "
                             f"accepts return_std=True; {type(self.estimator).__name__}.predict "
                             "does not (choose another selector in active_options)")
        return {"selector": name, "selector_options": sel_opts,
                "seed": int(opts.get("seed", 0)), "include_full": bool(include_full),
                "refit_interval": refit}

    def _study_options(self) -> dict[str, Any]:
        """What the study's choices depend on, stored with the study and compared on resume (not
        progress output, executor or workers: they change no choice)."""
        est = self.estimator
        params = dict(self.estimator_options if isinstance(est, str) else est.get_params())
        params.pop("device", None)   # where the estimator fits, like the executor: not compared
        out: dict[str, Any] = {
            "estimator": est if isinstance(est, str) else _callable_name(type(est)),
            # what the name builds: a registry name may change meaning between versions
            "estimator_target": estimator_spec(est).target if isinstance(est, str) else None,
            "estimator_options": _jsonable(params), "seeds": list(self.seeds)}
        if self._collect == "active":
            lo = self._loop_options
            out.update(selector=lo["selector"], selector_options=_jsonable(lo["selector_options"]),
                       active_seed=lo["seed"], include_full=lo["include_full"],
                       refit_interval=_callable_name(lo["refit_interval"]),
                       candidates=None if self._candidates is None else
                       _jsonable(np.unique(self._candidates)))
        return dict(_jsonable(out))

    def _compare_options(self, stored: object, mine: Mapping[str, Any]) -> None:
        """A resumed study must make the choices of an uninterrupted one: when the stored study
        or this one runs the active loop, every option its choices depend on must match (studies
        created before options were stored, or by ``create_study``, are not compared)."""
        if not isinstance(stored, Mapping):
            return
        if "selector" not in stored and "selector" not in mine:
            return   # hoa / oracle / tag: their runs do not depend on the order of choices
        stored = _upgraded_options(stored, mine)
        for key in dict.fromkeys(["estimator", *stored, *mine]):
            theirs, given = stored.get(key), mine.get(key)
            if theirs != given:
                raise StoreError(f"study {self.name!r} of gain store {self.store.path!r} was "
                                 f"started with {key}={theirs!r}, this Study gives {given!r}: a "
                                 "resumed study must use the options it started with (its "
                                 "choices depend on them); use those, or a new study name")

    @staticmethod
    def _resolve_problem(problem: object, config: object, task_names: Sequence[str] | None,
                         metric: str | Sequence[str], higher_is_better: bool | Sequence[bool],
                         fingerprint: str | None) -> StudyProblem:
        if isinstance(problem, StudyProblem):
            if config is not None or task_names is not None:
                raise InputError("a StudyProblem carries its own config and task names")
            return problem
        if callable(problem):
            if config is not None:
                raise InputError("config applies to the built-in trainer; a train callable "
                                 "carries its own hyper-parameters")
            if task_names is None:
                raise InputError("a train callable needs task_names=")
            if isinstance(task_names, (str, set, frozenset)):  # one string; no order
                raise InputTypeError("task_names must be an ordered sequence of names, not a "
                                     f"{type(task_names).__name__}")
            names = tuple(task_names)  # StudyProblem checks each name (str, non-empty)
            n = check_n_tasks(len(names))
            mets = ((metric,) * n if isinstance(metric, str) or not isinstance(metric, Iterable)
                    else tuple(metric))  # StudyProblem refuses non-str metrics
            hib = ((bool(higher_is_better),) * n if isinstance(higher_is_better, (bool, np.bool_))
                   else tuple(higher_is_better))
            if fingerprint is not None and not isinstance(fingerprint, str):
                raise InputTypeError(f"fingerprint must be a string, got {fingerprint!r}")
            if fingerprint is not None and not fingerprint.strip():
                raise InputError("fingerprint must be a non-empty string (or None: the "
                                 "callable's name)")
            fn_name = _callable_name(problem)
            return StudyProblem(problem, names, mets, hib, fingerprint or fn_name,
                                fn_name.rsplit(".", 1)[-1].replace("<", "").replace(">", ""))
        from ..mtl.study_adapter import suite_problem

        return suite_problem(problem, config)

    # -- measuring ----------------------------------------------------------------------------
    def _release_dead(self) -> None:
        owners = [o for o in self.store.running_owners(self.name) if o and _dead(o)]
        self.store.requeue_stale(self.name, older_than=self.stale_after, owners=owners)

    def measure(self, masks: Iterable[int], *, desc: str = "training") -> None:
        """Request every (mask, seed) not complete in the store and train the waiting runs,
        recording each as it finishes."""
        ms = [int(m) for m in as_masks(masks, self.n_tasks)]  # no silent int(1.5)
        for m in ms:
            if m <= 0 or m >> self.n_tasks:
                raise InputError(f"mask {m} is not a combination of {self.n_tasks} tasks")
        self.store.request_runs(self.name, [(m, s) for m in dict.fromkeys(ms)
                                            for s in self.seeds], config=self._config_dict)
        self._drain(desc)

    def _drain(self, desc: str) -> None:
        """Claim this study's waiting runs and execute them, until none is waiting and no other
        driver still runs one (a dead driver's rows come back when its heartbeat goes stale);
        results go to the store as each completes. A run that fails on every attempt raises
        :class:`RunFailedError`."""
        while True:
            self._release_dead()
            claimed = self.store.claim_runs(self.name, self.owner)
            if claimed:
                self._execute(claimed, desc)
            elif self.store.count_runs(self.name, status=RunStatus.RUNNING) == 0:
                return
            else:   # another driver holds runs of this study: wait for them, or for staleness
                time.sleep(min(1.0, self.stale_after / 10))

    def _execute(self, claimed: list[Any], desc: str) -> None:
        jobs = [(r.mask, r.seed) for r in claimed]
        bar = _progress(len(jobs), desc, self.progress)
        beat = None if self.store.in_memory else _Heartbeat(
            self.store.path, self.name, self.owner, min(5.0, self.stale_after / 3))
        failed: list[tuple[int, int, int, str]] = []
        try:
            for out in self._executor.run_jobs(self._job, jobs):
                mask, seed = out.job
                if not out.ok:
                    self.store.fail_run(self.name, mask, seed, error=str(out.error),
                                        retry=not out.final)
                    if out.final:
                        failed.append((mask, seed, out.attempt, str(out.error)))
                        bar.update(1)
                    continue
                raw, seconds = out.value
                where = f"combination {self._label(mask)} (seed {seed})"
                try:
                    mv, mt = _split_metrics(raw, self._tasks(mask), where)
                    done = self.store.complete_run(self.name, mask, seed, metrics_valid=mv,
                                                   metrics_test=mt or None,
                                                   seconds=float(seconds))
                except InputError as exc:   # a bad output: recorded as a failed run
                    self.store.fail_run(self.name, mask, seed, error=str(exc), retry=False)
                    if where in str(exc):
                        raise
                    raise InputError(f"{where}: {exc}") from exc
                if done:
                    self.n_trained += 1
                bar.update(1)
        finally:
            if beat is not None:
                beat.stop()
            bar.close()
            # whatever this driver still holds (an error stopped it) goes back to waiting
            self.store.requeue_stale(self.name, older_than=1e12, owners=[self.owner])
        if failed:
            mask, seed, attempts, error = failed[0]
            raise RunFailedError(f"{len(failed)} run(s) of study {self.name!r} failed on every "
                                 f"attempt; first: combination {self._label(mask)} seed {seed}, "
                                 f"{attempts} attempt(s), last traceback:\n{error}\nFix the "
                                 "train callable and run the study again: it resumes.")

    def _tasks(self, mask: int) -> tuple[str, ...]:
        return tuple(self.task_names[j] for j in mask_to_indices(mask))

    def _label(self, mask: int) -> str:
        return "{" + ", ".join(self._tasks(mask)) + "}"

    def collect_stl(self) -> None:
        """Single-task baselines: every singleton, for every seed."""
        self.measure([1 << j for j in range(self.n_tasks)], desc="STL baselines")
        self._check_stl()

    def _check_stl(self) -> None:
        """Refuse a zero or non-finite STL metric now, before any multi-task run: every gain of
        that task would be undefined (relative to its STL metric)."""
        splits: tuple[Literal["valid", "test"], ...] = ("valid", "test")
        for split in splits:
            for task, v in self.store.stl_metrics(self.name, split).items():
                if v == 0 or not math.isfinite(v):
                    raise StoreError(f"study {self.name!r}: the single-task (STL) {split} metric "
                                     f"of task {task!r} is {v}; gains are relative to it, so it "
                                     "must be finite and non-zero (fix the train callable or "
                                     "the metric; nothing multi-task was trained)")

    def gain_table(self, split: Literal["valid", "test"] = "valid") -> GainTable:
        """Measured gains of every stored combination (mean over seeds) against STL."""
        return self.store.gain_table(self.name, split)

    def gains_of(self, masks: Sequence[int],
                 split: Literal["valid", "test"] = "valid") -> npt.NDArray[np.float64]:
        """Measured gain rows of ``masks`` (training the missing ones first)."""
        self.collect_stl()
        self.measure(masks)
        return self.gain_table(split).lookup(np.array(masks, dtype=np.uint64))

    # -- candidates and estimator ---------------------------------------------------------------
    def candidates(self) -> npt.NDArray[np.uint64]:
        """Combinations the grouping search chooses from."""
        if self._candidates is not None:
            return self._candidates
        if self.n_tasks <= MAX_ALL_CANDIDATES:
            return all_masks(self.n_tasks)
        parts = [k_subsets(self.n_tasks, k) for k in range(1, 4)]
        parts.append(self.gain_table().masks)
        return np.unique(np.concatenate(parts))

    def _make_estimator(self) -> GainEstimator:
        """A fresh, unfitted estimator (the active loop refits a new one each time)."""
        if not isinstance(self.estimator, str):
            return type(self.estimator)(**self.estimator.get_params())
        return make_estimator(self.estimator, **self.estimator_options)

    def _tag_affinity(self) -> npt.NDArray[np.float64]:
        if self.affinity is not None:
            return np.asarray(self.affinity, dtype=np.float64)
        assert self.problem.affinity is not None  # checked in __init__
        # one all-task run per seed with lookahead affinities, averaged; cheap next to the study
        affinity = np.asarray(np.mean([self.problem.affinity(s) for s in self.seeds], axis=0),
                              dtype=np.float64)
        self.affinity = affinity
        return affinity

    def run(self, rounds: int | None = None) -> GainEstimator:
        """Collect STL baselines, measure what the estimator needs, fit it; returns the estimator.

        Active ("mtgnet" or a custom estimator): the full set, then ``rounds`` (default: the
        constructor's, else 5) rounds of N selections of the active loop (``active_options``:
        ``selector``, ``selector_options``, ``seed``, ``include_full``, ``refit_interval``);
        "hoa": every pair; "oracle": every candidate; "tag": the affinity runs. Resumes from the
        store: complete runs are never trained again, recorded choices are never made again.
        """
        r = (self.rounds if self.rounds is not None else 5) if rounds is None else \
            check_int("rounds", rounds, 0)
        self.collect_stl()
        est = self._make_estimator()
        if self._collect == "all":
            self.measure([int(m) for m in self.candidates() if int(m) & (int(m) - 1)])
            est.fit(self.gain_table())
        elif self._collect == "pairs":
            self.measure([int(m) for m in k_subsets(self.n_tasks, 2)] if self.n_tasks > 1 else [])
            est.fit(self.gain_table())
        elif self._collect == "affinity":
            est.fit_affinity(self._tag_affinity(), self.task_names)  # type: ignore[attr-defined]
        else:
            est = self._run_active(r)
        self.estimator_ = est
        return est

    def active_loop(self) -> Any:
        """The active loop over this study's store (its state lives in the store)."""
        from .active import ActiveLoop, make_selector

        lo = self._loop_options
        selector = make_selector(lo["selector"], **lo["selector_options"])
        state = StoreLoopState(self.store, self.name, self.seeds, self._config_dict)
        # candidates=: the loop never trains a combination outside them (nor the full set
        # unless it is one: include_full is resolved against them in __init__)
        loop = ActiveLoop(selector, self._make_estimator, self._candidates, self.n_tasks,
                          task_names=self.task_names, state=state, seed=lo["seed"],
                          include_full=lo["include_full"], refit_interval=lo["refit_interval"])
        bind = getattr(selector, "bind", None)
        if callable(bind):
            bind(loop)   # the search sampler reads the measured gains of the loop (the store)
        return loop

    def _run_active(self, rounds: int) -> GainEstimator:
        loop = self.active_loop()
        self.loop_ = loop
        target = rounds * self.n_tasks
        bar = _progress(target, "active selections", self.progress)
        bar.update(min(loop.selections_done(), target))
        try:
            while True:
                batch = loop.next_batch(rounds)   # the loop's order, recorded in the store
                if batch.size == 0:
                    break
                # the batch's runs were requested with the choice; asking again is idempotent
                self.measure(batch.tolist(), desc="MTL runs")
                if set(loop.pending.tolist()) >= set(batch.tolist()):
                    raise StoreError(f"study {self.name!r}: the runs of {batch.tolist()} were "
                                     "neither completed nor failed (another driver holds "
                                     "them?); run the study again")
                bar.update(min(loop.selections_done(), target) - bar_n(bar))
        finally:
            bar.close()
        return loop.fit_estimator()

    def selections(self) -> list[tuple[int, int | None, int | None]]:
        """The active loop's choices so far, in order: ``(mask, round, task)``."""
        return [(s.mask, s.round, s.task) for s in self.store.selections(self.name)]

    # -- grouping -------------------------------------------------------------------------------
    def predict(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
        """Candidates and their gains: measured where the store has them, predicted by the
        fitted estimator elsewhere; with ``final="measured"`` (and for the oracle) only the
        measured combinations and the singletons, so no unverified group can be chosen."""
        from .final import final_gains

        if self.estimator_ is None:
            raise InputError("no fitted estimate yet: call run() before predict(), group() "
                             "or result()")
        table = self.gain_table()
        if self._collect == "all" or self.final != "estimate":
            # only measured combinations and singletons (what final_gains lets into a grouping)
            cands = np.unique(np.concatenate([table.masks, all_singletons(self.n_tasks)]))
            if self._candidates is not None:   # a measured group outside candidates= is not one
                allowed = np.concatenate([self._candidates, all_singletons(self.n_tasks)])
                cands = cands[np.isin(cands, allowed)]
            final = "measured" if self._collect == "all" else self.final
            return cands, final_gains(cands, table, final, estimator=self.estimator_)
        cands = self.candidates()
        return cands, final_gains(cands, table, "estimate",
                                  estimate=self.estimator_.predict(cands))

    def group(self, budget: int | None = None) -> Grouping:
        """The best grouping of at most ``budget`` groups on the estimator's predictions."""
        from ..grouping import group

        b = self._budget(budget)
        masks, gains = self.predict()
        return group(masks, gains, b)

    def _budget(self, budget: int | None) -> int:
        if budget is None:
            if self.budget is None:
                raise InputError("give budget= (the number of groups) here or to Study()")
            return self.budget
        b = _check_budget(budget, self.n_tasks)
        self._check_cover(b)
        return b

    def result(self, budget: int | None = None, *, verify: bool = True) -> StudyResult:
        """``group(budget)`` by task name, with the measured gains of the chosen groups
        (``verify`` trains the chosen groups that are not measured yet)."""
        from .confidence import grouping_confidence

        g = self.group(budget)
        if verify:
            self.measure([int(m) for m in g.groups], desc="verify chosen groups")
        res = describe(g, self.task_names, lambda split: self.gain_table(split))
        if self._collect == "all" or self.estimator_ is None:
            return res   # the oracle's estimate is the measurement itself
        conf = grouping_confidence(self.estimator_, g, self.gain_table(),
                                   candidates=self.candidates())
        return dataclasses.replace(res, confidence=conf)

    def close(self) -> None:
        """Release worker processes and the store connection."""
        if self._own_executor:
            self._executor.close()
        if self._own_store:   # a store the caller passed in stays open (it may be ":memory:")
            self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe(grouping: Grouping, task_names: Sequence[str],
             table: Callable[[Literal["valid", "test"]], GainTable]) -> StudyResult:
    """A grouping by task name, scored on the measured ``table("valid")`` and ``table("test")``
    (NaN where a chosen group was not measured or there are no test metrics)."""
    from ..grouping import evaluate

    g = grouping
    groups = tuple(tuple(task_names[j] for j in members) for members in g.members())
    assignment = {name: (groups[int(g.assignment[j])] if int(g.assignment[j]) >= 0 else (name,))
                  for j, name in enumerate(task_names)}
    scores = []
    splits: tuple[Literal["valid", "test"], ...] = ("valid", "test")
    for split in splits:
        try:
            scores.append(evaluate(g, table(split)))
        except (InputError, StoreError):  # a group not measured, or no test metrics
            scores.append(math.nan)
    return StudyResult(groups, assignment, float(g.average), scores[0], scores[1], g)


def _open_existing(path: str | os.PathLike[str]) -> GainStore:
    """Open a store that must exist, for reading; read-only when it cannot be written."""
    try:
        return GainStore(path, create=False)
    except StoreError as exc:
        if "cannot be written" not in str(exc):
            raise
        return GainStore(path, readonly=True)


def group_stored(store: str | os.PathLike[str] | GainStore, budget: int, *,
                 study: str | None = None, estimator: str = "oracle") -> StudyResult:
    """Group the tasks of a stored study without training (never creates a store): "oracle"
    chooses among the measured combinations, "hoa" (needs every pair) and "mtgnet" predict all
    candidates from them (any registry estimator that fits on stored gains)."""
    from ..grouping import group

    spec = estimator_spec(estimator)
    if not spec.fits_table:
        raise InputError(f"estimator {estimator!r} cannot be fitted on stored gains alone; use "
                         f"one of {', '.join(estimator_names(fits_table=True))}")
    check_int("budget (the number of groups)", budget, 1)
    st = store if isinstance(store, GainStore) else _open_existing(store)
    try:
        if study is None:
            names = st.studies()
            if len(names) != 1:
                raise InputError(f"the store {st.path!r} holds {len(names)} studies {names}; "
                                 f"pass study= (one of them)")
            study = names[0]
        valid = st.gain_table(study, "valid")
        n = valid.n_tasks
        b = _check_budget(budget, n)
        if not ((valid.masks & (valid.masks - np.uint64(1))) != 0).any():
            raise InputError(f"study {study!r} of gain store {st.path!r} has no finished "
                             "multi-task run yet (nothing to group on); run the study, or wait "
                             "for its first runs to complete")
        est: Any = make_estimator(estimator).fit(valid)
        if spec.collect == "all":
            cands = np.unique(np.concatenate([valid.masks, all_singletons(n)]))
        else:
            cands = (all_masks(n) if n <= MAX_ALL_CANDIDATES else np.unique(np.concatenate(
                [k_subsets(n, k) for k in range(1, 4)] + [valid.masks])))
        g = group(cands, est.predict(cands), b)
        name = study
        return describe(g, valid.task_names, lambda split: st.gain_table(name, split))
    finally:
        if not isinstance(store, GainStore):
            st.close()


def all_singletons(n_tasks: int) -> npt.NDArray[np.uint64]:
    return (np.uint64(1) << np.arange(n_tasks, dtype=np.uint64)).astype(np.uint64)


def _callable_name(fn: object) -> str:
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}.{qual}"


def _accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (or any keyword); True when it cannot be inspected."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any((p.name == name and p.kind != p.POSITIONAL_ONLY) or p.kind == p.VAR_KEYWORD
               for p in params)


def _jsonable(value: object) -> Any:
    """``value`` as plain JSON data for the stored study options: arrays and tables as digests,
    callables by name, other objects by type (stable across processes, unlike a repr)."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return bool(value) if isinstance(value, np.bool_) else value
    if is_int(value):
        return int(value)
    if is_real(value):
        f = float(value)
        return f if math.isfinite(f) else repr(f)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        return {"array": list(a.shape), "dtype": str(a.dtype),
                "sha1": hashlib.sha1(a.tobytes()).hexdigest()}
    if isinstance(value, GainTable):
        return {"gain_table": list(value.task_names), "masks": _jsonable(value.masks),
                "gains": _jsonable(value.gains)}
    if callable(value):
        return _callable_name(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def bar_n(bar: Any) -> int:
    return int(getattr(bar, "n", 0))


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """The one place the study makes progress bars: tqdm on a terminal, plain lines when stderr
    is a file or pipe, a silent counter when disabled (:func:`mtgfast.progress.progress`)."""
    return progress(total, desc, enabled and total > 0)
