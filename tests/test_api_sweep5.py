"""Fifth adversarial sweep, the Python API: masks of every dtype and layout, sizes and budgets of
every type, N = 0 / 64 / 65, duplicate or unordered task names, NaN/inf gains, requests whose
memory or time would explode — through ``group``, the mask helpers, ``GainTable``, ``Study`` and
its loop's ``ask``/``tell``/``result``, ``replay``, ``MTGNet`` and ``score_whole_space``. Each case:
a valid result, or an ``InputError``/``InputTypeError`` whose message holds the given words,
raised before any expensive work (never a raw numpy/pybind11 error, a hang or a silent
coercion). Cases marked "fixed" failed before this pass."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mtgfast import GainTable, Study, all_masks, group, k_subsets, sample_masks
from mtgfast.errors import InputError, InputTypeError
from mtgfast.masks import dense_to_masks, masks_to_dense, names_to_mask, popcount
from mtgfast.replay import replay

M3 = np.array([1, 2, 4, 3, 5, 6, 7], dtype=np.uint64)
G3 = np.where(masks_to_dense(M3, 3), 0.1, np.nan)
ABC = ("a", "b", "c")
OK = None


def _table4() -> GainTable:
    m = all_masks(4)
    member = masks_to_dense(m, 4)
    g = np.where(member, np.random.default_rng(0).normal(0.0, 0.1, (m.size, 4)), np.nan)
    g[member.sum(axis=1) == 1] = 0.0
    return GainTable(m, g, tuple("abcd"))


def _loop():
    from mtgfast.estimators.hoa import HOA
    from mtgfast.study.active import ActiveLoop, make_selector

    return ActiveLoop(make_selector("random"), HOA, None, 4, task_names=tuple("abcd"))


def _train(tasks, seed):
    return {t: 1.0 + 0.01 * len(tasks) for t in tasks}


def _study(**kw):
    return Study(_train, store=":memory:", progress=False, **{"task_names": list(ABC), **kw})


_NET = {}


def _net():
    """A small fitted MTG-Net (one member, a few epochs: under a second)."""
    if "net" not in _NET:
        from mtgfast import MTGNet

        _NET["net"] = MTGNet(seed=0, dim=8, n_estimators=1, max_epochs=5).fit(_table4())
    return _NET["net"]


def _groups(r):
    return r.groups.tolist()


# name, call, expected exception (None: returns), words in the message (or the expected result)
CASES = [
    # -- group(): masks of every dtype, layout and size
    ("masks bool", lambda: group(np.ones(7, bool), G3, 2), InputTypeError, "masks must hold integers"),
    ("masks float", lambda: group(M3.astype(float), G3, 2), InputTypeError, "dtype float64"),
    ("masks int8 negative", lambda: group(np.array([1, 2, -4, 3, 5, 6, 7], np.int8), G3, 2), InputError, "non-negative"),
    ("masks uint64 2^63", lambda: group(np.array([1, 2, 4, 3, 5, 6, 2**63], np.uint64), G3, 2), InputError, "task bit >= n_tasks=3"),
    ("masks beyond N bits", lambda: group(np.array([1, 2, 4, 3, 5, 6, 8], np.uint64), G3, 2), InputError, "masks[6] = 8"),
    ("masks 0", lambda: group(np.array([1, 2, 4, 3, 5, 6, 0], np.uint64), G3, 2), InputError, "empty combination"),
    ("masks non-contiguous", lambda: _groups(group(np.repeat(M3, 2)[::2], G3, 2)), OK, [7]),
    ("masks reversed", lambda: _groups(group(M3[::-1], G3[::-1], 2)), OK, [7]),
    ("masks big-endian", lambda: _groups(group(M3.astype(">u8"), G3.astype(">f8"), 2)), OK, [7]),
    ("masks 0-d with one row", lambda: _groups(group(np.uint64(7), G3[-1:], 2)), OK, [7]),
    ("masks empty", lambda: group(np.array([], np.uint64), np.zeros((0, 3)), 2), InputError, "infeasible"),
    ("masks list of lists", lambda: group([[1], [2]], G3[:2], 2), InputError, "1-D"),
    ("masks pandas Series", lambda: _groups(group(pytest.importorskip("pandas").Series(M3), G3, 2)), OK, [7]),
    # -- budgets and sizes
    ("budget numpy int", lambda: _groups(group(M3, G3, np.int64(2))), OK, [7]),
    ("budget 0-d array", lambda: _groups(group(M3, G3, np.array(2))), OK, [7]),
    ("budget True", lambda: group(M3, G3, True), InputTypeError, "got bool"),
    ("budget numpy bool", lambda: group(M3, G3, np.bool_(True)), InputTypeError, "got bool"),
    ("budget [True, 2]", lambda: group(M3, G3, [True, 2]), InputTypeError, "got bool"),
    ("budget numpy float", lambda: group(M3, G3, np.float64(2)), InputTypeError, "float64"),
    ("budget 0", lambda: group(M3, G3, 0), InputError, ">= 1"),
    ("budget > N", lambda: _groups(group(M3, G3, 5)), OK, [7]),
    ("budget empty range", lambda: group(M3, G3, range(0)), InputError, "empty"),
    ("N = 0", lambda: group(np.array([], np.uint64), np.zeros((0, 0)), 1), InputError, "must be in [1, 64], got 0"),
    ("N = 64", lambda: group(np.array([2**64 - 1], np.uint64), np.zeros((1, 64)), 1).value, OK, 0.0),
    ("N = 65", lambda: group(np.array([1], np.uint64), np.zeros((1, 65)), 1), InputError, "got 65"),
    ("gains NaN inside", lambda: group(M3, np.where(np.isnan(G3), np.nan, np.nan), 2), InputError, "finite inside"),
    ("gains inf inside", lambda: group(M3, np.where(np.isnan(G3), np.nan, np.inf), 2), InputError, "task 0 is inf"),
    ("gains -inf inside", lambda: group(M3, np.where(np.isnan(G3), np.nan, -np.inf), 2), InputError, "is -inf"),
    # -- enumeration and mask helpers: sizes that would explode memory name the bytes
    ("all_masks numpy int", lambda: all_masks(np.int64(2)).tolist(), OK, [1, 2, 3]),
    ("all_masks True", lambda: all_masks(True), InputTypeError, "got bool"),
    ("all_masks 0", lambda: all_masks(0), InputError, "got 0"),
    ("all_masks 40", lambda: all_masks(40), InputError, "GiB"),
    ("all_masks 64", lambda: all_masks(64), InputError, "not possible"),
    ("all_masks 65", lambda: all_masks(65), InputError, "got 65"),
    ("k_subsets 64 choose 32", lambda: k_subsets(64, 32), InputError, "GiB"),
    ("k_subsets k True", lambda: k_subsets(3, True), InputTypeError, "k must be an int"),
    ("sample_masks 3e8 (fixed: was let through, ~20 GiB peak)", lambda: sample_masks(40, 3 * 10**8), InputError, "21,600,000,000 bytes"),
    ("sample_masks 1e12 names the bytes (fixed)", lambda: sample_masks(40, 10**12), InputError, "bytes"),
    ("sample_masks count True", lambda: sample_masks(4, True), InputTypeError, "count"),
    ("sample_masks count numpy int", lambda: len(sample_masks(4, np.int64(3))), OK, 3),
    ("popcount big-endian", lambda: popcount(np.array([3, 7], ">u8")).tolist(), OK, [2, 3]),
    ("popcount bool", lambda: popcount(np.array([True])), InputTypeError, "bool"),
    ("dense_to_masks 0 columns (fixed: gave mask 0)", lambda: dense_to_masks(np.ones((2, 0), bool)), InputError, "1 to 64 columns"),
    ("dense_to_masks 65 columns", lambda: dense_to_masks(np.ones((1, 65), bool)), InputError, "got 65"),
    ("names_to_mask duplicate all_names (fixed: took the last)", lambda: names_to_mask(["a"], ["a", "a"]), InputError, "all_names must be distinct"),
    ("names_to_mask numpy names", lambda: names_to_mask(np.array(["b"]), np.array(["a", "b"])), OK, 2),
    # -- GainTable
    ("GainTable duplicate names", lambda: GainTable(M3, G3, ("a", "a", "b")), InputError, "distinct"),
    ("GainTable names as a set (fixed: arbitrary column order)", lambda: GainTable(M3, G3, set(ABC)), InputTypeError, "ordered sequence"),
    ("GainTable names as a frozenset (fixed)", lambda: GainTable(M3, G3, frozenset(ABC)), InputTypeError, "frozenset"),
    ("GainTable numpy str names", lambda: GainTable(M3, G3, tuple(np.array(ABC))).task_names, OK, ABC),
    ("GainTable 0 tasks", lambda: GainTable(np.array([], np.uint64), np.zeros((0, 0)), ()), InputError, "got 0"),
    ("GainTable big-endian", lambda: GainTable(M3.astype(">u8"), G3.astype(">f8"), ABC).masks.dtype.isnative, OK, True),
    # -- Study, its loop (ask / tell) and result
    ("Study duplicate names", lambda: _study(task_names=["a", "a"]), InputError, "distinct"),
    ("Study int names", lambda: _study(task_names=[1, 2]), InputError, "non-empty strings"),
    ("Study names as a set (fixed: arbitrary task order)", lambda: _study(task_names=set(ABC)), InputTypeError, "ordered sequence"),
    ("Study 65 tasks", lambda: _study(task_names=[f"t{i}" for i in range(65)]), InputError, "got 65"),
    ("Study budget True", lambda: _study(budget=True), InputTypeError, "got bool"),
    ("Study budget 0", lambda: _study(budget=0), InputError, "between 1 and 3"),
    ("Study budget > N", lambda: _study(budget=4), InputError, "between 1 and 3"),
    ("Study budget numpy int", lambda: _study(budget=np.int64(2)).budget, OK, 2),
    ("Study seeds [True]", lambda: _study(seeds=[True]), InputTypeError, "seeds"),
    ("result budget True", lambda: _study(estimator="oracle").result(budget=True), InputTypeError, "got bool"),
    ("result budget 0", lambda: _study(estimator="oracle").result(budget=0), InputError, "between 1 and 3"),
    ("result budget 1.5", lambda: _study(estimator="oracle").result(budget=1.5), InputTypeError, "float"),
    ("tell bool gains (fixed: became 1.0)", lambda: _loop().tell(3, [True, True, False, False]), InputTypeError, "bool"),
    ("tell str gains (fixed: were parsed)", lambda: _loop().tell(3, ["0.1", "0.2", "nan", "nan"]), InputTypeError, "str"),
    ("tell mask True", lambda: _loop().tell(True, [0.1, 0.1, 0.0, 0.0]), InputTypeError, "bool"),
    ("tell mask 2^63", lambda: _loop().tell(np.uint64(2**63), [0.1] * 4), InputError, "task bit >= n_tasks=4"),
    ("tell NaN inside", lambda: _loop().tell(3, [np.nan, 0.1, 0.0, 0.0]), InputError, "finite inside"),
    ("tell numpy mask", lambda: _loop().tell(np.uint64(3), np.array([0.1, 0.2, np.nan, np.nan])), OK, None),
    ("ask max_masks True", lambda: _loop().ask(True), InputTypeError, "max_masks"),
    ("ask max_masks -1", lambda: _loop().ask(-1), InputError, ">= 0"),
    # -- replay: a trial count that would run for days is refused up front
    ("replay budgets True", lambda: replay(_table4(), budgets=True), InputTypeError, "budgets"),
    ("replay budgets > N", lambda: replay(_table4(), budgets=5), InputError, "exceeds the 4 tasks"),
    ("replay seeds 0", lambda: replay(_table4(), seeds=0), InputError, "seeds must be >= 1"),
    ("replay random_trials 1e13 (fixed: ran for days)", lambda: replay(_table4(), methods=("random",), random_trials=10**13), InputError, "random_trials must be between 1 and 1000000000"),
    ("replay random_trials True", lambda: replay(_table4(), random_trials=True), InputTypeError, "random_trials"),
    ("RandomGrouping n_trials 1e13 (fixed)", lambda: __import__("mtgfast.baselines", fromlist=["x"]).RandomGrouping(n_trials=10**13).fit(_table4()), InputError, "n_trials"),
    # -- MTG-Net and the whole-space scorer
    ("predict bool masks", lambda: _net().predict(np.ones(3, bool)), InputTypeError, "bool"),
    ("predict masks beyond N", lambda: _net().predict(np.array([16], np.uint64)), InputError, "task bit >= n_tasks=4"),
    ("predict mask 2^63", lambda: _net().predict(np.array([2**63], np.uint64)), InputError, "n_tasks=4"),
    ("predict 0-d mask", lambda: _net().predict(np.uint64(3)).shape, OK, (1, 4)),
    ("predict empty", lambda: _net().predict(np.array([], np.uint64)).shape, OK, (0, 4)),
    ("predict big-endian strided", lambda: _net().predict(np.array([3, 0, 5, 0], ">u8")[::2]).shape, OK, (2, 4)),
    ("predict True", lambda: _net().predict(True), InputTypeError, "bool"),
    ("fit n_estimators True", lambda: __import__("mtgfast").MTGNet(n_estimators=True).fit(_table4()), InputTypeError, "n_estimators"),
    ("whole space topk True", lambda: __import__("mtgfast").score_whole_space(_net(), topk=True, progress=False), InputTypeError, "topk"),
    ("whole space budgets 9", lambda: __import__("mtgfast").score_whole_space(_net(), budgets=9, progress=False), InputError, "[1, 4]"),
    ("whole space chunk 2^62", lambda: __import__("mtgfast").score_whole_space(_net(), chunk=2**62, progress=False), InputError, "chunk"),
]


@pytest.mark.parametrize(("name", "call", "error", "expect"), CASES, ids=[c[0] for c in CASES])
def test_sweep(name, call, error, expect) -> None:
    t0 = time.perf_counter()
    if error is None:
        got = call()
        if expect is not None:
            assert got == expect, got
        return
    with pytest.raises((InputError, InputTypeError)) as info:
        call()
    assert type(info.value) is error or issubclass(type(info.value), error), info.value
    assert expect in str(info.value), (expect, str(info.value))
    assert time.perf_counter() - t0 < 30  # refused before the work, not after it


def test_enough_cases() -> None:
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)
