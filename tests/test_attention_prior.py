"""MTG-Net with a pair prior as an attention bias (``MTGNet(attention_prior=...)``, the
``mtgnet-tagbias`` replay method, seventh pass): the stacked forward's bias against a plain
row-by-row reference, the plain model as its zero-bias case, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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


def _reference(state, member, layers, heads, temperature, bias, w_bias) -> torch.Tensor:
    """Loops over members and rows: the MTG-Net encoder on the row's tokens, the score of
    token j on token k plus ``w_bias[e, layer] * bias[j, k]``."""
    e, n, d = state["embedding"].shape
    dh = d // heads
    out = torch.zeros(e, member.shape[0], n)
    for k in range(e):
        for r in range(member.shape[0]):
            t = torch.as_tensor(np.flatnonzero(member[r]))
            x = state["embedding"][k, t]
            for i in range(layers):
                p = f"layers.{i}."
                qkv = x @ state[p + "w_qkv"][k] + state[p + "b_qkv"][k]
                q, kk, v = qkv.split(d, dim=-1)
                heads_out = []
                for h in range(heads):
                    s = slice(h * dh, (h + 1) * dh)
                    sc = q[:, s] @ kk[:, s].T / (dh ** 0.5 * temperature)
                    sc = sc + w_bias[k, i] * bias[t[:, None], t[None, :]]
                    heads_out.append(torch.softmax(sc, dim=-1) @ v[:, s])
                a = torch.cat(heads_out, dim=-1) @ state[p + "w_o"][k] + state[p + "b_o"][k]
                x = F.layer_norm(x + a, (d,)) * state[p + "ln1_w"][k] + state[p + "ln1_b"][k]
                f = torch.relu(x @ state[p + "w_1"][k] + state[p + "b_1"][k])
                x = F.layer_norm(x + f @ state[p + "w_2"][k] + state[p + "b_2"][k], (d,)) * \
                    state[p + "ln2_w"][k] + state[p + "ln2_b"][k]
            out[k, r, t] = x @ state["w_head"][k] + state["b_head"][k]
    return out


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 9), e=st.integers(1, 3), heads=st.sampled_from([1, 2]),
       layers=st.integers(1, 2), seed=st.integers(0, 1000), n_rows=st.integers(1, 30))
def test_attention_bias_matches_a_row_by_row_reference(n, e, heads, layers, seed,
                                                       n_rows) -> None:
    mods = _members(n, e, heads, layers, 1.0, seed)
    masks = np.unique(sample_masks(n, min(n_rows, 2**n - 1), seed=seed))
    member = masks_to_dense(masks, n)
    gen = torch.Generator().manual_seed(seed)
    bias = torch.randn(n, n, generator=gen)
    w_bias = torch.randn(e, layers, generator=gen)
    state = {k: torch.stack([m.state_dict()[k] for m in mods]) for k in mods[0].state_dict()}
    with torch.no_grad():
        got = stacked_forward({**state, "w_bias": w_bias}, pack_rows(member), layers, heads,
                              bias=bias)
        want = _reference(state, member, layers, heads, 1.0, bias, w_bias)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        # the reference without a bias is the ops' dense forward (the reference checks itself)
        plain = _reference(state, member, layers, heads, 1.0, bias, torch.zeros(e, layers))
        for k, mod in enumerate(mods):
            dense = mtgnet_forward_dense(mod.params(), torch.as_tensor(member))
            torch.testing.assert_close(plain[k], dense * torch.as_tensor(member),
                                       atol=2e-5, rtol=1e-4)


def _small() -> tuple[GainTable, GainTable, np.ndarray]:
    syn = synthetic_gain_tables(5, n_random=None, seed=4)
    v = syn.valid
    return v.select(sorted(set(range(0, len(v), 2)) | {len(v) - 1})), v, syn.pair


def test_a_zero_bias_is_the_plain_network() -> None:
    train, v, _ = _small()
    opts = {"dim": 16, "ffn_dim": 16, "n_estimators": 2, "max_epochs": 40, "seed": 3}
    plain = MTGNet(**opts).fit(train)
    biased = MTGNet(**opts, attention_prior=np.zeros((5, 5))).fit(train)
    assert plain.n_epochs_ == biased.n_epochs_
    assert float(biased.state_["w_bias"].abs().max()) == 0.0     # no gradient, no step
    for k, t in plain.state_.items():
        torch.testing.assert_close(biased.state_[k], t, atol=0, rtol=0)
    np.testing.assert_allclose(biased.predict(v.masks), plain.predict(v.masks), atol=1e-5)


def test_an_attention_prior_is_learned_warm_started_and_checked(tmp_path) -> None:
    train, v, pair = _small()
    opts = {"dim": 16, "ffn_dim": 16, "n_estimators": 2, "max_epochs": 40}
    est = MTGNet(**opts, attention_prior=pair.T.copy()).fit(train)
    assert float(est.state_["w_bias"].abs().max()) > 0.0
    mean, std = est.predict(v.masks, return_std=True)
    assert np.all(np.isfinite(mean[v.member()])) and np.all(np.isnan(mean[~v.member()]))
    np.testing.assert_allclose(est.predict_members(v.masks).mean(axis=0), mean, atol=1e-9)
    warm = MTGNet(**opts, attention_prior=pair.T.copy(), warm_start_from=est).fit(train)
    assert warm.state_["w_bias"].shape == est.state_["w_bias"].shape
    with pytest.raises(InputError, match="cannot be saved"):
        est.save(tmp_path / "x.pt")
    with pytest.raises(InputError, match="backend='triton' cannot run"):
        est.predict(v.masks, backend="triton")
    with pytest.raises(InputError, match="no kernel parameters"):
        est.member_params()
    with pytest.raises(InputError, match="score_whole_space cannot score an MTGNet with "
                       "attention_prior"):
        score_whole_space(est, progress=False)
    with pytest.raises(InputTypeError, match="attention_prior must be a square"):
        MTGNet(attention_prior=[[0.0]]).fit(train)             # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="attention_prior must be a square"):
        MTGNet(attention_prior=np.zeros((5, 4))).fit(train)
    with pytest.raises(InputError, match="finite"):
        MTGNet(attention_prior=np.full((5, 5), np.nan)).fit(train)
    with pytest.raises(InputError, match="attention_prior has shape"):
        MTGNet(**opts, attention_prior=np.zeros((4, 4))).fit(train)


def test_replay_mtgnet_tagbias_needs_the_prior_and_runs() -> None:
    from mtgfast.estimators.tag import TAG

    syn = synthetic_gain_tables(5, n_random=None, seed=1)
    tag = TAG().fit_affinity(syn.affinity.T, syn.valid.task_names).predict_table(syn.valid.masks)
    small = {"dim": 16, "ffn_dim": 16, "n_estimators": 2, "max_epochs": 40, "patience": 10}
    with pytest.raises(InputTypeError, match="prior="):
        replay_method("mtgnet-tagbias", syn.valid, seed=0, rounds=1, **small)
    pred, used = replay_method("mtgnet-tagbias", syn.valid, seed=0, rounds=1, prior=tag,
                               **small)
    assert used == 1 + syn.valid.n_tasks
    assert np.all(np.isnan(pred[~syn.valid.member()]))
