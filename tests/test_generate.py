"""The synthetic large-N gain-table generator: deterministic, well-formed, with the planted
structure it promises (clusters help inside, hurt across; validation and test disagree)."""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast.errors import InputError, InputTypeError
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import popcount


def test_deterministic_and_well_formed() -> None:
    a = synthetic_gain_tables(27, n_random=500, seed=3)
    b = synthetic_gain_tables(27, n_random=500, seed=3)
    c = synthetic_gain_tables(27, n_random=500, seed=4)
    np.testing.assert_array_equal(a.valid.masks, b.valid.masks)
    np.testing.assert_array_equal(a.valid.gains, b.valid.gains)
    assert not np.array_equal(a.valid.gains, c.valid.gains)
    p = popcount(a.valid.masks)
    assert (p == 1).sum() == 27 and (p == 2).sum() == 27 * 26 // 2
    assert (p >= 3).sum() in (500, 501) and int(a.valid.masks.max()) == (1 << 27) - 1
    for t in (a.valid, a.test, a.truth):
        member = t.member()
        assert np.isnan(t.gains[~member]).all() and np.isfinite(t.gains[member]).all()
        assert (t.gains[p == 1][member[p == 1]] == 0).all()


def test_planted_structure() -> None:
    s = synthetic_gain_tables(12, n_random=None, seed=0)
    assert len(s.valid) == 2**12 - 1
    same = s.clusters[:, None] == s.clusters[None, :]
    off = ~np.eye(12, dtype=bool)
    assert s.pair[same & off].mean() > 0 > s.pair[~same].mean()
    member = s.valid.member() & (popcount(s.valid.masks) >= 2)[:, None]
    v, t = s.valid.gains[member], s.test.gains[member]
    assert 0.5 < np.corrcoef(v, t)[0, 1] < 0.999      # related, not equal
    assert np.corrcoef(s.pair[off], s.affinity[off])[0, 1] > 0.5


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"n_tasks": 1}, InputError, "n_tasks"),
    ({"n_tasks": 30, "n_random": None}, InputError, "n_random"),
    ({"n_random": -1}, InputError, "n_random"),
    ({"n_random": 2.5}, InputTypeError, "n_random"),
    ({"seed": -1}, InputError, "seed"),
    ({"n_tasks": 5, "n_clusters": 6}, InputError, "n_clusters"),
    ({"valid_noise": float("nan")}, InputError, "valid_noise"),
    ({"beta": "x"}, InputTypeError, "beta"),
])
def test_bad_input(kwargs: dict, exc: type, words: str) -> None:
    with pytest.raises(exc, match=words):
        synthetic_gain_tables(**kwargs)
