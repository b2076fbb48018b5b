"""Estimators: a conformance suite every estimator runs; each fast path vs a plain reference."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mtgfast.errors import InputError, InputTypeError
from mtgfast.baselines import RandomGrouping, random_grouping_scores
from mtgfast.estimators import HOA, TAG, Oracle
from mtgfast.gains import GainTable
from mtgfast.masks import all_masks, masks_to_dense


def _table(n: int, seed: int = 0, *, full: bool = True) -> GainTable:
    rng = np.random.default_rng(seed)
    masks = all_masks(n) if full else all_masks(n)[: n + n * (n - 1) // 2]
    member = masks_to_dense(masks, n)
    g = np.where(member, rng.normal(scale=0.1, size=member.shape), np.nan)
    g[member.sum(axis=1) == 1] = 0.0
    return GainTable(masks, g, [f"task{j}" for j in range(n)], {"split": "valid"})


def plain_hoa(masks, pairs: np.ndarray) -> np.ndarray:
    """Reference: the definition, one mask and one task at a time."""
    n = pairs.shape[0]
    out = np.full((len(masks), n), np.nan)
    for i, m in enumerate(int(x) for x in masks):
        members = [j for j in range(n) if m >> j & 1]
        for j in members:
            others = [pairs[j, k] for k in members if k != j]
            out[i, j] = float(np.mean(others)) if others else 0.0
    return out


def _tiny_mtgnet(n: int):  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    from mtgfast.estimators.mtgnet import MTGNet

    return MTGNet(dim=8, n_layers=1, max_epochs=15, n_estimators=2, seed=0)


ESTIMATORS = {
    "oracle": lambda n: Oracle(),
    # torch training: run with -m slow (the other estimators keep the default run fast)
    "mtgnet": pytest.param(_tiny_mtgnet, marks=pytest.mark.slow),
    "hoa-numpy": lambda n: HOA(backend="numpy"),
    "hoa-numba": lambda n: HOA(backend="numba"),
    "tag-pairs": lambda n: TAG(),
    "tag-affinity": lambda n: TAG(affinity=np.arange(n * n, dtype=float).reshape(n, n) / n ** 2),
}


# -- conformance: every estimator ----------------------------------------------------------------
@pytest.mark.parametrize("make", list(ESTIMATORS.values()), ids=list(ESTIMATORS))
class TestConformance:
    def test_init_only_stores_arguments(self, make):
        est = make(4)
        assert not [k for k in vars(est) if k.endswith("_")]
        assert set(est.get_params()) == set(vars(est))
        repr(est)

    def test_fit_returns_self_and_sets_state(self, make):
        table = _table(4)
        est = make(4)
        assert est.fit(table) is est
        assert est.task_names_ == table.task_names and est.n_tasks_ == 4

    def test_predict_shapes_nan_outside_singletons_zero(self, make):
        table = _table(4)
        est = make(4).fit(table)
        masks = table.masks
        pred = est.predict(masks)
        assert pred.shape == (len(masks), 4) and pred.dtype == np.float64
        member = masks_to_dense(masks, 4)
        assert np.isnan(pred[~member]).all()
        assert np.isfinite(pred[member]).all()
        singles = member.sum(axis=1) == 1
        assert np.all(pred[singles][member[singles]] == 0.0)
        assert est.predict(masks[:0]).shape == (0, 4)

    def test_deterministic_and_order_equivariant(self, make):
        table = _table(4, seed=1)
        a = make(4).fit(table).predict(table.masks)
        b = make(4).fit(table).predict(table.masks)
        assert np.array_equal(a, b, equal_nan=True)
        perm = np.random.default_rng(0).permutation(len(table))
        c = make(4).fit(table).predict(table.masks[perm])
        assert np.array_equal(c, a[perm], equal_nan=True)

    def test_errors(self, make):
        est = make(4)
        with pytest.raises(InputError, match="not fitted"):
            est.predict([1])
        with pytest.raises(InputTypeError):
            est.fit(np.zeros((3, 4)))
        est.fit(_table(4))
        with pytest.raises(InputError, match="task bit"):
            est.predict([1 << 4])
        with pytest.raises(InputError):
            est.predict([0])

    def test_predict_table(self, make):
        table = _table(3)
        out = make(3).fit(table).predict_table(table.masks)
        assert isinstance(out, GainTable) and out.task_names == table.task_names


# -- specific behaviour ------------------------------------------------------------
def test_oracle_is_the_table_and_refuses_unmeasured():
    table = _table(5, full=False)
    est = Oracle().fit(table)
    assert np.array_equal(est.predict(table.masks), table.gains, equal_nan=True)
    with pytest.raises(InputError, match="no measurement"):
        est.predict([0b111])
    # singletons are 0 by definition even when the table omits them
    no_single = table.select(masks_to_dense(table.masks, 5).sum(axis=1) > 1)
    assert Oracle().fit(no_single).predict([4]).tolist()[0][2] == 0.0


def test_hoa_needs_all_pairs_and_names_missing():
    table = _table(4)
    pairs = masks_to_dense(table.masks, 4).sum(axis=1) == 2
    drop = np.flatnonzero(pairs)[:2]
    keep = np.setdiff1d(np.arange(len(table)), drop)
    with pytest.raises(InputError, match=r"missing 2 pair\(s\): task0\+task1, task0\+task2"):
        HOA().fit(table.select(keep))
    with pytest.raises(InputError, match="backend"):
        HOA(backend="gpu").fit(table)


@given(st.integers(2, 9), st.integers(0, 2**32 - 1), st.integers(1, 200))
@settings(max_examples=40)
def test_hoa_backends_match_plain_python(n, seed, count):
    rng = np.random.default_rng(seed)
    pairs = rng.normal(size=(n, n))
    np.fill_diagonal(pairs, 0.0)
    masks = np.unique(rng.integers(1, 1 << n, size=count)).astype(np.uint64)
    ref = plain_hoa(masks, pairs)
    from mtgfast.estimators.hoa import aggregate_pairs

    for backend in ("numpy", "numba"):
        got = aggregate_pairs(masks, pairs, backend=backend)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_hoa_reproduces_the_released_estimates(data_dir):
    for folder, x, y, h in (("taskonomy", "taskonomy_x.csv", "taskonomy.csv", "taskonomy_HOA.csv"),
                            ("ETT", "ETTm1_x.csv", "ETTm1_val_y.csv", "ETTm1_HOA.csv")):
        d = data_dir / "mtgnet" / folder
        valid = GainTable.from_mtgnet(d / x, d / y)
        released = GainTable.from_mtgnet(d / x, d / h)
        pred = HOA().fit(valid).predict(valid.masks)
        err = np.nanmax(np.abs(pred - released.gains))
        # the release rounds to 4 decimals (Taskonomy's HOA was computed from 5-decimal gains)
        assert err < (2e-3 if folder == "taskonomy" else 1e-4), (folder, err)


def test_tag_reproduces_the_released_estimates(data_dir):
    """The released TAG tables are TAG aggregation of their own pair rows (affinities)."""
    for folder, x, g, scale in (("taskonomy", "taskonomy_x.csv", "taskonomy_TAGHOA.csv", 1.0),
                                ("ETT", "ETTm1_x.csv", "ETTm1_TAG_HOA.csv", 0.01)):
        d = data_dir / "mtgnet" / folder
        released = GainTable.from_mtgnet(d / x, d / g, scale=scale)
        pred = TAG().fit(released).predict(released.masks)
        assert np.nanmax(np.abs(pred - released.gains)) < 1e-5 + 1e-4 * scale * 100


def test_tag_affinity_orientation():
    # A[i, j]: task i's update onto task j; gain of j in C = mean over other members i of A[i, j]
    a = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [5.0, 6.0, 0.0]])
    est = TAG().fit_affinity(a, ["x", "y", "z"])
    assert est.predict([0b011]).tolist() == [[3.0, 1.0, pytest.approx(np.nan, nan_ok=True)]]
    assert est.predict([0b111])[0].tolist() == [4.0, 3.5, 3.0]
    assert est.predict_all().masks.shape == (7,)
    with pytest.raises(InputError, match=r"\(3, 3\) matrix"):
        TAG().fit_affinity(np.zeros((2, 2)), ["x", "y", "z"])
    with pytest.raises(InputError, match="finite"):
        TAG().fit_affinity(np.full((3, 3), np.nan), ["x", "y", "z"])
    scaled = TAG(affinity=a, scale=0.5).fit(_table(3))
    assert scaled.predict([0b111])[0].tolist() == [2.0, 1.75, 1.5]


# -- random grouping baseline ----------------------------------------------------------------------
def plain_random_expectation(masks, select, test, budget, n, alone=False):
    """Exact mean over all covering B-subsets of candidates (what rejection sampling draws);
    ``alone``: over all B-subsets, a task takes 0 unless a member group has a positive gain."""
    full = (1 << n) - 1
    values = []
    for combo in itertools.combinations(range(len(masks)), budget):
        cover = 0
        for i in combo:
            cover |= int(masks[i])
        if cover != full and not alone:
            continue
        total = 0.0
        for j in range(n):
            best, got = (0.0 if alone else -np.inf), 0.0
            for i in combo:
                if int(masks[i]) >> j & 1 and select[i, j] > best:
                    best, got = select[i, j], test[i, j]
            total += got
        values.append(total / n)
    return float(np.mean(values)), float(np.std(values))


@pytest.mark.parametrize("n, budget, alone", [(3, 1, False), (3, 2, False), (3, 3, False),
                                             (4, 2, False), (4, 4, False), (3, 2, True),
                                             (4, 3, True)])
def test_random_matches_exact_enumeration(n, budget, alone):
    sel = _table(n, seed=2)
    test = sel.with_gains(np.where(sel.member(), np.random.default_rng(3).normal(
        size=sel.gains.shape), np.nan))
    test = test.with_gains(np.where(sel.member().sum(axis=1, keepdims=True) == 1, 0.0, test.gains))
    mean, std = plain_random_expectation(sel.masks, sel.gains, test.gains, budget, n, alone)
    trials = 200_000
    got, got_std = random_grouping_scores(sel.masks, sel.gains, test.gains, budget,
                                          n_trials=trials, seed=7,
                                          uncovered="alone" if alone else "singleton")
    # 5 standard errors: fails only if the sampler is biased
    assert abs(got[0] - mean) <= 5 * std / np.sqrt(trials) + 1e-12
    assert got_std[0] == pytest.approx(std, rel=0.05, abs=1e-9)


def test_random_seeded_and_alone_mode():
    sel = _table(5, seed=4)
    a = random_grouping_scores(sel.masks, sel.gains, sel.gains, [1, 2, 3], n_trials=5000, seed=1)
    b = random_grouping_scores(sel.masks, sel.gains, sel.gains, [1, 2, 3], n_trials=5000, seed=1)
    c = random_grouping_scores(sel.masks, sel.gains, sel.gains, [1, 2, 3], n_trials=5000, seed=2)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0][1:], c[0][1:])
    # only pairs: one group can never cover 5 tasks -> clear error; "alone" accepts any draw
    pairs = sel.select(masks_to_dense(sel.masks, 5).sum(axis=1) == 2)
    with pytest.raises(InputError, match="too rare"):
        random_grouping_scores(pairs.masks, pairs.gains, pairs.gains, 1, n_trials=100,
                               max_tries=50)
    alone = random_grouping_scores(pairs.masks, pairs.gains, pairs.gains, 1, n_trials=2000,
                                   uncovered="alone")
    assert np.isfinite(alone[0][0])
    est = RandomGrouping(n_trials=3000, seed=1).fit(sel)
    assert np.array_equal(est.score(sel, [1, 2, 3]), random_grouping_scores(
        sel.masks, sel.gains, sel.gains, [1, 2, 3], n_trials=3000, seed=1)[0])
    with pytest.raises(InputError, match="exceeds"):
        random_grouping_scores(sel.masks[:3], sel.gains[:3], sel.gains[:3], 40, n_trials=10)


def test_import_mtgfast_stays_light():
    code = ("import sys, mtgfast, mtgfast.gains, mtgfast.store, mtgfast.replay, mtgfast.cli, "
            "mtgfast.estimators, mtgfast.estimators.hoa, mtgfast.baselines\n"
            "bad = [m for m in ('torch', 'numba', 'triton', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
