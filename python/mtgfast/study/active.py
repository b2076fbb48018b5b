"""Active choice of the combinations to measure: Algorithm 1 of MTG-Net as an ask/tell loop.

Start from the full set (singletons are free: gain 0 by definition); then K rounds in which, for each
task j in turn, a :class:`Selector` proposes one unmeasured candidate containing j from the current
estimator's predictions; the estimator is refitted every eta selections (paper: eta = 1 while at most
N + 1 combinations are measured, then eta = N). ``ask()`` returns the masks that may be measured
before the next refit (a batch a parallel executor can run at once); ``tell()`` records results.
A combination is never measured twice, including across a resume (``initial=`` / ``tell_table``).

The loop keeps no state of its own: its choices (with the selector slots each batch consumed) and
the measured gains live in a :class:`LoopState` — in memory for a replay
(:class:`MemoryLoopState`), in the gain store for a :class:`~mtgfast.study.study.Study` — so a
study killed at any moment and resumed makes exactly the choices of an uninterrupted run.
This module does not import torch: the estimator comes from a factory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ..checks import check_bool, check_int, check_real, is_int
from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable, real_matrix
from ..masks import MaskArray, all_masks, as_masks, check_n_tasks, masks_to_dense, sample_masks

__all__ = ["ActiveLoop", "ExpGainSelector", "GreedySelector", "LoopState", "MemoryLoopState",
           "RandomSelector", "Selection", "Selector", "SelectionContext", "Trial",
           "UncertaintySelector", "default_candidates", "make_selector", "paper_refit_interval"]

#: enumerate every combination up to this many tasks; above it, sample a pool
MAX_ENUMERATED_TASKS = 16
#: size of the sampled candidate pool for large N (predicting it is a fraction of a refit)
DEFAULT_POOL_SIZE = 20_000


class Estimator(Protocol):
    """What the loop needs from an estimator: ``fit`` on measured gains, ``predict`` any masks."""

    def fit(self, table: GainTable) -> Any: ...

    def predict(self, masks: object) -> Any: ...


@dataclass(frozen=True)
class SelectionContext:
    """What a selector sees: the tasks to serve (one proposal each, in order), the unmeasured
    candidates with their predicted gains (``mean``/``std``: ``(n_candidates, n_tasks)``, None
    before any fit), the measured masks, the study seed and the round each task is served in.

    Randomness comes only from :meth:`rng_for`, a generator derived from (seed, round, task), never
    from process state: a study killed and resumed draws exactly what an uninterrupted one draws.
    """

    tasks: tuple[int, ...]
    candidates: MaskArray
    member: npt.NDArray[np.bool_]
    mean: FloatArray | None
    std: FloatArray | None
    measured: MaskArray
    seed: int = 0
    rounds: tuple[int, ...] = ()

    def rng_for(self, task: int, stream: int = 0) -> np.random.Generator:
        """The generator of the proposal serving ``task`` in this batch: seeded by
        (seed, round, task) so it does not depend on what ran before in this process; ``stream``
        > 0 gives another independent generator of the same slot (seeded (seed, round, task,
        stream)) for a second decision."""
        rnd = self.rounds[self.tasks.index(task)] if task in self.tasks and self.rounds else 0
        key = [int(self.seed), int(rnd), int(task)] + ([int(stream)] if stream else [])
        return np.random.default_rng(key)


class Selector(ABC):
    """Proposes the next combinations to measure (the sampler of the active loop).

    Subclasses implement :meth:`choose` (pick one row among the candidates that contain a task);
    :meth:`ask` serves ``ctx.tasks`` in order without proposing a candidate twice and skips a task
    whose candidates are exhausted. Set ``needs_std`` to receive the ensemble spread.
    """

    name: ClassVar[str] = "selector"
    needs_std: ClassVar[bool] = False

    def ask(self, ctx: SelectionContext) -> MaskArray:
        """One mask per task of ``ctx.tasks`` (fewer when a task has no candidate left)."""
        taken = np.zeros(ctx.candidates.shape[0], dtype=bool)
        out: list[int] = []
        for j in ctx.tasks:
            rows = np.flatnonzero(ctx.member[:, j] & ~taken)
            if rows.size == 0:
                continue
            r = int(rows[self.choose(j, rows, ctx)])
            taken[r] = True
            out.append(int(ctx.candidates[r]))
        return np.array(out, dtype=np.uint64)

    @abstractmethod
    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        """Index into ``rows`` (candidate rows that contain ``task``) of the one to measure."""

    @staticmethod
    def _sample(logits: FloatArray, rng: np.random.Generator) -> int:
        z = logits - logits.max()
        p = np.exp(z)
        return int(rng.choice(p.size, p=p / p.sum()))


class ExpGainSelector(Selector):
    """The paper's sampler: P(C) proportional to exp(alpha * |predicted gain of j in C|).

    ``alpha=25``: the paper's value; with gains of a few percent it prefers large |gains| mildly,
    so the loop keeps exploring. Uniform before the first fit.
    """

    name = "exp-gain"

    def __init__(self, alpha: float = 25.0) -> None:
        self.alpha = check_real("alpha", alpha)

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        if ctx.mean is None:
            return int(ctx.rng_for(task).integers(rows.size))
        return self._sample(self.alpha * np.abs(ctx.mean[rows, task]), ctx.rng_for(task))


class GreedySelector(Selector):
    """The released code's deterministic variant: the largest |predicted gain| of task j
    (first candidate on ties; candidate order before the first fit)."""

    name = "greedy"

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        if ctx.mean is None:
            return 0
        return int(np.argmax(np.abs(ctx.mean[rows, task])))


class RandomSelector(Selector):
    """Uniform among the unmeasured candidates containing j (the ablation of the sampler)."""

    name = "random"

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        return int(ctx.rng_for(task).integers(rows.size))


class UncertaintySelector(Selector):
    """Optimism under uncertainty: P(C) proportional to exp(alpha * (|mean_j(C)| + kappa * std_j(C)))
    with the ensemble's spread as std, so combinations the members disagree on are tried sooner."""

    name = "uncertainty"
    needs_std = True

    def __init__(self, alpha: float = 25.0, kappa: float = 1.0) -> None:
        self.alpha = check_real("alpha", alpha)
        self.kappa = check_real("kappa", kappa)

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        if ctx.mean is None:
            return int(ctx.rng_for(task).integers(rows.size))
        score = np.abs(ctx.mean[rows, task])
        if ctx.std is not None:
            score = score + self.kappa * ctx.std[rows, task]
        return self._sample(self.alpha * score, ctx.rng_for(task))


_SELECTORS: dict[str, type[Selector]] = {
    "exp-gain": ExpGainSelector, "greedy": GreedySelector, "random": RandomSelector,
    "uncertainty": UncertaintySelector,
    # study/sampling.py subclasses Selector: its selectors load on first use (no import cycle)
    "search": lambda **o: __import__("mtgfast.study.sampling", fromlist=["*"]).SearchSelector(**o),  # type: ignore[dict-item]  # noqa: E501
    "pairs-first": lambda **o: __import__("mtgfast.study.sampling", fromlist=["*"]).PairsFirstSelector(**o),  # type: ignore[dict-item]  # noqa: E501
    "improvement": lambda **o: __import__("mtgfast.study.improvement", fromlist=["*"]).ImprovementSelector(**o),  # type: ignore[dict-item]  # noqa: E501
}


def make_selector(name: str, **options: Any) -> Selector:
    """A selector by name: ``exp-gain`` (paper), ``greedy``, ``random``, ``uncertainty``."""
    if not isinstance(name, str):
        raise InputTypeError(f"selector must be a name (str), got {type(name).__name__}")
    if name not in _SELECTORS:
        raise InputError(f"unknown selector {name!r}; known: {', '.join(_SELECTORS)}")
    try:
        return _SELECTORS[name](**options)
    except InputTypeError:
        raise
    except TypeError as exc:   # an option the selector does not take
        raise InputError(f"bad options {sorted(options)} for selector {name!r}: {exc}") from exc


def paper_refit_interval(n_measured: int, n_tasks: int) -> int:
    """eta of Algorithm 1: refit after every selection while at most N + 1 combinations of >= 2
    tasks are measured (the model is poor and each row moves it), then once per round of N."""
    return 1 if n_measured < n_tasks + 1 else n_tasks


def default_candidates(n_tasks: int, *, pool_size: int = DEFAULT_POOL_SIZE,
                       seed: int = 0) -> MaskArray:
    """Every combination of >= 2 tasks for N <= 16; else ``pool_size`` of them drawn uniformly
    (plus the full set)."""
    n = check_n_tasks(n_tasks)
    if n <= MAX_ENUMERATED_TASKS:
        m = all_masks(n)
        return m[(m & (m - np.uint64(1))) != 0]
    pool = sample_masks(n, pool_size, sizes=range(2, n + 1), seed=seed)
    full = np.uint64((1 << n) - 1) if n < 64 else np.uint64(2**64 - 1)
    return np.unique(np.append(pool, full))


@dataclass(frozen=True)
class Trial:
    """One measured combination (immutable): its gains (NaN outside) and why it was measured
    (``"initial"``: given at construction or by ``tell_table``; ``"full"``; ``"selected"``)."""

    mask: int
    gains: tuple[float, ...]
    source: Literal["initial", "full", "selected"]
    round: int | None = None
    task: int | None = None


@dataclass(frozen=True)
class Selection:
    """One choice of the loop: the mask, the round and task it serves (None for the full set)."""

    mask: int
    round: int | None
    task: int | None
    source: Literal["full", "selected"]


class LoopState(ABC):
    """Where the loop's state lives: the choices made (in order, with the selector slots the
    batches consumed) and the measured gain rows. The loop reads it afresh on every ``ask``."""

    @abstractmethod
    def selections(self) -> list[Selection]:
        """Every choice made so far, in order."""

    @abstractmethod
    def slots_used(self) -> int:
        """Selector slots consumed (round = slot // N, task = slot % N)."""

    @abstractmethod
    def add_batch(self, slot_start: int, slot_count: int, chosen: Sequence[Selection]) -> None:
        """Record one batch of choices atomically (and request their measurement)."""

    @abstractmethod
    def measured(self) -> dict[int, FloatArray]:
        """Measured combinations of >= 2 tasks -> gain row, in the order they were measured."""

    def unavailable(self) -> set[int]:
        """Chosen combinations that can never be measured (failed for good): not pending."""
        return set()

    def tell(self, mask: int, row: FloatArray) -> None:
        """Record a measured row (states whose gains come from elsewhere refuse)."""
        raise InputError(f"{type(self).__name__} reads measured gains from its store; tell() "
                         "is for in-memory loops")

    def advance_slots(self, slots: int) -> None:
        """Count ``slots`` selections as already made (resume from a table)."""
        raise InputError(f"{type(self).__name__} keeps its selections in its store")


class MemoryLoopState(LoopState):
    """The loop's state in memory: a replay on a recorded table, or a unit test."""

    def __init__(self) -> None:
        self._selections: list[Selection] = []
        self._slots = 0
        self._rows: dict[int, FloatArray] = {}

    def selections(self) -> list[Selection]:
        return list(self._selections)

    def slots_used(self) -> int:
        return self._slots

    def add_batch(self, slot_start: int, slot_count: int, chosen: Sequence[Selection]) -> None:
        if slot_start != self._slots:
            raise InputError(f"batch starts at slot {slot_start}, the state at {self._slots}")
        self._selections.extend(chosen)
        self._slots += slot_count

    def measured(self) -> dict[int, FloatArray]:
        return dict(self._rows)

    def tell(self, mask: int, row: FloatArray) -> None:
        self._rows[int(mask)] = row

    def advance_slots(self, slots: int) -> None:
        self._slots = max(self._slots, int(slots))


class ActiveLoop:
    """Algorithm 1 as ask/tell. ``ask()`` -> masks to measure next; ``tell(mask, gains)``;
    ``run(measure, rounds)`` does both until ``rounds * n_tasks`` selections are made.

    ``estimator_factory()`` returns a fresh unfitted estimator (``fit(GainTable)``,
    ``predict(masks)``); ``candidates`` default to :func:`default_candidates`; ``initial`` is a
    :class:`GainTable` of already-measured rows (resume), never measured again. ``state`` holds
    the choices and measurements (default: a new :class:`MemoryLoopState`).
    """

    def __init__(self, selector: Selector, estimator_factory: Callable[[], Estimator],
                 candidates: object | None, n_tasks: int, *,
                 initial: GainTable | None = None, include_full: bool = True,
                 refit_interval: Callable[[int, int], int] = paper_refit_interval,
                 task_names: Sequence[str] | None = None, seed: int = 0,
                 state: LoopState | None = None) -> None:
        if not isinstance(selector, Selector):
            raise InputTypeError(f"selector must be a Selector, got {type(selector).__name__}")
        if not callable(estimator_factory):
            raise InputTypeError("estimator_factory must be a callable returning an estimator")
        if not callable(refit_interval):
            raise InputTypeError("refit_interval must be a callable (n_measured, n_tasks) -> int")
        seed = check_int("seed", seed)
        if state is not None and not isinstance(state, LoopState):
            raise InputTypeError(f"state must be a LoopState, got {type(state).__name__}")
        self.n_tasks = check_n_tasks(n_tasks)
        n = self.n_tasks
        if isinstance(task_names, (str, bytes)):   # "abc" is not three tasks
            raise InputTypeError(f"task_names must be a sequence of names, not a string "
                                 f"({task_names!r})")
        #: whether the task names were given (a resume table is then matched by name)
        self._named = task_names is not None
        self.task_names = (tuple(str(t) for t in task_names) if task_names is not None
                           else tuple(f"t{j}" for j in range(n)))
        if len(self.task_names) != n:
            raise InputError(f"{len(self.task_names)} task names for n_tasks={n}")
        if len(set(self.task_names)) != n:
            raise InputError(f"task names must be distinct, got {list(self.task_names)}")
        cands = default_candidates(n, seed=int(seed)) if candidates is None else \
            as_masks(candidates, n, name="candidates")
        cands = np.unique(cands)
        # singletons are never measured (gain 0 by definition): not candidates
        self.candidates = cands[(cands & (cands - np.uint64(1))) != 0]
        self.selector = selector
        self.estimator_factory = estimator_factory
        self.refit_interval = refit_interval
        self.include_full = check_bool("include_full", include_full)
        self.full_mask = (1 << n) - 1
        self.seed = int(seed)
        self.state: LoopState = state if state is not None else MemoryLoopState()
        self._fitted_on: frozenset[int] | None = None   # a cache, not state: refit when it differs
        self._frozen: dict[int, FloatArray] | None = None   # the measured set during one ask()
        self.estimator_: Estimator | None = None
        if initial is not None:
            self.tell_table(initial)

    # -- state (read from self.state) ---------------------------------------------------------
    @property
    def n_measured(self) -> int:
        """Measured combinations of >= 2 tasks (what costs an MTL run; singletons are free)."""
        return len(self.state.measured())

    @property
    def measured_masks(self) -> MaskArray:
        return np.array(sorted(self.state.measured()), dtype=np.uint64)

    @property
    def pending(self) -> MaskArray:
        """Chosen masks not measured yet (what ``ask()`` returns until they are)."""
        return np.array(self._pending(self.state.measured()), dtype=np.uint64)

    def _pending(self, measured: dict[int, FloatArray]) -> list[int]:
        bad = self.state.unavailable()
        out = [s.mask for s in self.state.selections() if s.mask not in measured
               and s.mask not in bad]
        return list(dict.fromkeys(out))

    @property
    def trials(self) -> list[Trial]:
        """Measured combinations in measurement order, each with why it was measured."""
        why = {s.mask: s for s in self.state.selections()}
        out = []
        for mask, row in self.state.measured().items():
            s = why.get(mask)
            if s is None:
                out.append(Trial(mask, tuple(row.tolist()), "initial"))
            else:
                out.append(Trial(mask, tuple(row.tolist()), s.source, s.round, s.task))
        return out

    def table(self) -> GainTable:
        """Measured rows plus the free singleton rows (gain 0), as a :class:`GainTable`."""
        n = self.n_tasks
        measured = self._measured()
        singles = [1 << j for j in range(n)]
        order = sorted(measured)
        masks = np.array(singles + order, dtype=np.uint64)
        rows = np.full((masks.shape[0], n), np.nan)
        rows[np.arange(n), np.arange(n)] = 0.0
        for i, m in enumerate(order):
            rows[n + i] = measured[m]
        return GainTable(masks, rows, self.task_names, {"source": "active-loop"})

    def selections_done(self) -> int:
        """Selector proposals consumed so far (rounds completed = this // n_tasks)."""
        return self.state.slots_used()

    # -- tell ---------------------------------------------------------------------------------
    def tell(self, masks: object, gains: object) -> None:
        """Record measured gains: one mask and a row ``(n_tasks,)``, or masks ``(k,)`` and rows
        ``(k, n_tasks)``; NaN (or anything) outside the mask is ignored. ``ValueError`` for a
        combination measured before, a singleton, or non-finite gains inside the mask. A mask
        that ``ask()`` did not return is recorded too (an extra measurement, as on resume) and
        is never asked afterwards."""
        n = self.n_tasks
        scalar = is_int(masks)
        m = as_masks([int(masks)] if is_int(masks) else masks, n)
        try:  # bools, strings, complex: type errors, not 1.0 or parsed
            g = real_matrix(gains, "gains")
        except InputTypeError as exc:
            raise InputTypeError(f"gains must be numbers (a row per mask): {exc}") from None
        given = g.shape
        if scalar or g.ndim == 1:
            g = g.reshape(1, -1)
        if g.shape != (m.shape[0], n):
            raise InputError(f"gains must have shape ({m.shape[0]}, {n}) for {m.shape[0]} mask(s), "
                             f"got {given}")
        if np.unique(m).shape[0] != m.shape[0]:
            raise InputError("tell() got the same combination twice")
        member = masks_to_dense(m, n)
        measured = self.state.measured()
        for i, mask in enumerate(m.tolist()):
            if mask & (mask - 1) == 0:
                raise InputError(f"combination {mask} is a singleton: its gain is 0 by definition "
                                 "and it is never measured")
            if mask in measured:
                raise InputError(f"combination {mask} was already measured; the loop never "
                                 "measures a combination twice")
            if not np.all(np.isfinite(g[i][member[i]])):
                raise InputError(f"gains of combination {mask} must be finite inside it, got "
                                 f"{g[i][member[i]].tolist()}")
        for i, mask in enumerate(m.tolist()):
            self.state.tell(mask, np.where(member[i], g[i], np.nan))

    def tell_table(self, table: GainTable) -> None:
        """Record every measured row of ``table`` (resume); singleton rows are skipped, and rows
        this loop already holds must not appear (they would be measured twice). A loop given
        ``task_names`` matches the table by name: the same tasks in another order are reordered
        to the loop's, other tasks are an ``InputError``."""
        if not isinstance(table, GainTable):
            raise InputTypeError(f"table must be a GainTable, got {type(table).__name__}")
        if table.n_tasks != self.n_tasks:
            raise InputError(f"table has {table.n_tasks} tasks, the loop {self.n_tasks}")
        if self._named:   # a mask means other tasks in another order: reorder by name
            table = table.aligned_to(self.task_names, "the table", "the loop")
        keep = (table.masks & (table.masks - np.uint64(1))) != 0
        if keep.any():
            self.tell(table.masks[keep], table.gains[keep])
        # resume: selections already made are the measured rows beyond the full set
        measured = self.state.measured()
        self.state.advance_slots(len(measured) - int(self.full_mask in measured))

    # -- ask ----------------------------------------------------------------------------------
    def fit_estimator(self) -> Estimator:
        """Fit a fresh estimator on everything measured (no-op if nothing changed since)."""
        key = frozenset(self._measured())
        if self.estimator_ is None or self._fitted_on != key:
            est = self.estimator_factory()
            est.fit(self.table())
            self.estimator_ = est
            self._fitted_on = key
        return self.estimator_

    def ask(self, max_masks: int | None = None) -> MaskArray:
        """The masks to measure next (empty when no candidate is left). Until all are told,
        ``ask()`` returns the same pending batch; the estimator is refitted here when needed."""
        # one read of the state for the whole ask: the candidates, the estimator's fit and the
        # table a selector searches (``table()``) all see the same measured set, though another
        # process working on the same store completes runs meanwhile
        measured = self.state.measured()
        self._frozen = measured
        try:
            return self._ask(measured, max_masks)
        finally:
            self._frozen = None

    def _measured(self) -> dict[int, FloatArray]:
        return self._frozen if self._frozen is not None else self.state.measured()

    def _ask(self, measured: dict[int, FloatArray], max_masks: int | None) -> MaskArray:
        limit = None if max_masks is None else check_int("max_masks", max_masks, 0)
        pending = self._pending(measured)
        if pending:
            return np.array(pending, dtype=np.uint64)
        if limit is not None and limit < 1:
            return np.zeros(0, dtype=np.uint64)
        chosen_before = {s.mask for s in self.state.selections()}
        slot = self.state.slots_used()
        if self._needs_full(measured, chosen_before):
            self.state.add_batch(slot, 0, [Selection(self.full_mask, None, None, "full")])
            return np.array([self.full_mask], dtype=np.uint64)
        taken = np.fromiter(set(measured) | chosen_before, np.uint64)
        avail = self.candidates[~np.isin(self.candidates, taken)]
        if avail.size == 0:
            return np.zeros(0, dtype=np.uint64)
        n_measured = len(measured)
        eta = int(self.refit_interval(n_measured, self.n_tasks))
        if eta < 1:
            raise InputError(f"refit_interval returned {eta}; it must be >= 1")
        count = eta if limit is None else min(eta, limit)
        n = self.n_tasks
        slots = [slot + i for i in range(count)]
        mean = std = None
        if n_measured > 0:
            est = self.fit_estimator()
            if self.selector.needs_std:
                try:
                    # an optional keyword the protocol does not promise: the TypeError says so
                    predict: Any = est.predict
                    mean, std = predict(avail, return_std=True)
                except TypeError as exc:
                    raise InputError(f"selector {self.selector.name!r} needs an estimator whose "
                                     "predict accepts return_std=True") from exc
            else:
                mean = est.predict(avail)
        ctx = SelectionContext(tuple(s % n for s in slots), avail, masks_to_dense(avail, n),
                               None if mean is None else np.asarray(mean, dtype=np.float64),
                               None if std is None else np.asarray(std, dtype=np.float64),
                               np.array(sorted(measured), dtype=np.uint64), self.seed,
                               tuple(s // n for s in slots))
        chosen = self.selector.ask(ctx)
        chosen_set = set(chosen.tolist())
        if len(chosen_set) != chosen.shape[0] or not chosen_set <= set(avail.tolist()):
            raise InputError(f"selector {self.selector.name!r} proposed a measured, pending, "
                             "duplicate or non-candidate combination")
        # each proposal remembers the round and task it serves (tasks with no candidate skipped)
        served = iter([(s // n, s % n) for s in slots])
        batch: list[Selection] = []
        for m in chosen.tolist():
            for rnd, task in served:
                if (m >> task) & 1:
                    batch.append(Selection(m, rnd, task, "selected"))
                    break
            else:
                batch.append(Selection(m, None, None, "selected"))
        self.state.add_batch(slot, count, batch)
        return np.array([s.mask for s in batch], dtype=np.uint64)

    def _needs_full(self, measured: dict[int, FloatArray], chosen: set[int]) -> bool:
        return (self.include_full and self.n_tasks >= 2 and self.full_mask not in measured
                and self.full_mask not in chosen)

    # -- the loop's order (one implementation: replays and studies both use it) ---------------
    def next_batch(self, rounds: int) -> MaskArray:
        """What to measure next for a loop of ``rounds`` rounds: the pending choices, else the
        full set, else the next batch of selections; empty when the loop is done."""
        rounds = check_int("rounds", rounds, 0)
        pending = self.pending
        if pending.size:
            return pending
        measured = self.state.measured()
        if self._needs_full(measured, {s.mask for s in self.state.selections()}):
            return self.ask()
        target = int(rounds) * self.n_tasks
        done = self.state.slots_used()
        if done >= target:
            return np.zeros(0, dtype=np.uint64)
        return self.ask(max_masks=target - done)

    def run(self, measure: Callable[[int], object], rounds: int) -> Estimator:
        """Measure the full set, then ``rounds`` rounds of N selections; returns the estimator
        fitted on everything measured. ``measure(mask)`` returns the gain row ``(n_tasks,)``."""
        rounds = check_int("rounds", rounds, 0)
        if not callable(measure):
            raise InputTypeError("measure must be a callable mask -> gain row")
        while True:
            batch = self.next_batch(int(rounds))
            if batch.size == 0:
                break
            for m in batch.tolist():
                self.tell(m, measure(int(m)))
        return self.fit_estimator()
