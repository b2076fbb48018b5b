"""RidgeSurrogate (per-task ridge, penalty by exact leave-one-out) and BlendMTGNet(base="ridge")."""

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


def _random_table(seed: int, n: int, rows: int) -> GainTable:
    rng = np.random.default_rng(seed)
    masks = np.unique(rng.integers(1, 1 << n, rows).astype(np.uint64))
    member = masks_to_dense(masks, n)
    gains = rng.normal(0.0, 0.05, member.shape)
    gains[member.sum(axis=1) == 1] = 0.0
    gains[~member] = np.nan
    return GainTable(masks, gains, tuple(f"t{j}" for j in range(n)), {})


def _design(mem: np.ndarray, t: int) -> np.ndarray:
    return np.hstack([np.ones((mem.shape[0], 1)), np.delete(mem, t, axis=1).astype(float)])


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """The definition: argmin |y - x b|^2 + lam |b[1:]|^2 (minimum-norm where singular)."""
    pen = np.full(x.shape[1], lam)
    pen[0] = 0.0
    return np.linalg.pinv(x.T @ x + np.diag(pen)) @ x.T @ y


def _loo_errors(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Leave-one-out by definition: refit without each row in turn, predict it."""
    cv = np.array([x[i:i + 1] @ _ridge(np.delete(x, i, 0), np.delete(y, i), lam)
                   for i in range(y.size)]).ravel()
    return cv, float(np.mean((y - cv) ** 2))


@given(st.integers(0, 10_000), st.integers(2, 6), st.integers(1, 45))
@settings(max_examples=40, deadline=None)
def test_ridge_matches_the_refit_by_refit_reference(seed: int, n: int, rows: int) -> None:
    # per task: the leave-one-out predictions are those of refits without each row; the chosen
    # penalty has the smallest leave-one-out error of the grid (penalties whose errors tie to
    # rounding are all right: with few rows the error may not depend on the penalty); the
    # predictions are the ridge fit on all the task's rows at that penalty
    from mtgfast.estimators.ridge import RidgeSurrogate

    grid = [1e-3, 1e-1, 10.0]
    t = _random_table(seed, n, rows)
    est = RidgeSurrogate(penalties=grid).fit(t)
    mem = t.member()
    size = mem.sum(axis=1)
    got = est.predict(t.masks)
    np.testing.assert_array_equal(np.isnan(got), ~mem)
    for j in range(n):
        rows_j = np.flatnonzero(mem[:, j] & (size >= 2))
        y = t.gains[rows_j, j]
        if rows_j.size < 3:
            assert np.isnan(est.penalty_[j]) and np.all(np.isnan(est.loo_[:, j]))
            np.testing.assert_allclose(got[rows_j, j], y.mean() if y.size else 0.0)
            continue
        x = _design(mem[rows_j], j)
        errs = {lam: _loo_errors(x, y, lam) for lam in grid}
        lam = float(est.penalty_[j])
        assert lam in grid
        assert errs[lam][1] <= min(e for _, e in errs.values()) * (1 + 1e-6) + 1e-15
        np.testing.assert_allclose(est.loo_[rows_j, j], errs[lam][0], atol=1e-8)
        np.testing.assert_allclose(got[rows_j, j], x @ _ridge(x, y, lam), atol=1e-8)
    assert np.all(got[size == 1][mem[size == 1]] == 0.0)


def test_ridge_recovers_an_additive_table_and_predicts_unseen_combinations() -> None:
    from mtgfast.estimators.ridge import RidgeSurrogate

    n = 6
    rng = np.random.default_rng(3)
    b, w = rng.normal(0, 0.1, n), rng.normal(0, 0.05, (n, n))
    masks = np.arange(1, 1 << n, dtype=np.uint64)
    mem = masks_to_dense(masks, n)
    gains = np.where(mem, b[None] + mem.astype(float) @ w.T - np.diag(w)[None], np.nan)
    gains[mem.sum(axis=1) == 1] = 0.0
    truth = GainTable(masks, np.where(mem, gains, np.nan), tuple(f"t{j}" for j in range(n)), {})
    train = np.flatnonzero((mem.sum(axis=1) <= 3) | (masks == masks.max()))
    est = RidgeSurrogate(penalties=[1e-10]).fit(
        GainTable(masks[train], truth.gains[train], truth.task_names, {}))
    multi = (mem.sum(axis=1) >= 2)[:, None] & mem    # unseen: every combination of 4-5 tasks
    np.testing.assert_allclose(est.predict(masks)[multi], gains[multi], atol=1e-6)
    single = est.predict(masks[mem.sum(axis=1) == 1])
    assert np.all(single[masks_to_dense(masks[mem.sum(axis=1) == 1], n)] == 0.0)


def test_ridge_bad_input() -> None:
    from mtgfast.estimators.ridge import RidgeSurrogate

    t = _random_table(0, 4, 20)
    for bad in ([], [-1.0], [float("nan")], ["x"], 3.0):
        with pytest.raises(InputError, match="penalties must be"):
            RidgeSurrogate(penalties=bad).fit(t)   # type: ignore[arg-type]
    with pytest.raises(InputError, match="not fitted"):
        RidgeSurrogate().predict([3])
    assert repr(RidgeSurrogate()) == "RidgeSurrogate(penalties=None)"


def test_ridge_blend_weight_base_and_held_out() -> None:
    from mtgfast.estimators.blend import BlendMTGNet, blend_weight
    from mtgfast.estimators.mtgnet import MTGNet
    from mtgfast.estimators.ridge import RidgeSurrogate

    syn = synthetic_gain_tables(6, n_random=None, seed=5)
    v = syn.valid
    sub = measured_subset(v, 30, seed=2)
    est = BlendMTGNet(MTGNet(**SMALL, seed=1), base="ridge").fit(sub)
    ridge = RidgeSurrogate().fit(sub)
    np.testing.assert_array_equal(est.base(v.masks), ridge.predict(v.masks))
    multi = np.flatnonzero(sub.member().sum(axis=1) >= 2)
    oof, count = est.model_.predict_held_out(sub.masks[multi])
    held = count > 0
    a = est.alpha_
    assert a == blend_weight(sub.gains[multi][held], oof[held], ridge.loo_[multi][held])
    mean, std = est.predict(v.masks, return_std=True)
    nmean, nstd = est.model_.predict(v.masks, return_std=True)
    np.testing.assert_allclose(mean, a * nmean + (1 - a) * ridge.predict(v.masks), atol=1e-12)
    # members: a network member plus one centred draw of the ridge posterior each
    draws = ridge.predict_draws(v.masks, SMALL["n_estimators"], seed=1)
    members = est.predict_members(v.masks)
    np.testing.assert_allclose(members, a * est.model_.predict_members(v.masks) +
                               (1 - a) * draws, atol=1e-12)
    np.testing.assert_allclose(members.mean(axis=0), mean, atol=1e-9)
    # the spread: the network's share and the ridge's posterior share, independent
    _, rstd = ridge.predict(v.masks, return_std=True)
    np.testing.assert_allclose(std, np.sqrt((a * nstd) ** 2 + ((1 - a) * rstd) ** 2), atol=1e-12)
    assert np.all(std[v.member()] >= 0.0)
    # with the network's weight at 0 the spread is the ridge's, not 0
    zero = BlendMTGNet(MTGNet(**SMALL, seed=1), base="ridge", alpha=0.0).fit(sub)
    _, zstd = zero.predict(v.masks, return_std=True)
    multi_v = v.member() & (v.member().sum(axis=1) >= 2)[:, None]
    assert np.all(zstd[multi_v] > 0.0)
    bo, _ = est.predict_held_out(sub.masks[multi])
    np.testing.assert_allclose(bo[held], (a * oof + (1 - a) * ridge.loo_[multi])[held],
                               atol=1e-12)
    assert est.get_params()["base"] == "ridge"
    with pytest.raises(InputError, match="base must be one of pairs, ridge"):
        BlendMTGNet(MTGNet(**SMALL), base="linear").fit(sub)
    with pytest.raises(InputError, match="max_size is an option of base='pairs'"):
        BlendMTGNet(MTGNet(**SMALL), base="ridge", max_size=3).fit(sub)


def test_replay_mtgnet_ridgeblend_runs_beside_the_pairs_blend() -> None:
    import torch

    from mtgfast.study.replay_methods import replay_method

    syn = synthetic_gain_tables(5, n_random=None, seed=1)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for m in ("mtgnet-ridgeblend", "mtgnet-blend"):
            stats: dict[str, list[float]] = {}
            out[m] = replay_method(m, syn.valid, seed=0, rounds=1, stats=stats, **SMALL)
            assert all(0.0 <= a <= 1.0 for a in stats["fit_alpha"])
    finally:
        torch.set_num_threads(old)
    pred, used = out["mtgnet-ridgeblend"]
    assert used == 1 + syn.valid.n_tasks
    assert np.all(np.isnan(pred[~syn.valid.member()]))


def _reference_posterior_sd(table: GainTable, ridge, masks: np.ndarray) -> np.ndarray:
    """Per task and mask, ``sqrt(s2 x'(X'X + P)^-1 x)`` from the chosen penalty, by plain
    loops (s2: the leave-one-out mean squared error of the task's rows)."""
    n = table.n_tasks
    out = np.full((len(masks), n), np.nan)
    for t in range(n):
        rows = [r for r, m in enumerate(table.masks.tolist())
                if (m >> t) & 1 and bin(m).count("1") >= 2 and np.isfinite(table.gains[r, t])]
        def feats(m: int) -> list[float]:
            return [1.0] + [float((m >> k) & 1) for k in range(n) if k != t]
        x = np.array([feats(int(table.masks[r])) for r in rows])
        for i, m in enumerate(masks.tolist()):
            if not (m >> t) & 1:
                continue
            if bin(m).count("1") < 2 or len(rows) < 3:
                out[i, t] = 0.0
                continue
            pen = np.full(n, ridge.penalty_[t])
            pen[0] = 0.0
            inv = np.linalg.pinv(x.T @ x + np.diag(pen))
            s2 = float(np.mean((table.gains[rows, t] - ridge.loo_[rows, t]) ** 2))
            f = np.array(feats(int(m)))
            out[i, t] = np.sqrt(max(s2 * f @ inv @ f, 0.0))
    return out


@given(st.integers(0, 10_000), st.integers(3, 6), st.integers(4, 40))
@settings(max_examples=30, deadline=None)
def test_ridge_posterior_spread_matches_the_loop_reference(seed: int, n: int, rows: int) -> None:
    from mtgfast.estimators.ridge import RidgeSurrogate

    t = _random_table(seed, n, rows)
    ridge = RidgeSurrogate().fit(t)
    masks = np.arange(1, 1 << n, dtype=np.uint64)
    mean, sd = ridge.predict(masks, return_std=True)
    np.testing.assert_array_equal(mean, ridge.predict(masks))
    np.testing.assert_allclose(sd, _reference_posterior_sd(t, ridge, masks), rtol=1e-6,
                               atol=1e-12, equal_nan=True)
    # draws: centred on the fit (their mean is the prediction), seeded, of the posterior's spread
    d = ridge.predict_draws(masks, 5, seed=seed)
    assert d.shape == (5, len(masks), n)
    np.testing.assert_allclose(d.mean(axis=0), mean, atol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(d, ridge.predict_draws(masks, 5, seed=seed))


def test_ridge_draws_estimate_the_posterior_spread() -> None:
    from mtgfast.estimators.ridge import RidgeSurrogate

    v = synthetic_gain_tables(6, n_random=None, seed=5).valid
    ridge = RidgeSurrogate().fit(measured_subset(v, 30, seed=2))
    _, sd = ridge.predict(v.masks, return_std=True)
    d = ridge.predict_draws(v.masks, 4000, seed=0)
    ok = sd > 1e-6
    # 4,000 draws: the sample spread is within a few percent of the posterior's
    np.testing.assert_allclose(d.std(axis=0)[ok], sd[ok], rtol=0.08)
    with pytest.raises(InputError, match="n_draws"):
        ridge.predict_draws(v.masks, 1)
    with pytest.raises(InputTypeError, match="return_std"):
        ridge.predict(v.masks, return_std="yes")
    with pytest.raises(InputError, match="not fitted"):
        RidgeSurrogate().predict_draws(v.masks, 3)
