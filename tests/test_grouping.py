"""Grouping search: exact = brute force, beam = its numpy reference, validity, real MTG-Net data."""

from __future__ import annotations

import time

import mtgfast
import numpy as np
import pytest
import reference_search as ref
from _problems import (MODES, by_budget, check_valid, gap_unit, nan_outside, normal_gains,
                       release_table, relabelled, sampled_problem, tables, with_truth)
from hypothesis import given, settings
from hypothesis import strategies as st
from mtgfast import evaluate, group
from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.grouping import evaluate_tasks
from mtgfast.masks import masks_to_dense

# -- exact --------------------------------------------------------------------------------------
@pytest.mark.parametrize("uncovered", MODES)
@settings(max_examples=30)
@given(data=tables(max_tasks=5, max_masks=7))
def test_exact_equals_brute_force_over_subsets(data, uncovered):
    masks, gains, budgets, truth = with_truth(data, uncovered, ref.brute_force_subsets)
    for method in ("exact", "auto"):
        for b, best, r in by_budget(truth, group(masks, gains, budgets, method,
                                                 uncovered=uncovered)):
            assert r.value == best
            assert r.optimal
            check_valid(r, masks, gains, uncovered, b)


@pytest.mark.parametrize("uncovered", MODES)
@given(data=tables(max_tasks=7, max_masks=40))
def test_dp_and_branch_and_bound_equal_partition_brute_force(data, uncovered):
    masks, gains, budgets, truth = with_truth(data, uncovered, extra=0)
    dp = {r.budget: r for r in group(masks, gains, budgets, "exact", uncovered=uncovered)}
    # a time limit makes `auto` choose branch-and-bound on these small tables only via exact
    # for large N; call the backend through the core to test it on the same inputs
    from mtgfast import _core

    S = _core.search
    bnb = S.group(masks, gains, budgets, S.Method.bnb, 2, getattr(S.Uncovered, uncovered), 0.0,
                  1 << 30)
    for r in bnb:
        b = r.budget
        assert r.feasible == (truth[b] is not None)
        assert r.optimal
        if r.feasible:
            assert r.value == pytest.approx(truth[b], abs=1e-9)
            assert r.bound >= truth[b] - 1e-12
            assert r.bound - r.value <= 1e-6 * max(gap_unit(masks, gains), abs(r.value))
            assert dp[b].value == truth[b] and dp[b].method == "exact-dp"
            check_valid(dp[b], masks, gains, uncovered, b)
        else:
            assert b not in dp


@given(data=tables(max_tasks=6, max_masks=30, quarter=False))
def test_exact_on_continuous_gains(data):
    masks, gains = data
    n = gains.shape[1]
    truth = ref.brute_force_partitions(masks, gains, [n], "alone")[n]
    res = group(masks, gains, n, "exact", uncovered="alone")
    assert res.value == pytest.approx(truth, abs=1e-9)


# -- beam ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("uncovered", MODES)
@pytest.mark.parametrize("width", [1, 3])
@given(data=tables(max_tasks=6, max_masks=25))
def test_beam_equals_reference_and_never_beats_exact(data, uncovered, width):
    masks, gains = data
    n = gains.shape[1]
    budgets = list(range(1, n + 2))
    expect = ref.reference_beam(masks, gains, budgets, width, uncovered)
    got = group(masks, gains, budgets, "beam", beam_width=width, uncovered=uncovered,
                local_search=False)
    exact = {r.budget: r for r in group(masks, gains, budgets, "exact", uncovered=uncovered)}
    for b, expected, r in by_budget(expect, got):
        assert (sorted(int(x) for x in r.groups), r.value) == expected
        assert r.method == "beam"
        assert r.bound >= exact[b].value - 1e-9  # a valid bound, even for beam
        assert r.optimal == (r.gap <= 1e-6 * max(gap_unit(masks, gains), abs(r.value)))
        check_valid(r, masks, gains, uncovered, b)
        assert r.value <= exact[b].value


def test_beam_is_exact_when_wide_enough_on_small_tables():
    masks = np.arange(1, 2**5, dtype=np.uint64)
    gains = normal_gains(masks, 5, np.random.default_rng(3))
    for b in range(1, 6):
        wide = group(masks, gains, b, "beam", beam_width=2000)
        assert wide.value == pytest.approx(group(masks, gains, b, "exact").value)


def test_beam_results_are_valid_for_every_budget_on_larger_tables():
    n = 12
    masks, gains = sampled_problem(n, 300, 11, np.random.default_rng(7))
    for uncovered in MODES:
        res = group(masks, gains, range(1, n + 1), "beam", uncovered=uncovered)
        exact = {r.budget: r.value for r in group(masks, gains, range(1, n + 1), "exact",
                                                  uncovered=uncovered)}
        for r in res:
            check_valid(r, masks, gains, uncovered, r.budget)
            assert r.value <= exact[r.budget] + 1e-12
        values = [r.value for r in res]
        assert values == sorted(values)  # more budget never hurts


# -- properties ---------------------------------------------------------------------------------
@given(data=tables(max_tasks=6, max_masks=20), seed=st.integers(0, 2**16))
def test_relabelling_tasks_permutes_the_result(data, seed):
    masks, n = data[0], data[1].shape[1]
    rng = np.random.default_rng(seed)
    gains = normal_gains(masks, n, rng)  # continuous: a unique optimum
    perm = rng.permutation(n)  # task j becomes task perm[j]
    new_masks, new_gains, relabel = relabelled(masks, gains, perm)
    for uncovered in MODES:
        a = group(masks, gains, range(1, n + 1), "exact", uncovered=uncovered)
        b = group(new_masks, new_gains, range(1, n + 1), "exact", uncovered=uncovered)
        assert [r.budget for r in a] == [r.budget for r in b]
        for ra, rb in zip(a, b):
            assert rb.value == pytest.approx(ra.value, abs=1e-12)
            assert sorted(relabel(g) for g in ra.groups) == sorted(rb.groups.tolist())
            np.testing.assert_allclose(rb.task_gains[perm], ra.task_gains)
        for r in group(new_masks, new_gains, range(1, n + 1), "beam", uncovered=uncovered):
            check_valid(r, new_masks, new_gains, uncovered, r.budget)


def test_more_budget_never_hurts_and_full_budget_is_unconstrained():
    masks = np.arange(1, 2**6, dtype=np.uint64)
    gains = normal_gains(masks, 6, np.random.default_rng(0), sd=0.2)
    for uncovered in MODES:
        values = [r.value for r in group(masks, gains, range(1, 9), uncovered=uncovered)]
        assert values == sorted(values)
        assert values[5] == values[6] == values[7]  # budget > n_tasks changes nothing


# -- semantics of the two modes -------------------------------------------------------------------
def test_singleton_mode_needs_a_full_cover_and_alone_mode_does_not():
    masks = np.array([0b011, 0b110], dtype=np.uint64)  # no candidate holds all 3 tasks
    gains = nan_outside(masks, [[0.2, 0.1, 0], [0, 0.3, 0.4]])
    with pytest.raises(InputError, match="budget 1 is infeasible"):
        group(masks, gains, 1)
    res = group(masks, gains, range(1, 4))
    assert [r.budget for r in res] == [2, 3]  # budget 1 is left out of the curve
    two = res[0]
    assert sorted(two.groups.tolist()) == [0b011, 0b110]
    assert two.value == pytest.approx(0.2 + 0.3 + 0.4)
    np.testing.assert_array_equal(two.assignment, [0, 1, 1])
    alone = group(masks, gains, 1, uncovered="alone")
    assert alone.groups.tolist() == [0b110]
    np.testing.assert_array_equal(alone.assignment, [-1, 0, 0])
    assert alone.value == pytest.approx(0.7)


def test_singletons_appear_as_groups_under_the_default_rule():
    masks = np.array([0b011], dtype=np.uint64)
    gains = nan_outside(masks, [[0.5, 0.25, 0]])
    res = group(masks, gains, 2)
    assert res.groups.tolist() == [0b011, 0b100]
    np.testing.assert_array_equal(res.assignment, [0, 0, 1])
    assert res.value == 0.75


def test_negative_gains_are_served_under_singleton_and_avoided_under_alone():
    masks = np.array([0b11], dtype=np.uint64)
    gains = nan_outside(masks, [[0.5, -0.25]])
    assert group(masks, gains, 1).value == 0.25  # one group: task 1 must take -0.25
    assert group(masks, gains, 2).value == 0.5   # two groups: {0,1} for task 0, {1} alone
    res = group(masks, gains, 1, uncovered="alone")
    assert res.value == 0.5
    np.testing.assert_array_equal(res.assignment, [0, -1])


# -- evaluate -----------------------------------------------------------------------------------
def test_evaluate_scores_the_assignment_on_another_table():
    masks = np.arange(1, 8, dtype=np.uint64)
    rng = np.random.default_rng(1)
    val = nan_outside(masks, rng.normal(size=(7, 3)))
    val[[0, 1, 3], [0, 1, 2]] = 0.0
    test = nan_outside(masks, rng.normal(size=(7, 3)))
    test[[0, 1, 3], [0, 1, 2]] = 0.0   # a singleton's gain is 0 by definition (GainTable)
    for uncovered in MODES:
        for b in (1, 2, 3):
            r = group(masks, val, b, uncovered=uncovered)
            assert evaluate(r, val, masks) == pytest.approx(r.average)
            table = GainTable.from_arrays(masks, test)
            expected = [0.0 if a < 0 else test[int(r.groups[a]) - 1, j]
                        for j, a in enumerate(r.assignment)]
            np.testing.assert_allclose(evaluate_tasks(r, table), expected)
            assert evaluate(r, table) == pytest.approx(np.mean(expected))


def test_evaluate_singletons_missing_from_the_table_score_zero():
    masks = np.array([0b011], dtype=np.uint64)
    r = group(masks, nan_outside(masks, [[0.5, 0.25, 0]]), 2)
    other = np.array([0b011, 0b111], dtype=np.uint64)
    test = nan_outside(other, [[0.1, 0.2, 0], [0.3, 0.3, 0.3]])
    np.testing.assert_allclose(evaluate_tasks(r, test, other), [0.1, 0.2, 0.0])
    with pytest.raises(InputError, match="not in the gain table"):
        evaluate(r, nan_outside(other[1:], [[0.3, 0.3, 0.3]]), other[1:])


def test_evaluate_rejects_bad_input():
    masks = np.array([0b11], dtype=np.uint64)
    r = group(masks, nan_outside(masks, [[0.5, 0.25]]), 1)
    with pytest.raises(InputError, match="2 tasks but the gain table has 3"):
        evaluate(r, nan_outside([7], [[1, 1, 1]]), [7])
    with pytest.raises(InputError, match="masks are required"):
        evaluate(r, [[0.1, 0.2]])
    with pytest.raises(InputTypeError, match="must be a Grouping"):
        evaluate("abc", [[0.1, 0.2]], masks)


# -- bad input ----------------------------------------------------------------------------------
GOOD_MASKS = np.array([0b01, 0b11], dtype=np.uint64)
GOOD_GAINS = np.array([[0.0, np.nan], [0.1, 0.2]])


@pytest.mark.parametrize(("masks", "gains", "budget", "kwargs", "error", "match"), [
    (GOOD_MASKS, GOOD_GAINS[0], 1, {}, InputError, r"must be 2-D"),
    (GOOD_MASKS, GOOD_GAINS[:1], 1, {}, InputError, r"2 masks but 1 gain rows"),
    (GOOD_MASKS, [[0.0, 0.0], [np.nan, 0.2]], 1, {}, InputError, r"finite inside .* task 0"),
    (GOOD_MASKS, [[0.0, 0.0], [np.inf, 0.2]], 1, {}, InputError, r"finite inside"),
    (np.array([0b01, 0b101], dtype=np.uint64), GOOD_GAINS, 1, {}, InputError,
     r"task bit >= n_tasks=2"),
    (np.array([0b11, 0b11], dtype=np.uint64), [[0.1, 0.2], [0.1, 0.2]], 1, {}, InputError,
     r"duplicate combination \(mask 3\)"),
    (np.array([0, 0b11], dtype=np.uint64), GOOD_GAINS, 1, {}, InputError, r"empty combination"),
    (np.array([-1, 3]), GOOD_GAINS, 1, {}, InputError, r"non-negative"),
    (np.array([1.5, 3.0]), GOOD_GAINS, 1, {}, InputTypeError, r"must hold integers"),
    (GOOD_MASKS, [["a", "b"], ["c", "d"]], 1, {}, InputTypeError, r"numeric array"),
    (np.array([1], dtype=np.uint64), np.zeros((1, 65)), 1, {}, InputError, r"\[1, 64\], got 65"),
    (GOOD_MASKS, GOOD_GAINS, 0, {}, InputError, r"budget must be >= 1"),
    (GOOD_MASKS, GOOD_GAINS, -3, {}, InputError, r"budget must be >= 1"),
    (GOOD_MASKS, GOOD_GAINS, [1, 0], {}, InputError, r"budget must be >= 1"),
    (GOOD_MASKS, GOOD_GAINS, [], {}, InputError, r"empty"),
    (GOOD_MASKS, GOOD_GAINS, 1.5, {}, InputTypeError, r"budget must be an int"),
    (GOOD_MASKS, GOOD_GAINS, True, {}, InputTypeError, r"budget must be an int"),
    (GOOD_MASKS, GOOD_GAINS, "2", {}, InputTypeError, r"budget must be an int"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"method": "greedy"}, InputError, r"unknown|must be 'auto'"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"uncovered": "drop"}, InputError, r"uncovered must be"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"beam_width": 0}, InputError, r"beam_width must be in"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"beam_width": 2.0}, InputTypeError, r"beam_width must be an int"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"time_limit": -1}, InputError, r"time_limit must be a positive finite"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"time_limit": float("nan")}, InputError, r"time_limit"),
    (GOOD_MASKS, GOOD_GAINS, 1, {"time_limit": "1"}, InputTypeError, r"time_limit must be a"),
])
def test_bad_input_is_rejected_with_a_clear_message(masks, gains, budget, kwargs, error, match):
    kw = dict(kwargs)
    method = kw.pop("method", "auto")
    with pytest.raises(error, match=match):
        group(masks, gains, budget, method, **kw)


def test_core_rejects_bad_buffers_without_crashing():
    """Inputs that skip the Python checks still end in a Python exception, never a crash."""
    from mtgfast import _core

    s = _core.search
    M, U = s.Method, s.Uncovered
    with pytest.raises(ValueError, match="duplicate"):
        s.group(np.array([3, 3], np.uint64), np.zeros((2, 2)), [1], M.dp, 1, U.singleton, 0, 1 << 30)
    with pytest.raises(ValueError, match="bit >= n_tasks"):
        s.group(np.array([4], np.uint64), np.zeros((1, 2)), [1], M.beam, 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="empty combination"):
        s.group(np.array([0], np.uint64), np.zeros((1, 2)), [1], M.bnb, 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="must be finite inside"):
        s.group(np.array([3], np.uint64), np.full((1, 2), np.nan), [1], M.dp, 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="rows for"):
        s.group(np.array([3], np.uint64), np.zeros((2, 2)), [1], M.dp, 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        s.group(np.array([3], np.uint64), np.zeros((1, 2)), [0], M.dp, 1, U.alone, 0, 1 << 30)
    with pytest.raises(TypeError):  # the method is an enum, not a string
        s.group(np.array([3], np.uint64), np.zeros((1, 2)), [1], "dp", 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="gap_tol"):
        s.group(np.array([3], np.uint64), np.zeros((1, 2)), [1], M.bnb, 1, U.alone, 0, 1 << 30, -1.0)
    with pytest.raises(ValueError, match="time_limit"):
        s.group(np.array([3], np.uint64), np.zeros((1, 2)), [1], M.bnb, 1, U.alone, -1.0, 1 << 30)
    with pytest.raises(ValueError, match="n_tasks must be in"):
        s.group(np.zeros(0, np.uint64), np.zeros((0, 0)), [1], M.dp, 1, U.alone, 0, 1 << 30)
    with pytest.raises(ValueError, match="more memory"):  # std::length_error
        s.group(np.array([1], np.uint64), np.zeros((1, 40)), [40], M.dp, 1, U.alone, 0, 1 << 20)


def test_grouping_is_immutable():
    r = group(GOOD_MASKS, GOOD_GAINS, 1)
    with pytest.raises(AttributeError):
        r.value = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.groups[0] = 1
    assert "Grouping(budget=1" in repr(r)


# -- large N: branch-and-bound and auto -----------------------------------------------------------
def test_branch_and_bound_for_many_tasks_and_few_candidates():
    rng = np.random.default_rng(5)
    n = 24
    masks = mtgfast.sample_masks(n, 40, seed=2)
    gains = nan_outside(masks, rng.normal(0.05, 0.1, size=(40, n)))
    exact = group(masks, gains, range(1, n + 1), "exact", uncovered="alone")
    assert all(r.method == "exact-bnb" and r.optimal for r in exact)
    beam = group(masks, gains, range(1, n + 1), "beam", beam_width=3, uncovered="alone")
    for e, b in zip(exact, beam):
        check_valid(e, masks, gains, "alone", e.budget)
        assert b.value <= e.value + 1e-12
    # few candidates: brute force over subsets of the best 12 rows is a lower bound check
    auto = group(masks, gains, 5, uncovered="alone")
    assert auto.method == "exact-bnb" and auto.value == exact[4].value


def test_branch_and_bound_time_limit_reports_not_optimal():
    masks, gains = sampled_problem(40, 20_000, 4, np.random.default_rng(9))
    t0 = time.perf_counter()
    res = group(masks, gains, 6, "exact", uncovered="alone", time_limit=0.2)
    elapsed = time.perf_counter() - t0
    assert res.method == "exact-bnb" and not res.optimal and res.timed_out
    assert res.bound > res.value and res.gap == res.bound - res.value
    assert elapsed < 0.2 + 2.0  # honoured (beam's first pass and the checks are the slack)
    check_valid(res, masks, gains, "alone", 6)


def test_auto_picks_bnb_for_thousands_of_candidates_and_beam_beyond():
    rng = np.random.default_rng(1)
    n = 27
    masks, gains = sampled_problem(n, 3000, 1, rng)
    res = group(masks, gains, range(1, n + 1), time_limit=20.0)
    assert {r.method for r in res} == {"exact-bnb"}
    for r in res:
        check_valid(r, masks, gains, "singleton", r.budget)
        assert r.bound >= r.value
    big, gains = sampled_problem(n, 25_000, 2, rng)
    res = group(big, gains, [3, 27])
    assert {r.method for r in res} == {"beam"}
    for r in res:
        check_valid(r, big, gains, "singleton", r.budget)
        assert r.bound >= r.value


# -- real data: the MTG-Net release --------------------------------------------------------------
def test_taskonomy_oracle_curve(data_dir):
    masks, gains = release_table(data_dir, "taskonomy")
    curve = {r.budget: r for r in group(masks, gains, range(1, 6))}
    # the Oracle row of the MTG-Net paper (Taskonomy-5): 0.139 / 0.178 / 0.184 for B = 2, 3, 4
    assert curve[2].average == pytest.approx(0.138752, abs=1e-6)
    assert curve[3].average == pytest.approx(0.177636, abs=1e-6)
    assert curve[4].average == pytest.approx(0.183484, abs=1e-6)
    truth = ref.brute_force_partitions(masks, gains, list(range(1, 6)), "singleton")
    for b, r in curve.items():
        assert r.optimal and r.value == pytest.approx(truth[b], abs=1e-12)
        assert evaluate(r, gains, masks) == pytest.approx(r.average)
        beam = group(masks, gains, b, "beam")
        assert beam.value <= r.value + 1e-12


def test_ettm1_select_on_validation_score_on_test(data_dir):
    masks, val = release_table(data_dir, "ettm1")
    _, test = release_table(data_dir, "ettm1-test")
    n = val.shape[1]
    budgets = list(range(1, n + 1))
    chosen = group(masks, val, budgets, "exact")
    truth = ref.brute_force_partitions(masks, val, budgets, "singleton")
    assert [r.budget for r in chosen] == budgets  # all 127 combinations: every budget feasible
    test_table = GainTable.from_arrays(masks, test)
    for r in chosen:
        assert r.value == pytest.approx(truth[r.budget], abs=1e-12)
        score = evaluate(r, test_table)
        # the reference scoring: each task reads the test gain of the group it was assigned
        expected = np.mean([test[np.flatnonzero(masks == r.groups[a])[0], j]
                            for j, a in enumerate(r.assignment)])
        assert score == pytest.approx(expected, abs=1e-12)
    # selection on validation is optimal there, not necessarily on test; the curve must rise on val
    vals = [r.average for r in chosen]
    assert vals == sorted(vals)


def _blocks_and_pairs(n_blocks: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """A pool where the only small covers are a few poor blocks, and every good row is a pair:
    a value-ranked beam keeps the pairs and loses the blocks (the smallest feasible budgets)."""
    n = n_blocks * block
    masks = [sum(1 << (b * block + j) for j in range(block)) for b in range(n_blocks)]
    masks += [(1 << i) | (1 << (i + 1)) for i in range(n - 1)]
    masks = np.array(masks, dtype=np.uint64)
    dense = masks_to_dense(masks, n)
    gains = np.where(dense, 1.0, np.nan)
    gains[:n_blocks] = np.where(dense[:n_blocks], -0.25, np.nan)
    return masks, gains


@pytest.mark.parametrize("n_blocks, block", [(1, 7), (3, 4), (3, 9)])
def test_beam_answers_the_smallest_feasible_budgets_of_a_sparse_pool(n_blocks, block):
    # found by hypothesis in test_a_bound_is_never_below_the_exact_optimum: budget 3 of
    # {0,2}, {0,1,4,5}, {1,4,5,6} had a grouping ({0,2}, {3}, {1,4,5,6}) the beam never saw;
    # beam + local search starts such budgets from the fewest rows that cover every task (the
    # plain beam, local_search=False, is the appendix's and equals reference_beam)
    local_search = True
    masks, gains = _blocks_and_pairs(n_blocks, block)
    n = gains.shape[1]
    res = {r.budget: r for r in group(masks, gains, range(1, n + 1), "beam",
                                      local_search=local_search)}
    exact = {r.budget: r for r in group(masks, gains, range(1, n + 1), "bnb")}
    assert sorted(res) == sorted(exact)
    assert min(res) == n_blocks
    for b, r in res.items():
        check_valid(r, masks, gains, "singleton", b)
        assert r.value <= exact[b].value + 1e-12 and r.bound >= exact[b].value - 1e-12
    nan = np.nan
    masks = np.array([5, 51, 114], dtype=np.uint64)
    gains = np.array([[0., nan, -0.5, nan, nan, nan, nan], [0., 0., nan, nan, 0., 1., nan],
                      [nan, 0., nan, nan, 0., 0., -0.25]])
    res = group(masks, gains, [3], "beam", local_search=local_search)
    assert len(res) == 1 and res[0].value == pytest.approx(-0.75)
    assert sorted(res[0].groups.tolist()) == [5, 8, 114]
