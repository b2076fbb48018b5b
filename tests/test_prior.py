"""PairPriorMTGNet and TablePriorMTGNet: the priors, the residual fits, the replay variants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import masks_to_dense

SMALL = {"dim": 16, "ffn_dim": 16, "n_estimators": 2, "max_epochs": 60, "patience": 15}


def _reference_pairs(table: GainTable) -> np.ndarray:
    """Loop reference of pooled_pair_matrix."""
    n = table.n_tasks
    member = masks_to_dense(table.masks, n)
    num = np.zeros((n, n))
    den = np.zeros((n, n))
    for r in range(len(table)):
        idx = np.flatnonzero(member[r])
        if idx.size < 2:
            continue
        w = 1.0 / (idx.size - 1)
        for j in idx:
            if not np.isfinite(table.gains[r, j]):
                continue
            for k in idx:
                if k != j:
                    num[j, k] += w * table.gains[r, j]
                    den[j, k] += w
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def test_pooled_pairs_match_reference_and_hoa() -> None:
    from mtgfast.estimators.base import pair_matrix
    from mtgfast.estimators.prior import pooled_pair_matrix

    syn = synthetic_gain_tables(6, n_random=None, seed=3)
    v = syn.valid
    rng = np.random.default_rng(0)
    rows = rng.choice(len(v), 25, replace=False)
    sub = GainTable(v.masks[rows], v.gains[rows], v.task_names, {})
    np.testing.assert_allclose(pooled_pair_matrix(sub), _reference_pairs(sub), atol=1e-12)
    # only the pairs measured: the prior is HOA's pair matrix
    pairs = np.flatnonzero(masks_to_dense(v.masks, 6).sum(axis=1) == 2)
    ptab = GainTable(v.masks[pairs], v.gains[pairs], v.task_names, {})
    np.testing.assert_allclose(pooled_pair_matrix(ptab), pair_matrix(ptab), atol=1e-12)
    # max_size=2 on the whole table: only its pair rows count
    np.testing.assert_allclose(pooled_pair_matrix(v, 2), pair_matrix(ptab), atol=1e-12)
    assert not np.allclose(pooled_pair_matrix(v), pair_matrix(ptab))


def test_prior_fit_predicts_prior_plus_residual() -> None:
    from mtgfast.estimators.hoa import aggregate_pairs
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import PairPriorMTGNet

    syn = synthetic_gain_tables(6, n_random=None, seed=3)
    v = syn.valid
    n = v.n_tasks
    size = masks_to_dense(v.masks, n).sum(axis=1)
    rows = np.flatnonzero((size == 2) | (size == n))        # all pairs and the full set
    train = GainTable(v.masks[rows], v.gains[rows], v.task_names, {})
    est = PairPriorMTGNet(MTGNet(seed=0, **SMALL)).fit(train)
    mean, std = est.predict(v.masks, return_std=True)
    member = v.member()
    assert np.all(np.isnan(mean[~member])) and np.all(np.isfinite(mean[member]))
    assert np.all(std[member] >= 0)
    prior = aggregate_pairs(v.masks, est.pairs_)
    np.testing.assert_allclose(mean[member],
                               (est.model_.predict(v.masks) + prior)[member], atol=1e-12)
    np.testing.assert_allclose(est.predict_members(v.masks).mean(axis=0)[member],
                               mean[member], atol=1e-9)
    # with all pairs measured the prior is informative: it beats predicting 0 on the rest
    rest = np.setdiff1d(np.arange(len(v)), rows)
    rest = rest[size[rest] >= 2]
    err = np.nanmean((mean[rest] - v.gains[rest]) ** 2)
    assert err < np.nanmean(v.gains[rest] ** 2)
    # shrink = 0: exactly the plain network (same seed, same targets)
    plain = MTGNet(seed=0, **SMALL).fit(train).predict(v.masks)
    zero = PairPriorMTGNet(MTGNet(seed=0, **SMALL), shrink=0.0).fit(train).predict(v.masks)
    np.testing.assert_allclose(zero[member], plain[member], atol=1e-12)


def test_prior_bad_input() -> None:
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import PairPriorMTGNet

    syn = synthetic_gain_tables(4, n_random=None, seed=0)
    with pytest.raises(InputTypeError, match="model must be an MTGNet"):
        PairPriorMTGNet(model="net").fit(syn.valid)
    with pytest.raises(InputError, match="shrink must be"):
        PairPriorMTGNet(MTGNet(**SMALL), shrink=2.0).fit(syn.valid)
    with pytest.raises(InputError, match="max_size must be"):
        PairPriorMTGNet(MTGNet(**SMALL), max_size=1).fit(syn.valid)
    with pytest.raises(InputError, match="not fitted"):
        PairPriorMTGNet().predict([3])


def test_replay_mtgnet_prior_runs_warm() -> None:
    import torch

    from mtgfast.study.replay_methods import replay_method

    syn = synthetic_gain_tables(5, n_random=None, seed=1)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats: dict[str, list[float]] = {}
        pred, used = replay_method("mtgnet-prior", syn.valid, seed=0, rounds=1, stats=stats,
                                   **SMALL)
    finally:
        torch.set_num_threads(old)
    assert used == 1 + syn.valid.n_tasks
    member = syn.valid.member()
    assert np.all(np.isfinite(pred[member])) and np.all(np.isnan(pred[~member]))
    assert len(stats["fit_s"]) >= 2
    with pytest.raises(InputError, match="shrink is an option of"):
        replay_method("mtgnet", syn.valid, seed=0, shrink=0.5)


def _reference_slopes(table: GainTable, prior: GainTable, shrink_rows: float) -> np.ndarray:
    """Loop reference of TablePriorMTGNet's per-task slope."""
    n = table.n_tasks
    member = masks_to_dense(table.masks, n)
    out = np.zeros(n)
    for j in range(n):
        xs, ys = [], []
        for r in range(len(table)):
            if member[r, j] and member[r].sum() >= 2 and np.isfinite(table.gains[r, j]):
                i = int(prior.index_of(table.masks[r:r + 1])[0])
                x = prior.gains[i, j] if i >= 0 else 0.0
                xs.append(x if np.isfinite(x) else 0.0)
                ys.append(table.gains[r, j])
        x, y = np.array(xs), np.array(ys)
        if x.size and (x * x).sum() > 0:
            out[j] = (x * y).sum() / ((x * x).sum() + shrink_rows * (x * x).mean())
    return out


@given(st.integers(0, 10_000), st.floats(0.0, 10.0), st.integers(3, 6))
@settings(max_examples=25, deadline=None)
def test_table_prior_slopes_match_the_loop_reference(seed: int, shrink_rows: float,
                                                     n: int) -> None:
    from mtgfast.estimators.prior import prior_slopes

    rng = np.random.default_rng(seed)
    syn = synthetic_gain_tables(n, n_random=None, seed=seed % 7)
    v = syn.valid
    keep = rng.random(len(v)) < 0.6
    keep[-1] = True                                          # some combination of >= 2 tasks
    train = GainTable(v.masks[keep], v.gains[keep], v.task_names, {})
    # a prior on a subset of the rows (the others count as 0), in its own unit
    sub = rng.random(len(v)) < 0.8
    pg = np.where(v.member(), rng.normal(0, 3, v.gains.shape), np.nan)
    prior = GainTable(v.masks[sub], pg[sub], v.task_names, {})
    np.testing.assert_allclose(prior_slopes(train, prior, shrink_rows),
                               _reference_slopes(train, prior, shrink_rows), atol=1e-12)


def test_table_prior_fit_scales_the_prior_and_ignores_a_useless_one() -> None:
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import TablePriorMTGNet

    syn = synthetic_gain_tables(6, n_random=None, seed=3)
    v = syn.valid
    member = v.member()
    # an informative prior in another unit: 10x the truth
    good = GainTable(v.masks, syn.truth.lookup(v.masks) * 10.0, v.task_names, {})
    quick = {**SMALL, "max_epochs": 30}
    est = TablePriorMTGNet(MTGNet(seed=0, **quick), good, shrink_rows=0.0).fit(v)
    np.testing.assert_allclose(est.slope_, _reference_slopes(v, good, 0.0), atol=1e-12)
    assert np.all(np.abs(est.slope_ - 0.1) < 0.03)           # it learns the unit back
    mean, std = est.predict(v.masks, return_std=True)
    assert np.all(np.isnan(mean[~member])) and np.all(np.isfinite(mean[member]))
    single = member.sum(axis=1) == 1
    assert np.all(mean[single][member[single]] == 0.0)
    prior = np.where(member, good.lookup(v.masks) * est.slope_[None], np.nan)
    prior[single] = np.where(member[single], 0.0, np.nan)
    np.testing.assert_allclose(mean[member], (est.model_.predict(v.masks) + prior)[member],
                               atol=1e-12)
    np.testing.assert_allclose(est.predict_members(v.masks).mean(axis=0)[member],
                               mean[member], atol=1e-9)
    # a prior independent of the gains gets a slope near 0 (shrunk by shrink_rows)
    noise = GainTable(v.masks, np.where(member, np.random.default_rng(0).normal(
        0, 1, v.gains.shape), np.nan), v.task_names, {})
    useless = TablePriorMTGNet(MTGNet(seed=0, **quick), noise, shrink_rows=3.0).fit(v)
    multi = member & (member.sum(axis=1) >= 2)[:, None]

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x[multi] ** 2)))

    assert rms(good.gains * est.slope_) > 0.8 * rms(v.gains)
    assert rms(noise.gains * useless.slope_) < 0.5 * rms(v.gains)


def test_table_prior_bad_input() -> None:
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import TablePriorMTGNet

    syn = synthetic_gain_tables(4, n_random=None, seed=0)
    with pytest.raises(InputTypeError, match="prior must be a GainTable"):
        TablePriorMTGNet(MTGNet(**SMALL), None).fit(syn.valid)
    with pytest.raises(InputTypeError, match="model must be an MTGNet"):
        TablePriorMTGNet("net", syn.valid).fit(syn.valid)
    with pytest.raises(InputError, match="shrink_rows must be"):
        TablePriorMTGNet(MTGNet(**SMALL), syn.valid, shrink_rows=-1).fit(syn.valid)
    other = synthetic_gain_tables(5, n_random=None, seed=0).valid
    with pytest.raises(InputError, match="prior has 5 tasks"):
        TablePriorMTGNet(MTGNet(**SMALL), other).fit(syn.valid)
    with pytest.raises(InputError, match="not fitted"):
        TablePriorMTGNet(None, syn.valid).predict([3])


def test_replay_mtgnet_tag_and_final_measured() -> None:
    import torch

    from mtgfast.grouping import group
    from mtgfast.study.replay_methods import replay_method

    syn = synthetic_gain_tables(6, n_random=None, seed=2)
    v = syn.valid
    tag = GainTable(v.masks, np.where(v.member(), syn.truth.lookup(v.masks), np.nan),
                    v.task_names, {})
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pred, used = replay_method("mtgnet-tag", v, seed=0, rounds=1, prior=tag, **SMALL)
        fin, used2 = replay_method("mtgnet-plain", v, seed=0, rounds=1, **SMALL)
        # the network alone (the default of passes 5-14; the default blends it with ridge) =
        # mtgnet-estimate's loop (no committee, fifth pass), final="measured"
        explicit, _ = replay_method("mtgnet-estimate", v, seed=0, rounds=1, final="measured",
                                    **SMALL)
        est, _ = replay_method("mtgnet-estimate", v, seed=0, rounds=1, **SMALL)
        blind, _ = replay_method("mtgnet-plain", v, seed=0, rounds=1, use_measured=False,
                                 **SMALL)
    finally:
        torch.set_num_threads(old)
    member = v.member()
    assert used == used2 == 1 + v.n_tasks
    assert np.all(np.isfinite(pred[member])) and np.all(np.isnan(pred[~member]))
    # final="measured": the measured rows keep their gains (as in the default), every other
    # combination of >= 2 tasks is below 0, so every group the search picks was measured
    size = member.sum(axis=1)
    measured = np.all(np.where(member, fin == v.gains, True), axis=1) & (size >= 2)
    assert measured.sum() == used2
    np.testing.assert_array_equal(fin, explicit)
    np.testing.assert_array_equal(fin[measured], est[measured])
    # the old default (mtgnet-estimate) keeps the estimates of the unmeasured rows
    assert np.all(est[~measured & (size >= 2)][member[~measured & (size >= 2)]] > -1.0)
    assert np.any(est[~measured & (size >= 2)] != fin[~measured & (size >= 2)])
    # without measured gains (an ablation) every row is the estimate, the default falls back
    assert np.all(np.isfinite(blind[member])) and np.any(blind[measured] != fin[measured])
    assert np.all(fin[~measured & (size >= 2)][member[~measured & (size >= 2)]] < 0)
    picked = {int(m) for g in group(v.masks, fin, list(range(1, 7))) for m in g.groups}
    meas = {int(m) for m in v.masks[measured]}
    assert {m for m in picked if m & (m - 1)} <= meas
    with pytest.raises(InputError, match="needs use_measured=True"):
        replay_method("mtgnet", v, seed=0, final="measured", use_measured=False)
    with pytest.raises(InputError, match="final must be one of"):
        replay_method("mtgnet", v, seed=0, final="best")
    with pytest.raises(InputTypeError, match="needs prior="):
        replay_method("mtgnet-tag", v, seed=0)
    with pytest.raises(InputError, match="prior= is for"):
        replay_method("mtgnet", v, seed=0, prior=tag)
    with pytest.raises(InputError, match="shrink_rows is an option of"):
        replay_method("mtgnet", v, seed=0, shrink_rows=1.0)
