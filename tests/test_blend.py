"""BlendMTGNet: the base's leave-one-out, the out-of-fold weight, the blend, the replay variant."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from _problems import measured_subset

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import masks_to_dense

SMALL = {"dim": 16, "ffn_dim": 16, "n_estimators": 3, "max_epochs": 60, "patience": 15}


def _reference_loo(table: GainTable, max_size: int | None) -> np.ndarray:
    """Row by row: pool the table without row r, aggregate row r (the definition)."""
    from mtgfast.estimators.hoa import aggregate_pairs
    from mtgfast.estimators.prior import pooled_pair_matrix

    out = np.full(table.gains.shape, np.nan)
    for r in range(len(table)):
        keep = np.arange(len(table)) != r
        rest = GainTable(table.masks[keep], table.gains[keep], table.task_names, {})
        p = pooled_pair_matrix(rest, max_size) if keep.any() else \
            np.zeros((table.n_tasks, table.n_tasks))
        out[r] = aggregate_pairs(table.masks[r:r + 1], p, backend="numpy")[0]
    return out


def _random_table(seed: int, n: int, rows: int) -> GainTable:
    rng = np.random.default_rng(seed)
    masks = np.unique(rng.integers(1, 1 << n, rows).astype(np.uint64))
    member = masks_to_dense(masks, n)
    gains = rng.normal(0.0, 0.05, member.shape)
    gains[member.sum(axis=1) == 1] = 0.0
    gains[~member] = np.nan
    return GainTable(masks, gains, tuple(f"t{j}" for j in range(n)), {})


@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 40),
       st.sampled_from([None, 2, 3]))
@settings(max_examples=40, deadline=None)
def test_pooled_pair_loo_matches_the_row_by_row_reference(seed: int, n: int, rows: int,
                                                          max_size: int | None) -> None:
    from mtgfast.estimators.blend import pooled_pair_loo

    t = _random_table(seed, n, rows)
    got = pooled_pair_loo(t, max_size)
    want = _reference_loo(t, max_size)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), atol=1e-12)


@given(st.integers(0, 10_000), st.integers(1, 30))
@settings(max_examples=40, deadline=None)
def test_blend_weight_is_the_least_squares_alpha_in_0_1(seed: int, size: int) -> None:
    from mtgfast.estimators.blend import blend_weight

    rng = np.random.default_rng(seed)
    y, net, base = (rng.normal(0, 1, size) for _ in range(3))
    net[rng.random(size) < 0.2] = np.nan
    net[0] = rng.normal(0, 1)            # at least one entry to fit on
    a = blend_weight(y, net, base)
    assert 0.0 <= a <= 1.0
    ok = np.isfinite(net)

    def loss(x: float) -> float:
        return float(np.sum((y - x * net - (1 - x) * base)[ok] ** 2))

    grid = np.linspace(0, 1, 1001)
    assert loss(a) <= min(loss(x) for x in grid) + 1e-9
    # the network equal to the truth: all of its weight; the base equal to it: none
    assert blend_weight(y, y, base) == pytest.approx(1.0)
    if np.any(np.isfinite(net) & (net != y)):
        assert blend_weight(y, net, y) == pytest.approx(0.0)
    assert blend_weight(y, base, base) == 1.0             # nothing to decide: the network
    assert blend_weight(y, np.full(size, np.nan), base) == 1.0


def test_blend_fixed_weights_are_the_network_and_the_base() -> None:
    from mtgfast.estimators.blend import BlendMTGNet
    from mtgfast.estimators.hoa import aggregate_pairs
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import pooled_pair_matrix

    syn = synthetic_gain_tables(5, n_random=None, seed=3)
    v = syn.valid
    sub = measured_subset(v, 14, seed=1)
    net = MTGNet(**SMALL, seed=4).fit(sub)
    one = BlendMTGNet(MTGNet(**SMALL, seed=4), alpha=1.0).fit(sub)
    np.testing.assert_array_equal(one.predict(v.masks), net.predict(v.masks))
    zero = BlendMTGNet(MTGNet(**SMALL, seed=4), alpha=0.0).fit(sub)
    base = aggregate_pairs(v.masks, pooled_pair_matrix(sub), backend="numpy")
    np.testing.assert_allclose(zero.predict(v.masks), base, atol=1e-12)
    mean, std = zero.predict(v.masks, return_std=True)
    assert np.all(std[v.member()] == 0.0)                # the base has no spread


def test_blend_fitted_weight_spread_members_and_held_out() -> None:
    from mtgfast.estimators.blend import BlendMTGNet, blend_weight, pooled_pair_loo
    from mtgfast.estimators.mtgnet import MTGNet

    syn = synthetic_gain_tables(6, n_random=None, seed=5)
    v = syn.valid
    sub = measured_subset(v, 30, seed=2)
    est = BlendMTGNet(MTGNet(**SMALL, seed=1)).fit(sub)
    a = est.alpha_
    assert 0.0 <= a <= 1.0 and est.n_alpha_rows_ >= 1
    # the weight is the least-squares one on the network's out-of-fold rows against the base's
    # leave-one-out
    multi = np.flatnonzero(sub.member().sum(axis=1) >= 2)
    oof, count = est.model_.predict_held_out(sub.masks[multi])
    held = count > 0
    assert a == blend_weight(sub.gains[multi][held], oof[held],
                             pooled_pair_loo(sub)[multi][held])
    mean, std = est.predict(v.masks, return_std=True)
    nmean, nstd = est.model_.predict(v.masks, return_std=True)
    np.testing.assert_allclose(std, a * nstd, atol=1e-12)
    np.testing.assert_allclose(mean, a * nmean + (1 - a) * est.base(v.masks), atol=1e-12)
    np.testing.assert_allclose(est.predict_members(v.masks).mean(axis=0), mean, atol=1e-9)
    bo, bc = est.predict_held_out(sub.masks[multi])
    np.testing.assert_array_equal(bc, count)
    np.testing.assert_allclose(bo[held], (a * oof + (1 - a) * pooled_pair_loo(sub)[multi])[held],
                               atol=1e-12)
    # warm start from a fitted blend continues its network
    warm = BlendMTGNet(MTGNet(**SMALL, seed=1, warm_start_from=est)).fit(sub)
    assert warm.model_.warm_start_from is est.model_


def test_wrappers_never_refit_the_network_object_they_were_given() -> None:
    # a study rebuilds its estimator from get_params() at every refit, so successive refits (and
    # the user) share the network object given: each fit must train its own copy of it
    from mtgfast.estimators.blend import BlendMTGNet
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.prior import PairPriorMTGNet

    syn = synthetic_gain_tables(5, n_random=None, seed=3)
    v = syn.valid
    small, large = measured_subset(v, 10, seed=1), measured_subset(v, 20, seed=1)
    for wrap in (lambda m: BlendMTGNet(m, base="ridge"), lambda m: PairPriorMTGNet(m)):
        shared = MTGNet(**SMALL, seed=4)
        first = wrap(shared).fit(small)
        before = first.predict(v.masks)
        again = type(first)(**first.get_params()).fit(large)   # what Study's next refit does
        assert again.model is shared and first.model is shared
        assert not hasattr(shared, "n_tasks_")                  # never fitted itself
        assert first.model_ is not again.model_ and first.model_ is not shared
        np.testing.assert_array_equal(first.predict(v.masks), before)   # unchanged by the refit
        # the copy is the network the options describe: the same fit as a fresh one
        alone = wrap(MTGNet(**SMALL, seed=4)).fit(large)
        np.testing.assert_array_equal(again.predict(v.masks), alone.predict(v.masks))


def test_blend_bad_input() -> None:
    from mtgfast.estimators.blend import BlendMTGNet
    from mtgfast.estimators.mtgnet import MTGNet

    syn = synthetic_gain_tables(4, n_random=None, seed=1)
    with pytest.raises(InputTypeError, match="model must be an MTGNet"):
        BlendMTGNet(model="net").fit(syn.valid)
    with pytest.raises(InputError, match="alpha must be None or a number in"):
        BlendMTGNet(MTGNet(**SMALL), alpha=1.5).fit(syn.valid)
    with pytest.raises(InputError, match="alpha must be None or a number in"):
        BlendMTGNet(MTGNet(**SMALL), alpha=True).fit(syn.valid)
    with pytest.raises(InputError, match="max_size"):
        BlendMTGNet(MTGNet(**SMALL), max_size=1).fit(syn.valid)
    with pytest.raises(InputError, match="not fitted"):
        BlendMTGNet().predict([3])


def test_replay_mtgnet_blend_runs_warm_and_records_the_weight() -> None:
    import torch

    from mtgfast.study.replay_methods import replay_method

    syn = synthetic_gain_tables(5, n_random=None, seed=1)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats: dict[str, list[float]] = {}
        pred, used = replay_method("mtgnet-blend", syn.valid, seed=0, rounds=1, stats=stats,
                                   **SMALL)
    finally:
        torch.set_num_threads(old)
    assert used == 1 + syn.valid.n_tasks
    member = syn.valid.member()
    assert np.all(np.isnan(pred[~member]))
    alphas = stats["fit_alpha"]
    assert len(alphas) == len(stats["fit_s"]) >= 2
    assert all(0.0 <= a <= 1.0 for a in alphas)


def test_replay_blend_option_and_the_default_blend() -> None:
    """``blend=`` is checked before any work: a known base or None; not over the residual
    methods (they learn over a prior instead). The default ``mtgnet`` blends with ridge, and
    embeddings() reads its network (the plots)."""
    from mtgfast.estimators.blend import BlendMTGNet, ridge_blend
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.study.replay_methods import check_method

    syn = synthetic_gain_tables(4, n_random=None, seed=1)
    with pytest.raises(InputError, match="blend must be None"):
        check_method("mtgnet", syn.valid, blend="lasso")
    with pytest.raises(InputError, match="blend must be None"):
        check_method("mtgnet", syn.valid, blend=1)
    with pytest.raises(InputError, match="residual over a prior"):
        check_method("mtgnet-prior", syn.valid, blend="ridge")
    check_method("mtgnet", syn.valid, blend="none")   # the command line's spelling of None
    check_method("mtgnet-plain", syn.valid, blend="pairs")
    est = ridge_blend(**SMALL, seed=2)
    assert isinstance(est, BlendMTGNet) and isinstance(est.model, MTGNet)
    assert est.base_kind == "ridge" and est.model.seed == 2
    with pytest.raises(InputError, match="not fitted"):
        est.embeddings()
    est.fit(syn.valid)
    np.testing.assert_array_equal(est.embeddings(0), est.model_.embeddings(0))
    assert est.embeddings(None).shape[0] == SMALL.get("n_estimators", 5)


def test_blend_per_task_weights_shrink_towards_the_shared_one() -> None:
    """``task_shrink=c``: task j's weight is ``(n_j a_j + c a) / (n_j + c)`` (a_j fitted on its
    own out-of-fold entries, a the shared weight); the predictions use each task's weight."""
    from mtgfast.estimators.blend import BlendMTGNet, blend_weight
    from mtgfast.estimators.mtgnet import MTGNet

    syn = synthetic_gain_tables(6, n_random=None, seed=5)
    v = syn.valid
    sub = measured_subset(v, 30, seed=2)
    shared = BlendMTGNet(MTGNet(**SMALL, seed=1), base="ridge").fit(sub)
    for c in (0.0, 10.0):
        est = BlendMTGNet(MTGNet(**SMALL, seed=1), base="ridge", task_shrink=c).fit(sub)
        multi = np.flatnonzero(sub.member().sum(axis=1) >= 2)
        oof, count = est.model_.predict_held_out(sub.masks[multi])
        held = count > 0
        y, net, base = sub.gains[multi][held], oof[held], est.base_loo_[multi][held]
        # the same network: only the weights differ
        np.testing.assert_array_equal(est.model_.predict(v.masks), shared.model_.predict(v.masks))
        a = shared.alpha_
        for j in range(6):
            n_j = int((np.isfinite(y[:, j]) & np.isfinite(net[:, j])).sum())
            a_j = blend_weight(y[:, j], net[:, j], base[:, j])
            assert est.alpha_[j] == pytest.approx((n_j * a_j + c * a) / (n_j + c), abs=1e-12)
        pred = est.predict(v.masks)
        want = est.alpha_ * est.model_.predict(v.masks) + (1 - est.alpha_) * est.base(v.masks)
        np.testing.assert_allclose(pred, want, atol=1e-12)
        mean, std = est.predict(v.masks, return_std=True)
        members = est.predict_members(v.masks)            # per-task weights on each member
        np.testing.assert_allclose(members.mean(axis=0), mean, atol=1e-9)
        nstd = est.model_.predict(v.masks, return_std=True)[1]
        rstd = est.ridge_.predict(v.masks, return_std=True)[1]
        np.testing.assert_allclose(std, np.hypot(est.alpha_ * nstd, (1 - est.alpha_) * rstd),
                                   atol=1e-12)
    assert est.get_params()["task_shrink"] == 10.0
    with pytest.raises(InputError, match="task_shrink must be"):
        BlendMTGNet(MTGNet(**SMALL), task_shrink=-1.0).fit(sub)
    with pytest.raises(InputError, match="task_shrink must be"):
        BlendMTGNet(MTGNet(**SMALL), task_shrink=float("inf")).fit(sub)
    with pytest.raises(InputError, match="give one of them"):
        BlendMTGNet(MTGNet(**SMALL), alpha=0.5, task_shrink=1.0).fit(sub)


def test_replay_task_shrink_needs_the_blend() -> None:
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, check_method

    syn = synthetic_gain_tables(4, n_random=None, seed=1)
    assert METHOD_DEFAULTS["mtgnet-taskblend"] == {**METHOD_DEFAULTS["mtgnet"],
                                                  "task_shrink": 10.0}
    with pytest.raises(InputError, match="task_shrink is an option of the blend"):
        check_method("mtgnet-plain", syn.valid, task_shrink=1.0)
    with pytest.raises(InputError, match="task_shrink must be"):
        check_method("mtgnet", syn.valid, task_shrink="x")
