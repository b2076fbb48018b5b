"""PairPriorMTGNet: the pooled pair prior, the residual fit, and the mtgnet-prior replay variant."""

from __future__ import annotations

import numpy as np
import pytest

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
