"""``Study``: measure task combinations, fit an estimator, choose the groups (Algorithm 1 end to end).

The study reaches training only through a callable ``train(tasks: tuple[str, ...], seed) ->
{task: metric}`` or ``{task: (valid metric, test metric)}``; a built-in ``TaskSuite`` is wrapped into
one (``SuiteTrainFn``). Every finished run goes to the gain store in its own transaction, keyed by
(study, mask, seed, fingerprint); the store is the single source of truth, so a killed study resumes
where it stopped and never trains a stored run again. Torch is imported only when a suite is used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError, InputTypeError, StoreError
from ..gains import GainTable
from ..masks import all_masks, check_n_tasks, k_subsets, mask_to_indices
from ..store import GainStore
from .executors import Executor, make_executor

if TYPE_CHECKING:  # pragma: no cover
    from ..estimators.base import GainEstimator
    from ..grouping import Grouping
    from ..mtl.suites.base import TaskSuite
    from ..mtl.trainer import TrainConfig

__all__ = ["ESTIMATORS", "Study", "StudyResult", "describe", "group_stored"]

TrainFn = Callable[[tuple[str, ...], int], Mapping[str, Any]]
ESTIMATORS = ("mtgnet", "hoa", "tag", "oracle")
#: candidates are all 2^N - 1 combinations up to this N; beyond it, combinations of <= 3 tasks
#: plus every measured one (pass ``candidates=`` for another set)
MAX_ALL_CANDIDATES = 16


class _RunJob:
    """Picklable ``(mask, seed) -> (metrics_valid, metrics_test, seconds)`` around a train callable."""

    def __init__(self, train: TrainFn, task_names: tuple[str, ...]) -> None:
        self.train = train
        self.task_names = task_names

    def __call__(self, job: tuple[int, int]) -> tuple[dict[str, float], dict[str, float], float]:
        mask, seed = job
        tasks = tuple(self.task_names[j] for j in mask_to_indices(mask))
        start = time.perf_counter()
        out = self.train(tasks, seed)
        seconds = time.perf_counter() - start
        return (*_split_metrics(out, tasks), seconds)


def _split_metrics(out: object, tasks: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float]]:
    """``{task: v}`` or ``{task: (valid, test)}`` -> (valid dict, test dict; empty if not given)."""
    if not isinstance(out, Mapping):
        raise InputTypeError(f"the train callable must return a mapping task -> metric, got "
                             f"{type(out).__name__}")
    if set(out) != set(tasks):
        raise InputError(f"the train callable returned metrics for {sorted(out)}, expected "
                         f"exactly {sorted(tasks)}")
    valid, test = {}, {}
    for t in tasks:
        v = out[t]
        if isinstance(v, (tuple, list)):
            if len(v) != 2:
                raise InputError(f"metric of {t!r} must be a number or (valid, test), got {v!r}")
            valid[t], test[t] = float(v[0]), float(v[1])
        else:
            valid[t] = float(v)
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
        return "\n".join(lines)


class Study:
    """A grouping study over one problem (a ``TaskSuite`` or a train callable).

    ``estimator``: "mtgnet" (active loop of Algorithm 1), "hoa" (measures all pairs), "tag" (one
    all-task run with lookahead affinities; suites only, or pass ``affinity=``), "oracle" (measures
    every candidate), or a ``GainEstimator`` instance (then ``estimator_name`` labels it).
    ``seeds``: each combination is trained once per seed; metrics are averaged. For a callable,
    give ``task_names`` and the metric direction (``higher_is_better``), and a ``fingerprint`` that
    changes whenever the training procedure does.
    """

    def __init__(self, problem: TaskSuite | TrainFn, store: str | GainStore = "mtgfast.db",
                 estimator: str | GainEstimator = "mtgnet", name: str | None = None,
                 config: TrainConfig | None = None, seeds: Sequence[int] = (0,), workers: int = 1,
                 *, task_names: Sequence[str] | None = None, metric: str | Sequence[str] = "metric",
                 higher_is_better: bool | Sequence[bool] = False, fingerprint: str | None = None,
                 candidates: object = None, executor: Executor | None = None,
                 estimator_options: Mapping[str, Any] | None = None,
                 active_options: Mapping[str, Any] | None = None, affinity: object = None,
                 progress: bool = True) -> None:
        self.seeds = self._check_seeds(seeds)
        self.progress = bool(progress)
        self.estimator_options = dict(estimator_options or {})
        self.active_options = dict(active_options or {})
        self.affinity = affinity
        if isinstance(estimator, str):
            if estimator not in ESTIMATORS:
                raise InputError(f"unknown estimator {estimator!r}; known: {list(ESTIMATORS)}")
        elif not hasattr(estimator, "fit") or not hasattr(estimator, "predict"):
            raise InputTypeError("estimator must be a name or a GainEstimator instance")
        self.estimator = estimator
        self.suite: TaskSuite | None = None
        self.config: TrainConfig | None = None
        if _is_suite(problem):
            from ..mtl.trainer import SuiteTrainFn, TrainConfig

            suite = problem  # type: ignore[assignment]
            cfg = config if config is not None else TrainConfig()
            if not isinstance(cfg, TrainConfig):
                raise InputTypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
            self.suite, self.config = suite, cfg  # type: ignore[assignment]
            self.train_fn: TrainFn = SuiteTrainFn(suite, cfg)  # type: ignore[arg-type]
            self.task_names = tuple(suite.task_names)  # type: ignore[union-attr]
            metrics: str | Sequence[str] = tuple(suite.metric_names)  # type: ignore[union-attr]
            hib: bool | Sequence[bool] = suite.higher_is_better  # type: ignore[union-attr]
            self.fingerprint = f"{cfg.fingerprint()}-{suite.fingerprint()}"  # type: ignore[union-attr]
            default_name = f"{suite.name}-{cfg.weighting}-{cfg.arch}-{cfg.fingerprint()[:8]}"  # type: ignore[union-attr]
            config_dict = cfg.to_dict()
        elif callable(problem):
            if config is not None:
                raise InputError("config applies to the built-in trainer; a train callable "
                                 "carries its own hyper-parameters")
            if task_names is None:
                raise InputError("a train callable needs task_names=")
            self.train_fn = problem
            self.task_names = tuple(str(t) for t in task_names)
            metrics, hib = metric, higher_is_better
            self.fingerprint = fingerprint if fingerprint is not None else _callable_name(problem)
            default_name = _callable_name(problem).rsplit(".", 1)[-1]
            config_dict = {}
        else:
            raise InputTypeError("problem must be a TaskSuite or a callable "
                                 "train(tasks, seed) -> {task: metric}")
        check_n_tasks(len(self.task_names))
        self.n_tasks = len(self.task_names)
        self.name = name if name is not None else default_name
        self.store = store if isinstance(store, GainStore) else GainStore(store)
        self.info = self.store.create_study(self.name, self.task_names, metrics=metrics,
                                            higher_is_better=hib, fingerprint=self.fingerprint,
                                            config=config_dict)
        self._config_dict = config_dict
        self._candidates = candidates
        self._executor = executor if executor is not None else make_executor(workers)
        self._own_executor = executor is None
        #: runs trained by this object (not read back from the store)
        self.n_trained = 0
        self.estimator_: GainEstimator | None = None
        self.loop_: Any = None

    # -- validation helpers -------------------------------------------------------------------
    @staticmethod
    def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
        if isinstance(seeds, (int, np.integer)):
            seeds = (int(seeds),)
        out = tuple(int(s) for s in seeds)
        if not out or len(set(out)) != len(out) or min(out) < 0:
            raise InputError(f"seeds must be distinct non-negative ints, got {list(seeds)}")
        return out

    # -- measuring ----------------------------------------------------------------------------
    def measure(self, masks: Iterable[int], *, desc: str = "training") -> None:
        """Train every (mask, seed) not yet in the store and record each run as it finishes."""
        ms = [int(m) for m in masks]
        for m in ms:
            if m <= 0 or m >> self.n_tasks:
                raise InputError(f"mask {m} is not a combination of {self.n_tasks} tasks")
        jobs = [(m, s) for m in dict.fromkeys(ms) for s in self.seeds
                if not self.store.has_run(self.name, m, s)]
        if not jobs:
            return
        bar = _progress(len(jobs), desc, self.progress)
        try:
            for (mask, seed), (mv, mt, seconds) in self._executor.map_runs(
                    _RunJob(self.train_fn, self.task_names), jobs):
                self.store.record_run(self.name, mask, seed, metrics_valid=mv,
                                      metrics_test=mt or None, seconds=seconds,
                                      config=self._config_dict)
                self.n_trained += 1
                bar.update(1)
        finally:
            bar.close()

    def collect_stl(self) -> None:
        """Single-task baselines: every singleton, for every seed."""
        self.measure([1 << j for j in range(self.n_tasks)], desc="STL baselines")

    def gain_table(self, split: str = "valid") -> GainTable:
        """Measured gains of every stored combination (mean over seeds) against STL."""
        return self.store.gain_table(self.name, split)  # type: ignore[arg-type]

    def gains_of(self, masks: Sequence[int], split: str = "valid") -> npt.NDArray[np.float64]:
        """Measured gain rows of ``masks`` (training the missing ones first)."""
        self.collect_stl()
        self.measure(masks)
        return self.gain_table(split).lookup(np.array(masks, dtype=np.uint64))

    # -- candidates and estimator ---------------------------------------------------------------
    def candidates(self) -> npt.NDArray[np.uint64]:
        """Combinations the grouping search chooses from."""
        if self._candidates is not None:
            from ..masks import as_masks
            return as_masks(self._candidates, self.n_tasks)
        if self.n_tasks <= MAX_ALL_CANDIDATES:
            return all_masks(self.n_tasks)
        parts = [k_subsets(self.n_tasks, k) for k in range(1, 4)]
        parts.append(self.gain_table().masks)
        return np.unique(np.concatenate(parts))

    def _make_estimator(self) -> GainEstimator:
        """A fresh, unfitted estimator (the active loop refits a new one each time)."""
        if not isinstance(self.estimator, str):
            return type(self.estimator)(**self.estimator.get_params())
        if self.estimator == "oracle":
            from ..estimators.oracle import Oracle
            return Oracle(**self.estimator_options)
        if self.estimator == "hoa":
            from ..estimators.hoa import HOA
            return HOA(**self.estimator_options)
        if self.estimator == "tag":
            from ..estimators.tag import TAG
            return TAG(**self.estimator_options)
        from ..estimators.mtgnet import MTGNet
        return MTGNet(**self.estimator_options)

    def _tag_affinity(self) -> npt.NDArray[np.float64]:
        if self.affinity is not None:
            return np.asarray(self.affinity, dtype=np.float64)
        if self.suite is None or self.config is None:
            raise InputError("estimator 'tag' on a train callable needs affinity= (an N x N "
                             "matrix of inter-task affinities)")
        from ..mtl.tag_affinity import collect_affinity

        # one all-task run per seed with lookahead affinities, averaged; cheap next to the study
        mats = [collect_affinity(self.suite, s, self.config).matrix for s in self.seeds]
        self.affinity = np.mean(mats, axis=0)
        return self.affinity

    def run(self, rounds: int = 5) -> GainEstimator:
        """Collect STL baselines, measure what the estimator needs, fit it; returns the estimator.

        "mtgnet" (or a custom estimator): the full set, then ``rounds`` rounds of N selections of
        the active loop (``active_options``: ``selector``, ``selector_options``, ``seed``,
        ``include_full``, ``refit_interval``); "hoa": every pair; "oracle": every candidate;
        "tag": the affinity run. Resumes from the store: stored runs are never trained again.
        """
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise InputError(f"rounds must be a non-negative int, got {rounds!r}")
        self.collect_stl()
        est = self._make_estimator()
        kind = self.estimator if isinstance(self.estimator, str) else "custom"
        if kind == "oracle":
            self.measure([int(m) for m in self.candidates() if int(m) & (int(m) - 1)])
            est.fit(self.gain_table())
        elif kind == "hoa":
            self.measure([int(m) for m in k_subsets(self.n_tasks, 2)] if self.n_tasks > 1 else [])
            est.fit(self.gain_table())
        elif kind == "tag":
            est.fit_affinity(self._tag_affinity(), self.task_names)  # type: ignore[attr-defined]
        else:
            est = self._run_active(rounds)
        self.estimator_ = est
        return est

    def _run_active(self, rounds: int) -> GainEstimator:
        from .active import ActiveLoop, make_selector

        opts = dict(self.active_options)
        selector = make_selector(opts.pop("selector", "exp-gain"),
                                 **opts.pop("selector_options", {}))
        measured = self.gain_table()
        loop = ActiveLoop(selector, self._make_estimator, None, self.n_tasks,
                          initial=measured if len(measured) else None,
                          task_names=self.task_names, **opts)
        self.loop_ = loop
        target = rounds * self.n_tasks
        bar = _progress(target, "active selections", self.progress)
        bar.update(min(loop.selections_done(), target))
        try:
            while True:
                # the same order as ActiveLoop.run, but each batch is trained in parallel
                if loop.include_full and loop.full_mask not in set(loop.measured_masks.tolist()):
                    batch = loop.ask()
                elif loop.selections_done() >= target:
                    break
                else:
                    batch = loop.ask(max_masks=target - loop.selections_done())
                if batch.size == 0:
                    break
                self.measure(batch.tolist(), desc="MTL runs")
                loop.tell(batch, self.gain_table().lookup(batch))
                bar.update(min(loop.selections_done(), target) - bar_n(bar))
        finally:
            bar.close()
        return loop.fit_estimator()  # type: ignore[return-value]

    # -- grouping -------------------------------------------------------------------------------
    def predict(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
        """Candidates and their gains: measured where the store has them (oracle: only those),
        predicted by the fitted estimator elsewhere."""
        if self.estimator_ is None:
            raise InputError("call run() before group()")
        cands = self.candidates()
        if isinstance(self.estimator, str) and self.estimator == "oracle":
            measured = self.gain_table().masks
            cands = np.unique(np.concatenate([measured, all_singletons(self.n_tasks)]))
        return cands, self.estimator_.predict(cands)

    def group(self, budget: int) -> Grouping:
        """The best grouping of at most ``budget`` groups on the estimator's predictions."""
        from ..grouping import group

        masks, gains = self.predict()
        return group(masks, gains, budget)

    def result(self, budget: int, *, verify: bool = True) -> StudyResult:
        """``group(budget)`` by task name, with the measured gains of the chosen groups
        (``verify`` trains the chosen groups that are not measured yet)."""
        g = self.group(budget)
        if verify:
            self.measure([int(m) for m in g.groups], desc="verify chosen groups")
        return describe(g, self.task_names, lambda split: self.gain_table(split))

    def close(self) -> None:
        """Release worker processes and the store connection."""
        if self._own_executor:
            self._executor.close()
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe(grouping: Grouping, task_names: Sequence[str],
             table: Callable[[str], GainTable]) -> StudyResult:
    """A grouping by task name, scored on the measured ``table("valid")`` and ``table("test")``
    (NaN where a chosen group was not measured or there are no test metrics)."""
    from ..grouping import evaluate

    g = grouping
    groups = tuple(tuple(task_names[j] for j in members) for members in g.members())
    assignment = {name: (groups[int(g.assignment[j])] if int(g.assignment[j]) >= 0 else (name,))
                  for j, name in enumerate(task_names)}
    scores = []
    for split in ("valid", "test"):
        try:
            scores.append(evaluate(g, table(split)))
        except (InputError, StoreError):  # a group not measured, or no test metrics
            scores.append(math.nan)
    return StudyResult(groups, assignment, float(g.average), scores[0], scores[1], g)


def group_stored(store: str | GainStore, budget: int, *, study: str | None = None,
                 estimator: str = "oracle") -> StudyResult:
    """Group the tasks of a stored study without training: "oracle" chooses among the measured
    combinations, "hoa" (needs every pair) and "mtgnet" predict all candidates from them."""
    from ..grouping import group

    if estimator not in ("oracle", "hoa", "mtgnet"):
        raise InputError(f"estimator must be 'oracle', 'hoa' or 'mtgnet', got {estimator!r}")
    st = store if isinstance(store, GainStore) else GainStore(store)
    try:
        if study is None:
            names = st.studies()
            if len(names) != 1:
                raise InputError(f"the store holds {len(names)} studies {names}; pass study=")
            study = names[0]
        valid = st.gain_table(study, "valid")
        n = valid.n_tasks
        if estimator == "oracle":
            from ..estimators.oracle import Oracle
            est: Any = Oracle().fit(valid)
            cands = np.unique(np.concatenate([valid.masks, all_singletons(n)]))
        else:
            if estimator == "hoa":
                from ..estimators.hoa import HOA
                est = HOA().fit(valid)
            else:
                from ..estimators.mtgnet import MTGNet
                est = MTGNet().fit(valid)
            cands = (all_masks(n) if n <= MAX_ALL_CANDIDATES else np.unique(np.concatenate(
                [k_subsets(n, k) for k in range(1, 4)] + [valid.masks])))
        g = group(cands, est.predict(cands), budget)
        return describe(g, valid.task_names, lambda split: st.gain_table(study, split))
    finally:
        if not isinstance(store, GainStore):
            st.close()


def all_singletons(n_tasks: int) -> npt.NDArray[np.uint64]:
    return (np.uint64(1) << np.arange(n_tasks, dtype=np.uint64)).astype(np.uint64)


def _is_suite(obj: object) -> bool:
    # a TaskSuite without importing torch for plain callables
    return any(c.__name__ == "TaskSuite" and c.__module__ == "mtgfast.mtl.suites.base"
               for c in type(obj).__mro__)


def _callable_name(fn: object) -> str:
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{mod}.{qual}"


def bar_n(bar: Any) -> int:
    return int(getattr(bar, "n", 0))


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or total <= 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
