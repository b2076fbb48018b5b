"""Which tasks to train together: search the best grouping of a gain table under a budget of groups.

A grouping chooses at most ``budget`` candidate combinations; each task is served by the chosen
group where its gain is highest, and the objective is the sum over tasks of those gains
(MTG-Net, Song et al. 2022; Standley et al. 2020). Training a task alone has gain 0.

``uncovered`` says what a task that no chosen group contains costs:

- ``"singleton"`` (default, the papers' protocol): it must be trained in its singleton ``{j}``,
  which is a group like any other and uses one unit of budget (so ``budget=1`` is feasible only
  with a candidate containing every task). Such singletons appear in ``Grouping.groups``.
- ``"alone"``: it is trained alone at gain 0 for free; it has ``assignment == -1``. A task is also
  trained alone when every chosen group that contains it has a negative gain for it.

Singleton rows in ``masks`` keep their given gains; missing ones count as gain 0.

Every result carries ``bound``, an upper bound of the optimum for its budget (a Lagrangian
relaxation of the per-task assignment constraints, computed in the C++ core), and ``gap = bound -
value``; ``optimal`` means ``gap <= gap_tol * max(u, |value|)`` (``GAP_TOL`` = 1e-6 by default),
``u`` the power of two at or above the table's largest |gain|: relative to the table's own units,
so a table times 2^k is proven alike (with 1 in place of ``u``, a table in units of 1e-6 was
"optimal" 4% below the optimum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

from . import _core
from .checks import check_bool, check_int, check_real, env_int, is_int, is_real
from .errors import InputError, InputTypeError
from .gains import GainTable, check_gains, real_matrix
from .masks import MaskArray, as_masks, masks_to_dense

Method = Literal["auto", "exact", "bnb", "beam"]
Uncovered = Literal["singleton", "alone"]
FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]

__all__ = ["Grouping", "check_grouping_table", "evaluate", "evaluate_tasks", "group"]

#: ``auto`` runs the partition DP when ``3**n_tasks * min(budget, n_tasks)`` is at most this
#: (about a second of work), and ``exact`` runs it up to 25x more.
AUTO_DP_WORK = 2e9
EXACT_DP_WORK = 5e10
#: ``auto`` runs branch-and-bound (time-limited) when there are at most this many candidates
#: (N = 27 with 3,000-5,000 candidates proves every budget in well under a second).
AUTO_BNB_MAX_CANDIDATES = 20_000
#: Time limit ``auto`` gives branch-and-bound when the caller gives none (seconds).
AUTO_BNB_TIME_LIMIT = 5.0
#: Default relative gap below which a result counts as optimal.
GAP_TOL = 1e-6
#: Gains whose largest magnitude is within [2**-SAFE_GAIN_EXP, 2**SAFE_GAIN_EXP] are searched as
#: given; others are scaled by a power of two first (sums of 64 such gains, and the bounds, stay
#: far inside the float32 range of the beam's scan and the float64 range of everything else).
SAFE_GAIN_EXP = 32
#: Largest DP tables (bytes) unless ``MTGFAST_MAX_DP_BYTES`` says otherwise (4 GiB).
DEFAULT_MAX_DP_BYTES = 4 << 30
#: Rows per chunk when the gains inside the combinations are scanned for their scale.
_SCALE_CHUNK_ROWS = 1 << 16

_BACKENDS = {"dp": _core.search.Method.dp, "bnb": _core.search.Method.bnb,
             "beam": _core.search.Method.beam}
_METHOD_NAMES = {_core.search.Method.dp: "exact-dp", _core.search.Method.bnb: "exact-bnb",
                 _core.search.Method.beam: "beam"}
_UNCOVERED = {"singleton": _core.search.Uncovered.singleton, "alone": _core.search.Uncovered.alone}


@dataclass(frozen=True, eq=False)
class Grouping:
    """One grouping: ``groups`` (uint64 masks, ascending), per-task ``assignment`` into ``groups``
    (-1: trained alone, only under ``uncovered="alone"``) and the gain each task gets.

    ``value`` is the objective (sum of ``task_gains``); ``bound`` an upper bound of the optimum
    for ``budget`` (``gap = bound - value``); ``optimal`` is True when the gap is within the
    tolerance (proven optimal); ``timed_out`` when the time limit stopped the search; ``nodes``
    the branch-and-bound nodes it took;
    ``method`` is ``"exact-dp"``, ``"exact-bnb"`` or ``"beam"``. A hand-made grouping is checked
    when it is built (``InputError``: groups that are not masks of its tasks, an assignment to a
    group that lacks the task, task gains of another length), so every scorer can trust it.
    """

    groups: MaskArray
    assignment: IndexArray
    value: float
    optimal: bool
    budget: int
    method: str
    task_gains: FloatArray
    uncovered: str = "singleton"
    bound: float = math.inf
    timed_out: bool = False
    nodes: int = 0

    def __post_init__(self) -> None:
        for name in ("groups", "assignment", "task_gains"):
            arr = np.array(getattr(self, name), copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        _check_consistent(self)
        if self.task_gains.shape != self.assignment.shape:
            raise InputError(f"grouping.task_gains must have one gain per task "
                             f"({self.assignment.shape[0]}), got shape {self.task_gains.shape}")
        if not isinstance(self.uncovered, str) or self.uncovered not in _UNCOVERED:
            raise InputError(f"grouping.uncovered must be 'singleton' or 'alone', got "
                             f"{self.uncovered!r}")

    @property
    def n_tasks(self) -> int:
        return int(self.assignment.shape[0])

    @property
    def gap(self) -> float:
        """``bound - value``: how much better than this grouping the optimum can be (>= 0)."""
        return self.bound - self.value

    @property
    def average(self) -> float:
        """Mean gain over tasks (``value / n_tasks``), the number the MTG-Net paper reports."""
        return self.value / self.n_tasks

    def members(self) -> list[list[int]]:
        """Task indices of each group, in the order of ``groups``."""
        return [[j for j in range(self.n_tasks) if (int(m) >> j) & 1] for m in self.groups]

    def __repr__(self) -> str:
        groups = "[" + ", ".join("{" + ",".join(map(str, g)) + "}" for g in self.members()) + "]"
        return (f"Grouping(budget={self.budget}, groups={groups}, average={self.average:.6g}, "
                f"optimal={self.optimal}, gap={self.gap:.3g}, method={self.method!r})")


def _as_gain_matrix(gains: object) -> FloatArray:
    g = real_matrix(gains, "gains", copy=False)
    if g.ndim != 2:
        raise InputError(f"gains must be 2-D (n_masks, n_tasks), got shape {g.shape}")
    if not 1 <= g.shape[1] <= 64:
        raise InputError(f"n_tasks (gains.shape[1]) must be in [1, 64], got {g.shape[1]}")
    return np.ascontiguousarray(g)


def _check_shapes(masks: object, gains: object) -> tuple[MaskArray, FloatArray]:
    """Types and shapes of a candidate table, without copying a large one. The per-entry checks
    (finite inside each combination, duplicates) are done by the core in the same pass that
    copies the table (``check_gains`` costs about 0.8 s on 1M x 27; this path keeps its messages)."""
    g = _as_gain_matrix(gains)
    m = as_masks(masks, g.shape[1])
    if m.shape[0] != g.shape[0]:
        raise InputError(f"{m.shape[0]} masks but {g.shape[0]} gain rows")
    return m, g


def _check_table(masks: object, gains: object) -> tuple[MaskArray, FloatArray]:
    """Validate a candidate table; returns (uint64 masks, float64 gains with NaN outside)."""
    m, g = _check_shapes(masks, gains)
    uniq, counts = np.unique(m, return_counts=True)
    if uniq.shape[0] != m.shape[0]:
        raise InputError(f"duplicate combination (mask {int(uniq[np.argmax(counts > 1)])}) in masks")
    return m, check_gains(m, g, g.shape[1])


def _check_budgets(budget: object) -> tuple[list[int], bool]:
    """Budgets as a list of ints >= 1, and whether a single int was given."""
    def one(b: object) -> int:
        if not is_int(b):
            raise InputTypeError(f"budget must be an int or a sequence of ints, got "
                                 f"{type(b).__name__}")
        if int(b) < 1:
            raise InputError(f"budget must be >= 1 (number of groups), got {int(b)}")
        if int(b) > 2**31 - 1:
            raise InputError(f"budget is too large: {int(b)}")
        return int(b)

    if isinstance(budget, np.ndarray) and budget.ndim == 0:
        budget = budget[()]  # a 0-d array is its scalar (np.int64(2), or a type error below)
    if is_int(budget):
        return [one(budget)], True
    if isinstance(budget, (range, Sequence, np.ndarray)) and not isinstance(budget, (str, bytes)):
        values = [one(b) for b in budget]
        if not values:
            raise InputError("budget sequence is empty")
        return values, False
    raise InputTypeError(f"budget must be an int or a sequence of ints, got {type(budget).__name__}")


def _gain_exponent(m: MaskArray, g: FloatArray) -> int:
    """``e`` such that the search runs on ``g * 2**e``: 0 for gains of ordinary size, else the
    power of two that brings the largest |gain| inside a combination into [0.5, 1). Entries
    outside the combinations are ignored (they never reach the search), read in row chunks so a
    large table is not copied whole."""
    if g.size == 0:
        return 0
    n = g.shape[1]
    flat = g.reshape(-1)
    top = max(float(np.fmax.reduce(flat, initial=-math.inf)),
              -float(np.fmin.reduce(flat, initial=math.inf)))  # NaN ignored, no |g| copy
    inside = int(_core.masks.popcount(m).sum(dtype=np.int64))
    step = _SCALE_CHUNK_ROWS * n
    numbers = flat.shape[0] - sum(int(np.count_nonzero(np.isnan(flat[k:k + step])))
                                  for k in range(0, flat.shape[0], step))
    if numbers == inside:
        # as many numbers as entries inside the combinations (NaN outside, as GainTable stores
        # them): the whole-matrix extreme is theirs (a NaN inside is named by the core)
        return _exponent_of(top if math.isfinite(top) else 0.0)
    bits = np.arange(n, dtype=np.uint64)
    top = 0.0
    for lo in range(0, g.shape[0], _SCALE_CHUNK_ROWS):
        chunk = g[lo:lo + _SCALE_CHUNK_ROWS]
        member = ((m[lo:lo + _SCALE_CHUNK_ROWS, None] >> bits[None, :]) & np.uint64(1)).astype(bool)
        top = max(top, float(np.max(np.abs(chunk, where=member, out=np.zeros_like(chunk)),
                                    initial=0.0)))
        if not math.isfinite(top):
            return 0  # the core names the non-finite gain
    return _exponent_of(top)


def _exponent_of(top: float) -> int:
    if top == 0.0 or 2.0 ** -SAFE_GAIN_EXP <= top <= 2.0 ** SAFE_GAIN_EXP:
        return 0
    return -math.frexp(top)[1]


def _exact_sum(values: FloatArray, what: str) -> float:
    """Correctly rounded sum of finite ``values`` without intermediate overflow; ``InputError``
    when the sum itself lies beyond the float64 range."""
    top = float(np.max(np.abs(values), initial=0.0))
    if top == 0.0:
        return 0.0
    e = math.frexp(top)[1]
    total = math.fsum(math.ldexp(float(v), -e) for v in values)  # |terms| <= 1: no overflow
    try:
        return math.ldexp(total, e)
    except OverflowError:
        raise InputError(f"gains are too large: {what} (a sum over {values.shape[0]} tasks) "
                         f"exceeds the float64 range (about 1.8e308); divide the gains by a "
                         f"constant (the grouping does not change under positive scaling)") from None


def _rescored(m: MaskArray, g: FloatArray, groups: MaskArray, uncovered: str
              ) -> tuple[MaskArray, IndexArray, FloatArray, float]:
    """The core's ``finalize`` on the original (unscaled) gains for the chosen ``groups``: each
    task served by the chosen group of highest gain (ties: smaller mask), alone under "alone" when
    that gain is negative or no group holds it; groups serving no task dropped; exact value."""
    n = g.shape[1]
    rows = {int(m[i]): int(i) for i in np.nonzero(np.isin(m, groups))[0]}
    serve = np.full(n, -1, dtype=np.int64)
    best = np.full(n, -math.inf)
    for k, mask in enumerate(int(x) for x in groups):  # ascending: ties go to the smaller mask
        row = rows.get(mask)
        for j in range(n):
            if (mask >> j) & 1:
                v = float(g[row, j]) if row is not None else 0.0  # an added singleton: gain 0
                if v > best[j]:
                    best[j], serve[j] = v, k
    alone = (serve < 0) | ((best < 0.0) if uncovered == "alone" else False)
    used = sorted({int(serve[j]) for j in range(n) if not alone[j]})
    index = {k: i for i, k in enumerate(used)}
    assignment = np.array([-1 if alone[j] else index[int(serve[j])] for j in range(n)],
                          dtype=np.int64)
    task_gains = np.where(alone, 0.0, best)
    return (np.asarray(groups, dtype=np.uint64)[used], assignment, task_gains,
            _exact_sum(task_gains, "the objective of the best grouping"))


def _max_dp_bytes() -> int:
    """``MTGFAST_MAX_DP_BYTES`` (or the default), clamped to 2**64 - 1 (the core's uint64: any
    larger limit means the same, no limit); ``InputError`` naming the variable when invalid."""
    return min(env_int("MTGFAST_MAX_DP_BYTES", DEFAULT_MAX_DP_BYTES), 2**64 - 1)


def _pick_backend(method: str, n_tasks: int, n_masks: int, max_budget: int) -> str:
    work = 3.0 ** n_tasks * min(max_budget, n_tasks)
    dp_fits = n_tasks <= 30 and _core.search.dp_bytes(n_tasks, max_budget) <= _max_dp_bytes()
    if method in ("beam", "bnb"):
        return method
    if method == "exact":
        return "dp" if dp_fits and work <= EXACT_DP_WORK else "bnb"
    if dp_fits and work <= AUTO_DP_WORK:
        return "dp"
    return "bnb" if n_masks <= AUTO_BNB_MAX_CANDIDATES else "beam"


@overload
def group(masks: object, gains: object, budget: int, method: Method = ..., *,
          beam_width: int = ..., uncovered: Uncovered = ...,
          time_limit: float | None = ..., gap_tol: float = ...,
          local_search: bool = ...) -> Grouping: ...
@overload
def group(masks: object, gains: object, budget: Sequence[int] | range, method: Method = ..., *,
          beam_width: int = ..., uncovered: Uncovered = ...,
          time_limit: float | None = ..., gap_tol: float = ...,
          local_search: bool = ...) -> list[Grouping]: ...


def group(masks: object, gains: object, budget: int | Sequence[int] | range,
          method: Method = "auto", *, beam_width: int = 5, uncovered: Uncovered = "singleton",
          time_limit: float | None = None, gap_tol: float = GAP_TOL,
          local_search: bool = True) -> Grouping | list[Grouping]:
    """Best grouping of the candidates ``masks`` (n_masks,) with per-task ``gains`` (n_masks,
    n_tasks) using at most ``budget`` groups; gains outside each combination are ignored.

    ``budget`` an int gives one :class:`Grouping` (``InputError`` naming the budget when no valid
    grouping exists or was found); a range/sequence gives a list computed in one call, in the
    given order, *leaving out infeasible budgets* (check ``.budget``). ``uncovered="singleton"``
    (default): uncovered tasks need their singleton, which costs budget; ``"alone"``: free.

    ``method``: ``"exact"`` proves the optimum (partition DP over task subsets when
    ``3**n_tasks * budget`` is tractable, else ``"bnb"``: branch-and-bound with Lagrangian bounds,
    warm-started by beam + local search); ``"beam"`` (width ``beam_width``, then local search
    unless ``local_search=False``) scales to N = 27 and millions of candidates; ``"auto"``
    (default) takes the DP when cheap, branch-and-bound for at most 20,000 candidates (time limit
    5 s unless given), beam otherwise. Every result has a ``bound`` and ``gap``; ``optimal`` means
    ``gap <= gap_tol * max(u, |value|)`` (``u``: the table's largest |gain| rounded up to a power
    of two). ``time_limit`` (seconds, the whole call) is honoured by
    every method: a search that runs out of time returns its best grouping (``timed_out=True``)
    with its bound.
    """
    m, g = _check_shapes(masks, gains)
    n_tasks = g.shape[1]
    budgets, single = _check_budgets(budget)
    if method not in ("auto", "exact", "bnb", "beam"):
        raise InputError(f"method must be 'auto', 'exact', 'bnb' or 'beam', got {method!r}")
    if uncovered not in ("singleton", "alone"):
        raise InputError(f"uncovered must be 'singleton' or 'alone', got {uncovered!r}")
    check_int("beam_width", beam_width, 1, 100_000, expected="in [1, 100000]")
    if time_limit is not None:
        if not is_real(time_limit):
            raise InputTypeError(f"time_limit must be a number of seconds or None, got "
                                 f"{type(time_limit).__name__}")
        check_real("time_limit", time_limit, 0, open_low=True,
                   expected="a positive finite number of seconds")
    check_real("gap_tol", gap_tol, 0.0, 1.0, expected="a number in [0, 1]")
    check_bool("local_search", local_search)
    backend = _pick_backend(method, n_tasks, m.shape[0], max(budgets))
    limit = float(time_limit) if time_limit is not None else 0.0
    if backend == "bnb" and method == "auto" and time_limit is None:
        limit = AUTO_BNB_TIME_LIMIT
    exponent = _gain_exponent(m, g)
    searched = np.ldexp(g, exponent) if exponent else g
    try:
        raw = _core.search.group(m, searched, budgets, _BACKENDS[backend], int(beam_width),
                                 _UNCOVERED[uncovered], limit, _max_dp_bytes(), float(gap_tol),
                                 bool(local_search))
    except ValueError as exc:  # the core's checks of the table (see _check_shapes)
        raise InputError(str(exc)) from exc
    results: list[Grouping] = []
    failures: list[tuple[int, bool]] = []
    for r in raw:
        if not r.feasible:
            failures.append((r.budget, r.optimal))
            continue
        groups, assignment, task_gains, value = r.groups, r.assignment, r.task_gains, float(r.value)
        bound = float(r.bound)
        if exponent:  # back to the table's units (the choice was made on exactly scaled gains)
            groups, assignment, task_gains, value = _rescored(m, g, groups, uncovered)
            bound = max(float(np.ldexp(bound, -exponent)), value)
        results.append(Grouping(groups, assignment, value, bool(r.optimal), int(r.budget),
                                _METHOD_NAMES[r.method], task_gains, uncovered, bound,
                                bool(r.timed_out), int(r.nodes)))
    if failures and (single or not results):
        b, proven = max(failures)
        if proven:
            raise InputError(f"budget {b} is infeasible: with uncovered='singleton' every task "
                             f"needs a group and no {b} candidate group(s) cover all {n_tasks} "
                             f"tasks (raise the budget, add larger combinations, or use "
                             f"uncovered='alone')")
        raise InputError(f"no valid grouping found for budget {b} by "
                         f"{_METHOD_NAMES[_BACKENDS[backend]]} "
                         f"(try method='exact', a larger beam_width or time_limit, or "
                         f"uncovered='alone')")
    return results[0] if single else results


def _scoring_table(gains: object, masks: object | None) -> tuple[MaskArray, FloatArray]:
    if isinstance(gains, GainTable):
        if masks is not None:
            raise InputError("give either a GainTable or (masks, gains) arrays, not both")
        return gains.masks, gains.gains
    if masks is None:
        raise InputError("masks are required when gains is an array (or pass a GainTable)")
    return _check_table(masks, gains)


def check_grouping_table(grouping: object, table: object, name: str = "gains") -> int:
    """The number of tasks of ``grouping`` after checking that it is a :class:`Grouping` and
    ``table`` (called ``name``) a :class:`GainTable` of the same tasks (the plots and the
    confidence report read one grouping against one table)."""
    if not isinstance(grouping, Grouping):
        raise InputTypeError(f"grouping must be a Grouping, got {type(grouping).__name__}")
    if not isinstance(table, GainTable):
        raise InputTypeError(f"{name} must be a GainTable, got {type(table).__name__}")
    n_tasks = grouping.n_tasks
    if table.n_tasks != n_tasks:
        raise InputError(f"the grouping has {n_tasks} tasks but {name} has {table.n_tasks}")
    return n_tasks


def _check_consistent(grouping: Grouping) -> None:
    """``InputError`` unless ``grouping``'s groups are masks of its tasks and each task's
    assignment is -1 (alone) or a group containing it (run when a Grouping is built)."""
    groups, assignment = grouping.groups, grouping.assignment
    if assignment.ndim != 1 or assignment.dtype.kind not in "iu":
        raise InputError(f"grouping.assignment must be a 1-D integer array, got dtype "
                         f"{assignment.dtype} and shape {assignment.shape}")
    if groups.ndim != 1 or (groups.size and groups.dtype.kind not in "iu"):
        raise InputError(f"grouping.groups must be a 1-D array of integer masks, got dtype "
                         f"{groups.dtype} and shape {groups.shape}")
    n = assignment.shape[0]
    if not 1 <= n <= 64:
        raise InputError(f"grouping has {n} tasks; it must have 1 to 64")
    masks = [int(x) for x in groups]
    for k, mask in enumerate(masks):
        if mask <= 0 or mask >> n:
            raise InputError(f"grouping.groups[{k}] = {mask} is not a combination of its {n} tasks")
    for j, a in enumerate(int(x) for x in assignment):
        if not -1 <= a < len(masks):
            raise InputError(f"grouping.assignment[{j}] = {a} is not -1 or the index of one of "
                             f"its {len(masks)} groups")
        if a >= 0 and not (masks[a] >> j) & 1:
            raise InputError(f"grouping.assignment[{j}] = {a}: group {masks[a]} does not "
                             f"contain task {j}")


def evaluate_tasks(grouping: Grouping, gains: object, masks: object | None = None) -> FloatArray:
    """Gain of each task under ``grouping``'s assignment, read from another table (e.g. test gains):
    task j gets ``gains[row of groups[assignment[j]], j]``; 0 when trained alone or served by a
    singleton the table lacks. ``InputError`` if a larger group of the grouping is missing."""
    if not isinstance(grouping, Grouping):
        raise InputTypeError(f"grouping must be a Grouping, got {type(grouping).__name__}")
    m, g = _scoring_table(gains, masks)
    n_tasks = grouping.n_tasks
    if g.shape[1] != n_tasks:
        raise InputError(f"the grouping has {n_tasks} tasks but the gain table has {g.shape[1]}")
    order = np.argsort(m, kind="stable")
    sorted_masks = m[order]
    out = np.zeros(n_tasks, dtype=np.float64)
    for j, a in enumerate(grouping.assignment):
        if a < 0:
            continue
        mask = grouping.groups[a]
        pos = int(np.searchsorted(sorted_masks, mask))
        if pos < sorted_masks.shape[0] and sorted_masks[pos] == mask:
            out[j] = g[order[pos], j]
        elif int(mask) & (int(mask) - 1):
            raise InputError(f"group {int(mask)} of the grouping is not in the gain table")
    return out


def evaluate(grouping: Grouping, gains: object, masks: object | None = None) -> float:
    """Average over tasks of :func:`evaluate_tasks`: the score of a grouping chosen on one gain
    table (validation) measured on another (test), as in the MTG-Net evaluation protocol."""
    per_task = evaluate_tasks(grouping, gains, masks)
    with np.errstate(over="ignore"):
        mean = float(per_task.mean())
    if math.isfinite(mean) or not np.all(np.isfinite(per_task)):
        return mean
    # the plain mean overflowed on huge finite gains: the exact mean, scaled (power of two)
    top = math.frexp(float(np.max(np.abs(per_task))))[1]
    return math.ldexp(math.fsum(math.ldexp(float(v), -top) for v in per_task) / per_task.shape[0],
                      top)
