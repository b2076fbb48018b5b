"""The stacked, packed training forward of an MTG-Net ensemble (estimators/stacked.py) against
the dense per-member reference (ops.reference.mtgnet_forward_dense), values and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.estimators.mtgnet import MTGNetModule
from mtgfast.estimators.stacked import pack_rows, stacked_forward
from mtgfast.masks import masks_to_dense, sample_masks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _members(n: int, e: int, heads: int, layers: int, temperature: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    mods = [MTGNetModule(n, 8 * heads, layers, heads, 12, temperature, generator=gen)
            for _ in range(e)]
    with torch.no_grad():   # move off the init (zero biases, unit LN) so every term matters
        for m in mods:
            for q in m.parameters():
                q.add_(torch.randn(q.shape, generator=gen) * 0.2)
    return mods


@settings(max_examples=12, deadline=None)
@given(n=st.integers(2, 12), e=st.integers(1, 3), heads=st.sampled_from([1, 2]),
       layers=st.integers(1, 2), temperature=st.sampled_from([1.0, 0.5]),
       seed=st.integers(0, 1000), n_rows=st.integers(1, 60))
def test_stacked_forward_matches_dense_reference(n, e, heads, layers, temperature, seed,
                                                 n_rows) -> None:
    mods = _members(n, e, heads, layers, temperature, seed)
    singles = np.uint64(1) << np.arange(n, dtype=np.uint64)
    masks = np.unique(np.concatenate([sample_masks(n, min(n_rows, 2**n - 1), seed=seed),
                                      singles[: seed % (n + 1)]]))
    member = masks_to_dense(masks, n)
    state = {k: torch.stack([m.state_dict()[k] for m in mods]).requires_grad_(True)
             for k in mods[0].state_dict()}
    got = stacked_forward(state, pack_rows(member), layers, heads, temperature)
    want = torch.stack([m(torch.as_tensor(member)) for m in mods])
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    # gradients of a weighted loss agree member by member
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(seed))
    (got * w).sum().backward()
    (want * w).sum().backward()
    for k, v in state.items():
        ref = torch.stack([dict(m.named_parameters())[k].grad for m in mods])
        torch.testing.assert_close(v.grad, ref, atol=5e-5, rtol=1e-3)
