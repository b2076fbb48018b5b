"""group() and evaluate() on huge (near 1e308) and tiny (subnormal) gains, against an exact
pure-Python reference in rationals: the objective is invariant to positive scaling, so finite
gains must give a finite, correct value (or a clear error when the value itself is beyond the
float64 range), never inf, NaN or a grouping chosen on overflowed sums."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast import evaluate, group
from mtgfast.grouping import GAP_TOL
from mtgfast.errors import InputError

EPS = np.finfo(np.float64).eps


def exact_optimum(masks, gains, budget: int, uncovered: str) -> Fraction | None:
    """Best objective over every set of at most ``budget`` candidates, in exact rationals (None:
    no valid grouping). Missing singletons have gain 0 under "singleton" (the module contract)."""
    n = gains.shape[1]
    cand = {int(m): [Fraction(float(x)) if not math.isnan(x) else None for x in row]
            for m, row in zip(masks, gains)}
    if uncovered == "singleton":
        for j in range(n):
            cand.setdefault(1 << j, [Fraction(0) if k == j else None for k in range(n)])
    best = None
    keys = sorted(cand)
    for k in range(min(budget, len(keys)) + 1):
        for chosen in itertools.combinations(keys, k):
            total = Fraction(0)
            ok = True
            for j in range(n):
                vals = [cand[c][j] for c in chosen if (c >> j) & 1]
                if not vals:
                    if uncovered == "singleton":
                        ok = False
                        break
                    continue
                v = max(vals)
                total += max(v, Fraction(0)) if uncovered == "alone" else v
            if ok and (best is None or total > best):
                best = total
    return best


@st.composite
def extreme_tables(draw):
    """Small tables of small integers times 2**e, e from the subnormal range to near the top of
    the float64 range (per table, and sometimes per entry: tables spanning 2000 binades)."""
    n = draw(st.integers(1, 4))
    full = (1 << n) - 1
    masks = draw(st.lists(st.integers(1, full), min_size=1, max_size=6, unique=True))
    table_exp = draw(st.sampled_from([-1074, -1070, -1060, -1030, -1000, -300, -40, 0, 40, 300,
                                      1000, 1010, 1015]))
    mixed = draw(st.booleans())
    gains = np.full((len(masks), n), np.nan)
    for i, m in enumerate(masks):
        for j in range(n):
            if (m >> j) & 1:
                k = draw(st.integers(-8, 8))
                e = draw(st.sampled_from([-1074, -1000, 0, 1000, 1015])) if mixed else table_exp
                gains[i, j] = math.ldexp(k, e)
    return np.array(masks, dtype=np.uint64), gains


def _close(a: float, b: float, floor: float = 0.0) -> bool:
    return a == b or math.isclose(a, b, rel_tol=8 * EPS, abs_tol=floor)


def _resolution(gains) -> float:
    """What a table can resolve: 2**-1074 relative to its largest |gain| when that is above 1 (a
    table spanning more than the float64 range is searched at the precision of its largest gain;
    entries below that are beyond any float64 sum that holds the largest), else 0."""
    top = float(np.nanmax(np.abs(gains)))
    return math.ldexp(1.0, -1074 + math.frexp(top)[1]) if top > 1.0 else 0.0


@settings(max_examples=80, deadline=None)
@given(data=extreme_tables(), budget=st.integers(1, 4),
       uncovered=st.sampled_from(["singleton", "alone"]),
       method=st.sampled_from(["exact", "bnb", "beam"]))
def test_extreme_gains_match_exact_reference(data, budget, uncovered, method):
    masks, gains = data
    ref = exact_optimum(masks, gains, budget, uncovered)
    if ref is None:
        with pytest.raises(InputError, match="budget"):
            group(masks, gains, budget, method=method, uncovered=uncovered)
        return
    r = group(masks, gains, budget, method=method, uncovered=uncovered)
    assert math.isfinite(r.value) and math.isfinite(r.bound) and math.isfinite(r.gap)
    assert r.bound >= r.value and np.all(np.isfinite(r.task_gains))
    # the value is the sum of the gains the grouping gives its tasks, within the rounding of a
    # float64 sum (sum_j |g_j| * n * eps: 1 + 5e-324 - 1 is 0 in floating point)
    exact_value = sum((Fraction(float(x)) for x in r.task_gains), Fraction(0))
    res = _resolution(gains) + 4 * gains.shape[1] * EPS * float(np.sum(np.abs(r.task_gains)))
    assert _close(r.value, float(exact_value), res)
    assert r.bound >= float(ref) or _close(r.bound, float(ref), res)
    if method == "exact":  # the partition DP at these sizes: exact up to the rounding
        assert r.method == "exact-dp" and _close(r.value, float(ref), res), (r, float(ref))
        assert r.optimal
    elif method == "bnb":  # proven within gap_tol * max(floor, |value|), floor in table units
        top = float(np.nanmax(np.abs(gains)))
        floor = 1.0 if top == 0 or 2.0**-32 <= top <= 2.0**32 else math.ldexp(1, math.frexp(top)[1])
        assert r.optimal
        assert _close(r.value, float(ref), res + GAP_TOL * max(floor, abs(float(ref)))), r
    else:
        assert r.value <= float(ref) or _close(r.value, float(ref), res)
    # each task's gain is read from the table (the unscaled one) at its serving group
    rows = {int(m): i for i, m in enumerate(masks)}
    for j, a in enumerate(r.assignment):
        if a >= 0 and int(r.groups[a]) in rows:
            assert r.task_gains[j] == gains[rows[int(r.groups[a])], j]
    # evaluate() on the same table: the exact mean of those gains, finite
    mean = evaluate(r, gains, masks)
    exact_mean = sum((Fraction(float(x)) for x in r.task_gains), Fraction(0)) / gains.shape[1]
    assert math.isfinite(mean) and _close(mean, float(exact_mean), res / gains.shape[1])


@settings(max_examples=40, deadline=None)
@given(data=extreme_tables(), shift=st.sampled_from([-1000, -60, 60, 900]))
def test_value_scales_with_the_gains(data, shift):
    """group(g * 2**s) has value(g) * 2**s (exact) whenever both tables are representable."""
    masks, gains = data
    nonzero = np.abs(gains[np.isfinite(gains) & (gains != 0)])
    if nonzero.size == 0:
        return
    top, low = float(nonzero.max()), float(nonzero.min())
    if math.frexp(top)[1] + shift > 1016 or math.frexp(low)[1] + shift < -1020:
        return  # the shifted table would overflow or lose subnormal bits
    for u in ("singleton", "alone"):
        n = gains.shape[1]  # budget n: always feasible (singletons)
        a = group(masks, gains, n, method="exact", uncovered=u)
        b = group(masks, np.ldexp(gains, shift), n, method="exact", uncovered=u)
        assert b.value == math.ldexp(a.value, shift)


def test_near_max_gains_give_finite_values():
    """The first report: gains near 1e308 gave value=inf and a NaN gap (and the bnb picked the
    worse grouping on overflowed sums)."""
    masks = np.array([1, 2, 3], dtype=np.uint64)
    gains = np.array([[1e307, np.nan], [np.nan, 1e307], [6e307, 7e307]])
    for method in ("exact", "bnb", "beam"):
        r = group(masks, gains, 2, method=method)
        assert list(r.groups) == [3] and r.value == 1.3e308 and r.gap == 0.0 and r.optimal
        assert r.average == 6.5e307
    assert evaluate(r, gains, masks) == 6.5e307
    many = np.array([[1e308] * 3])  # a mean that a plain sum overflows
    g3 = group(np.array([7], dtype=np.uint64), many / 3, 1)
    assert evaluate(g3, many, np.array([7], dtype=np.uint64)) == 1e308


def test_value_beyond_float64_range_is_a_clear_error():
    masks = np.array([3], dtype=np.uint64)
    with pytest.raises(InputError, match=r"gains are too large.*float64 range.*divide the gains"):
        group(masks, np.array([[1.5e308, 1.7e308]]), 1)


def test_subnormal_gains_are_exact():
    masks = np.array([1, 2, 3], dtype=np.uint64)
    gains = np.array([[2e-310, np.nan], [np.nan, 2e-310], [1e-310, 4e-310]])
    for method in ("exact", "bnb", "beam"):
        r = group(masks, gains, 2, method=method)
        assert list(r.groups) == [1, 3] and list(r.assignment) == [0, 1]
        assert r.value == float(Fraction(2e-310) + Fraction(4e-310)) and r.value > 0
        assert r.optimal and r.bound == r.value
        assert evaluate(r, gains, masks) == float((Fraction(2e-310) + Fraction(4e-310)) / 2)
