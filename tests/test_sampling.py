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


class _Members:
    """An estimator whose members are given arrays on the candidates (committee, Thompson)."""

    def __init__(self, cands: np.ndarray, members: np.ndarray) -> None:
        self.cands, self.members = cands, members

    def predict_members(self, masks):
        assert np.array_equal(np.asarray(masks), self.cands)
        return self.members


class _KnownLoop:
    def __init__(self, known: GainTable, est: object = None) -> None:
        self.known, self.estimator_ = known, est

    def table(self) -> GainTable:
        return self.known


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 6), seed=st.integers(0, 10_000), k=st.integers(1, 6),
       kappa=st.sampled_from([0.0, 1.0]), complete=st.booleans(),
       free=st.sampled_from(["mean", "thompson"]))
def test_search_proposals_are_distinct_unmeasured_candidates(n, seed, k, kappa, complete,
                                                             free) -> None:
    t = full_random_table(n, seed)
    rng = np.random.default_rng(seed)
    multi = t.masks[popcount(t.masks) >= 2]
    measured = rng.choice(multi, size=min(3, multi.size - 1), replace=False)
    cands = np.setdiff1d(multi, measured)
    mean = t.lookup(cands) + rng.normal(0, 0.02, (cands.size, n))
    std = np.abs(rng.normal(0, 0.02, (cands.size, n)))
    tasks = tuple(int(x) for x in rng.integers(0, n, size=k))
    known = t.select(np.isin(t.masks, measured) | (popcount(t.masks) == 1))
    members = mean[None] + rng.normal(0, 0.02, (3, cands.size, n))
    sel = SearchSelector(kappa=kappa, complete=complete, free=free)
    sel.bind(_KnownLoop(known, _Members(cands, members)))
    ctx = SelectionContext(tasks, cands, masks_to_dense(cands, n), mean, std, measured, seed,
                           tuple(0 for _ in tasks))
    got = sel.ask(ctx)
    # at most one proposal per slot, and one at least when an asked task has a candidate left
    served = masks_to_dense(cands, n)[:, list(tasks)].any()
    assert got.size <= k and np.unique(got).size == got.size and (got.size >= 1 or not served)
    assert set(got.tolist()) <= set(cands.tolist())


def _best_completion(groupings: list[list[int]], unmeasured: set[int],
                     count: int) -> tuple[int, int]:
    """Brute force over every set of at most ``count`` unmeasured groups: the most groupings
    finished (all their unmeasured groups in the set), then the fewest groups."""
    import itertools

    pool = sorted({m for g in groupings for m in g if m in unmeasured})
    best = (0, 0)
    for k in range(min(count, len(pool)) + 1):
        for sub in itertools.combinations(pool, k):
            s = set(sub)
            done = sum(any(m in unmeasured for m in g) and
                       all(m in s or m not in unmeasured for m in g) for g in groupings)
            best = max(best, (done, -k))
    return best[0], -best[1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(0, 6), n_groupings=st.integers(0, 16))
def test_completing_finishes_the_most_groupings(seed, count, n_groupings) -> None:
    rng = np.random.default_rng(seed)
    pool = list(range(3, 15))
    groupings = [[int(x) for x in rng.choice(pool, size=int(rng.integers(1, 5)), replace=False)]
                 for _ in range(n_groupings)]
    groupings += groupings[:int(rng.integers(0, 3))]        # budgets sharing a grouping
    unmeasured = {m for m in pool if rng.random() < 0.7}
    row_of = {m: r for r, m in enumerate(sorted(unmeasured))}
    got = SearchSelector._completing(groupings, row_of, count)
    assert len(got) <= count and len(set(got)) == len(got) and set(got) <= unmeasured
    asked = set(got)
    done = sum(any(m in unmeasured for m in g) and all(m in asked or m not in unmeasured
                                                       for m in g) for g in groupings)
    # every group asked belongs to a grouping it finishes (nothing asked for no grouping)
    finished = [g for g in groupings if all(m in asked or m not in unmeasured for m in g)]
    assert asked <= {m for g in finished for m in g}
    distinct = {tuple(m for m in g if m in unmeasured) for g in groupings} - {()}
    if len(distinct) <= 12:   # the exact branch: as good as the brute force
        assert (done, len(got)) == _best_completion(groupings, unmeasured, count)


def test_complete_asks_for_whole_groupings_of_the_mean() -> None:
    # on random tables with a few rows measured: the groupings of the mean's searches that an
    # ask finishes (all their unmeasured groups asked) are never fewer with complete=True, and
    # more on some tables (where the votes spread the slots over several groupings)
    more = 0
    for seed in range(12):
        n = 6
        t = full_random_table(n, seed)
        rng = np.random.default_rng(seed)
        multi = t.masks[popcount(t.masks) >= 2]
        measured = rng.choice(multi, size=8, replace=False)
        cands = np.setdiff1d(multi, measured)
        mean = t.lookup(cands) + rng.normal(0, 0.02, (cands.size, n))
        known = t.select(np.isin(t.masks, measured) | (popcount(t.masks) == 1))
        ctx = SelectionContext((0, 1, 2), cands, masks_to_dense(cands, n), mean,
                               np.zeros_like(mean), measured, seed, (1, 1, 1))
        view = np.nan_to_num(np.vstack([known.gains, mean]), nan=0.0)
        groupings = group(np.concatenate([known.masks, cands]), view, list(range(2, n + 1)),
                          method="exact")
        unmeasured = set(cands.tolist())

        def finished(asked: np.ndarray) -> int:
            a = set(asked.tolist())
            return sum(all(m in a for m in g.groups.tolist() if m in unmeasured) and
                       any(m in unmeasured for m in g.groups.tolist()) for g in groupings)

        plain = SearchSelector(kappa=0.0).bind(_KnownLoop(known)).ask(ctx)
        done = SearchSelector(kappa=0.0, complete=True).bind(_KnownLoop(known)).ask(ctx)
        assert done.size == plain.size == 3
        assert finished(done) >= finished(plain)
        more += finished(done) > finished(plain)
    assert more >= 1


def test_thompson_fills_free_slots_from_one_member_per_task() -> None:
    n = 3
    cands = np.array([0b011, 0b101, 0b110], dtype=np.uint64)
    member = masks_to_dense(cands, n)
    mean = np.where(member, 0.0, np.nan)
    mean[0, 0] = 0.01                                  # the mean's choice for task 0: {0,1}
    draws = np.stack([np.where(member, 0.0, np.nan)] * 4)
    for k in range(4):
        draws[k, 1, 0] = 0.05                          # every member prefers {0,2} for task 0
    singles = np.uint64(1) << np.arange(n, dtype=np.uint64)
    full = GainTable(np.concatenate([singles, [np.uint64(0b111)]]),
                     np.vstack([np.where(np.eye(n, dtype=bool), 0.0, np.nan),
                                np.full((1, n), 0.5)]), tuple("abc"))
    # the full set is measured and best at every budget: the searches want nothing, all free
    ctx = SelectionContext((0,), cands, member, mean, np.zeros_like(mean), full.masks, 7, (2,))
    loop = _KnownLoop(full, _Members(cands, draws))
    assert SearchSelector(kappa=0.0).bind(loop).ask(ctx).tolist() == [0b011]
    ts = SearchSelector(kappa=0.0, free="thompson").bind(loop)
    assert ts.ask(ctx).tolist() == [0b101] == ts.ask(ctx).tolist()   # seeded: the same twice
    # the drawn member is the task's stream's: only member 2 prefers {0,2} -> drawn or not
    k = int(ctx.rng_for(0).integers(4))
    one = np.stack([np.where(member, 0.0, np.nan)] * 4)
    one[:, 0, 0] = 0.02
    one[k, 1, 0] = 0.05
    got = SearchSelector(kappa=0.0, free="thompson").bind(_KnownLoop(full, _Members(cands, one)))
    assert got.ask(ctx).tolist() == [0b101]
    # without members (an estimator with no predict_members): the mean fills the slot
    alone = SearchSelector(kappa=0.0, free="thompson").bind(_KnownLoop(full, object()))
    assert alone.ask(ctx).tolist() == [0b011]


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


@pytest.mark.parametrize("n, seed", [(7, 0), (8, 3), (9, 5)])
def test_half_pairs_first_is_a_balanced_half_then_the_search(n: int, seed: int) -> None:
    truth = full_random_table(n, seed=seed)
    sel = make_selector("pairs-first", kappa=0.0, fraction=0.5)
    loop = ActiveLoop(sel, lambda: _Perfect(truth), truth.masks, n, seed=0)
    sel.bind(loop)
    quota = int(np.ceil(0.5 * n * (n - 1) / 2))
    rounds = (n - 1) // 2
    loop.run(lambda m: truth.lookup(np.array([m], np.uint64))[0], rounds=rounds)
    m = loop.measured_masks
    assert m.size == 1 + rounds * n and len(set(m.tolist())) == m.size
    pairs = m[popcount(m) == 2]
    # the first `quota` selections are pairs, the rest the search's (which may add pairs)
    assert pairs.size >= quota
    first = [x for x in m.tolist() if bin(x).count("1") == 2][:quota]
    deg = np.array([sum((x >> j) & 1 for x in first) for j in range(n)])
    assert deg.max() - deg.min() <= 2               # balanced: every task about quota*2/n pairs
    # beyond the quota the search sampler chose: with a perfect estimator it verifies groups of
    # the oracle's groupings (of any size), not more pairs only
    assert np.any(popcount(m) > 2)
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, REPLAY_METHODS

    assert REPLAY_METHODS["mtgnet-halfpairs"] == "pairs-first"
    assert METHOD_DEFAULTS["mtgnet-halfpairs"] == {**METHOD_DEFAULTS["mtgnet-plain"],
                                                   "fraction": 0.5}
    with pytest.raises(InputError, match="fraction"):
        make_selector("pairs-first", fraction=0.0)
    with pytest.raises(InputTypeError, match="fraction"):
        make_selector("pairs-first", fraction="half")


def test_selector_arguments_are_checked() -> None:
    with pytest.raises(InputTypeError, match="kappa"):
        SearchSelector(kappa="big")
    with pytest.raises(InputError, match="kappa must be >= 0"):
        SearchSelector(kappa=-1.0)
    with pytest.raises(InputError, match="budgets"):
        SearchSelector(budgets=[0])
    with pytest.raises(InputTypeError, match="table"):
        SearchSelector().bind(object())
    with pytest.raises(InputTypeError, match="complete"):
        SearchSelector(complete=1)
    with pytest.raises(InputError, match="free must be one of"):
        SearchSelector(free="member")


def test_complete_and_thompson_replays_are_deterministic_variants_of_committee1() -> None:
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, replay_method

    t = full_random_table(5, seed=8)
    small = {"max_epochs": 12, "n_estimators": 3}
    for name, option in (("mtgnet-complete", {"complete": True}),
                         ("mtgnet-thompson", {"free": "thompson"})):
        assert METHOD_DEFAULTS[name] == {**METHOD_DEFAULTS["mtgnet-committee1"], **option}
        a, used = replay_method(name, t, seed=2, rounds=2, **small)
        b, _ = replay_method("mtgnet-committee1", t, seed=2, rounds=2, **option, **small)
        assert used == 1 + 2 * 5
        np.testing.assert_array_equal(a, b)   # the variant is the default plus its option
    with pytest.raises(InputError, match="free"):
        replay_method("mtgnet", t, seed=0, rounds=1, free="best")


def test_the_default_is_the_search_sampler_without_committee() -> None:
    """Fifth pass: equal quality on every 10-seed cell and half the large-N wall time made the
    mean's searches alone the default; the round-1 committee is ``mtgnet-committee1``. Fifteenth
    pass: the default blends the network with the per-task ridge surrogate (``blend="ridge"``);
    ``mtgnet-plain`` (alias ``mtgnet-search``) is the network alone, the base of the variants."""
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, REPLAY_METHODS, replay_method

    plain = METHOD_DEFAULTS["mtgnet-plain"]
    assert REPLAY_METHODS["mtgnet"] == REPLAY_METHODS["mtgnet-plain"] == "search"
    assert not plain.get("committee", False) and "blend" not in plain
    assert METHOD_DEFAULTS["mtgnet"] == {**plain, "blend": "ridge"}
    assert METHOD_DEFAULTS["mtgnet-ridgeblend"] == METHOD_DEFAULTS["mtgnet"]   # its artifacts
    assert METHOD_DEFAULTS["mtgnet-search"] == plain   # alias: the artifacts' column name
    assert METHOD_DEFAULTS["mtgnet-committee1"] == {**plain, "committee": True,
                                                   "committee_rounds": 1}
    t = full_random_table(6, seed=3)
    small = {"max_epochs": 12, "n_estimators": 3}
    a, used = replay_method("mtgnet-plain", t, seed=1, rounds=2, **small)
    b, _ = replay_method("mtgnet-search", t, seed=1, rounds=2, **small)
    c, _ = replay_method("mtgnet-committee1", t, seed=1, rounds=2, **small)
    d, _ = replay_method("mtgnet-plain", t, seed=1, rounds=2, committee=True,
                         committee_rounds=1, **small)
    e, _ = replay_method("mtgnet", t, seed=1, rounds=2, **small)
    f, _ = replay_method("mtgnet-ridgeblend", t, seed=1, rounds=2, **small)
    g, _ = replay_method("mtgnet-plain", t, seed=1, rounds=2, blend="ridge", **small)
    assert used == 1 + 2 * 6
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(e, f)   # the default is the blend, bit for bit
    np.testing.assert_array_equal(e, g)
    np.testing.assert_array_equal(c, d)   # the variant is the default plus the committee
    # the committee verifies other groups in round 1 on this table, so the two loops differ
    assert not np.array_equal(np.isnan(a) | (a == t.gains), np.isnan(c) | (c == t.gains))


def test_a_candidate_measured_meanwhile_is_searched_once_at_its_measurement() -> None:
    """Another driver measured a candidate between the loop's read and the ask: the search sees it
    once, at the measured gain (fixed: known + candidates held it twice, and group() refused the
    duplicate mask)."""
    n = 4
    cands = np.array([0b0011, 0b1100, 0b0101, 0b1010, 0b0111], dtype=np.uint64)
    member = masks_to_dense(cands, n)
    mean = np.where(member, -0.05, np.nan)
    mean[2, [0, 2]] = 0.10                    # {0,2} and {1,3} predicted best ...
    mean[3, [1, 3]] = 0.08
    measured = np.full((2, n), np.nan)
    measured[0, [0, 2]] = -0.20               # ... but {0,2} was measured meanwhile, and is bad
    measured[1, :] = 0.01                     # the full set, measured, mildly good

    class _Loop:
        def table(self) -> GainTable:
            return GainTable(np.array([0b0101, 0b1111], np.uint64), measured, ("a", "b", "c", "d"))

    got = SearchSelector(kappa=0.0).bind(_Loop()).ask(_ctx(cands, mean, None, tasks=(0, 1)))
    assert len(set(got.tolist())) == len(got) == 2
    assert 0b1010 in got.tolist()             # the search's group; {0,2} enters only as a free slot


def test_rng_for_default_stream_is_unchanged_and_streams_differ() -> None:
    """The slot's generator stays (seed, round, task) — every earlier replay draws the same — and
    ``stream=1`` is another generator of the same slot."""
    cands = np.array([3, 5, 6], dtype=np.uint64)
    ctx = SelectionContext((0, 2), cands, masks_to_dense(cands, 3), None, None,
                           np.zeros(0, np.uint64), 7, (4, 5))
    assert ctx.rng_for(2).random() == np.random.default_rng([7, 5, 2]).random()
    assert ctx.rng_for(2, stream=1).random() == np.random.default_rng([7, 5, 2, 1]).random()
    assert ctx.rng_for(2, stream=1).random() != ctx.rng_for(2).random()


@pytest.mark.parametrize("value, exc", [(-0.1, InputError), (1.5, InputError), ("half", InputTypeError),
                                        (True, InputTypeError)])
def test_explore_must_be_a_probability(value, exc) -> None:
    with pytest.raises(exc, match="explore"):
        SearchSelector(explore=value)


def _explore_run(t: GainTable, explore: float, seed: int = 0, rounds: int = 2,
                 after: int = 0) -> ActiveLoop:
    sel = SearchSelector(kappa=0.0, explore=explore, explore_after=after)
    loop = ActiveLoop(sel, lambda: _Perfect(t), t.masks, t.n_tasks, seed=seed)
    sel.bind(loop)
    loop.run(lambda m: t.lookup(np.array([m], dtype=np.uint64))[0], rounds)
    return loop


def _explore_loop(t: GainTable, explore: float, seed: int = 0) -> list[int]:
    return _explore_run(t, explore, seed).measured_masks.tolist()


def test_explore_zero_is_the_search_and_one_is_uniform_per_task() -> None:
    t = full_random_table(6, seed=3)
    plain = SearchSelector(kappa=0.0)
    loop = ActiveLoop(plain, lambda: _Perfect(t), t.masks, 6, seed=0)
    plain.bind(loop)
    loop.run(lambda m: t.lookup(np.array([m], dtype=np.uint64))[0], 2)
    assert _explore_loop(t, 0.0) == loop.measured_masks.tolist()
    # explore=1: the search never runs; each slot holds a candidate of its own task
    sel = SearchSelector(kappa=0.0, explore=1.0)
    cands = t.masks[popcount(t.masks) >= 2]
    ctx = _ctx(cands, np.nan_to_num(t.lookup(cands)), None, tasks=(0, 1, 2, 3, 4, 5))
    sel.bind(ActiveLoop(sel, lambda: _Perfect(t), t.masks, 6))
    out = sel.ask(ctx)
    assert out.shape[0] == 6 and len(set(out.tolist())) == 6
    assert all((int(m) >> j) & 1 for m, j in zip(out.tolist(), range(6)))
    assert np.array_equal(out, sel.ask(ctx))   # the slots' own streams: the same draws again


def test_explore_half_mixes_uniform_and_searched_slots_deterministically() -> None:
    t = full_random_table(6, seed=5)
    a = _explore_loop(t, 0.5, seed=2)
    assert a == _explore_loop(t, 0.5, seed=2)
    assert len(a) == 1 + 12 and len(set(a)) == len(a)
    assert a != _explore_loop(t, 0.0, seed=2) and a != _explore_loop(t, 1.0, seed=2)


@pytest.mark.parametrize("value, exc", [(-1, InputError), (1.5, InputTypeError),
                                        (True, InputTypeError), ("1", InputTypeError)])
def test_explore_after_must_be_a_count_of_rounds(value, exc) -> None:
    with pytest.raises(exc, match="explore_after"):
        SearchSelector(explore=0.5, explore_after=value)


def test_explore_after_searches_the_first_rounds_then_explores() -> None:
    """``explore_after=1``: round 1 (the first N choices) is the plain search's, choice for
    choice; from round 2 on some slots explore."""
    t = full_random_table(6, seed=5)
    n = t.n_tasks

    def chosen(loop: ActiveLoop) -> list[int]:   # in measurement order
        return [s.mask for s in loop.trials if s.source == "selected"]

    plain = chosen(_explore_run(t, 0.0, seed=2, rounds=3))
    late = chosen(_explore_run(t, 0.5, seed=2, rounds=3, after=1))
    assert len(late) == len(plain) == 3 * n and len(set(late)) == len(late)
    assert late[:n] == plain[:n] and late[n:] != plain[n:]
    assert late == chosen(_explore_run(t, 0.5, seed=2, rounds=3, after=1))
    # after >= rounds: never explores
    assert chosen(_explore_run(t, 0.5, seed=2, rounds=2, after=2)) == \
        chosen(_explore_run(t, 0.0, seed=2, rounds=2))


class _HeldOut:
    """An estimator with given out-of-fold estimates and spread (the shrinkage's inputs)."""

    def __init__(self, oof: GainTable, std: float) -> None:
        self.oof, self.std = oof, std

    def predict_held_out(self, masks):
        m = np.asarray(masks, dtype=np.uint64)
        return self.oof.lookup(m), np.ones(m.size, dtype=np.int64)

    def predict(self, masks, return_std=False):
        mean = self.oof.lookup(np.asarray(masks, dtype=np.uint64))
        return (mean, np.where(np.isfinite(mean), self.std, np.nan)) if return_std else mean


def test_shrink_known_is_checked() -> None:
    with pytest.raises(InputTypeError, match="shrink_known must be a bool"):
        SearchSelector(shrink_known=1)
    t = full_random_table(4, seed=0)
    with pytest.raises(InputTypeError, match="noise must be a GainTable"):
        SearchSelector().bind(_KnownLoop(t), noise=np.zeros(3))   # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 6), seed=st.integers(0, 10_000), k=st.integers(1, 4),
       noisy=st.booleans())
def test_shrink_known_searches_what_the_shrunk_table_gives(n: int, seed: int, k: int,
                                                           noisy: bool) -> None:
    """Reference: ``shrink_known`` asks exactly what the plain sampler asks of a loop whose
    measured gains are already shrunk (study.final.shrunk_measured_gains, the final choice's)."""
    from mtgfast.study.final import shrunk_measured_gains

    rng = np.random.default_rng(seed)
    truth = full_random_table(n, seed=seed)
    size = popcount(truth.masks)
    full = (1 << n) - 1
    multi = truth.masks[(size >= 2) & (truth.masks != full)]
    pick = rng.choice(multi, size=min(3 * n, multi.size), replace=False)
    known = truth.select((size == 1) | (truth.masks == full) | np.isin(truth.masks, pick))
    multi_row = (size >= 2)[:, None] & truth.member()
    noise = GainTable(truth.masks, np.where(multi_row, rng.uniform(0, 0.01, truth.gains.shape),
                                            np.where(truth.member(), 0.0, np.nan)),
                      truth.task_names) if noisy else None
    oof = GainTable(truth.masks, truth.gains + np.where(multi_row, rng.normal(
        0, 0.1, truth.gains.shape), 0.0), truth.task_names)
    est = _HeldOut(oof, 0.05)
    cands = truth.masks[(size >= 2) & ~np.isin(truth.masks, known.masks)]
    mean, std = est.predict(cands, return_std=True)
    ctx = _ctx(cands, mean, std, tasks=tuple(range(min(k, n))))
    got = SearchSelector(kappa=0.0, shrink_known=True).bind(_KnownLoop(known, est), noise=noise)
    shrunk = GainTable(known.masks, shrunk_measured_gains(known, est, cands, noise),
                       known.task_names)
    want = SearchSelector(kappa=0.0).bind(_KnownLoop(shrunk, est))
    assert got.ask(ctx).tolist() == want.ask(ctx).tolist()
    # off, the same selector reads the measurements as they are
    raw = SearchSelector(kappa=0.0).bind(_KnownLoop(known, est))
    off = SearchSelector(kappa=0.0, shrink_known=False).bind(_KnownLoop(known, est), noise=noise)
    assert off.ask(ctx).tolist() == raw.ask(ctx).tolist()


def test_shrink_known_pulls_a_lucky_measurement_out_of_the_searches() -> None:
    """A pair measured far above what the fit expects (noise): the raw searches build on it and
    ask for its complement; read shrunk (its noise far above the model's error) it is worth
    nothing, and the searches ask for the group the estimate likes best."""
    n = 4
    # measured: singletons, {0,1}, the full set and three bad triples (each task in >= 3 measured
    # rows: the shrinkage needs that many residuals); candidates: {2,3} and {0,1,2}
    masks = np.array([1, 2, 4, 8, 0b0011, 0b1111, 0b1011, 0b1101, 0b1110, 0b1100, 0b0111],
                     dtype=np.uint64)
    member = masks_to_dense(masks, n)
    g = np.where(member, 0.0, np.nan)
    g[4, [0, 1]] = 0.30        # {0,1} measured lucky
    g[5, :] = -0.10            # the full set
    g[6:9] = np.where(member[6:9], -0.20, np.nan)
    names = ("a", "b", "c", "d")
    known = GainTable(masks[:9], g[:9], names)
    est_g = g.copy()           # the fit's out-of-fold estimates: right but for {0,1}
    est_g[4, [0, 1]] = -0.05
    est_g[9, [2, 3]] = 0.05    # {2,3}: the raw searches' complement of {0,1}
    est_g[10, [0, 1, 2]] = 0.08  # {0,1,2}: the estimate's best group
    est = _HeldOut(GainTable(masks, est_g, names), 0.05)
    cands = masks[9:]
    mean, std = est.predict(cands, return_std=True)
    ctx = _ctx(cands, mean, std, tasks=(0,))
    single = popcount(masks) == 1
    noise = GainTable(masks, np.where(member & ~single[:, None], 0.1, np.where(member, 0.0,
                                                                               np.nan)), names)
    raw = SearchSelector(kappa=0.0).bind(_KnownLoop(known, est))
    shrunk = SearchSelector(kappa=0.0, shrink_known=True).bind(_KnownLoop(known, est),
                                                                 noise=noise)
    assert raw.ask(ctx).tolist() == [0b1100]
    assert shrunk.ask(ctx).tolist() == [0b0111]


def test_repsample_is_repshrunk_whose_searches_read_the_shrunk_gains() -> None:
    """``mtgnet-repsample`` = ``mtgnet-repshrunk`` + ``shrink_known``; with zero noise the two are
    the same loop bit for bit (nothing to shrink), with the replicates' noise they may differ."""
    import torch

    from mtgfast.generate import synthetic_gain_tables
    from mtgfast.study.replay_methods import METHOD_DEFAULTS, replay_method

    assert METHOD_DEFAULTS["mtgnet-repsample"] == {**METHOD_DEFAULTS["mtgnet-repshrunk"],
                                                   "shrink_known": True}
    small = {"dim": 16, "ffn_dim": 16, "n_estimators": 3, "max_epochs": 60, "patience": 15}
    syn = synthetic_gain_tables(5, n_random=None, seed=1, valid_noise=0.05, replicates=2)
    assert syn.valid_var is not None
    with pytest.raises(InputTypeError, match="needs noise="):
        replay_method("mtgnet-repsample", syn.valid, seed=0, rounds=2, **small)
    zero = GainTable(syn.valid.masks, np.where(syn.valid.member(), 0.0, np.nan),
                     syn.valid.task_names)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, used = replay_method("mtgnet-repsample", syn.valid, seed=0, rounds=2, noise=zero,
                                **small)
        b, _ = replay_method("mtgnet-repshrunk", syn.valid, seed=0, rounds=2, noise=zero,
                             **small)
        c, _ = replay_method("mtgnet-repshrunk", syn.valid, seed=0, rounds=2,
                             shrink_known=True, noise=zero, **small)
    finally:
        torch.set_num_threads(old)
    assert used == 1 + 2 * syn.valid.n_tasks
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
