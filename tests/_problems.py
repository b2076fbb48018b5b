"""Grouping problems and checks shared by the search tests (test_grouping, test_bounds): random
tables (hypothesis strategy and seeded numpy draws), the MTG-Net release tables, relabelling,
and the validity check of a result against the plain references."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import mtgfast
import numpy as np
import pytest
import reference_search as ref
from hypothesis import strategies as st
from mtgfast import Grouping

MODES = ("singleton", "alone")


def gap_unit(masks, gains) -> float:
    """The core's scale of the gap tolerance: the power of two at or above the largest |gain|
    inside a combination (1 when all are 0); ``optimal`` <=> gap <= gap_tol * max(unit, |v|)."""
    m = np.asarray(masks, dtype=np.uint64)
    g = np.asarray(gains, dtype=np.float64)
    inside = ((m[:, None] >> np.arange(g.shape[1], dtype=np.uint64)) & np.uint64(1)).astype(bool)
    v = np.abs(g[inside & np.isfinite(g)])
    top = float(v.max()) if v.size else 0.0
    if top == 0.0:
        return 1.0
    f, e = math.frexp(top)
    return math.ldexp(1.0, e - 1 if f == 0.5 else e)


def nan_outside(masks, gains) -> np.ndarray:
    """``gains`` as float64 with NaN outside each mask (the in-memory layout)."""
    masks = np.asarray(masks, dtype=np.uint64)
    g = np.array(gains, dtype=np.float64)
    n = g.shape[1]
    member = ((masks[:, None] >> np.arange(n, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    g[~member] = np.nan
    return g


def normal_gains(masks, n_tasks: int, rng: np.random.Generator, sd: float = 0.1) -> np.ndarray:
    """Continuous gains N(0, sd) inside each mask (ties have probability 0: a unique optimum)."""
    masks = np.asarray(masks, dtype=np.uint64)
    return nan_outside(masks, rng.normal(0.0, sd, size=(masks.shape[0], n_tasks)))


def sampled_problem(n_tasks: int, n_masks: int, seed: int, rng: np.random.Generator,
                    sd: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``n_masks`` distinct masks drawn by the core's sampler (``seed``), normal gains from ``rng``."""
    masks = mtgfast.sample_masks(n_tasks, n_masks, seed=seed)
    return masks, normal_gains(masks, n_tasks, rng, sd)


@st.composite
def tables(draw, max_tasks=6, max_masks=None, quarter=True):
    """Random candidate tables; gains are multiples of 1/4 so every sum is exact and ties are
    common (which exercises the tie-breaking rules)."""
    n = draw(st.integers(1, max_tasks))
    limit = 2**n - 1 if max_masks is None else min(2**n - 1, max_masks)
    masks = draw(st.lists(st.integers(1, 2**n - 1), min_size=0, max_size=limit, unique=True))
    masks = np.array(masks, dtype=np.uint64)
    if quarter:
        vals = draw(st.lists(st.integers(-6, 8), min_size=len(masks) * n,
                             max_size=len(masks) * n))
        gains = np.array(vals, dtype=np.float64).reshape(len(masks), n) / 4
    else:
        vals = draw(st.lists(st.floats(-1, 1), min_size=len(masks) * n, max_size=len(masks) * n))
        gains = np.array(vals, dtype=np.float64).reshape(len(masks), n)
    return masks, nan_outside(masks, gains)


def with_truth(data, uncovered: str, brute=None, extra: int = 1):
    """``(masks, gains, budgets, truth)`` of a drawn table: budgets 1..N + extra and the brute-force
    optimum of each (``brute``: a ``reference_search`` routine; partitions by default)."""
    masks, gains = data
    budgets = list(range(1, gains.shape[1] + 1 + extra))
    brute = ref.brute_force_partitions if brute is None else brute
    return masks, gains, budgets, brute(masks, gains, budgets, uncovered)


def relabelled(masks, gains, perm):
    """The same problem with task j renamed perm[j]: (masks, gains, the mask map)."""
    n = len(perm)

    def relabel(m: int) -> int:
        return sum(1 << int(perm[j]) for j in range(n) if (int(m) >> j) & 1)

    new_masks = np.array([relabel(m) for m in masks], dtype=np.uint64)
    new_gains = np.full_like(gains, np.nan)
    new_gains[:, perm] = gains
    return new_masks, new_gains, relabel


def by_budget(truth: dict, results: Iterable[Grouping]) -> Iterator[tuple[int, object, Grouping]]:
    """(budget, reference answer, result) for each budget the reference answers; a budget the
    reference finds infeasible (None) must have no result."""
    got = {r.budget: r for r in results}
    for b, best in truth.items():
        if best is None:
            assert b not in got, f"budget {b}: a result where the reference finds none"
            continue
        assert b in got, f"budget {b}: no result where the reference finds {best}"
        yield b, best, got[b]


def check_valid(res: Grouping, masks, gains, uncovered: str, budget: int) -> None:
    """A result is a valid grouping and its numbers are those of its groups."""
    n = gains.shape[1]
    cand = ref.candidate_dict(masks, gains, uncovered)
    assert len(res.groups) <= budget
    assert len(set(res.groups.tolist())) == len(res.groups)
    assert all(int(g) in cand for g in res.groups)
    assert res.assignment.shape == (n,) and res.task_gains.shape == (n,)
    for j in range(n):
        a = int(res.assignment[j])
        if a < 0:
            assert uncovered == "alone" and res.task_gains[j] == 0.0
            continue
        assert (int(res.groups[a]) >> j) & 1
        assert res.task_gains[j] == cand[int(res.groups[a])][j]
    expected = ref.score(cand, [int(g) for g in res.groups], n, uncovered)
    assert expected is not None, "a task is not covered"
    np.testing.assert_array_equal(res.task_gains, expected)
    assert res.value == pytest.approx(float(expected.sum()), abs=1e-12)
    assert res.average == pytest.approx(res.value / n)


# -- real data: the MTG-Net release --------------------------------------------------------------
def load_release(path_x, path_y, sep) -> tuple[np.ndarray, np.ndarray]:
    """(masks, gains) of a release file pair; the files write 0 outside a combination."""
    x = np.loadtxt(path_x, delimiter=sep)
    y = np.loadtxt(path_y)
    masks = (x.astype(np.uint64) << np.arange(x.shape[1], dtype=np.uint64)).sum(axis=1)
    y = y.copy()
    y[x == 0] = np.nan
    return masks.astype(np.uint64), y


RELEASE = {  # name: (folder, combinations file, gains file, separator)
    "taskonomy": ("taskonomy", "taskonomy_x.csv", "taskonomy.csv", ","),
    "ettm1": ("ETT", "ETTm1_x.csv", "ETTm1_val_y.csv", None),
    "ettm1-test": ("ETT", "ETTm1_x.csv", "ETTm1_y.csv", None),
}


def release_table(data_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A recorded table of the release: "taskonomy" (all 31), "ettm1" (validation, all 127) or
    "ettm1-test"."""
    folder, x, y, sep = RELEASE[name]
    d = Path(data_dir) / "mtgnet" / folder
    return load_release(d / x, d / y, sep)


def full_random_table(n: int, seed: int) -> mtgfast.GainTable:
    """Every combination of ``n`` tasks with N(0, 0.1) gains (singletons 0): a complete table."""
    from mtgfast.masks import all_masks, masks_to_dense

    m = all_masks(n)
    member = masks_to_dense(m, n)
    g = np.random.default_rng(seed).normal(0.0, 0.1, (m.size, n))
    g[member.sum(axis=1) == 1] = 0.0
    return mtgfast.GainTable(m, np.where(member, g, np.nan), tuple(f"t{j}" for j in range(n)))


def measured_subset(table, n_rows: int, seed: int):
    """``n_rows`` random rows of a gain table plus its full set: what an active loop might have
    measured (the blend and ridge tests fit on it)."""
    from mtgfast.gains import GainTable

    rows = np.random.default_rng(seed).choice(len(table), n_rows, replace=False)
    rows = np.union1d(rows, np.flatnonzero(table.masks == (1 << table.n_tasks) - 1))
    return GainTable(table.masks[rows], table.gains[rows], table.task_names, {})
