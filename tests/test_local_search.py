"""The local search of the core (csrc/local_search.cpp: per-task candidate indices, incremental
gains) against the former routine that scans every candidate for every move
(csrc/local_search_scan.cpp, ``scan=True``): the same moves in the same order, so the same groups
in the same order, on random pools with many ties, both ``uncovered`` modes, every start."""

from __future__ import annotations

import numpy as np
import pytest
from _problems import MODES, nan_outside, tables
from hypothesis import given, settings
from hypothesis import strategies as st
from mtgfast import _core, group
from mtgfast.errors import InputError
from mtgfast.generate import synthetic_gain_tables

S = _core.search
MODE = {"singleton": S.Uncovered.singleton, "alone": S.Uncovered.alone}


def both(masks, gains, start, budget, uncovered, **kw):
    """(new, scan) results of one local search, as lists of masks."""
    args = (np.asarray(masks, np.uint64), gains, np.asarray(start, np.uint64), budget,
            MODE[uncovered])
    new = S.local_search(*args, **kw).tolist()
    old = S.local_search(*args, scan=True, **kw).tolist()
    return new, old


def starts(masks, gains, budget, uncovered, rng):
    """Starts the searches use (the plain beam's groups, all singletons) and random sets."""
    n = gains.shape[1]
    # the problem's rows: the masks, and under "singleton" every singleton (gain 0 if absent)
    extra = [1 << j for j in range(n)] if uncovered == "singleton" else []
    pool = sorted(set(int(m) for m in masks) | set(extra))
    singles = [1 << j for j in range(n) if (1 << j) in pool]
    out = [singles] if len(singles) <= budget else []  # a start holds at most `budget` groups
    try:
        beam = group(masks, gains, budget, "beam", local_search=False, uncovered=uncovered)
        out.append([int(g) for g in beam.groups])
    except InputError:  # no grouping within the budget
        pass
    for _ in range(3):
        k = int(rng.integers(0, min(budget, len(pool)) + 1))
        out.append(sorted(set(int(x) for x in rng.choice(pool, size=k))) if k else [])
    return out


@pytest.mark.parametrize("uncovered", MODES)
@settings(max_examples=60, deadline=None)
@given(data=tables(max_tasks=8, max_masks=60), budget=st.integers(1, 9),
       seed=st.integers(0, 2**16), merge=st.booleans())
def test_same_moves_as_the_scan_on_tied_tables(data, budget, seed, merge, uncovered):
    masks, gains = data  # multiples of 1/4: ties everywhere (the tie-breaks decide)
    if masks.size == 0:
        return
    rng = np.random.default_rng(seed)
    for start in starts(masks, gains, budget, uncovered, rng):
        new, old = both(masks, gains, start, budget, uncovered, merge=merge)
        assert new == old, (start, budget)


@pytest.mark.parametrize("uncovered", MODES)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 14), count=st.integers(10, 300), budget=st.integers(1, 14),
       seed=st.integers(0, 2**20), levels=st.sampled_from([3, 9, 0, -1]))
def test_same_moves_as_the_scan_on_larger_pools(n, count, budget, seed, levels, uncovered):
    rng = np.random.default_rng(seed)
    masks = np.unique(rng.integers(1, 2**n, size=count).astype(np.uint64))
    # few gain levels (many exact ties and equal sums), continuous ones (levels = 0), or gains
    # of very different sizes (-1: a gain of 2^-60 next to 1 vanishes in a sum, so different
    # candidates reach the same rounded objective change)
    if levels == 0:
        g = rng.normal(0.0, 0.1, (masks.size, n))
    elif levels > 0:
        g = rng.integers(-levels, levels + 1, (masks.size, n)) / (4.0 * levels)
    else:
        g = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0**-60, -(2.0**-60), 2.0**-54, 3 * 2.0**-58],
                       size=(masks.size, n))
    gains = nan_outside(masks, g)
    for start in starts(masks, gains, budget, uncovered, rng):
        new, old = both(masks, gains, start, budget, uncovered)
        assert new == old, (start, budget)


@settings(max_examples=20, deadline=None)
@given(data=tables(max_tasks=7, max_masks=40), budget=st.integers(1, 8),
       kick=st.integers(1, 2**63), rounds=st.integers(0, 5))
def test_a_kicked_first_move_and_few_rounds_as_the_scan(data, budget, kick, rounds):
    masks, gains = data
    if masks.size == 0:
        return
    for uncovered in MODES:
        start = [1 << j for j in range(gains.shape[1])
                 if uncovered == "singleton" or (1 << j) in set(masks.tolist())]
        new, old = both(masks, gains, start, max(budget, len(start)), uncovered,
                        max_rounds=rounds, kick_seed=kick)
        assert new == old


@pytest.mark.parametrize("uncovered", MODES)
def test_same_moves_as_the_scan_at_n27(uncovered):
    """A realistic pool (N = 27, 1,379 candidates): every budget from the plain beam's groups."""
    t = synthetic_gain_tables(27, n_random=1000, seed=4).valid
    beams = group(t.masks, t.gains, range(2, 28), "beam", local_search=False,
                  uncovered=uncovered)
    moved = 0
    for r in beams[::3]:
        start = [int(g) for g in r.groups]
        new, old = both(t.masks, t.gains, start, r.budget, uncovered)
        assert new == old, r.budget
        moved += sorted(new) != sorted(start)
    assert moved > 0  # the search does move here: the comparison is not of two no-ops


def test_bad_arguments_are_errors_not_crashes():
    m = np.array([3, 1, 2], np.uint64)
    g = nan_outside(m, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="not a candidate"):
        S.local_search(m, g, np.array([7], np.uint64), 2, S.Uncovered.singleton)
    with pytest.raises(ValueError, match="budget"):
        S.local_search(m, g, np.array([3], np.uint64), 0, S.Uncovered.singleton)
    with pytest.raises(ValueError, match="distinct"):
        S.local_search(m, g, np.array([3, 3], np.uint64), 2, S.Uncovered.singleton)
    with pytest.raises(ValueError, match="more than the budget 1"):
        S.local_search(m, g, np.array([1, 2], np.uint64), 1, S.Uncovered.singleton)
    with pytest.raises(ValueError, match="max_rounds"):
        S.local_search(m, g, np.array([3], np.uint64), 1, S.Uncovered.singleton, max_rounds=-1)
    with pytest.raises(ValueError, match="must be non-negative"):
        S.local_search(m, g, np.array([-1]), 1, S.Uncovered.singleton)
