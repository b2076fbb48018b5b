"""MTG-Net's ensemble: the members of a larger ensemble are those of a smaller one plus more
(one generator seeds the members in order, each member's held-out rows hash (seed, member), and
members train independently in the stacked loop), so ``mtgnet-e20`` against ``mtgnet`` (5) is
the effect of 15 more members and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast.estimators.mtgnet import MTGNet
from mtgfast.gains import GainTable

SMALL = dict(dim=16, ffn_dim=16, max_epochs=40, patience=10)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ett(data_dir, rows: int) -> GainTable:
    d = data_dir / "mtgnet" / "ETT"
    t = GainTable.from_mtgnet(d / "ETTm1_x.csv", d / "ETTm1_val_y.csv")
    multi = np.flatnonzero(t.member().sum(axis=1) >= 2)
    return t.select(np.sort(np.random.default_rng(0).choice(multi, rows, replace=False)))


@pytest.mark.parametrize("rows, seed", [(3, 0), (12, 4), (40, 1)])
def test_members_of_a_larger_ensemble_continue_a_smaller_one(data_dir, rows: int, seed: int) -> None:
    t = _ett(data_dir, rows)
    small = MTGNet(**SMALL, n_estimators=3, seed=seed).fit(t)
    large = MTGNet(**SMALL, n_estimators=7, seed=seed).fit(t)
    np.testing.assert_allclose(large.predict_members(t.masks)[:3], small.predict_members(t.masks),
                               rtol=1e-4, atol=1e-5, equal_nan=True)
    # and the extra members are members of their own (not copies of the first ones)
    assert not np.allclose(np.nan_to_num(large.predict_members(t.masks)[3]),
                           np.nan_to_num(small.predict_members(t.masks)[0]))
