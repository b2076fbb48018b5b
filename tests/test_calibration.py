"""SearchSelector(calibrate=True): each task's ensemble spread scaled by its out-of-fold error
(study/sampling.py, fifth pass), against a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.masks import masks_to_dense
from mtgfast.study.active import SelectionContext
from mtgfast.study.sampling import SearchSelector
from _problems import full_random_table


class _HeldOut:
    """An estimator whose out-of-fold estimate of a measured row is its gain + a fixed error."""

    def __init__(self, known: GainTable, error: np.ndarray, held: np.ndarray) -> None:
        self.known, self.error, self.held = known, error, held

    def predict_held_out(self, masks: object):
        m = np.asarray(masks, dtype=np.uint64)
        rows = self.known.index_of(m)
        out = self.known.gains[rows] + self.error[rows]
        out[~self.held[rows]] = np.nan                 # rows no member held out
        return out, self.held[rows].astype(np.int64)


class _Loop:
    def __init__(self, known: GainTable, est: object) -> None:
        self.known, self.estimator_ = known, est

    def table(self) -> GainTable:
        return self.known


def _reference(known: GainTable, error: np.ndarray, held: np.ndarray, member: np.ndarray,
               std: np.ndarray) -> np.ndarray:
    """Loop-by-loop: pooled-shrunk mean squared out-of-fold residual over the spread."""
    n = member.shape[1]
    size = np.array([bin(int(m)).count("1") for m in known.masks])
    res: list[list[float]] = [[] for _ in range(n)]
    for r in range(len(known)):
        if size[r] < 2 or not held[r]:
            continue
        for j in range(n):
            if (int(known.masks[r]) >> j) & 1:
                res[j].append(float(error[r, j]) ** 2)
    everything = [x for xs in res for x in xs]
    out = np.ones(n)
    if not everything:
        return out
    pooled = sum(everything) / len(everything)
    for j in range(n):
        var = [float(std[i, j]) ** 2 for i in range(member.shape[0]) if member[i, j]]
        if not var or sum(var) == 0:
            continue
        r_j = (sum(res[j]) + 3.0 * pooled) / (len(res[j]) + 3.0)
        out[j] = np.sqrt(r_j / (sum(var) / len(var)))
    return out


def _case(n: int, seed: int):
    t = full_random_table(n, seed=seed)
    rng = np.random.default_rng(seed)
    pick = rng.random(len(t)) < 0.5
    pick[-1] = True
    known = GainTable(t.masks[pick], t.gains[pick], t.task_names)
    error = np.where(known.member(), rng.normal(0, 0.1, known.gains.shape), np.nan)
    held = rng.random(len(known)) < 0.6
    cands = t.masks[~pick]
    member = masks_to_dense(cands, n)
    mean = np.where(member, rng.normal(0, 0.1, member.shape), np.nan)
    std = np.where(member, rng.uniform(0.0, 0.05, member.shape), np.nan)
    ctx = SelectionContext(tuple(range(n)), cands, member, mean, std, known.masks, 0,
                           tuple(0 for _ in range(n)))
    return known, error, held, ctx


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 6), seed=st.integers(0, 10_000))
def test_calibration_matches_the_reference(n: int, seed: int) -> None:
    known, error, held, ctx = _case(n, seed)
    sel = SearchSelector(kappa=1.0, calibrate=True).bind(_Loop(known, _HeldOut(known, error, held)))
    got = sel.calibration(ctx, known)
    want = _reference(known, error, held, ctx.member, ctx.std)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_calibration_scales_the_optimism_per_task() -> None:
    n = 4
    known, error, held, ctx = _case(n, 5)
    loop = _Loop(known, _HeldOut(known, error, held))
    sel = SearchSelector(kappa=1.0, calibrate=True).bind(loop)
    c = sel.calibration(ctx, known)
    assert np.all(c > 0) and not np.allclose(c, 1.0)
    # the calibrated selector asks exactly what the plain one asks on the rescaled spread
    scaled = SelectionContext(ctx.tasks, ctx.candidates, ctx.member, ctx.mean, ctx.std * c,
                              ctx.measured, ctx.seed, ctx.rounds)
    plain = SearchSelector(kappa=1.0).bind(loop)
    np.testing.assert_array_equal(sel.ask(ctx), plain.ask(scaled))
    # kappa = 0: the spread does not enter, calibration changes nothing
    np.testing.assert_array_equal(SearchSelector(kappa=0.0, calibrate=True).bind(loop).ask(ctx),
                                  SearchSelector(kappa=0.0).bind(loop).ask(ctx))
    # no out-of-fold rows (or no such method): factor 1
    none = _Loop(known, _HeldOut(known, error, np.zeros(len(known), dtype=bool)))
    np.testing.assert_array_equal(SearchSelector(kappa=1.0, calibrate=True).bind(none)
                                  .calibration(ctx, known), np.ones(n))
    np.testing.assert_array_equal(SearchSelector(kappa=1.0, calibrate=True)
                                  .bind(_Loop(known, object())).calibration(ctx, known),
                                  np.ones(n))
    with pytest.raises(InputTypeError, match="calibrate"):
        SearchSelector(calibrate="yes")


def test_calibrated_replay_is_the_default_plus_its_options() -> None:
    """The default of its pass (the network alone, ``mtgnet-plain``) plus its options."""
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, replay_method

    assert METHOD_DEFAULTS["mtgnet-calibrated"] == {**METHOD_DEFAULTS["mtgnet-plain"],
                                                   "kappa": 1.0, "calibrate": True}
    t = full_random_table(5, seed=8)
    small = {"max_epochs": 12, "n_estimators": 3}
    a, used = replay_method("mtgnet-calibrated", t, seed=2, rounds=2, **small)
    b, _ = replay_method("mtgnet-plain", t, seed=2, rounds=2, kappa=1.0, calibrate=True,
                         **small)
    assert used == 1 + 2 * 5
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="kappa"):
        replay_method("mtgnet-calibrated", t, seed=0, rounds=1, kappa=-1.0)
