"""Fuzzing the boundaries: the file readers on arbitrary bytes and ``group()`` on arbitrary arrays
give either a clear error (``InputError``/``InputTypeError``) or a valid result, never anything
else (no raw numpy/pandas/csv/unicode error, no crash, no invalid table or grouping).

``MTGFAST_FUZZ_EXAMPLES=5000`` runs a longer fuzz (the default run uses a few hundred examples)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mtgfast import GainTable, group
from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import load_table, read_matrix
from mtgfast.grouping import Grouping

CLEAR = (InputError, InputTypeError)
SCALE = max(1, int(os.environ.get("MTGFAST_FUZZ_EXAMPLES", "0")) // 100)

# bytes that look like the files (digits, separators, words of the headers) and arbitrary bytes
_ALPHABET = list(b"0123456789 ,;\t\n.-+eEnaifxNIF") + [0, 0xC3, 0xFF, 0xDF]
structured = st.lists(st.sampled_from(_ALPHABET), max_size=200).map(bytes)
headers = st.sampled_from([b"mask,task,gain\n", b"tasks,task,gain\n", b"mask;task;gain\n",
                           b"tasks\ttask\tgain\tsplit\n", b"mask task gain\n", b""])
tidy_rows = st.lists(st.tuples(
    st.sampled_from([b"1", b"2", b"3", b"3.5", b"-1", b"0", b"x", b"7", b"a+b", b"a", b"b|c",
                     b"", b"99999999999999999999999"]),
    st.sampled_from([b"t0", b"t1", b"t2", b"a", b"b", b"c", b"", b"t99"]),
    st.sampled_from([b"0", b"0.1", b"-2e-3", b"abc", b"nan", b"inf", b"", b"1e400", b"\xff"]),
), max_size=8)
tidy_files = st.builds(
    lambda h, rows, sep: h + b"".join(sep.join(r) + b"\n" for r in rows), headers, tidy_rows,
    st.sampled_from([b",", b";", b"\t", b" "]))


@st.composite
def mutated_tidy(draw: st.DrawFn) -> bytes:
    """A valid tidy CSV of a small table, then maybe one mutation (byte, line, or field)."""
    n = draw(st.integers(1, 3))
    masks = sorted(draw(st.sets(st.integers(1, (1 << n) - 1), min_size=1)))
    lines = [b"mask,tasks,task,gain"]
    for m in masks:
        for j in range(n):
            if (m >> j) & 1:
                gain = draw(st.floats(-1.0, 1.0)) if m & (m - 1) else 0.0
                label = "+".join(f"t{k}" for k in range(n) if (m >> k) & 1)
                lines.append(f"{m},{label},t{j},{gain!r}".encode())
    kind = draw(st.sampled_from(["none", "none", "byte", "drop", "dup", "field"]))
    if kind == "byte":
        text = bytearray(b"\n".join(lines))
        i = draw(st.integers(0, len(text) - 1))
        text[i] = draw(st.integers(0, 255))
        return bytes(text)
    if kind in ("drop", "dup") and len(lines) > 1:
        i = draw(st.integers(1, len(lines) - 1))
        lines = lines[:i] + lines[i + 1:] if kind == "drop" else lines[:i + 1] + lines[i:]
    if kind == "field" and len(lines) > 1:
        i = draw(st.integers(1, len(lines) - 1))
        fields = lines[i].split(b",")
        fields[draw(st.integers(0, 3))] = draw(st.sampled_from(
            [b"3.5", b"abc", b"", b"nan", b"-1", b"t9", b"1e999", b"\xff", b"0x3"]))
        lines[i] = b",".join(fields)
    return b"\n".join(lines) + b"\n"


any_bytes = st.one_of(st.binary(max_size=200), structured, tidy_files, mutated_tidy())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _check_table(t: object) -> None:
    assert isinstance(t, GainTable)
    n = t.n_tasks
    assert 1 <= n <= 64 and t.masks.dtype == np.uint64 and t.gains.shape == (len(t), n)
    assert len(np.unique(t.masks)) == len(t) and np.all(t.masks > 0)
    member = t.member()
    assert np.isnan(t.gains[~member]).all()
    assert np.isfinite(t.gains[member]).all()


def _clear_or_valid(fn: Any, check: Any) -> None:
    try:
        result = fn()
    except CLEAR as exc:
        assert str(exc).strip(), "an error needs a message"
        return
    check(result)


@given(data=any_bytes, masks=st.one_of(structured, st.just(b"1 0\n0 1\n1 1\n")))
@settings(max_examples=120 * SCALE)
def test_readers_on_arbitrary_bytes(workdir: Path, data: bytes, masks: bytes) -> None:
    path, mpath, ppath = workdir / "f.csv", workdir / "m.csv", workdir / "f.parquet"
    path.write_bytes(data)
    mpath.write_bytes(masks)
    ppath.write_bytes(data)

    def matrix_ok(a: object) -> None:
        assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == 2
        assert a.shape[0] >= 1 and a.shape[1] >= 1

    _clear_or_valid(lambda: read_matrix(path, name="gain file"), matrix_ok)
    _clear_or_valid(lambda: GainTable.from_mtgnet(mpath, path), _check_table)
    _clear_or_valid(lambda: GainTable.from_tidy(path), _check_table)
    _clear_or_valid(lambda: GainTable.from_tidy(path, ["t0", "t1", "t2"]), _check_table)
    _clear_or_valid(lambda: load_table(path, mpath), _check_table)
    _clear_or_valid(lambda: GainTable.from_tidy(ppath), _check_table)


# -- group() on arbitrary arrays -----------------------------------------------------------------
_DTYPES = st.sampled_from([np.bool_, np.int8, np.int64, np.uint64, np.float32, np.float64,
                           np.complex128, np.str_])


def _elements(dtype: Any) -> st.SearchStrategy[Any]:
    if dtype in (np.float32, np.float64):
        # |gain| <= 1e6: the stated domain (MTGNet.MAX_ABS_GAIN); NaN and inf are in play
        return st.one_of(st.floats(-1e6, 1e6, width=32 if dtype is np.float32 else 64),
                         st.sampled_from([math.nan, math.inf, -math.inf]))
    if dtype is np.str_:
        return st.sampled_from(["0.1", "a", "", "nan"])
    return hnp.from_dtype(np.dtype(dtype))


@st.composite
def gain_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(_DTYPES)
    shape = draw(st.one_of(st.tuples(st.integers(0, 8), st.integers(0, 5)),
                           hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)))
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


masks_any = st.one_of(
    st.lists(st.integers(-3, 40), max_size=8),
    hnp.arrays(st.sampled_from([np.int64, np.uint64, np.float64]),
               st.integers(0, 8), elements=st.integers(0, 31)),
    hnp.arrays(np.bool_, st.integers(0, 8)),
    st.just(None), st.just("1,2"))
budgets = st.one_of(st.integers(-1, 9), st.lists(st.integers(0, 6), max_size=3),
                    st.just("2"), st.just(2.0), st.just(None))


def _check_grouping(result: object, masks: object, gains: np.ndarray, budget: object) -> None:
    found = result if isinstance(result, list) else [result]
    m = np.asarray(masks).astype(np.uint64)
    n = np.asarray(gains).shape[1]
    for g in found:
        assert isinstance(g, Grouping)
        assert len(g.groups) <= g.budget
        assert g.assignment.shape == (n,) and g.task_gains.shape == (n,)
        assert np.isfinite(g.task_gains).all() and math.isfinite(g.value)
        singles = {1 << j for j in range(n)}
        assert all(int(x) in set(m.tolist()) | singles for x in g.groups)
        for j, a in enumerate(g.assignment):
            if a >= 0:
                assert (int(g.groups[a]) >> j) & 1   # a task is served by a group holding it


@given(masks=masks_any, gains=gain_arrays(), budget=budgets,
       method=st.sampled_from(["auto", "exact", "beam"]),
       uncovered=st.sampled_from(["singleton", "alone"]))
@settings(max_examples=150 * SCALE)
def test_group_on_arbitrary_arrays(masks: object, gains: np.ndarray, budget: object, method: str,
                                   uncovered: str) -> None:
    try:
        result = group(masks, gains, budget, method=method, uncovered=uncovered)
    except CLEAR as exc:
        assert str(exc).strip()
        return
    _check_grouping(result, masks, gains, budget)


@given(masks=st.sets(st.integers(1, 31), min_size=1, max_size=31).map(sorted),
       seed=st.integers(0, 2**32 - 1), budget=st.integers(1, 5))
@settings(max_examples=40 * SCALE)
def test_group_valid_tables_give_valid_groupings(masks: list[int], seed: int,
                                                 budget: int) -> None:
    # the counterpart: well-formed tables must mostly succeed, so the fuzz above is not vacuous
    m = np.array(masks, dtype=np.uint64)
    member = GainTable.from_arrays(m, np.zeros((len(m), 5))).member()
    gains = np.where(member, np.random.default_rng(seed).normal(size=member.shape), np.nan)
    result = group(m, gains, budget, uncovered="alone")
    _check_grouping(result, m, gains, budget)
