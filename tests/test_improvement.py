"""ImprovementSelector (mtgnet-improve): the one-move improvement against a brute-force reference,
and the selector inside a real active loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.study.active import ActiveLoop, SelectionContext, make_selector
from mtgfast.study.improvement import ImprovementSelector, improvement_scores


def _value(groups: list[tuple[int, np.ndarray]], n: int) -> float:
    """Sum over tasks of the best gain among the groups containing it; -inf if one is uncovered."""
    total = 0.0
    for j in range(n):
        got = [g[j] for m, g in groups if (m >> j) & 1]
        if not got:
            return -np.inf
        total += max(got)
    return total


def _reference(cands: list[int], draws: np.ndarray, groupings: list[tuple[list[tuple[int, np.ndarray]], int]],
               n: int) -> np.ndarray:
    """The improvement written out: every add and every replacement, each draw, each grouping."""
    out = np.zeros(len(cands))
    for c, cm in enumerate(cands):
        for groups, budget in groupings:
            now = _value(groups, n)
            acc = 0.0
            for s in range(draws.shape[0]):
                mine = (cm, draws[s, c])
                moves = [_value(groups[:r] + groups[r + 1:] + [mine], n) for r in range(len(groups))]
                if len(groups) < budget:
                    moves.append(_value(groups + [mine], n))
                acc += max(0.0, max(moves) - now)
            out[c] += acc / draws.shape[0]
    return out


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, list[int], np.ndarray, list]:
    n = draw(st.integers(2, 6))
    full = (1 << n) - 1
    masks = st.integers(1, full)
    n_c = draw(st.integers(1, 6))
    cands = draw(st.lists(masks, min_size=n_c, max_size=n_c))
    n_s = draw(st.integers(1, 4))
    vals = st.floats(-1, 1, allow_nan=False, width=32)
    draws = np.array(draw(st.lists(vals, min_size=n_s * n_c * n, max_size=n_s * n_c * n)),
                     dtype=np.float64).reshape(n_s, n_c, n)
    groupings = []
    for _ in range(draw(st.integers(1, 3))):
        # a grouping covering every task: some groups, then singletons for what they miss
        gs = draw(st.lists(masks, min_size=1, max_size=3, unique=True))
        missing = full & ~np.bitwise_or.reduce(gs)
        gs += [1 << j for j in range(n) if (missing >> j) & 1]
        rows = [(m, np.array(draw(st.lists(vals, min_size=n, max_size=n)), dtype=np.float64))
                for m in gs]
        budget = draw(st.integers(len(gs), len(gs) + 2))
        groupings.append((rows, budget))
    return n, cands, draws, groupings


@settings(max_examples=150, deadline=None)
@given(_cases())
def test_improvement_scores_match_brute_force(case) -> None:
    n, cands, draws, groupings = case
    member = np.array([[(m >> j) & 1 for j in range(n)] for m in cands], dtype=bool)
    arg = []
    for rows, budget in groupings:
        g = np.array([[r[j] if (m >> j) & 1 else -np.inf for j in range(n)] for m, r in rows])
        arg.append((g, budget))
    got = improvement_scores(member, draws, arg)
    np.testing.assert_allclose(got, _reference(cands, draws, groupings, n), rtol=1e-9, atol=1e-9)


def test_improvement_scores_empty_candidates() -> None:
    g = np.array([[0.0, 0.0]])
    assert improvement_scores(np.zeros((0, 2), dtype=bool), np.zeros((3, 0, 2)), [(g, 1)]).shape == (0,)


@pytest.mark.parametrize("kw, exc, text", [
    ({"samples": 0}, InputError, "samples must be in"),
    ({"samples": 2.5}, InputTypeError, "samples must be an int"),
    ({"samples": True}, InputTypeError, "samples must be an int"),
    ({"budgets": [0, 2]}, InputError, "budgets must be positive"),
])
def test_bad_options(kw, exc, text) -> None:
    with pytest.raises(exc, match=text):
        make_selector("improvement", **kw)


def test_bind_needs_a_table() -> None:
    with pytest.raises(InputTypeError, match="table"):
        ImprovementSelector().bind(object())


class _Fixed:
    """An estimator that predicts a fixed table (its gains, spread 0): the selector's choice is
    then the improvement of the true gains, which the test can work out by hand."""

    def __init__(self, table: GainTable) -> None:
        self.table = table

    def fit(self, table: GainTable) -> "_Fixed":
        return self

    def predict(self, masks: object, return_std: bool = False):
        g = self.table.lookup(np.asarray(masks, dtype=np.uint64))
        return (g, np.zeros_like(g)) if return_std else g


def _table(n: int) -> GainTable:
    from mtgfast.masks import all_masks, masks_to_dense

    m = all_masks(n)
    rng = np.random.default_rng(7)
    g = rng.normal(0, 0.05, (m.shape[0], n))
    pair = (1 << 0) | (1 << 1)
    g[np.flatnonzero(m == pair)[0], :2] = 0.5   # one pair far better than anything else
    member = masks_to_dense(m, n)
    g = np.where(member, g, np.nan)
    g[member.sum(axis=1) == 1] = np.where(member[member.sum(axis=1) == 1], 0.0, np.nan)
    return GainTable.from_arrays(m, g)


def test_loop_picks_the_group_that_improves_most_first() -> None:
    t = _table(4)
    sel = ImprovementSelector(samples=4)
    loop = ActiveLoop(sel, lambda: _Fixed(t), t.masks, 4, seed=0)
    sel.bind(loop)
    first = loop.next_batch(1)
    assert first.tolist() == [15]                     # the full set first
    loop.tell(first, t.lookup(first))
    assert loop.next_batch(1).tolist() == [3]        # then the pair worth 1.0


def test_loop_runs_and_is_deterministic() -> None:
    t = _table(5)

    def run() -> list[int]:
        sel = ImprovementSelector(samples=8)
        loop = ActiveLoop(sel, lambda: _Fixed(t), t.masks, 5, seed=3)
        sel.bind(loop)
        loop.run(lambda m: t.lookup(np.array([m], dtype=np.uint64))[0], 2)
        return loop.measured_masks.tolist()

    a = run()
    assert a == run()
    assert len(a) == 1 + 10 and len(set(a)) == len(a)


def test_unbound_or_unfitted_falls_back_to_one_per_task() -> None:
    t = _table(3)
    cands = t.masks[(t.masks & (t.masks - np.uint64(1))) != 0]
    from mtgfast.masks import masks_to_dense

    ctx = SelectionContext((0, 1, 2), cands, masks_to_dense(cands, 3), None, None,
                           np.zeros(0, dtype=np.uint64), 0, (0, 0, 0))
    out = ImprovementSelector().ask(ctx)
    assert out.shape[0] == 3 and set(out.tolist()) <= set(cands.tolist())


def test_replay_variants_of_the_eighth_pass() -> None:
    """``mtgnet-improve`` replays deterministically through the loop; ``mtgnet-e20`` is
    ``mtgnet-plain`` (the default of its pass) with 20 members and ``mtgnet-explore`` it with
    ``explore=0.5``, nothing else."""
    from _problems import full_random_table

    from mtgfast.study.replay_methods import METHOD_DEFAULTS, REPLAY_METHODS, replay_method

    assert METHOD_DEFAULTS["mtgnet-e20"] == {**METHOD_DEFAULTS["mtgnet-plain"], "n_estimators": 20}
    assert REPLAY_METHODS["mtgnet-e20"] == REPLAY_METHODS["mtgnet-plain"]
    assert METHOD_DEFAULTS["mtgnet-explore"] == {**METHOD_DEFAULTS["mtgnet-plain"], "explore": 0.5}
    assert REPLAY_METHODS["mtgnet-explore"] == REPLAY_METHODS["mtgnet-plain"]
    assert METHOD_DEFAULTS["mtgnet-explore2"] == {**METHOD_DEFAULTS["mtgnet-explore"],
                                                  "explore_after": 1}
    assert REPLAY_METHODS["mtgnet-explore2"] == REPLAY_METHODS["mtgnet-plain"]
    t = full_random_table(5, seed=2)
    small = {"max_epochs": 12, "n_estimators": 3}
    a, used = replay_method("mtgnet-improve", t, seed=1, rounds=2, samples=8, **small)
    b, _ = replay_method("mtgnet-improve", t, seed=1, rounds=2, samples=8, **small)
    assert used == 1 + 2 * 5
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="samples"):
        replay_method("mtgnet-improve", t, seed=1, rounds=1, samples=0, **small)
