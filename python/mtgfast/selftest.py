"""Self-test of an installed mtgfast: the compiled core (mask enumeration, ranking, sampling,
grouping search) checked against plain-Python references, with numpy and the standard library only.

    python -m mtgfast.selftest            # what the wheel builds run; exit status 0 when all pass

It needs neither the source tree nor pytest, so it runs against a wheel on a clean machine
(cibuildwheel's test-command). The full property tests live in the repository's ``tests/``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from ._reference import brute_force_value, colex_rank, lex_masks

__all__ = ["CHECKS", "brute_force_value", "main", "run"]


# -- plain references (one definition, shared with the repository's tests) -------------------
def _random_table(rng: np.random.Generator, n: int, n_masks: int) -> tuple[np.ndarray, np.ndarray]:
    masks = rng.choice(np.arange(1, 1 << n, dtype=np.uint64), size=n_masks, replace=False)
    member = ((masks[:, None] >> np.arange(n, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    gains = np.where(member, rng.normal(size=member.shape).round(3), np.nan)
    gains[member.sum(axis=1) == 1] = 0.0
    return masks, gains


# -- checks ------------------------------------------------------------------------------------
def check_enumeration() -> None:
    """``all_masks`` (lex, colex, binary) and ``k_subsets`` equal itertools' enumeration."""
    from mtgfast.masks import all_masks, k_subsets

    for n in range(1, 11):
        assert all_masks(n, "lex").tolist() == lex_masks(n), f"lex order, n={n}"
        colex = sorted(range(1, 1 << n), key=lambda m: (bin(m).count("1"), m))
        assert all_masks(n, "colex").tolist() == colex, f"colex order, n={n}"
        assert all_masks(n, "binary").tolist() == list(range(1, 1 << n)), f"binary, n={n}"
        for k in range(1, n + 1):
            ref = lex_masks(n, k)
            assert k_subsets(n, k, "lex").tolist() == ref, f"k_subsets lex n={n} k={k}"
            assert k_subsets(n, k, "colex").tolist() == sorted(ref), f"k_subsets colex {n} {k}"


def check_popcount_rank_unrank() -> None:
    """``popcount``/``rank``/``unrank`` agree with bit counting and the combinatorial number
    system, up to bit 63."""
    from mtgfast.masks import popcount, rank, unrank

    rng = np.random.default_rng(1)
    masks = rng.integers(1, 2**63, size=500, dtype=np.uint64) | (
        np.uint64(1) << rng.integers(0, 64, size=500).astype(np.uint64))
    assert popcount(masks).tolist() == [bin(int(m)).count("1") for m in masks], "popcount"
    assert rank(masks).tolist() == [colex_rank(int(m)) for m in masks], "rank"
    for n, k in ((10, 3), (27, 5), (64, 2), (64, 63)):
        ranks = np.unique(rng.integers(0, math.comb(n, k), size=50, dtype=np.uint64))
        back = unrank(ranks, n, k)
        assert popcount(back).tolist() == [k] * len(ranks), f"unrank sizes n={n} k={k}"
        assert rank(back).tolist() == ranks.tolist(), f"rank(unrank(r)) != r for n={n} k={k}"


def check_sampling() -> None:
    """``sample_masks`` draws distinct, sorted masks of the asked sizes, a function of the seed."""
    from mtgfast.masks import popcount, sample_masks

    a = sample_masks(27, 2000, sizes=[2, 3, 26], seed=5)
    assert len(set(a.tolist())) == 2000, "sampled masks are not distinct"
    assert set(popcount(a).tolist()) <= {2, 3, 26}, "sizes"
    key = [(bin(int(m)).count("1"), colex_rank(int(m))) for m in a]
    assert key == sorted(key), "not sorted by size then colex rank"
    assert int(a.max()) < 1 << 27, "task bit out of range"
    assert np.array_equal(a, sample_masks(27, 2000, sizes=[2, 3, 26], seed=5)), "seeded"
    assert not np.array_equal(a, sample_masks(27, 2000, sizes=[2, 3, 26], seed=6)), "seed unused"
    every = sample_masks(5, 31, seed=0)
    assert sorted(every.tolist()) == list(range(1, 32)), "drawing every combination"


def check_exact_search() -> None:
    """``group(method="exact")`` reaches the brute-force optimum on random tables (both
    ``uncovered`` modes, every budget), and its groups and task gains are consistent."""
    from mtgfast.grouping import group

    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(2, 6))
        masks, gains = _random_table(rng, n, int(rng.integers(n, min(12, 2**n - 1) + 1)))
        for uncovered in ("singleton", "alone"):
            budgets = list(range(1, n + 1))
            curve = {g.budget: g for g in group(masks, gains, budgets, "exact",
                                                uncovered=uncovered)}
            for b in budgets:
                ref = brute_force_value(masks, gains, b, uncovered)
                got = curve.get(b)
                assert (got is None) == (ref is None), f"feasibility, trial {trial} B={b}"
                if got is None or ref is None:
                    continue
                assert got.optimal, f"exact search not proven optimal, trial {trial}"
                assert math.isclose(got.value, ref, abs_tol=1e-9), (
                    f"exact value {got.value} != brute force {ref} (trial {trial}, B={b}, "
                    f"uncovered={uncovered})")
                assert len(got.groups) <= b, "more groups than the budget"
                assert math.isclose(float(np.sum(got.task_gains)), got.value, abs_tol=1e-9)


def check_beam_search() -> None:
    """Beam search never beats the exact optimum and finds it with a wide beam on tiny tables."""
    from mtgfast.grouping import group

    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(3, 7))
        masks, gains = _random_table(rng, n, int(rng.integers(n, min(20, 2**n - 1) + 1)))
        exact = {g.budget: g.value for g in group(masks, gains, range(1, n + 1), "exact")}
        for g in group(masks, gains, range(1, n + 1), "beam", beam_width=3):
            assert g.value <= exact[g.budget] + 1e-9, f"beam beats exact, trial {trial}"
    masks, gains = _random_table(np.random.default_rng(4), 4, 15)
    wide = group(masks, gains, 2, "beam", beam_width=1000)
    best = brute_force_value(masks, gains, 2, "singleton")
    assert best is not None and math.isclose(wide.value, best, abs_tol=1e-9), \
        "a beam wider than the candidates must be exact"


def check_evaluate() -> None:
    """``evaluate`` reads each task's gain in its assigned group from another table."""
    from mtgfast.grouping import evaluate, group

    masks, gains = _random_table(np.random.default_rng(5), 5, 31)
    test = np.where(np.isnan(gains), np.nan, gains + 0.5)
    test[np.isin(masks, [1, 2, 4, 8, 16])] = 0.0
    g = group(masks, gains, 3, "exact")
    row = {int(m): i for i, m in enumerate(masks)}
    ref = [test[row[int(g.groups[a])], j] for j, a in enumerate(g.assignment)]
    assert math.isclose(evaluate(g, test, masks), float(np.mean(ref)), abs_tol=1e-12)


def check_bad_input_is_an_error() -> None:
    """Malformed input reaches the caller as ``InputError`` (a ``ValueError``), not a crash."""
    from mtgfast.errors import InputError
    from mtgfast.grouping import group
    from mtgfast.masks import unrank

    cases: list[Callable[[], object]] = [
        lambda: group(np.array([1, 8], dtype=np.uint64), np.zeros((2, 3)), 1),  # bit 3 of 3 tasks
        lambda: group(np.array([1, 2], dtype=np.uint64), np.zeros((3, 2)), 1),  # shapes differ
        lambda: unrank(np.array([10], dtype=np.uint64), 5, 2),                   # C(5, 2) = 10
    ]
    for i, case in enumerate(cases):
        try:
            case()
        except InputError:
            continue
        raise AssertionError(f"bad input case {i} raised no InputError")


def check_extreme_gains() -> None:
    """Gains near 1e308 and subnormal gains give finite, exact values (the search runs on gains
    scaled by a power of two), and a value beyond float64 is an ``InputError``."""
    from mtgfast.errors import InputError
    from mtgfast.grouping import evaluate, group

    masks = np.array([1, 2, 3], dtype=np.uint64)
    for scale in (2.0**1000, 2.0**-1070, 1.0):
        gains = np.array([[1.0, np.nan], [np.nan, 1.0], [3.0, 4.0]]) * scale
        for method in ("exact", "bnb", "beam"):
            g = group(masks, gains, 2, method)
            assert list(g.groups) == [3] and g.value == 7.0 * scale and g.bound == g.value, (
                f"{method} at scale {scale}: {g}")
        assert evaluate(g, gains, masks) == 3.5 * scale, f"evaluate at scale {scale}"
    try:
        group(np.array([3], dtype=np.uint64), np.array([[1.5e308, 1.7e308]]), 1)
    except InputError:
        return
    raise AssertionError("a grouping value beyond float64 raised no InputError")


CHECKS: dict[str, Callable[[], None]] = {
    "enumeration": check_enumeration,
    "popcount-rank-unrank": check_popcount_rank_unrank,
    "sampling": check_sampling,
    "exact-search": check_exact_search,
    "beam-search": check_beam_search,
    "evaluate": check_evaluate,
    "bad-input": check_bad_input_is_an_error,
    "extreme-gains": check_extreme_gains,
}


def run(verbose: bool = True) -> list[str]:
    """Run every check; the names of those that failed (empty when all pass)."""
    failed = []
    for name, check in CHECKS.items():
        t0 = time.perf_counter()
        try:
            check()
        except Exception as exc:  # report every failing check, not only the first
            failed.append(name)
            if verbose:
                print(f"FAIL {name}: {type(exc).__name__}: {exc}")
            continue
        if verbose:
            print(f"ok   {name} ({time.perf_counter() - t0:.2f} s)")
    return failed


def main(argv: list[str] | None = None) -> int:
    """Command line: run the checks, print one line each, exit 1 if any failed."""
    ap = argparse.ArgumentParser(prog="python -m mtgfast.selftest", description=__doc__.split(
        "\n")[0])
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    args = ap.parse_args(argv)
    import mtgfast

    failed = run(verbose=not args.quiet)
    where = mtgfast.__file__
    if failed:
        print(f"mtgfast {mtgfast.__version__} selftest ({where}): {len(failed)} of {len(CHECKS)} "
              f"checks failed: {', '.join(failed)}")
        return 1
    print(f"mtgfast {mtgfast.__version__} selftest ({where}): all {len(CHECKS)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
