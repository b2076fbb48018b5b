"""Plain references of the grouping objective and of mask order, written from the definitions.

Slow on purpose: they are the oracle that the C++ core is checked against, by the installed
wheel's self-test (``mtgfast.selftest``) and by the repository's tests (``tests/reference_search``
re-exports them), so both judge the core by one definition. numpy and the standard library only.
Gains are (n_masks, n_tasks) with NaN outside each mask.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np

__all__ = ["brute_force_subsets", "brute_force_value", "candidate_dict", "colex_rank",
           "lex_masks", "mask_of", "score", "table_dict", "tasks_of"]


# -- masks ---------------------------------------------------------------------------------------
def mask_of(tasks: Iterable[int]) -> int:
    """The bitmask of a set of task indices."""
    return sum(1 << j for j in tasks)


def tasks_of(mask: int, n_tasks: int) -> list[int]:
    """The task indices (ascending) of the set bits of ``mask`` below ``n_tasks``."""
    return [j for j in range(n_tasks) if (int(mask) >> j) & 1]


def lex_masks(n_tasks: int, k: int | None = None) -> list[int]:
    """itertools.combinations order, by size (all sizes when k is None)."""
    sizes = range(1, n_tasks + 1) if k is None else [k]
    return [mask_of(c) for s in sizes for c in itertools.combinations(range(n_tasks), s)]


def colex_rank(mask: int) -> int:
    """Combinatorial number system: sum_i C(c_i, i + 1) over the sorted set bits c_0 < c_1 < ..."""
    return sum(math.comb(c, i + 1) for i, c in enumerate(tasks_of(mask, 64)))


# -- the objective -------------------------------------------------------------------------------
def table_dict(masks: Iterable[object], gains: Iterable[object]) -> dict[int, np.ndarray]:
    """``{mask: gain row}`` of a table."""
    return {int(m): np.asarray(g, dtype=np.float64) for m, g in zip(masks, gains)}  # type: ignore[call-overload]


def candidate_dict(masks: Iterable[object], gains: object, uncovered: str) -> dict[int, np.ndarray]:
    """Candidates; under "singleton" each missing singleton is added with gain 0."""
    g = np.asarray(gains, dtype=np.float64)
    n = g.shape[1]
    cand = table_dict(masks, g)
    if uncovered == "singleton":
        for j in range(n):
            if (1 << j) not in cand:
                row = np.full(n, np.nan)
                row[j] = 0.0
                cand[1 << j] = row
    return cand


def score(cand: dict[int, np.ndarray], chosen: Iterable[int], n_tasks: int,
          uncovered: str) -> np.ndarray | None:
    """Per-task gains of a set of chosen masks (each task takes its best chosen gain), or None
    if a task is uncovered under "singleton"; under "alone" a task gets max(0, best gain)."""
    chosen = list(chosen)
    out = np.zeros(n_tasks)
    for j in range(n_tasks):
        vals = [cand[c][j] for c in chosen if (c >> j) & 1]
        if not vals:
            if uncovered == "singleton":
                return None
            continue
        best = max(vals)
        out[j] = max(best, 0.0) if uncovered == "alone" else best
    return out


def brute_force_subsets(masks: Iterable[object], gains: object, budgets: Iterable[int],
                        uncovered: str = "singleton") -> dict[int, float | None]:
    """Best value per budget over every set of at most ``budget`` candidates (None: no valid
    set), by trying every set."""
    budgets = list(budgets)
    n = np.asarray(gains).shape[1]
    cand = candidate_dict(masks, gains, uncovered)
    keys = sorted(cand)
    by_size: dict[int, float] = {}
    for k in range(min(max(budgets), len(keys)) + 1):
        for chosen in itertools.combinations(keys, k):
            t = score(cand, chosen, n, uncovered)
            if t is not None and (k not in by_size or t.sum() > by_size[k]):
                by_size[k] = float(t.sum())
    out: dict[int, float | None] = {}
    for b in budgets:
        vals = [v for k, v in by_size.items() if k <= b]
        out[b] = max(vals) if vals else None
    return out


def brute_force_value(masks: Iterable[object], gains: object, budget: int,
                      uncovered: str) -> float | None:
    """Best objective over every set of at most ``budget`` candidates (``brute_force_subsets``
    for one budget); ``None`` when no set is feasible."""
    return brute_force_subsets(masks, gains, [budget], uncovered)[budget]
