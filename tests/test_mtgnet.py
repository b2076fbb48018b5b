"""MTG-Net estimator: masking invariants, the batched inference path, training, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.estimators.mtgnet import MTGNet, MTGNetModule
from mtgfast.gains import GainTable
from mtgfast.masks import all_masks, masks_to_dense
from mtgfast.ops.dispatch import mtgnet_predict
from mtgfast.ops.reference import member_from_masks, mtgnet_forward, mtgnet_forward_dense
from _problems import full_random_table

SMALL = dict(dim=16, ffn_dim=16, n_estimators=2, max_epochs=60, patience=15)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _module(n: int, seed: int = 0, **kw) -> MTGNetModule:
    return MTGNetModule(n, generator=torch.Generator().manual_seed(seed), **kw)


def _random_params(n: int, seed: int, heads: int = 2, temperature: float = 0.7):
    m = _module(n, seed, dim=16, ffn_dim=24, n_heads=heads, temperature=temperature)
    with torch.no_grad():  # non-trivial head and LN so every path matters
        g = torch.Generator().manual_seed(seed + 1)
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


def _ett(data_dir) -> GainTable:
    d = data_dir / "mtgnet" / "ETT"
    return GainTable.from_mtgnet(d / "ETTm1_x.csv", d / "ETTm1_val_y.csv")


def _taskonomy(data_dir) -> GainTable:
    d = data_dir / "mtgnet" / "taskonomy"
    return GainTable.from_mtgnet(d / "taskonomy_x.csv", d / "taskonomy.csv")


# -- the model and the inference path ---------------------------------------------------------
@pytest.mark.parametrize("heads,layers", [(1, 1), (2, 2), (4, 3)])
def test_packed_inference_matches_dense_reference(heads: int, layers: int) -> None:
    n = 9
    m = MTGNetModule(n, dim=16, n_layers=layers, n_heads=heads, ffn_dim=8, temperature=0.5,
                     generator=torch.Generator().manual_seed(3))
    p = m.params()
    masks = torch.from_numpy(all_masks(n).view(np.int64))
    dense = mtgnet_forward_dense(p, member_from_masks(masks, n)).detach()
    for chunk in (1, 7, 65536):   # pieces of every size, including one combination at a time
        fast = mtgnet_forward(p, masks, chunk=chunk)
        torch.testing.assert_close(fast, dense, atol=2e-5, rtol=1e-4)
    assert torch.equal(m(member_from_masks(masks, n)), mtgnet_forward_dense(p, member_from_masks(
        masks, n)))


@given(perm_seed=st.integers(0, 2**32 - 1), masks_seed=st.integers(0, 2**32 - 1))
def test_relabelling_tasks_permutes_predictions(perm_seed: int, masks_seed: int) -> None:
    """A set model: permuting the embedding rows and the mask bits permutes the outputs."""
    n = 6
    m = _random_params(n, 1)
    p = m.params()
    perm = np.random.default_rng(perm_seed).permutation(n)
    masks = np.random.default_rng(masks_seed).choice(all_masks(n), 12, replace=False)
    member = masks_to_dense(masks, n)
    permuted_member = np.zeros_like(member)
    permuted_member[:, perm] = member            # task j becomes task perm[j]
    q = m.params()
    emb = torch.empty_like(p.embedding)
    emb[torch.as_tensor(perm)] = p.embedding
    q.embedding = emb
    y = mtgnet_forward_dense(p, torch.as_tensor(member)).detach()
    y_perm = mtgnet_forward_dense(q, torch.as_tensor(permuted_member)).detach()
    torch.testing.assert_close(y_perm[:, torch.as_tensor(perm)], y, atol=1e-5, rtol=1e-5)


@given(seed=st.integers(0, 2**32 - 1))
def test_prediction_ignores_embeddings_of_absent_tasks(seed: int) -> None:
    n = 7
    m = _random_params(n, 2)
    p = m.params()
    rng = np.random.default_rng(seed)
    masks = rng.choice(all_masks(n)[:-1], 10, replace=False)   # never the full set
    masks_t = torch.from_numpy(masks.view(np.int64))
    member = masks_to_dense(masks, n)
    y = mtgnet_predict(p, masks_t, backend="torch")
    for i in range(len(masks)):
        absent = np.flatnonzero(~member[i])
        q = m.params()
        q.embedding = p.embedding.detach().clone()
        q.embedding[torch.as_tensor(absent)] = torch.randn(absent.size, q.dim) * 10
        yi = mtgnet_predict(q, masks_t[i:i + 1], backend="torch")
        torch.testing.assert_close(yi[0], y[i], atol=1e-5, rtol=1e-5)
        assert torch.all(yi[0][torch.as_tensor(absent)] == 0)


# -- the estimator ----------------------------------------------------------------------------
def test_fit_predict_shapes_nan_outside_and_zero_singletons(data_dir) -> None:
    t = _taskonomy(data_dir)
    est = MTGNet(**SMALL).fit(t)
    assert est.fit(t) is est
    pred, std = est.predict(t.masks, return_std=True)
    member = t.member()
    assert pred.shape == std.shape == (len(t), t.n_tasks) and pred.dtype == np.float64
    assert np.all(np.isnan(pred[~member])) and np.all(np.isfinite(pred[member]))
    assert np.all(np.isnan(std[~member])) and np.all(std[member] >= 0)
    single = member.sum(axis=1) == 1
    assert np.all(pred[single][member[single]] == 0)
    assert np.any(std[member & ~single[:, None]] > 0)   # two seeds disagree somewhere
    assert est.embeddings().shape == (t.n_tasks, 16)
    assert est.embeddings(None).shape == (2, t.n_tasks, 16)
    one = MTGNet(**{**SMALL, "n_estimators": 1}).fit(t)
    assert np.all(one.predict(t.masks, return_std=True)[1][member] == 0)


def test_deterministic_per_seed(data_dir) -> None:
    t = _taskonomy(data_dir)
    a = MTGNet(**SMALL, seed=5).fit(t).predict(t.masks)
    b = MTGNet(**SMALL, seed=5).fit(t).predict(t.masks)
    c = MTGNet(**SMALL, seed=6).fit(t).predict(t.masks)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(c))



def test_fit_and_predict_leave_torch_threads_as_they_were(data_dir) -> None:
    # fits and small predictions run on one thread internally; the caller's setting must survive
    import torch

    t = _taskonomy(data_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        est = MTGNet(**SMALL).fit(t)
        assert torch.get_num_threads() == 2
        est.predict(t.masks)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

def test_save_load_round_trip(tmp_path, data_dir) -> None:
    t = _taskonomy(data_dir)
    est = MTGNet(**SMALL, temperature=0.5, n_heads=2).fit(t)
    est.save(tmp_path / "m.pt")
    back = MTGNet.load(tmp_path / "m.pt")
    assert back.get_params() == est.get_params() and back.task_names_ == t.task_names
    np.testing.assert_array_equal(back.predict(t.masks), est.predict(t.masks))
    np.testing.assert_array_equal(back.embeddings(None), est.embeddings(None))
    (tmp_path / "bad.pt").write_bytes(b"")
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not an MTGNet file"):
        MTGNet.load(tmp_path / "bad.pt")


def test_learns_unseen_combinations(data_dir) -> None:
    """Trained on 40 ETTm1 combinations, it ranks the other 80 better than chance (corr > 0.3)."""
    t = _ett(data_dir)
    size = t.member().sum(axis=1)
    rng = np.random.default_rng(0)
    multi = np.flatnonzero(size >= 2)
    train = rng.choice(multi, 40, replace=False)
    test = np.setdiff1d(multi, train)
    est = MTGNet(dim=32, ffn_dim=32, n_estimators=3, seed=0).fit(t.select(train))
    p, g = est.predict(t.masks[test]), t.gains[test]
    inside = np.isfinite(g)
    assert np.corrcoef(p[inside], g[inside])[0, 1] > 0.3
    assert est.n_holdout_ == 8 and est.n_train_rows_ == 40 + t.n_tasks


def test_l1_loss_and_no_holdout_paths(data_dir) -> None:
    t = _taskonomy(data_dir)
    est = MTGNet(**SMALL, loss="l1", validation_fraction=0.0).fit(t)
    assert est.n_holdout_ == 0 and np.all(est.best_epoch_ == SMALL["max_epochs"] // 4)
    assert np.all(np.isfinite(est.predict(t.masks)[t.member()]))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(dim=2.5), InputTypeError, "dim must be an int"),
    (dict(dim=0), InputError, "dim must be >= 1"),
    (dict(dim=10, n_heads=3), InputError, "divisible by n_heads"),
    (dict(temperature=0), InputError, "temperature"),
    (dict(lr="fast"), InputTypeError, "lr must be a number"),
    (dict(loss="huber"), InputError, "loss must be 'mse' or 'l1'"),
    (dict(validation_fraction=1.0), InputError, "validation_fraction"),
    (dict(n_estimators=True), InputTypeError, "n_estimators must be an int"),
])
def test_bad_parameters_are_reported_in_fit(kwargs, exc, match, data_dir) -> None:
    est = MTGNet(**kwargs)   # __init__ only stores
    with pytest.raises(exc, match=match):
        est.fit(_taskonomy(data_dir))


def test_bad_inputs(data_dir) -> None:
    t = _taskonomy(data_dir)
    with pytest.raises(InputTypeError, match="GainTable"):
        MTGNet().fit(t.gains)
    with pytest.raises(InputError, match="not fitted"):
        MTGNet().predict([3])
    single = t.select(t.member().sum(axis=1) == 1)
    with pytest.raises(InputError, match="at least one measured combination"):
        MTGNet(**SMALL).fit(single)
    est = MTGNet(**SMALL).fit(t)
    with pytest.raises(InputError, match="task bit"):
        est.predict([1 << 5])
    with pytest.raises(InputError, match="empty combination"):
        est.predict([0, 3])
    with pytest.raises(InputError, match="member must be <"):
        est.embeddings(2)


def test_warm_start_continues_from_the_previous_fit(data_dir) -> None:
    """A refit on a few more rows, warm-started from the previous fit, needs far fewer epochs and
    predicts the unseen combinations about as well as the previous fit (ETTm1: 40 then 50 rows)."""
    t = _ett(data_dir)
    size = t.member().sum(axis=1)
    rng = np.random.default_rng(1)
    multi = rng.permutation(np.flatnonzero(size >= 2))
    first, more, test = multi[:40], multi[:50], multi[60:]
    kw = dict(dim=32, ffn_dim=32, n_estimators=3, seed=0)
    cold = MTGNet(**kw).fit(t.select(first))
    warm = MTGNet(**kw, warm_start_from=cold).fit(t.select(more))
    assert warm.n_epochs_ < cold.n_epochs_
    g = t.gains[test]
    inside = np.isfinite(g)
    r_cold = np.corrcoef(cold.predict(t.masks[test])[inside], g[inside])[0, 1]
    r_warm = np.corrcoef(warm.predict(t.masks[test])[inside], g[inside])[0, 1]
    assert r_warm > 0.3 and r_warm > r_cold - 0.1, (r_cold, r_warm)
    # an incompatible previous fit (another width) is ignored: a cold start, not an error
    other = MTGNet(**{**kw, "dim": 16, "ffn_dim": 16}, warm_start_from=cold).fit(t.select(more))
    assert np.all(np.isfinite(other.predict(t.masks[test])[inside]))
    with pytest.raises(InputTypeError, match="warm_start_from"):
        MTGNet(warm_start_from="previous").fit(t.select(first))


@pytest.mark.parametrize("seed", [2**63, 2**70, -1])
def test_seed_out_of_range_is_an_input_error(seed: int) -> None:
    with pytest.raises(InputError, match="seed"):
        MTGNet(seed=seed)._check_params()


def test_members_after_predict_reuse_the_same_outputs() -> None:
    # the committee reads predict(std) then predict_members on the same candidates every ask:
    # the second reuses the first's member outputs, with the numbers of a fresh computation
    t = full_random_table(5, seed=4)
    train = t.select(np.sum(masks_to_dense(t.masks, 5), axis=1) <= 2)
    est = MTGNet(seed=3, n_estimators=3, max_epochs=20).fit(train)
    mean, std = est.predict(t.masks, return_std=True)
    kept = est.predict_members(t.masks)
    est._members_cache = None                                    # recompute from scratch
    fresh = est.predict_members(t.masks)
    np.testing.assert_array_equal(kept, fresh)
    inside = masks_to_dense(t.masks, 5)
    np.testing.assert_allclose(fresh.mean(axis=0)[inside], mean[inside], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fresh.std(axis=0)[inside], std[inside], rtol=1e-9, atol=1e-12)
    # other masks, then a refit: never the old outputs
    assert est.predict_members(t.masks[:7]).shape == (3, 7, 5)
    np.testing.assert_array_equal(est.predict_members(t.masks), fresh)
    est.fit(t.select(np.sum(masks_to_dense(t.masks, 5), axis=1) <= 3))
    assert not np.array_equal(est.predict_members(t.masks), fresh, equal_nan=True)
    # a warm start drops the superseded fit's outputs
    est.predict(t.masks)
    MTGNet(seed=3, n_estimators=3, max_epochs=5, warm_start_from=est).fit(train)
    assert est._members_cache is None
