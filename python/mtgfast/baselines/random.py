"""Random grouping baseline: the mean test gain of random valid groupings of ``B`` groups.

One trial draws ``B`` distinct candidates uniformly (singletons are always candidates), redraws
until they cover every task (``uncovered="singleton"``, as in the MTG-Net notebooks) or leaves
uncovered tasks alone at gain 0 (``uncovered="alone"``, where a task whose member groups all have
negative selection gains is also trained alone), serves each task by its chosen group with the
highest *selection* gain and scores the *test* gains of those assignments, averaged over tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..checks import check_int, describe, is_int
from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import as_masks
from ..estimators.base import check_table

__all__ = ["MAX_TRIALS", "RandomGrouping", "random_grouping_scores", "with_singletons"]

#: trials are split in this many chunks; the result depends on the seed and n_trials only
_CHUNKS = 64


def with_singletons(masks: np.ndarray, select: FloatArray, test: FloatArray,
                    n_tasks: int) -> tuple[np.ndarray, FloatArray, FloatArray]:
    """Append the singleton rows (gain 0) that ``masks`` lacks: singletons are always candidates."""
    singles = np.uint64(1) << np.arange(n_tasks, dtype=np.uint64)
    missing = singles[~np.isin(singles, masks)]
    if missing.size == 0:
        return masks, select, test
    extra = np.full((missing.size, n_tasks), np.nan)
    for r, m in enumerate(missing):
        extra[r, int(m).bit_length() - 1] = 0.0
    return (np.concatenate([masks, missing]), np.vstack([select, extra]),
            np.vstack([test, extra]))


#: More random groupings than this (about 10 minutes per budget on a 2-core VM) is a mistake,
#: not a wish: refused up front instead of running for hours.
MAX_TRIALS = 10**9


def random_grouping_scores(masks: object, select_gains: object, test_gains: object,
                           budgets: int | Sequence[int], *, n_trials: int = 1_000_000,
                           seed: int = 0, uncovered: Literal["singleton", "alone"] = "singleton",
                           max_tries: int = 100_000) -> tuple[FloatArray, FloatArray]:
    """Mean and standard deviation over ``n_trials`` random groupings of the average test gain.

    Returns two arrays, one value per budget. ``InputError`` when covering draws of ``B`` groups are
    too rare (more than ``max_tries`` redraws in one trial) or ``B`` exceeds the candidates.
    """
    m = as_masks(masks)
    sel = np.asarray(select_gains, dtype=np.float64)
    tst = np.asarray(test_gains, dtype=np.float64)
    if sel.ndim != 2 or sel.shape[0] != m.shape[0] or tst.shape != sel.shape:
        raise InputError(f"select and test gains must both have shape ({m.shape[0]}, n_tasks); got "
                         f"{sel.shape} and {tst.shape}")
    n = sel.shape[1]
    if n < 1 or n > 64 or (n < 64 and np.any(m >> np.uint64(n))):
        raise InputError(f"masks use task bits >= n_tasks={n}")
    if uncovered not in ("singleton", "alone"):
        raise InputError(f"uncovered must be 'singleton' or 'alone', got {uncovered!r}")
    n_trials = check_int("n_trials", n_trials, 1, MAX_TRIALS)
    max_tries = check_int("max_tries", max_tries, 1)
    seed = check_int("seed", seed)
    if is_int(budgets):
        blist = [check_int("budgets", budgets, 1)]
    elif isinstance(budgets, (str, bytes)) or not hasattr(budgets, "__iter__"):
        raise InputTypeError(f"budgets must be an int or a sequence of ints, got "
                             f"{describe(budgets)}")
    else:
        blist = [check_int(f"budgets[{i}]", b, 1) for i, b in enumerate(budgets)]
    m, sel, tst = with_singletons(m, sel, tst, n)
    too_big = [b for b in blist if b > m.shape[0]]
    if too_big:
        raise InputError(f"budget {too_big[0]} exceeds the {m.shape[0]} candidate combinations")
    member = ((m[:, None] >> np.arange(n, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(bool)
    if not np.all(np.isfinite(sel[member])) or not np.all(np.isfinite(tst[member])):
        raise InputError("select and test gains must be finite inside each combination")
    # outside a combination: -inf for selection (never chosen), 0 for test (never read)
    sel = np.where(member, sel, -np.inf)
    tst = np.where(member, tst, 0.0)
    full = np.int64(-1) if n == 64 else np.int64((1 << n) - 1)
    kernel = _kernel()
    means, stds = [], []
    for b in blist:
        sums = np.zeros(_CHUNKS)
        sq = np.zeros(_CHUNKS)
        failed = np.zeros(1, dtype=np.int64)
        kernel(m.view(np.int64), sel, tst, int(b), int(n_trials),
               np.uint64(int(seed) & (2**64 - 1)), full, uncovered == "alone", int(max_tries),
               sums, sq, failed)
        if failed[0]:
            raise InputError(f"random groupings of {b} group(s) that cover all {n} tasks are too "
                             f"rare among the {m.shape[0]} candidates (no cover in {max_tries} "
                             "draws); use uncovered='alone' or more candidates")
        mean = sums.sum() / n_trials
        var = max(sq.sum() / n_trials - mean * mean, 0.0)
        means.append(mean / n)
        stds.append(np.sqrt(var) / n)
    return np.array(means), np.array(stds)


class RandomGrouping:
    """The random grouping baseline as an object: ``fit`` on the selection table, ``score`` on test.

    ``__init__`` stores ``n_trials``, ``seed``, ``uncovered``, ``max_tries``; ``fit`` checks them.
    """

    def __init__(self, n_trials: int = 1_000_000, seed: int = 0,
                 uncovered: Literal["singleton", "alone"] = "singleton",
                 max_tries: int = 100_000) -> None:
        self.n_trials = n_trials
        self.seed = seed
        self.uncovered = uncovered
        self.max_tries = max_tries

    def fit(self, table: GainTable) -> RandomGrouping:
        """Remember the candidates and their selection gains (usually validation gains)."""
        check_table(table)
        check_int("n_trials", self.n_trials, 1, MAX_TRIALS)
        check_int("max_tries", self.max_tries, 1)
        check_int("seed", self.seed)
        if self.uncovered not in ("singleton", "alone"):
            raise InputError(f"uncovered must be 'singleton' or 'alone', got {self.uncovered!r}")
        self.table_ = table
        self.task_names_ = table.task_names
        self.n_tasks_ = table.n_tasks
        return self

    def score(self, test: GainTable | None, budgets: int | Sequence[int]) -> FloatArray:
        """Mean average-test-gain per budget; ``test`` is aligned to the fitted table's combinations
        (``None``: score on the selection gains). Sets ``std_`` (per-trial standard deviation)."""
        if not hasattr(self, "table_"):
            raise InputError("this RandomGrouping is not fitted yet: call fit(table) first")
        t = self.table_ if test is None else check_table(test, "test").reindex(self.table_.masks)
        if t.task_names != self.table_.task_names:
            raise InputError("test table has other task names than the fitted table")
        mean, std = random_grouping_scores(self.table_.masks, self.table_.gains, t.gains, budgets,
                                           n_trials=self.n_trials, seed=self.seed,
                                           uncovered=self.uncovered, max_tries=self.max_tries)
        self.std_ = std
        return mean

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {"n_trials": self.n_trials, "seed": self.seed, "uncovered": self.uncovered,
                "max_tries": self.max_tries}


def _kernel():
    from ._kernels import random_kernel  # numba is imported here, on first use

    return random_kernel
