"""Selectors of study/sampling.py: the search-targeted sampler and the pairs-first design."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.grouping import group
from mtgfast.masks import masks_to_dense, popcount
from mtgfast.study.active import ActiveLoop, SelectionContext, make_selector
from mtgfast.study.sampling import PairsFirstSelector, SearchSelector
from _problems import full_random_table


class _Perfect:
    """An estimator that knows every gain (to test what the sampler asks for, not the model)."""

    def __init__(self, truth: GainTable) -> None:
        self.truth = truth

    def fit(self, table: GainTable) -> _Perfect:
        return self

    def predict(self, masks: object, return_std: bool = False):
        mean = self.truth.lookup(np.asarray(masks, dtype=np.uint64))
        return (mean, np.zeros_like(mean)) if return_std else mean


def _ctx(cands: np.ndarray, mean: np.ndarray, std: np.ndarray | None, tasks=(0, 1)):
    n = mean.shape[1]
    return SelectionContext(tuple(tasks), cands, masks_to_dense(cands, n), mean, std,
                            np.zeros(0, np.uint64), 0, tuple(0 for _ in tasks))


def test_search_selector_asks_for_the_groups_of_the_best_grouping() -> None:
    n = 4
    cands = np.array([0b0011, 0b1100, 0b0101, 0b1010, 0b0111, 0b1111], dtype=np.uint64)
    member = masks_to_dense(cands, n)
    mean = np.where(member, -0.05, np.nan)
    mean[0, [0, 1]] = 0.10                    # {0,1} and {2,3} are the predicted best groups
    mean[1, [2, 3]] = 0.08
    got = SearchSelector(kappa=0.0).ask(_ctx(cands, mean, None))
    assert sorted(got.tolist()) == [0b0011, 0b1100]
    # optimism: a group the members disagree on strongly is worth verifying first
    std = np.where(member, 0.0, np.nan)
    std[2, [0, 2]] = 0.5
    got = SearchSelector(kappa=1.0).ask(_ctx(cands, mean, std, tasks=(0,)))
    assert got.tolist() == [0b0101]


def test_with_a_perfect_estimator_the_loop_measures_the_oracle_groups() -> None:
    truth = full_random_table(5, seed=3)
    sel = make_selector("search", kappa=0.0)
    loop = ActiveLoop(sel, lambda: _Perfect(truth), truth.masks, 5, seed=0)
    sel.bind(loop)
    loop.run(lambda m: truth.lookup(np.array([m], np.uint64))[0], rounds=1)
    measured = set(loop.measured_masks.tolist())
    # the first selections verify the groups the search chooses on the (here exact) estimates
    best = group(truth.masks, truth.gains, 2)
    wanted = {int(m) for m in best.groups.tolist() if popcount(np.array([m], np.uint64))[0] >= 2}
    assert wanted <= measured


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 6), seed=st.integers(0, 10_000), k=st.integers(1, 6),
       kappa=st.sampled_from([0.0, 1.0]))
def test_search_proposals_are_distinct_unmeasured_candidates(n, seed, k, kappa) -> None:
    t = full_random_table(n, seed)
    rng = np.random.default_rng(seed)
    multi = t.masks[popcount(t.masks) >= 2]
    measured = rng.choice(multi, size=min(3, multi.size - 1), replace=False)
    cands = np.setdiff1d(multi, measured)
    mean = t.lookup(cands) + rng.normal(0, 0.02, (cands.size, n))
    std = np.abs(rng.normal(0, 0.02, (cands.size, n)))
    tasks = tuple(int(x) for x in rng.integers(0, n, size=k))
    known = t.select(np.isin(t.masks, measured) | (popcount(t.masks) == 1))
    sel = SearchSelector(kappa=kappa)
    sel._known = lambda: known        # what bind(loop) provides
    ctx = SelectionContext(tasks, cands, masks_to_dense(cands, n), mean, std, measured, seed,
                           tuple(0 for _ in tasks))
    got = sel.ask(ctx)
    # at most one proposal per slot, and one at least when an asked task has a candidate left
    served = masks_to_dense(cands, n)[:, list(tasks)].any()
    assert got.size <= k and np.unique(got).size == got.size and (got.size >= 1 or not served)
    assert set(got.tolist()) <= set(cands.tolist())


def test_pairs_first_measures_every_pair_then_delegates() -> None:
    truth = full_random_table(5, seed=1)
    sel = make_selector("pairs-first", kappa=0.0)
    assert isinstance(sel, PairsFirstSelector) and isinstance(sel.then, SearchSelector)
    loop = ActiveLoop(sel, lambda: _Perfect(truth), truth.masks, 5, seed=0)
    sel.bind(loop)
    loop.run(lambda m: truth.lookup(np.array([m], np.uint64))[0], rounds=2)
    m = loop.measured_masks
    assert np.sum(popcount(m) == 2) == 10           # all pairs, within the first 2 rounds
    assert m.size == 1 + 2 * 5                      # the full set + K * N selections


def test_selector_arguments_are_checked() -> None:
    with pytest.raises(InputTypeError, match="kappa"):
        SearchSelector(kappa="big")
    with pytest.raises(InputError, match="kappa must be >= 0"):
        SearchSelector(kappa=-1.0)
    with pytest.raises(InputError, match="budgets"):
        SearchSelector(budgets=[0])
    with pytest.raises(InputTypeError, match="table"):
        SearchSelector().bind(object())
