"""Adversarial sweep of the public Python API (``mtgfast.__all__`` and the mask helpers): each
case a hostile but fair user might try, with what must happen — a result, or an
``InputError``/``InputTypeError`` whose message holds the given words; never a raw numpy, torch
or pybind11 error, a silent coercion (3.5 -> 3, "1" -> 1.0, a set's arbitrary order) or a wrong
answer. Cases marked "fixed" failed before the second hardening pass."""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast import GainTable, all_masks, evaluate, group, k_subsets, sample_masks
from mtgfast.errors import InputError, InputTypeError, MtgfastError
from mtgfast.masks import (dense_to_masks, indices_to_mask, mask_to_indices, names_to_mask,
                           popcount, rank, unrank)

M3 = np.array([1, 2, 4, 3, 5, 6, 7], dtype=np.uint64)
INSIDE = ((M3[:, None] >> np.arange(3, dtype=np.uint64)) & np.uint64(1)).astype(bool)
G3 = np.where(INSIDE, 0.1, np.nan)
OK = None  # expected: a valid result
BEST = [7]  # the full set serves every task at 0.1 (the others tie and lose to the smaller mask)


def _torch():
    return pytest.importorskip("torch")


def _pd():
    return pytest.importorskip("pandas")


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


# name, call, expected exception (None: returns), words in the message (or a check of the result)
CASES = [
    # -- gains containers and dtypes
    ("gains list", lambda: group(M3, G3.tolist(), 2), OK, BEST),
    ("gains tuple", lambda: group(M3, tuple(map(tuple, G3)), 2), OK, BEST),
    ("gains DataFrame", lambda: group(M3, _pd().DataFrame(G3), 2), OK, BEST),
    ("gains DataFrame nullable Float64 (fixed)", lambda: group(M3, _pd().DataFrame(G3).astype("Float64"), 2), OK, BEST),
    ("gains torch float64", lambda: group(M3, _torch().tensor(G3), 2), OK, BEST),
    ("gains torch bfloat16 (fixed)", lambda: group(M3, _torch().tensor(G3).bfloat16(), 2), OK, BEST),
    ("gains torch requires_grad (fixed)", lambda: group(M3, _torch().tensor(G3, requires_grad=True), 2), OK, BEST),
    ("gains torch bool", lambda: group(M3, _torch().ones(7, 3, dtype=_torch().bool), 2), InputTypeError, "bool"),
    ("gains float16", lambda: group(M3, G3.astype(np.float16), 2), OK, BEST),
    ("gains int8", lambda: group(M3, np.ones((7, 3), np.int8), 2), OK, BEST),
    ("gains uint64 > 2^63 (fixed: was rounded silently)", lambda: group(M3, np.full((7, 3), 2**63 + 5, np.uint64), 2), InputError, "no exact float64"),
    ("gains bool", lambda: group(M3, np.ones((7, 3), bool), 2), InputTypeError, "bool"),
    ("gains object floats", lambda: group(M3, G3.astype(object), 2), OK, BEST),
    ("gains object strings (fixed: were parsed)", lambda: group(M3, np.full((7, 3), "1", object), 2), InputTypeError, "str '1' at index (0, 0)"),
    ("gains object None inside", lambda: group(M3, np.full((7, 3), None, object), 2), InputError, "finite inside"),
    ("gains str", lambda: group(M3, np.full((7, 3), "1"), 2), InputTypeError, "str values"),
    ("gains complex", lambda: group(M3, G3.astype(complex), 2), InputTypeError, "complex"),
    ("gains datetime", lambda: group(M3, np.full((7, 3), np.datetime64("2020-01-01")), 2), InputTypeError, "datetime"),
    ("gains 0-d", lambda: group(M3, np.float64(1.0), 2), InputError, "2-D"),
    ("gains 3-d", lambda: group(M3, np.ones((7, 3, 1)), 2), InputError, "2-D"),
    ("gains 0 x 0", lambda: group(np.array([], np.uint64), np.zeros((0, 0)), 1), InputError, "n_tasks"),
    ("gains Fortran order", lambda: group(M3, np.asfortranarray(G3), 2), OK, BEST),
    ("gains negative stride", lambda: group(M3[::-1], G3[::-1], 2), OK, BEST),
    ("gains non-contiguous", lambda: group(M3, np.repeat(G3, 2, axis=1)[:, ::2], 2), OK, BEST),
    ("gains read-only", lambda: group(_readonly(M3), _readonly(G3), 2), OK, BEST),
    ("gains NaN inside", lambda: group(M3, np.full((7, 3), np.nan), 2), InputError, "row 0 (mask 1), task 0 is nan"),
    ("gains +inf inside", lambda: group(M3, np.where(INSIDE, np.inf, np.nan), 2), InputError, "is inf"),
    ("gains inf outside (ignored)", lambda: group(M3, np.where(INSIDE, 0.1, np.inf), 2), OK, BEST),
    ("gains near 1e308 (fixed)", lambda: group(M3, np.where(INSIDE, 5e307, np.nan), 1), OK, lambda r: r.value == 1.5e308),
    ("gains sum beyond float64 (fixed)", lambda: group(M3, np.where(INSIDE, 1e308, np.nan), 1), InputError, "float64 range"),
    ("gains subnormal", lambda: group(M3, np.where(INSIDE, 5e-324, np.nan), 1), OK, lambda r: r.value == 1.5e-323),
    # -- masks
    ("masks list", lambda: group(list(map(int, M3)), G3, 2), OK, BEST),
    ("masks generator", lambda: group((int(x) for x in M3), G3, 2), OK, BEST),
    ("masks torch int64", lambda: group(_torch().tensor(M3.astype(np.int64)), G3, 2), OK, BEST),
    ("masks pandas Series", lambda: group(_pd().Series(M3.astype(np.int64)), G3, 2), OK, BEST),
    ("masks set (fixed: arbitrary order)", lambda: group(set(map(int, M3)), G3, 2), InputTypeError, "got set"),
    ("masks dict (fixed: keys used)", lambda: group({1: 2}, np.zeros((1, 2)), 1), InputTypeError, "got dict"),
    ("masks str", lambda: group("13", np.zeros((2, 2)), 1), InputTypeError, "got str"),
    ("masks None", lambda: group(None, G3, 2), InputTypeError, "masks"),
    ("masks float", lambda: group(M3.astype(float), G3, 2), InputTypeError, "integers"),
    ("masks object 2.5 (fixed: truncated to 2)", lambda: group(np.array([1, 2.5], object), np.zeros((2, 2)), 1), InputTypeError, "float 2.5 at index 1"),
    ("masks object '3' (fixed: parsed)", lambda: group(np.array([1, "3"], object), np.zeros((2, 2)), 1), InputTypeError, "str '3'"),
    ("masks object 2^64", lambda: group(np.array([1, 2**64], object), np.zeros((2, 2)), 1), InputError, "2^64"),
    ("masks bool", lambda: group(np.array([True]), np.zeros((1, 1)), 1), InputTypeError, "integers"),
    ("masks negative int8", lambda: group(np.array([1, -1], np.int8), np.zeros((2, 2)), 1), InputError, "non-negative"),
    ("mask 0", lambda: group(np.array([0, 1], np.uint64), np.zeros((2, 1)), 1), InputError, "mask 0"),
    ("mask >= 2^N", lambda: group(np.array([1, 4], np.uint64), np.zeros((2, 2)), 1), InputError, "task bit >= n_tasks=2"),
    ("duplicate masks, different gains", lambda: group(np.array([1, 1], np.uint64), np.array([[0.1], [0.2]]), 1), InputError, "duplicate combination (mask 1)"),
    ("masks 2-d", lambda: group(M3[:, None], G3, 2), InputError, "1-D"),
    ("masks/gains length mismatch", lambda: group(M3[:3], G3, 2), InputError, "3 masks but 7 gain rows"),
    # -- N at the edges
    ("N = 1", lambda: group([1], [[0.5]], 1), OK, lambda r: r.value == 0.5),
    ("N = 63", lambda: group(np.array([2**63 - 1], np.uint64), np.ones((1, 63)), 1), OK, lambda r: r.value == 63),
    ("N = 64", lambda: group(np.array([2**64 - 1], np.uint64), np.ones((1, 64)), 1), OK, lambda r: r.value == 64),
    ("N = 64, bit 63 alone", lambda: group(np.array([2**63], np.uint64), np.ones((1, 64)), 64), OK, lambda r: r.value == 1),
    ("N = 65", lambda: group([1], np.ones((1, 65)), 1), InputError, "[1, 64]"),
    # -- budget
    ("budget 0", lambda: group(M3, G3, 0), InputError, "budget must be >= 1"),
    ("budget -1", lambda: group(M3, G3, -1), InputError, "budget must be >= 1"),
    ("budget 1.0", lambda: group(M3, G3, 1.0), InputTypeError, "budget must be an int"),
    ("budget True", lambda: group(M3, G3, True), InputTypeError, "budget must be an int"),
    ("budget np.int8", lambda: group(M3, G3, np.int8(2)), OK, BEST),
    ("budget 0-d array (fixed)", lambda: group(M3, G3, np.array(2)), OK, BEST),
    ("budget 0-d float array", lambda: group(M3, G3, np.array(2.0)), InputTypeError, "budget"),
    ("budget 2^64 - 1", lambda: group(M3, G3, np.uint64(2**64 - 1)), InputError, "too large"),
    ("budget 2^31 - 1", lambda: group(M3, G3, 2**31 - 1), OK, BEST),
    ("budget []", lambda: group(M3, G3, []), InputError, "empty"),
    ("budget set", lambda: group(M3, G3, {1, 2}), InputTypeError, "budget"),
    ("budget str", lambda: group(M3, G3, "2"), InputTypeError, "budget"),
    # -- other options
    ("time_limit NaN", lambda: group(M3, G3, 2, time_limit=float("nan")), InputError, "time_limit"),
    ("time_limit -1", lambda: group(M3, G3, 2, time_limit=-1), InputError, "time_limit"),
    ("time_limit inf", lambda: group(M3, G3, 2, time_limit=float("inf")), InputError, "time_limit"),
    ("time_limit 1e300", lambda: group(M3, G3, 2, time_limit=1e300), OK, BEST),
    ("uncovered misspelt", lambda: group(M3, G3, 2, uncovered="singelton"), InputError, "'singelton'"),
    ("uncovered list", lambda: group(M3, G3, 2, uncovered=["alone"]), InputError, "uncovered"),
    ("method 'Exact'", lambda: group(M3, G3, 2, method="Exact"), InputError, "method"),
    ("beam_width 0", lambda: group(M3, G3, 2, beam_width=0), InputError, "beam_width must be in [1, 100000]"),
    ("beam_width True", lambda: group(M3, G3, 2, beam_width=True), InputTypeError, "beam_width must be an int"),
    ("gap_tol NaN", lambda: group(M3, G3, 2, gap_tol=float("nan")), InputError, "gap_tol"),
    ("local_search 1", lambda: group(M3, G3, 2, local_search=1), InputTypeError, "local_search"),
    # -- evaluate
    ("evaluate without masks", lambda: evaluate(group(M3, G3, 2), G3), InputError, "masks are required"),
    ("evaluate torch table", lambda: evaluate(group(M3, G3, 2), _torch().tensor(G3), M3), OK, lambda v: abs(v - 0.1) < 1e-12),
    ("evaluate other N", lambda: evaluate(group(M3, G3, 2), np.zeros((1, 2)), [3]), InputError, "3 tasks"),
    ("evaluate missing group", lambda: evaluate(group(M3, G3, 2), np.zeros((1, 3)), [1]), InputError, "not in the gain table"),
    ("evaluate not a Grouping", lambda: evaluate(object(), G3, M3), InputTypeError, "Grouping"),
    ("evaluate mean of 1e308s (fixed)", lambda: evaluate(group([7], [[1 / 3] * 3], 1), [[1e308] * 3], [7]), OK, lambda v: v == 1e308),
    # -- enumeration helpers
    ("all_masks(40) over the limit (fixed: raw ValueError)", lambda: all_masks(40), InputError, "GiB"),
    ("all_masks max_bytes 2.5 (fixed)", lambda: all_masks(3, max_bytes=2.5), InputTypeError, "max_bytes"),
    ("all_masks max_bytes -1 (fixed)", lambda: all_masks(3, max_bytes=-1), InputError, "max_bytes"),
    ("all_masks max_bytes 2^80 (fixed)", lambda: all_masks(3, max_bytes=2**80), OK, lambda r: len(r) == 7),
    ("all_masks 3.0", lambda: all_masks(3.0), InputTypeError, "n_tasks"),
    ("k_subsets k=2.5 (fixed: truncated)", lambda: k_subsets(4, 2.5), InputTypeError, "k must be an int"),
    ("k_subsets k='2' (fixed: parsed)", lambda: k_subsets(4, "2"), InputTypeError, "k must be an int"),
    ("k_subsets k=True (fixed)", lambda: k_subsets(4, True), InputTypeError, "k must be an int"),
    ("k_subsets(64, 32)", lambda: k_subsets(64, 32), InputError, "GiB"),
    ("sample_masks count 2.5 (fixed)", lambda: sample_masks(4, 2.5), InputTypeError, "count must be an int"),
    ("sample_masks sizes=2 (fixed: raw TypeError)", lambda: sample_masks(4, 2, sizes=2), InputTypeError, "sizes"),
    ("sample_masks sizes=[2.7] (fixed: truncated)", lambda: sample_masks(4, 2, sizes=[2.7]), InputTypeError, "sizes must be an int"),
    ("sample_masks seed 1.5 (fixed: truncated)", lambda: sample_masks(4, 2, seed=1.5), InputTypeError, "seed must be an int"),
    ("sample_masks seed None (fixed)", lambda: sample_masks(4, 2, seed=None), InputTypeError, "seed"),
    ("sample_masks 2^62 draws", lambda: sample_masks(64, 2**62), InputError, "memory"),
    ("unrank float ranks", lambda: unrank([1.0], 4, 2), InputError, "integer"),
    ("unrank k=2.5 (fixed)", lambda: unrank([0], 4, 2.5), InputTypeError, "k must be an int"),
    ("popcount str", lambda: popcount("7"), InputTypeError, "str"),
    ("rank mask 0", lambda: rank([0]), InputError, "mask 0"),
    ("mask_to_indices 2^64 (fixed: gave [64])", lambda: mask_to_indices(2**64), InputError, "mask must be in [0, 2^64)"),
    ("mask_to_indices 1.0 (fixed)", lambda: mask_to_indices(1.0), InputTypeError, "mask must be an int"),
    ("mask_to_indices True (fixed)", lambda: mask_to_indices(True), InputTypeError, "mask must be an int"),
    ("indices_to_mask 3 (fixed: raw TypeError)", lambda: indices_to_mask(3), InputTypeError, "indices"),
    ("indices_to_mask [1.0] (fixed)", lambda: indices_to_mask([1.0]), InputTypeError, "task index must be an int"),
    ("indices_to_mask [64]", lambda: indices_to_mask([64]), InputError, "[0, 64)"),
    ("names_to_mask 'ab' (fixed: letters)", lambda: names_to_mask("ab", ["a", "b"]), InputTypeError, "names"),
    ("dense_to_masks 2.0", lambda: dense_to_masks(np.full((1, 3), 2.0)), InputError, "0 and 1"),
    # -- GainTable
    ("GainTable gains None", lambda: GainTable(M3, None, ("a", "b", "c")), InputTypeError, "gains"),
    ("GainTable names str", lambda: GainTable(M3, G3, "abc"), InputTypeError, "task_names"),
    ("GainTable empty name (fixed)", lambda: GainTable(M3, G3, ("", "b", "c")), InputError, "must not be empty"),
    ("GainTable names/columns mismatch (fixed: misleading)", lambda: GainTable(M3, G3, ("a", "b")), InputError, "3 columns (tasks) but 2 task names"),
    ("GainTable.select short bool mask (fixed: raw IndexError)", lambda: GainTable(M3, G3, ("a", "b", "c")).select([True]), InputError, "shape (7,)"),
    ("GainTable.select float rows (fixed: raw IndexError)", lambda: GainTable(M3, G3, ("a", "b", "c")).select(np.array([0.5])), InputTypeError, "integer indices"),
    ("GainTable.select row 9 (fixed: raw IndexError)", lambda: GainTable(M3, G3, ("a", "b", "c")).select([9]), InputError, "[-7, 7)"),
    ("GainTable.select []", lambda: len(GainTable(M3, G3, ("a", "b", "c")).select([])), OK, lambda n: n == 0),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_api_case(call, exc, words):
    if exc is OK:
        try:
            result = call()
        except MtgfastError as e:  # pragma: no cover - reported as the failure
            pytest.fail(f"expected a result, got {type(e).__name__}: {e}")
        if callable(words):
            assert words(result), result
        else:
            assert [int(m) for m in result.groups] == words, result
        return
    with pytest.raises(exc) as info:
        call()
    assert isinstance(info.value, MtgfastError), type(info.value)
    assert words in str(info.value), str(info.value)
