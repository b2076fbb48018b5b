"""study/final.py: the gains the final grouping is chosen on (replay and Study share it), the
empirical-Bayes shrinkage of measured gains, MTGNet's out-of-fold estimates and the committee
sampler that feeds on ensemble members."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.grouping import group
from mtgfast.masks import masks_to_dense, popcount
from mtgfast.study.active import SelectionContext
from mtgfast.study.final import (MIN_RESIDUALS, final_gains, out_of_fold_residuals,
                                 shrunk_measured_gains)
from mtgfast.study.sampling import SearchSelector
from _problems import full_random_table


def _measured(truth: GainTable, rng: np.random.Generator, k: int) -> GainTable:
    """Singletons, the full set and k random other combinations of ``truth``."""
    n = truth.n_tasks
    size = popcount(truth.masks)
    full = (1 << n) - 1
    multi = truth.masks[(size >= 2) & (truth.masks != full)]
    pick = rng.choice(multi, size=min(k, multi.size), replace=False)
    keep = (size == 1) | (truth.masks == full) | np.isin(truth.masks, pick)
    return truth.select(keep)


def _reference(masks, measured: GainTable, final: str, estimate=None) -> np.ndarray:
    """Row by row: what each final choice means."""
    n = measured.n_tasks
    known = {int(m): measured.gains[i] for i, m in enumerate(measured.masks.tolist())}
    lowest = min([0.0] + [float(v) for row in known.values() for v in row if np.isfinite(v)])
    out = np.full((len(masks), n), np.nan)
    for i, m in enumerate(np.asarray(masks).tolist()):
        tasks = [j for j in range(n) if m >> j & 1]
        for j in tasks:
            if m in known:
                out[i, j] = known[m][j]
            elif final == "estimate":
                out[i, j] = estimate[i, j]
            else:
                out[i, j] = 0.0 if len(tasks) == 1 else lowest - 1.0
    return out


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 6), seed=st.integers(0, 10_000), k=st.integers(0, 12),
       final=st.sampled_from(["estimate", "measured"]))
def test_final_gains_matches_the_row_by_row_reference(n, seed, k, final) -> None:
    truth = full_random_table(n, seed)
    rng = np.random.default_rng(seed)
    measured = _measured(truth, rng, k)
    estimate = np.where(truth.member(), rng.normal(0, 0.1, truth.gains.shape), np.nan)
    got = final_gains(truth.masks, measured, final, estimate=estimate)
    np.testing.assert_array_equal(got, _reference(truth.masks, measured, final, estimate))
    if final == "measured":
        # no search at any budget picks a group that was not measured
        for g in group(truth.masks, got, list(range(1, n + 1))):
            for m in g.groups.tolist():
                assert popcount(np.array([m], np.uint64))[0] == 1 or m in measured.masks


class _FakeNet:
    """An estimator with known out-of-fold estimates and spread (to test the shrinkage)."""

    def __init__(self, oof: GainTable, count: int, std: float) -> None:
        self.oof, self.count, self.std = oof, count, std

    def predict_held_out(self, masks):
        m = np.asarray(masks, dtype=np.uint64)
        return self.oof.lookup(m), np.full(m.size, self.count, dtype=np.int64)

    def predict(self, masks, return_std=False):
        m = np.asarray(masks, dtype=np.uint64)
        mean = self.oof.lookup(m)
        return (mean, np.where(np.isfinite(mean), self.std, np.nan)) if return_std else mean


def test_shrinkage_weights_are_the_empirical_bayes_ones() -> None:
    n = 4
    truth = full_random_table(n, seed=5)
    measured = _measured(truth, np.random.default_rng(0), 8)
    unmeasured = truth.masks[~np.isin(truth.masks, measured.masks)]
    rng = np.random.default_rng(1)
    noisy = GainTable(truth.masks, truth.gains + np.where(truth.member(), rng.normal(
        0, 0.05, truth.gains.shape), np.nan), truth.task_names)
    # exact estimates: no residual, so no noise to shrink away
    same = shrunk_measured_gains(measured, _FakeNet(measured_as(truth, measured), 2, 0.01),
                                 unmeasured)
    np.testing.assert_array_equal(same, measured.gains)
    # noisy estimates: per task, weight m2 / (m2 + max(mean r^2 - m2, 0)) on the measurement
    std = 0.02
    got = shrunk_measured_gains(measured, _FakeNet(noisy, 1, std), unmeasured)
    multi = popcount(measured.masks) >= 2
    y = measured.gains[multi]
    oof = noisy.lookup(measured.masks[multi])
    for j in range(n):
        col = np.isfinite(y[:, j])
        r = (y - oof)[col, j]
        if r.size < MIN_RESIDUALS:
            np.testing.assert_array_equal(got[multi][:, j], y[:, j])
            continue
        noise = max(np.mean(r ** 2) - std ** 2, 0.0)
        w = std ** 2 / (std ** 2 + noise)
        np.testing.assert_allclose(got[multi][col, j], w * y[col, j] + (1 - w) * oof[col, j])
    np.testing.assert_array_equal(got[~multi], measured.gains[~multi])   # singletons stay 0
    # the shrunk choice still lets only measured groups in
    g = final_gains(truth.masks, measured, "shrunk", estimator=_FakeNet(noisy, 1, std))
    for b in group(truth.masks, g, [1, 2, 3, 4]):
        assert all(m in measured.masks or popcount(np.array([m], np.uint64))[0] == 1
                   for m in b.groups.tolist())


class _SomeHeldOut:
    """Out-of-fold estimates = measured gain + 0.1 * row index, held out by 0..2 members."""

    def __init__(self, known: GainTable, seed: int) -> None:
        self.known = known
        self.count = np.random.default_rng(seed).integers(0, 3, len(known))

    def predict_held_out(self, masks):
        rows = self.known.index_of(np.asarray(masks, dtype=np.uint64))
        out = self.known.gains[rows] + 0.1 * rows[:, None]
        out[self.count[rows] == 0] = np.nan
        return out, self.count[rows].astype(np.int64)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 6), seed=st.integers(0, 10_000), k=st.integers(0, 12))
def test_out_of_fold_residuals_match_the_row_by_row_reference(n, seed, k) -> None:
    measured = _measured(full_random_table(n, seed), np.random.default_rng(seed), k)
    est = _SomeHeldOut(measured, seed)
    got = out_of_fold_residuals(measured, est)
    rows = [r for r, m in enumerate(measured.masks.tolist()) if bin(m).count("1") >= 2]
    np.testing.assert_array_equal(got.rows, rows)
    for i, r in enumerate(rows):
        assert got.held[i] == est.count[r]
        for j in range(n):
            inside = int(measured.masks[r]) >> j & 1
            want = 0.0 - 0.1 * r if inside and est.count[r] > 0 else np.nan
            np.testing.assert_allclose(got.residual[i, j], want, rtol=0, atol=1e-12)
    with pytest.raises(InputTypeError, match="predict_held_out"):
        out_of_fold_residuals(measured, object())


def measured_as(truth: GainTable, measured: GainTable) -> GainTable:
    """``truth`` with the measured rows' gains replaced by the measurements."""
    g = truth.gains.copy()
    rows = truth.index_of(measured.masks)
    g[rows] = measured.gains
    return GainTable(truth.masks, g, truth.task_names)


def test_final_gains_arguments_are_checked() -> None:
    truth = full_random_table(3, seed=0)
    measured = _measured(truth, np.random.default_rng(0), 2)
    with pytest.raises(InputError, match="final must be one of"):
        final_gains(truth.masks, measured, "best")
    with pytest.raises(InputTypeError, match="measured must be a GainTable"):
        final_gains(truth.masks, truth.gains, "measured")
    with pytest.raises(InputError, match="needs estimate="):
        final_gains(truth.masks, measured, "estimate")
    with pytest.raises(InputError, match="estimate has shape"):
        final_gains(truth.masks, measured, "estimate", estimate=np.zeros((2, 3)))
    with pytest.raises(InputError, match="needs estimator="):
        final_gains(truth.masks, measured, "shrunk")
    with pytest.raises(InputTypeError, match="predict_held_out"):
        final_gains(truth.masks, measured, "shrunk", estimator=object())


def test_mtgnet_held_out_estimates_come_from_the_members_that_held_the_row_out() -> None:
    from mtgfast.estimators.mtgnet import MTGNet

    truth = full_random_table(5, seed=2)
    train = _measured(truth, np.random.default_rng(3), 20)
    est = MTGNet(seed=1, max_epochs=30, n_estimators=3).fit(train)
    multi = train.masks[popcount(train.masks) >= 2]
    assert all(h.size == est.n_holdout_ == int(0.2 * multi.size) for h in est.held_out_)
    assert all(np.isin(h, multi).all() for h in est.held_out_)
    oof, count = est.predict_held_out(train.masks)
    members = est.predict_members(train.masks)
    for i, m in enumerate(train.masks.tolist()):
        who = [k for k, h in enumerate(est.held_out_) if m in h.tolist()]
        assert count[i] == len(who)
        if who:
            np.testing.assert_allclose(oof[i], members[who, i].mean(axis=0), rtol=1e-5)  # float32
        else:
            assert np.isnan(oof[i]).all()


class _Committee:
    """Members that disagree: member 0 prefers {0,2},{1,3}; the mean prefers {0,1},{2,3}."""

    def __init__(self, cands: np.ndarray, mean: np.ndarray, other: np.ndarray) -> None:
        self.cands, self.mean, self.other = cands, mean, other

    def predict_members(self, masks):
        assert np.array_equal(np.asarray(masks), self.cands)
        return np.stack([self.other, self.mean, self.mean])


class _Loop:
    def __init__(self, known: GainTable, est: object) -> None:
        self.known, self.estimator_ = known, est

    def table(self) -> GainTable:
        return self.known


def test_the_committee_also_verifies_the_groups_a_member_would_choose() -> None:
    n = 4
    cands = np.array([0b0011, 0b1100, 0b0101, 0b1010, 0b0111], dtype=np.uint64)
    member = masks_to_dense(cands, n)
    mean = np.where(member, -0.05, np.nan)
    mean[0, [0, 1]] = 0.10
    mean[1, [2, 3]] = 0.08
    mean[4, [0, 1, 2]] = 0.01            # the free-slot fill-in when no search wants more
    other = np.where(member, -0.05, np.nan)
    other[2, [0, 2]] = 0.12
    other[3, [1, 3]] = 0.11
    singles = np.uint64(1) << np.arange(n, dtype=np.uint64)
    full = np.uint64(0b1111)
    known = GainTable(np.concatenate([singles, [full]]),
                      np.vstack([np.where(np.eye(n, dtype=bool), 0.0, np.nan),
                                 np.full((1, n), -0.2)]), tuple("abcd"))
    ctx = SelectionContext((0, 1, 2, 3), cands, member, mean, np.zeros_like(mean),
                           known.masks, 0, (0, 0, 0, 0))
    loop = _Loop(known, _Committee(cands, mean, other))
    plain = SearchSelector(kappa=0.0).bind(loop).ask(ctx)
    assert {0b0011, 0b1100} <= set(plain.tolist()) and 0b0101 not in plain.tolist()
    both = SearchSelector(kappa=0.0, committee=True).bind(loop).ask(ctx)
    assert {0b0011, 0b1100, 0b0101, 0b1010} == set(both.tolist())
    # the mean's groups (3 of 4 searches) come before the dissenting member's
    assert set(both[:2].tolist()) == {0b0011, 0b1100}
    # the mean weighted as 5 members: its groups first, the member's only in slots left free
    heavy = SearchSelector(kappa=0.0, committee=True, mean_votes=5.0).bind(loop).ask(ctx)
    assert set(heavy[:2].tolist()) == {0b0011, 0b1100} and 0b0101 in heavy.tolist()
    # committee_rounds=1: from the second round on, the mean's searches alone
    later = SelectionContext((0, 1, 2, 3), cands, member, mean, np.zeros_like(mean),
                             known.masks, 0, (1, 1, 1, 1))
    first = SearchSelector(kappa=0.0, committee=True, committee_rounds=1).bind(loop)
    assert set(first.ask(ctx).tolist()) == set(both.tolist())
    assert first.ask(later).tolist() == SearchSelector(kappa=0.0).bind(loop).ask(later).tolist()
    with pytest.raises(InputError, match="committee_rounds"):
        SearchSelector(committee=True, committee_rounds=0)
    with pytest.raises(InputTypeError, match="committee"):
        SearchSelector(committee=1)
    with pytest.raises(InputError, match="mean_votes"):
        SearchSelector(committee=True, mean_votes=-1.0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 5), seed=st.integers(0, 10_000), k=st.integers(3, 12),
       level=st.sampled_from([0.0, 1e-4, 4e-3]))
def test_shrinkage_with_replicate_noise_matches_the_per_task_reference(n, seed, k,
                                                                       level) -> None:
    truth = full_random_table(n, seed)
    rng = np.random.default_rng(seed)
    measured = _measured(truth, rng, k)
    unmeasured = truth.masks[~np.isin(truth.masks, measured.masks)]
    noisy = GainTable(truth.masks, truth.gains + np.where(truth.member(), rng.normal(
        0, 0.05, truth.gains.shape), np.nan), truth.task_names)
    size = popcount(truth.masks)
    var = np.where(truth.member(), np.where(size[:, None] >= 2, level * rng.uniform(
        0.5, 1.5, truth.gains.shape), 0.0), np.nan)
    noise = GainTable(truth.masks, var, truth.task_names)
    std = 0.02
    got = shrunk_measured_gains(measured, _FakeNet(noisy, 1, std), unmeasured, noise)
    multi = popcount(measured.masks) >= 2
    y = measured.gains[multi]
    oof = noisy.lookup(measured.masks[multi])
    nv = noise.lookup(measured.masks[multi])
    for j in range(n):
        col = np.isfinite(y[:, j])
        r = (y - oof)[col, j]
        nz = float(np.mean(nv[col, j])) if col.any() else 0.0
        if r.size < MIN_RESIDUALS or nz <= 0:
            np.testing.assert_array_equal(got[multi][:, j], y[:, j])
            continue
        # the spread on the unmeasured candidates holding j (0 where none does)
        m2 = std ** 2 if any(m >> j & 1 for m in unmeasured.tolist()) else 0.0
        err = max(float(np.mean(r ** 2)) - nz, m2)   # model error, the noise identified
        w = err / (err + nz)
        np.testing.assert_allclose(got[multi][col, j], w * y[col, j] + (1 - w) * oof[col, j])
    np.testing.assert_array_equal(got[~multi], measured.gains[~multi])
    # through final_gains: the same shrunk gains of the measured rows
    g = final_gains(truth.masks, measured, "shrunk", estimator=_FakeNet(noisy, 1, std),
                    noise=noise)
    np.testing.assert_array_equal(g[truth.index_of(measured.masks[multi])], got[multi])


def test_replicate_noise_arguments_are_checked() -> None:
    truth = full_random_table(3, 1)
    measured = _measured(truth, np.random.default_rng(0), 3)
    net = _FakeNet(truth, 1, 0.01)
    with pytest.raises(InputTypeError, match="noise must be a GainTable"):
        shrunk_measured_gains(measured, net, None, noise=np.zeros(3))   # type: ignore[arg-type]
    neg = GainTable(truth.masks, np.where(truth.member(), -1.0, np.nan), truth.task_names)
    with pytest.raises(InputError, match="variances"):
        shrunk_measured_gains(measured, net, None, noise=neg)
    other = full_random_table(4, 1)
    with pytest.raises(InputError, match="noise has 4 tasks"):
        shrunk_measured_gains(measured, net, None, noise=other)


def test_replay_mtgnet_repshrunk_needs_and_uses_the_replicate_noise() -> None:
    import torch

    from mtgfast.generate import synthetic_gain_tables
    from mtgfast.study.replay_methods import replay_method

    small = {"dim": 16, "ffn_dim": 16, "n_estimators": 3, "max_epochs": 60, "patience": 15}
    syn = synthetic_gain_tables(5, n_random=None, seed=1, valid_noise=0.05, replicates=2)
    assert syn.valid_var is not None
    with pytest.raises(InputTypeError, match="needs noise="):
        replay_method("mtgnet-repshrunk", syn.valid, seed=0, rounds=1, **small)
    with pytest.raises(InputError, match="noise= is for"):
        replay_method("mtgnet", syn.valid, seed=0, rounds=1, noise=syn.valid_var, **small)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, used = replay_method("mtgnet-repshrunk", syn.valid, seed=0, rounds=1,
                                noise=syn.valid_var, **small)
        b, _ = replay_method("mtgnet-shrunk", syn.valid, seed=0, rounds=1, **small)
        zero = GainTable(syn.valid.masks, np.where(syn.valid.member(), 0.0, np.nan),
                         syn.valid.task_names)
        c, _ = replay_method("mtgnet-repshrunk", syn.valid, seed=0, rounds=1, noise=zero,
                             **small)
    finally:
        torch.set_num_threads(old)
    assert used == 1 + syn.valid.n_tasks
    # the same loop (same measured rows); a zero noise leaves the measurements as they are
    measured = np.isin(syn.valid.masks, syn.valid.masks[np.isfinite(a).any(axis=1)])
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    multi = (popcount(syn.valid.masks) >= 2) & measured
    rows = multi & (a > -0.5).all(axis=1, where=syn.valid.member())   # measured, not floored
    np.testing.assert_allclose(c[rows], syn.valid.gains[rows])
    assert not np.allclose(a[rows], syn.valid.gains[rows])           # the noise shrank them
