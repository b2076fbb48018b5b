"""MTG-Net with a prior table as an input feature (``MTGNet(token_prior=...)``, the
``mtgnet-tagfeature`` replay method): the stacked forward's token feature against a row-by-row
dense reference, the plain model as its zero-feature case, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.estimators.mtgnet import MTGNet
from mtgfast.estimators.stacked import pack_rows, stacked_forward
from mtgfast.estimators.whole_space import score_whole_space
from mtgfast.gains import GainTable
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import masks_to_dense, sample_masks
from mtgfast.ops.reference import mtgnet_forward_dense
from mtgfast.study.replay_methods import replay_method
from test_stacked import _members

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 9), e=st.integers(1, 3), heads=st.sampled_from([1, 2]),
       layers=st.integers(1, 2), seed=st.integers(0, 1000), n_rows=st.integers(1, 40))
def test_token_feature_matches_a_row_by_row_reference(n, e, heads, layers, seed, n_rows) -> None:
    mods = _members(n, e, heads, layers, 1.0, seed)
    masks = np.unique(sample_masks(n, min(n_rows, 2**n - 1), seed=seed))
    member = masks_to_dense(masks, n)
    gen = torch.Generator().manual_seed(seed)
    feat = torch.randn(member.shape, generator=gen) * torch.as_tensor(member)
    w = torch.randn(e, 8 * heads, generator=gen)
    state = {k: torch.stack([m.state_dict()[k] for m in mods]) for k in mods[0].state_dict()}
    got = stacked_forward({**state, "w_feat": w}, pack_rows(member), layers, heads,
                          feature=feat)
    # reference: per member and row, the dense forward with the row's embeddings shifted
    want = torch.zeros(got.shape)
    with torch.no_grad():
        for k, mod in enumerate(mods):
            base = mod.params()
            for r in range(member.shape[0]):
                prm = base.__class__(base.embedding + feat[r][:, None] * w[k], base.layers,
                                     base.w_head, base.b_head, base.n_heads, base.temperature)
                want[k, r] = mtgnet_forward_dense(prm, torch.as_tensor(member[r:r + 1]))[0]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def _small() -> tuple[GainTable, GainTable]:
    syn = synthetic_gain_tables(5, n_random=None, seed=4)
    v = syn.valid
    return v.select(sorted(set(range(0, len(v), 2)) | {len(v) - 1})), v


def test_a_zero_prior_is_the_plain_network() -> None:
    train, v = _small()
    zero = GainTable(v.masks, np.where(v.member(), 0.0, np.nan), v.task_names)
    opts = {"dim": 16, "ffn_dim": 16, "n_estimators": 2, "max_epochs": 40, "seed": 3}
    plain = MTGNet(**opts).fit(train)
    featured = MTGNet(**opts, token_prior=zero).fit(train)
    assert plain.n_epochs_ == featured.n_epochs_
    assert float(featured.state_["w_feat"].abs().max()) == 0.0     # no gradient, no step
    # the same parameters; predictions differ only by the stacked vs ops summation order
    for k, t in plain.state_.items():
        torch.testing.assert_close(featured.state_[k], t, atol=0, rtol=0)
    np.testing.assert_allclose(featured.predict(v.masks), plain.predict(v.masks), atol=1e-5)


def test_a_prior_feature_is_learned_and_checked(tmp_path) -> None:
    train, v = _small()
    prior = GainTable(v.masks, v.gains + 0.01, v.task_names)
    est = MTGNet(dim=16, ffn_dim=16, n_estimators=2, max_epochs=40, token_prior=prior).fit(train)
    assert float(est.state_["w_feat"].abs().max()) > 0.0
    mean, std = est.predict(v.masks, return_std=True)
    assert np.isfinite(mean[v.member()]).all() and (std[v.member()] >= 0).all()
    with pytest.raises(InputError, match="cannot be saved"):
        est.save(tmp_path / "m.pt")
    # the kernel and the whole-space passes know no token features: refused, never dropped
    with pytest.raises(InputError, match="backend='triton' cannot run"):
        est.predict(v.masks, backend="triton")
    with pytest.raises(InputError, match="score_whole_space cannot score"):
        score_whole_space(est, progress=False)
    with pytest.raises(InputTypeError, match="token_prior"):
        MTGNet(token_prior="tag").fit(train)
    other = synthetic_gain_tables(4, n_random=None, seed=4).valid
    with pytest.raises(InputError, match="token_prior has 4 tasks"):
        MTGNet(token_prior=other).fit(train)


def test_the_tagfeature_replay_needs_a_prior_and_runs() -> None:
    syn = synthetic_gain_tables(5, n_random=None, seed=4)
    with pytest.raises(InputTypeError, match="prior="):
        replay_method("mtgnet-tagfeature", syn.valid, seed=0, rounds=1)
    pred, used = replay_method("mtgnet-tagfeature", syn.valid, seed=0, rounds=1, prior=syn.valid,
                               dim=16, ffn_dim=16, n_estimators=2, max_epochs=30)
    assert used == 1 + 5 and pred.shape == syn.valid.gains.shape
