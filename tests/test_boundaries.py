"""Every public boundary answers a bad input clearly (issue 15), table-driven.

Each case names the call, the exception type it must raise (a ``mtgfast.errors`` subclass of
ValueError/TypeError) and the words its message must hold: the argument, the file and line for
text files, what was expected or found. CLI cases run ``mtgfast.cli.main`` in-process and assert
exit status 2 and one ``mtgfast: error: ...`` line on stderr (no traceback), before any training.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mtgfast import GainTable, group
from mtgfast.errors import InputError, InputTypeError, MtgfastError
from mtgfast.gains import check_gains, load_table, read_matrix, read_text
from mtgfast.grouping import evaluate, evaluate_tasks
from mtgfast.replay import parse_budgets, replay

# -- files written once per module --------------------------------------------------------------
M3 = "".join(" ".join("1" if (m >> j) & 1 else "0" for j in range(3)) + "\n" for m in range(1, 8))
G3 = "".join(" ".join(f"{0.01 * (m + j):.2f}" if (m >> j) & 1 and m & (m - 1) else "0"
                      for j in range(3)) + "\n" for m in range(1, 8))

FILES: dict[str, bytes] = {
    "empty.csv": b"",
    "blank.csv": b"\n  \n\n",
    "binary.csv": b"1 0\n\x00\x01\x02\x03",
    "latin1.csv": "1 0\n0 1\nma\xdf\n".encode("latin-1"),
    "m3.csv": M3.encode(),
    "g3.csv": G3.encode(),
    "m2.csv": b"1 0\n0 1\n1 1\n",
    "g2.csv": b"0 0\n0 0\n0.1 0.2\n",
    "m2_35.csv": b"1 0\n0 1\n1 3.5\n",
    "m2_two.csv": b"1 0\n0 2\n1 1\n",
    "m2_zero.csv": b"1 0\n0 0\n1 1\n",
    "m2_short.csv": b"1 0\n0 1\n",
    "m2_nan.csv": b"1 0\n0 1\nnan 1\n",
    "g2_abc.csv": b"0 0\n0 0\n0.1 abc\n",
    "g2_inf.csv": b"0 0\n0 0\n0.1 inf\n",
    "g2_nan.csv": b"0 0\n0 0\nnan 0.2\n",
    "g2_big.csv": b"0 0\n0 0\n1e308 0.2\n",
    "g2_ragged.csv": b"0 0\n0\n0.1 0.2\n",
    "g2_3col.csv": b"0 0 0\n0 0 0\n0.1 0.2 0\n",
    "g2_outside.csv": b"0 0.5\n0 0\n0.1 0.2\n",
    "g2_longfield.csv": b"0 0\n0 0\n0.1 " + b"x" * 80 + b"\n",
    "tidy_ok.csv": b"mask,task,gain\n1,t0,0\n2,t1,0\n3,t0,0.1\n3,t1,0.2\n",
    "tidy_header.csv": b"mask,task,gain\n",
    "tidy_abc.csv": b"mask,task,gain\n3,t0,abc\n3,t1,0.2\n",
    "tidy_mask35.csv": b"mask,task,gain\n3.5,t0,0.1\n3,t1,0.2\n",
    "tidy_maskx.csv": b"mask,task,gain\nx,t0,0\n",
    "tidy_maskneg.csv": b"mask,task,gain\n-1,t0,0\n",
    "tidy_maskhuge.csv": b"mask,task,gain\n1180591620717411303424,t0,0\n",
    "tidy_ragged.csv": b"mask,task,gain\n3,t0\n",
    "tidy_gainempty.csv": b"mask,task,gain\n3,t0,\n3,t1,0.2\n",
    "tidy_gaininf.csv": b"mask,task,gain\n3,t0,inf\n3,t1,0.2\n",
    "tidy_dupcols.csv": b"mask,mask,task,gain\n1,1,t0,0\n",
    "tidy_nocols.csv": b"mask,task,value\n1,t0,0\n",
    "tidy_dup.csv": b"mask,task,gain\n3,t0,0.1\n3,t0,0.2\n3,t1,0\n",
    "tidy_outside.csv": b"mask,task,gain\n1,t1,0.1\n",
    "tidy_member.csv": b"mask,task,gain\n3,t0,0.1\n",
    "tidy_names.csv": b"mask,task,gain\n1,depth,0\n",
    "tidy_emptytask.csv": b"mask,task,gain\n1,,0\n",
    "tidy_unknown.csv": b"tasks,task,gain\na+b,c,0.1\n",
    "tidy_splits.csv": b"tasks,task,gain,split\na,a,0,valid\na,a,0,test\n",
    "tidy_binary.csv": b"mask,task,gain\n3,t0,0\x00\n",
    "tidy_latin1.csv": "mask,task,gain\n3,t\xe9,0\n".encode("latin-1"),
    "garbage.parquet": b"PAR1 this is not a parquet file",
    "garbage.pt": b"not a torch file at all" * 4,
    "empty.db": b"",
    "etth1_binary.csv": b"date,HUFL\n\x00\x00\x00",
    "etth1_latin1.csv": "date,HUFL\n2016-07-01,5\xb0\n".encode("latin-1"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("boundaries")
    out = {}
    for name, data in FILES.items():
        (d / name).write_bytes(data)
        out[name] = str(d / name)
    (d / "folder").mkdir()
    out["folder"] = str(d / "folder")
    out["missing.csv"] = str(d / "missing.csv")
    out["missing.parquet"] = str(d / "missing.parquet")
    out["missing.pt"] = str(d / "missing.pt")
    out["missing.db"] = str(d / "missing.db")
    out["nodir/out.json"] = str(d / "nodir" / "out.json")
    out["out.json"] = str(d / "out.json")
    out["out.xyz"] = str(d / "out.xyz")
    with open(d / "pickled.pt", "wb") as fh:
        pickle.dump({"format": "mtgfast.MTGNet/1"}, fh, protocol=2)
    out["pickled.pt"] = str(d / "pickled.pt")
    return out


def _expect(fn: Callable[[], Any], exc: type[BaseException], words: tuple[str, ...]) -> None:
    with pytest.raises(exc) as info:
        fn()
    assert isinstance(info.value, MtgfastError), f"raw {type(info.value).__name__}: {info.value}"
    assert isinstance(info.value, (ValueError, TypeError))
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


M = np.array([1, 2, 3], dtype=np.uint64)
G = np.array([[0.0, np.nan], [np.nan, 0.0], [0.1, 0.2]])


def _table() -> GainTable:
    return GainTable(M, G, ("a", "b"))


# -- Python API: gain tables ---------------------------------------------------------------------
API: list[tuple[str, Callable[[], Any], type, tuple[str, ...]]] = [
    ("names-None", lambda: GainTable(M, G, None), InputTypeError, ("task_names", "NoneType")),
    ("names-str", lambda: GainTable(M, G, "ab"), InputTypeError, ("task_names", "str")),
    ("names-int", lambda: GainTable(M, G, 2), InputTypeError, ("task_names", "int")),
    ("names-dup", lambda: GainTable(M, G, ("a", "a")), InputError, ("distinct",)),
    ("meta-list", lambda: GainTable(M, G, ("a", "b"), [1]), InputTypeError, ("meta", "list")),
    ("gains-bool", lambda: GainTable(M, G > 0, ("a", "b")), InputTypeError, ("gains", "bool")),
    ("gains-str", lambda: GainTable(M, [["1", "x"]] * 3, ("a", "b")), InputTypeError,
     ("gains", "real numbers")),
    ("gains-complex", lambda: GainTable(M, G + 1j, ("a", "b")), InputTypeError,
     ("gains", "complex")),
    ("gains-None", lambda: GainTable(M, None, ("a", "b")), InputTypeError, ("gains", "None")),
    ("gains-ragged", lambda: GainTable(M, [[0, 1], [1]], ("a", "b")), InputTypeError,
     ("gains",)),
    ("gains-shape", lambda: GainTable(M, np.zeros((2, 2)), ("a", "b")), InputError,
     ("shape", "(3, 2)")),
    ("gains-nan-inside", lambda: GainTable(M, np.full((3, 2), np.nan), ("a", "b")), InputError,
     ("finite", "row 0", "task 0")),
    ("gains-inf-inside", lambda: GainTable(M, np.where(np.isnan(G), G, np.inf), ("a", "b")),
     InputError, ("finite", "inf")),
    ("masks-dup", lambda: GainTable([3, 3], np.zeros((2, 2)), ("a", "b")), InputError,
     ("duplicate", "mask 3")),
    ("masks-neg", lambda: GainTable([-1], np.zeros((1, 2)), ("a", "b")), InputError,
     ("non-negative",)),
    ("masks-float", lambda: GainTable([1.5], np.zeros((1, 2)), ("a", "b")), InputTypeError,
     ("integers",)),
    ("masks-bool", lambda: GainTable([True], np.zeros((1, 2)), ("a", "b")), InputTypeError,
     ("bool",)),
    ("arrays-1d", lambda: GainTable.from_arrays(M, [0.1, 0.2, 0.3]), InputError, ("2-D",)),
    ("arrays-names", lambda: GainTable.from_arrays(M, G, ["a"]), InputError,
     ("1 task names", "2 gain columns")),
    ("arrays-names-str", lambda: GainTable.from_arrays(M, G, "ab"), InputTypeError,
     ("task_names",)),
    ("arrays-rows", lambda: GainTable.from_arrays(M[:2], G), InputError, ("2 masks", "3 gain")),
    ("arrays-outside-kw", lambda: GainTable.from_arrays(M, G, outside="x"), InputError,
     ("outside", "'x'")),
    ("arrays-outside-value", lambda: GainTable.from_arrays(M, np.nan_to_num(G, nan=0.5)),
     InputError, ("outside", "row 0")),
    ("arrays-bool", lambda: GainTable.from_arrays(M, G > 0), InputTypeError, ("bool",)),
    ("check-gains-bool", lambda: check_gains(M, np.ones((3, 2), bool), 2), InputTypeError,
     ("bool",)),
    ("tidy-type", lambda: GainTable.from_tidy(123), InputTypeError, ("DataFrame", "int")),
    ("tidy-split-type", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [1], "task": ["t0"],
                                                                  "gain": [0.0]}), split=1),
     InputTypeError, ("split",)),
    ("tidy-meta-type", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [1], "task": ["t0"],
                                                                 "gain": [0.0]}), meta=[1]),
     InputTypeError, ("meta",)),
    ("frame-bool-mask", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [True], "task": ["t0"],
                                                                  "gain": [0.0]})),
     InputError, ("mask", "bool", "row 0")),
    ("frame-mask-3.5", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [3.5], "task": ["t0"],
                                                                 "gain": [0.0]})),
     InputError, ("mask", "3.5", "integers")),
    ("frame-gain-abc", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [3, 3],
                                                                 "task": ["t0", "t1"],
                                                                 "gain": ["abc", 0.1]})),
     InputError, ("'abc'", "not a number", "row 0")),
    ("frame-gain-nan", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [3, 3],
                                                                 "task": ["t0", "t1"],
                                                                 "gain": [np.nan, 0.1]})),
     InputError, ("finite", "row 0")),
    ("frame-gain-bool", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [1], "task": ["t0"],
                                                                  "gain": [True]})),
     InputError, ("gain", "bool")),
    ("frame-no-rows", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [], "task": [],
                                                                "gain": []})),
     InputError, ("no data rows",)),
    ("frame-columns", lambda: GainTable.from_tidy(pd.DataFrame({"m": [1]})), InputError,
     ("columns", "'task'", "'gain'")),
    ("frame-65-tasks", lambda: GainTable.from_tidy(pd.DataFrame({"mask": [1], "task": ["t64"],
                                                                 "gain": [0.0]})),
     InputError, ("64 tasks",)),
    ("wide-index", lambda: GainTable.from_pandas(pd.DataFrame({"a": [0.0]}, index=["x"])),
     InputError, ("integer masks",)),
    ("to-pandas-kind", lambda: _table().to_pandas("long"), InputError, ("kind", "'long'")),
    ("lookup-missing", lambda: _table().select([0]).lookup([2]), InputError,
     ("not in the gain table",)),
    ("reindex-missing", lambda: _table().select([0]).reindex([3]), InputError,
     ("combination 3", "not in the gain table")),
    ("with-gains-shape", lambda: _table().with_gains(np.zeros((1, 2))), InputError, ("shape",)),
    ("read-text-type", lambda: read_text(123), InputTypeError, ("path", "int")),
    ("load-scale-str", lambda: load_table("x.csv", scale="2"), InputTypeError, ("scale", "str")),
    ("load-scale-inf", lambda: load_table("x.csv", scale=float("inf")), InputError,
     ("scale", "finite")),
    ("load-scale-zero", lambda: load_table("x.csv", scale=0), InputError, ("scale", "non-zero")),
    ("load-scale-bool", lambda: load_table("x.csv", scale=True), InputTypeError, ("scale",)),
]

# -- group() and evaluate() ----------------------------------------------------------------------
Z = np.zeros((3, 2))
GROUP: list[tuple[str, Callable[[], Any], type, tuple[str, ...]]] = [
    ("bool-gains", lambda: group(M, np.ones((3, 2), bool), 1), InputTypeError,
     ("gains", "bool")),
    ("bool-gains-list", lambda: group(M, [[True, False]] * 3, 1), InputTypeError, ("bool",)),
    ("str-gains", lambda: group(M, [["a", "b"]] * 3, 1), InputTypeError, ("gains",)),
    ("numeric-str-gains", lambda: group(M, [["0.1", "0.2"]] * 3, 1), InputTypeError,
     ("gains", "real numbers")),
    ("complex-gains", lambda: group(M, Z + 1j, 1), InputTypeError, ("complex",)),
    ("ragged-gains", lambda: group(M, [[0, 1], [1]], 1), InputTypeError, ("gains",)),
    ("1d-gains", lambda: group(M, [0.1, 0.2, 0.3], 1), InputError, ("2-D",)),
    ("65-tasks", lambda: group([1], np.zeros((1, 65)), 1), InputError, ("[1, 64]", "65")),
    ("0-tasks", lambda: group([], np.zeros((0, 0)), 1), InputError, ("[1, 64]",)),
    ("rows", lambda: group(M[:2], Z, 1), InputError, ("2 masks", "3 gain rows")),
    ("neg-mask", lambda: group([-1, 2, 3], Z, 1), InputError, ("non-negative",)),
    ("float-mask", lambda: group([1.5, 2, 3], Z, 1), InputTypeError, ("integers",)),
    ("bool-mask", lambda: group([True, False, True], Z, 1), InputTypeError, ("bool",)),
    ("None-masks", lambda: group(None, Z, 1), InputTypeError, ("masks",)),
    ("mask-range", lambda: group([1, 2, 8], Z, 1), InputError, ("8", "n_tasks=2")),
    ("dup-mask", lambda: group([1, 1, 3], Z, 1), InputError, ("duplicate",)),
    ("nan-inside", lambda: group(M, np.full((3, 2), np.nan), 1), InputError,
     ("finite", "row 0")),
    ("inf-inside", lambda: group(M, [[0, 0], [0, 0], [np.inf, 0]], 1), InputError,
     ("finite", "inf")),
    ("budget-0", lambda: group(M, Z, 0), InputError, ("budget", ">= 1")),
    ("budget-str", lambda: group(M, Z, "2"), InputTypeError, ("budget", "str")),
    ("budget-float", lambda: group(M, Z, 2.5), InputTypeError, ("budget", "float")),
    ("budget-bool", lambda: group(M, Z, True), InputTypeError, ("budget", "bool")),
    ("budget-empty", lambda: group(M, Z, []), InputError, ("budget", "empty")),
    ("budget-list-str", lambda: group(M, Z, [1, "a"]), InputTypeError, ("budget",)),
    ("budget-huge", lambda: group(M, Z, 10 ** 20), InputError, ("budget",)),
    ("method", lambda: group(M, Z, 1, method="fast"), InputError, ("method", "'fast'")),
    ("uncovered", lambda: group(M, Z, 1, uncovered="x"), InputError, ("uncovered", "'x'")),
    ("beam-width-0", lambda: group(M, Z, 1, method="beam", beam_width=0), InputError,
     ("beam_width",)),
    ("beam-width-str", lambda: group(M, Z, 1, beam_width="a"), InputTypeError, ("beam_width",)),
    ("time-limit-neg", lambda: group(M, Z, 1, time_limit=-1), InputError, ("time_limit",)),
    ("time-limit-str", lambda: group(M, Z, 1, time_limit="a"), InputTypeError, ("time_limit",)),
    ("evaluate-type", lambda: evaluate("x", Z, M), InputTypeError, ("Grouping", "str")),
    ("evaluate-no-masks", lambda: evaluate_tasks(group(M, Z, 2), Z), InputError,
     ("masks are required",)),
    ("evaluate-bool", lambda: evaluate(group(M, Z, 2), Z > 0, M), InputTypeError, ("bool",)),
]

# -- replay() ------------------------------------------------------------------------------------
REPLAY: list[tuple[str, Callable[[], Any], type, tuple[str, ...]]] = [
    ("valid-type", lambda: replay("x"), InputTypeError, ("valid", "GainTable")),
    ("test-type", lambda: replay(_table(), "x"), InputTypeError, ("test table", "GainTable")),
    ("unknown-method", lambda: replay(_table(), methods=["magic"]), InputError,
     ("unknown method", "'magic'")),
    ("no-method", lambda: replay(_table(), methods=[]), InputError, ("no method",)),
    ("dup-method", lambda: replay(_table(), methods=["oracle", "oracle"]), InputError,
     ("distinct",)),
    ("tag-missing", lambda: replay(_table(), methods=["tag"]), InputError, ("TAG",)),
    ("search", lambda: replay(_table(), methods=["oracle"], search="x"), InputError,
     ("search", "'x'")),
    ("uncovered", lambda: replay(_table(), methods=["oracle"], uncovered="x"), InputError,
     ("uncovered",)),
    ("seeds-0", lambda: replay(_table(), methods=["oracle"], seeds=0), InputError,
     ("seeds", ">= 1")),
    ("seeds-str", lambda: replay(_table(), methods=["oracle"], seeds="1"), InputTypeError,
     ("seeds", "int")),
    ("beam-0", lambda: replay(_table(), methods=["oracle"], beam_width=0), InputError,
     ("beam_width",)),
    ("trials-0", lambda: replay(_table(), methods=["oracle"], random_trials=0), InputError,
     ("random_trials",)),
    ("budget-exceeds", lambda: replay(_table(), methods=["oracle"], budgets="1-5"), InputError,
     ("exceeds", "2 tasks")),
    ("options-type", lambda: replay(_table(), methods=["oracle"], options=[1]), InputTypeError,
     ("options",)),
    ("test-tasks", lambda: replay(_table(), GainTable([1], [[0.0]], ("a",)), methods=["oracle"]),
     InputError, ("1 tasks",)),
    ("budgets-syntax", lambda: parse_budgets("a-b"), InputError, ("budgets", "'a-b'")),
    ("budgets-empty-range", lambda: parse_budgets("3-1"), InputError, ("empty",)),
    ("budgets-zero", lambda: parse_budgets("0-2"), InputError, (">= 1",)),
    ("budgets-none", lambda: parse_budgets(""), InputError, ("no budget",)),
    ("budgets-float", lambda: parse_budgets([1.5]), InputTypeError, ("ints",)),
    ("budgets-obj", lambda: parse_budgets(None), InputTypeError, ("budgets",)),
    ("to-dict-decimals", lambda: replay(_table(), methods=["oracle"]).to_dict(decimals=-1),
     InputError, ("decimals",)),
]


@pytest.mark.parametrize("name, fn, exc, words", API + GROUP + REPLAY,
                         ids=[c[0] for c in API + GROUP + REPLAY])
def test_python_api(name: str, fn: Callable[[], Any], exc: type, words: tuple[str, ...]) -> None:
    _expect(fn, exc, words)


# -- file readers: (call, files...) -> the file name and line must be in the message -------------
READERS: list[tuple[str, str, tuple[str, ...], type, tuple[str, ...]]] = [
    # (id, reader, file keys, exception, words)
    ("matrix-missing", "matrix", ("missing.csv",), InputError, ("missing.csv", "no such file")),
    ("matrix-folder", "matrix", ("folder",), InputError, ("directory",)),
    ("matrix-empty", "matrix", ("empty.csv",), InputError, ("empty.csv", "empty")),
    ("matrix-blank", "matrix", ("blank.csv",), InputError, ("blank.csv", "empty")),
    ("matrix-binary", "matrix", ("binary.csv",), InputError, ("binary.csv", "binary", "line 2")),
    ("matrix-latin1", "matrix", ("latin1.csv",), InputError,
     ("latin1.csv", "not UTF-8", "line 3", "0xdf")),
    ("matrix-abc", "matrix", ("g2_abc.csv",), InputError,
     ("g2_abc.csv", "line 3", "column 2", "'abc'")),
    ("matrix-ragged", "matrix", ("g2_ragged.csv",), InputError,
     ("g2_ragged.csv", "line 2", "ragged")),
    ("matrix-longfield", "matrix", ("g2_longfield.csv",), InputError, ("line 3", "...")),
    ("mtgnet-missing-masks", "mtgnet", ("missing.csv", "g2.csv"), InputError,
     ("mask file", "missing.csv", "no such file")),
    ("mtgnet-missing-gains", "mtgnet", ("m2.csv", "missing.csv"), InputError,
     ("gain file", "missing.csv", "no such file")),
    ("mtgnet-mask-3.5", "mtgnet", ("m2_35.csv", "g2.csv"), InputError,
     ("m2_35.csv", "only 0 and 1", "3.5", "row 3")),
    ("mtgnet-mask-2", "mtgnet", ("m2_two.csv", "g2.csv"), InputError,
     ("m2_two.csv", "only 0 and 1", "row 2")),
    ("mtgnet-mask-nan", "mtgnet", ("m2_nan.csv", "g2.csv"), InputError,
     ("m2_nan.csv", "only 0 and 1", "nan")),
    ("mtgnet-mask-zero-row", "mtgnet", ("m2_zero.csv", "g2.csv"), InputError,
     ("row 2", "all zeros")),
    ("mtgnet-rows", "mtgnet", ("m2_short.csv", "g2.csv"), InputError, ("2 rows", "has 3")),
    ("mtgnet-columns", "mtgnet", ("m2.csv", "g2_3col.csv"), InputError, ("columns",)),
    ("mtgnet-gain-abc", "mtgnet", ("m2.csv", "g2_abc.csv"), InputError,
     ("gain file", "g2_abc.csv", "line 3", "'abc'")),
    ("mtgnet-gain-inf", "mtgnet", ("m2.csv", "g2_inf.csv"), InputError,
     ("g2_inf.csv", "row 3", "finite", "inf")),
    ("mtgnet-gain-nan", "mtgnet", ("m2.csv", "g2_nan.csv"), InputError,
     ("g2_nan.csv", "row 3", "column 1", "nan")),
    ("mtgnet-gain-outside", "mtgnet", ("m2.csv", "g2_outside.csv"), InputError, ("outside",)),
    ("mtgnet-binary-gains", "mtgnet", ("m2.csv", "binary.csv"), InputError,
     ("gain file", "binary.csv", "binary")),
    ("mtgnet-latin1-masks", "mtgnet", ("latin1.csv", "g2.csv"), InputError,
     ("mask file", "latin1.csv", "UTF-8")),
    ("mtgnet-empty-masks", "mtgnet", ("empty.csv", "g2.csv"), InputError,
     ("mask file", "empty.csv", "empty")),
    ("mtgnet-folder", "mtgnet", ("folder", "g2.csv"), InputError, ("directory",)),
    ("tidy-empty", "tidy", ("empty.csv",), InputError, ("empty.csv", "empty", "header")),
    ("tidy-blank", "tidy", ("blank.csv",), InputError, ("blank.csv", "empty")),
    ("tidy-header-only", "tidy", ("tidy_header.csv",), InputError,
     ("tidy_header.csv", "no data rows")),
    ("tidy-gain-abc", "tidy", ("tidy_abc.csv",), InputError,
     ("tidy_abc.csv", "line 2", "'abc'", "not a number")),
    ("tidy-mask-3.5", "tidy", ("tidy_mask35.csv",), InputError,
     ("tidy_mask35.csv", "line 2", "'3.5'", "integers")),
    ("tidy-mask-x", "tidy", ("tidy_maskx.csv",), InputError,
     ("tidy_maskx.csv", "line 2", "integers")),
    ("tidy-mask-neg", "tidy", ("tidy_maskneg.csv",), InputError,
     ("line 2", "not a combination")),
    ("tidy-mask-huge", "tidy", ("tidy_maskhuge.csv",), InputError, ("64 tasks",)),
    ("tidy-ragged", "tidy", ("tidy_ragged.csv",), InputError,
     ("tidy_ragged.csv", "line 2", "2 fields", "expected 3")),
    ("tidy-gain-empty", "tidy", ("tidy_gainempty.csv",), InputError,
     ("line 2", "finite")),
    ("tidy-gain-inf", "tidy", ("tidy_gaininf.csv",), InputError, ("line 2", "finite", "inf")),
    ("tidy-dup-columns", "tidy", ("tidy_dupcols.csv",), InputError,
     ("line 1", "duplicate column")),
    ("tidy-columns", "tidy", ("tidy_nocols.csv",), InputError, ("columns", "'value'")),
    ("tidy-dup-row", "tidy", ("tidy_dup.csv",), InputError, ("line 3", "duplicate")),
    ("tidy-outside", "tidy", ("tidy_outside.csv",), InputError, ("line 2", "outside")),
    ("tidy-member-missing", "tidy", ("tidy_member.csv",), InputError,
     ("tidy_member.csv", "no finite gain", "'t1'")),
    ("tidy-needs-names", "tidy", ("tidy_names.csv",), InputError, ("task_names",)),
    ("tidy-empty-task", "tidy", ("tidy_emptytask.csv",), InputError,
     ("line 2", "empty task name")),
    ("tidy-unknown-task", "tidy", ("tidy_unknown.csv",), InputError, ("line 2", "outside")),
    ("tidy-splits", "tidy", ("tidy_splits.csv",), InputError, ("several splits",)),
    ("tidy-binary", "tidy", ("tidy_binary.csv",), InputError,
     ("tidy_binary.csv", "binary", "line 2")),
    ("tidy-latin1", "tidy", ("tidy_latin1.csv",), InputError,
     ("tidy_latin1.csv", "UTF-8", "line 2")),
    ("tidy-missing", "tidy", ("missing.csv",), InputError, ("missing.csv", "no such file")),
    ("parquet-missing", "tidy", ("missing.parquet",), InputError,
     ("missing.parquet", "no such file")),
    ("parquet-garbage", "tidy", ("garbage.parquet",), InputError,
     ("garbage.parquet", "not a readable Parquet file")),
    ("parquet-folder", "tidy", ("folder",), InputError, ("directory",)),
    ("load-binary", "load", ("binary.csv",), InputError, ("binary.csv", "binary")),
    ("load-latin1", "load", ("latin1.csv",), InputError, ("latin1.csv", "UTF-8")),
    ("load-missing", "load", ("missing.csv",), InputError, ("missing.csv", "no such file")),
    ("load-bare-matrix", "load", ("g2.csv",), InputError, ("bare gain matrix", "--masks")),
    ("load-missing-parquet", "load", ("missing.parquet",), InputError,
     ("missing.parquet", "no such file")),
    ("load-tidy-masks-rows", "load-masks", ("tidy_ok.csv", "m3.csv"), InputError,
     ("3 columns", "2 tasks")),
    ("load-tidy-masks-order", "load-masks", ("tidy_ok.csv", "m2_short.csv"), InputError,
     ("2 rows", "3 combinations")),
]


def _reader(kind: str, paths: list[str]) -> Callable[[], Any]:
    if kind == "matrix":
        return lambda: read_matrix(paths[0], name="gain file")
    if kind == "mtgnet":
        return lambda: GainTable.from_mtgnet(paths[0], paths[1])
    if kind == "tidy":
        return lambda: GainTable.from_tidy(paths[0])
    if kind == "load":
        return lambda: load_table(paths[0])
    return lambda: load_table(paths[0], paths[1])


@pytest.mark.parametrize("name, kind, keys, exc, words", READERS, ids=[c[0] for c in READERS])
def test_file_readers(files: dict[str, str], name: str, kind: str, keys: tuple[str, ...],
                      exc: type, words: tuple[str, ...]) -> None:
    _expect(_reader(kind, [files[k] for k in keys]), exc, words)


def test_readers_accept_good_files(files: dict[str, str]) -> None:
    # the counterpart of the table above: the same readers on good files give tables
    t = GainTable.from_mtgnet(files["m3.csv"], files["g3.csv"])
    assert t.n_tasks == 3 and len(t) == 7
    tidy = load_table(files["tidy_ok.csv"], files["m2.csv"])
    assert tidy.masks.tolist() == [1, 2, 3] and tidy.gains[2].tolist() == [0.1, 0.2]
    frame = pd.DataFrame({"mask": [3.0, 3, 1, 2], "task": ["t0", "t1", "t0", "t1"],
                          "gain": ["0.5", 1, 0, 0]})
    assert GainTable.from_tidy(frame).lookup([3]).tolist() == [[0.5, 1.0]]


# -- models --------------------------------------------------------------------------------------
def _mtgnet_table(bad: float | None = None, all_nan: bool = False) -> GainTable:
    masks = np.arange(1, 8, dtype=np.uint64)
    member = GainTable.from_arrays(masks, np.zeros((7, 3))).member()
    g = np.where(member, 0.05, np.nan)
    if bad is not None:
        g[5, 2] = bad
    if all_nan:
        g[member.sum(axis=1) >= 2] = np.nan
    return GainTable(masks, g, ("a", "b", "c"), {"allow_nan_inside": True})


MODELS: list[tuple[str, Callable[[Any, dict[str, str]], Any], type, tuple[str, ...]]] = [
    ("fit-inf", lambda C, f: C(max_epochs=2).fit(_mtgnet_table(np.inf)), InputError,
     ("finite", "row 5", "task 2", "'c'", "inf")),
    ("fit-neg-inf", lambda C, f: C(max_epochs=2).fit(_mtgnet_table(-np.inf)), InputError,
     ("row 5", "-inf")),
    ("fit-1e300", lambda C, f: C(max_epochs=2).fit(_mtgnet_table(1e300)), InputError,
     ("|gain| <= 1e+06", "row 5", "task 2", "1e+300")),
    ("fit-minus-1e7", lambda C, f: C(max_epochs=2).fit(_mtgnet_table(-1e7)), InputError,
     ("|gain| <= 1e+06", "row 5")),
    ("fit-all-nan", lambda C, f: C(max_epochs=2).fit(_mtgnet_table(all_nan=True)), InputError,
     ("all NaN",)),
    ("fit-type", lambda C, f: C().fit("table"), InputTypeError, ("GainTable", "str")),
    ("device-cuda", lambda C, f: C(device="cuda").fit(_mtgnet_table()), InputError,
     ("'cuda'", "available: cpu")),
    ("device-cuda-99", lambda C, f: C(device="cuda:99").fit(_mtgnet_table()), InputError,
     ("'cuda:99'", "available")),
    ("device-name", lambda C, f: C(device="gpu0").fit(_mtgnet_table()), InputError,
     ("'gpu0'", "not a torch device", "'cpu'")),
    ("device-type", lambda C, f: C(device=0).fit(_mtgnet_table()), InputTypeError,
     ("device", "int")),
    ("dim-0", lambda C, f: C(dim=0).fit(_mtgnet_table()), InputError, ("dim", ">= 1")),
    ("dim-str", lambda C, f: C(dim="8").fit(_mtgnet_table()), InputTypeError, ("dim", "str")),
    ("heads", lambda C, f: C(dim=10, n_heads=3).fit(_mtgnet_table()), InputError,
     ("divisible",)),
    ("loss", lambda C, f: C(loss="huber").fit(_mtgnet_table()), InputError, ("loss", "'huber'")),
    ("lr-neg", lambda C, f: C(lr=-1).fit(_mtgnet_table()), InputError, ("lr",)),
    ("predict-unfitted", lambda C, f: C().predict([3]), InputError, ("not fitted",)),
    ("load-missing", lambda C, f: C.load(f["missing.pt"]), InputError,
     ("missing.pt", "no such file")),
    ("load-folder", lambda C, f: C.load(f["folder"]), InputError, ("directory",)),
    ("load-garbage", lambda C, f: C.load(f["garbage.pt"]), InputError,
     ("garbage.pt", "not an MTGNet file")),
    ("load-pickle", lambda C, f: C.load(f["pickled.pt"]), InputError,
     ("pickled.pt", "not an MTGNet file")),
    ("load-type", lambda C, f: C.load(5), InputTypeError, ("path", "int")),
]


@pytest.fixture(scope="module")
def mtgnet_cls(one_torch_thread: None) -> Any:
    from mtgfast.estimators.mtgnet import MTGNet

    return MTGNet


@pytest.mark.parametrize("name, fn, exc, words", MODELS, ids=[c[0] for c in MODELS])
def test_models(mtgnet_cls: Any, files: dict[str, str], name: str, fn: Callable[..., Any],
                exc: type, words: tuple[str, ...]) -> None:
    import torch

    if name == "device-cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here: MTGNet(device='cuda') is valid")
    _expect(lambda: fn(mtgnet_cls, files), exc, words)
    if name.startswith("load-"):
        with pytest.raises(MtgfastError) as info:
            fn(mtgnet_cls, files)
        assert "weights_only" not in str(info.value)  # never suggest the unsafe unpickler


def test_model_files_with_wrong_content(mtgnet_cls: Any, tmp_path: Path) -> None:
    import torch

    torch.save([1, 2, 3], tmp_path / "list.pt")
    _expect(lambda: mtgnet_cls.load(tmp_path / "list.pt"), InputError, ("found a list",))
    torch.save({"format": "other/2"}, tmp_path / "other.pt")
    _expect(lambda: mtgnet_cls.load(tmp_path / "other.pt"), InputError,
            ("expected format", "'other/2'"))
    net = mtgnet_cls(dim=8, ffn_dim=8, n_layers=1, n_estimators=1, max_epochs=3).fit(
        _mtgnet_table())
    net.save(tmp_path / "ok.pt")
    assert mtgnet_cls.load(tmp_path / "ok.pt").predict([7]).shape == (1, 3)  # a good file loads
    blob = torch.load(tmp_path / "ok.pt", weights_only=True)
    del blob["state"]
    torch.save(blob, tmp_path / "damaged.pt")
    _expect(lambda: mtgnet_cls.load(tmp_path / "damaged.pt"), InputError,
            ("damaged", "'state'"))
    if not torch.cuda.is_available():
        _expect(lambda: net.predict([7], device="cuda"), InputError, ("'cuda'", "available"))


# -- command line --------------------------------------------------------------------------------
R = ["replay", "--masks", "@m3.csv", "--valid", "@g3.csv"]
CLI: list[tuple[str, list[str], tuple[str, ...]]] = [
    # unknown / misspelt / abbreviated options
    ("replay-budjets", [*R, "--budjets", "2"],
     ("unrecognized arguments", "--budjets", "did you mean --budgets?")),
    ("replay-mask-typo", ["replay", "--mask", "@m3.csv", "--valid", "@g3.csv"],
     ("required: --masks", "--mask: did you mean --masks?")),
    ("group-store-typo", ["group", "--stor", "@m3.csv", "--budget", "2"],
     ("--stor: did you mean --store?",)),
    ("replay-serch", [*R, "--serch", "beam"], ("unrecognized arguments", "--serch")),
    ("replay-abbrev", [*R, "--budg", "2"], ("unrecognized", "--budg")),
    ("replay-abbrev-valid", ["replay", "--masks", "@m3.csv", "--val", "@g3.csv"],
     ("--valid",)),
    ("replay-mtgnet-unknown", [*R, "--methods", "mtgnet", "--dimm", "8"],
     ("unknown option --dimm", "mtgnet", "did you mean --dim")),
    ("replay-mtgnet-misspelt-own", [*R, "--methods", "mtgnet", "--serch", "beam"],
     ("--serch", "did you mean --search")),
    ("replay-set-unknown", [*R, "--methods", "mtgnet", "--set", "dimm=8"],
     ("unknown option --dimm",)),
    # replay_method's object keywords are not options a command line can give (stats=1 was an
    # internal AttributeError after the first fit; warm_start_from a late, unlisted refusal)
    *((f"replay-set-{k}", [*R, "--methods", "mtgnet", "--set", f"{k}=1"],
       (f"unknown option --{k.replace('_', '-')}", "mtgnet"))
      for k in ("stats", "prior", "noise", "warm_start_from")),
    ("replay-set-use-measured-int", [*R, "--methods", "mtgnet", "--set", "use_measured=0"],
     ("use_measured must be a bool", "int")),
    ("replay-set-malformed", [*R, "--methods", "mtgnet", "--set", "dim"], ("KEY=VALUE", "'dim'")),
    ("replay-set-no-mtgnet", [*R, "--methods", "oracle", "--set", "dim=8"],
     ("--set", "mtgnet")),
    ("replay-set-twice", [*R, "--methods", "mtgnet", "--set", "dim=8", "--set", "dim=4"],
     ("given twice",)),
    ("replay-set-rounds", [*R, "--methods", "mtgnet", "--set", "rounds=2"], ("--rounds",)),
    # bad values of MTGNet's parameters: one line, exit 2 (checked before any replay work)
    ("replay-set-bad-type", [*R, "--methods", "oracle,mtgnet", "--set", "dim=abc"],
     ("dim must be an int", "str")),
    ("replay-set-bad-range", [*R, "--methods", "oracle,mtgnet", "--set", "dim=0"],
     ("dim must be >= 1",)),
    ("replay-mtgnet-bad-value", [*R, "--methods", "mtgnet", "--n_estimators", "-2"],
     ("n_estimators must be >= 1",)),
    ("replay-positional", [*R, "extra"], ("unrecognized arguments", "extra")),
    ("unknown-command", ["train"], ("invalid choice", "'train'")),
    ("top-unknown-option", ["--verbose", *R], ("unrecognized", "--verbose")),
    ("demo-unknown", ["demo", "--budjet", "2"],
     ("unrecognized arguments", "--budjet", "did you mean --budget?")),
    ("demo-abbrev", ["demo", "--bud", "2"], ("unrecognized arguments", "--bud")),
    ("study-unknown", ["study", "--suite", "digits", "--budget", "2", "--epoch", "3"],
     ("unrecognized arguments", "--epoch")),
    ("group-unknown", ["group", "--store", "@m3.csv", "--budget", "2", "--methd", "x"],
     ("unrecognized arguments", "--methd")),
    # missing / malformed values
    ("replay-no-masks", ["replay", "--valid", "@g3.csv"], ("required", "--masks")),
    ("replay-no-valid", ["replay", "--masks", "@m3.csv"], ("required", "--valid")),
    ("replay-valid-no-value", ["replay", "--masks", "@m3.csv", "--valid"],
     ("--valid", "expected one argument")),
    ("replay-seeds-0", [*R, "--seeds", "0"], ("--seeds", ">= 1", "got 0")),
    ("replay-seeds-str", [*R, "--seeds", "two"], ("--seeds", "integer", "'two'")),
    ("replay-beam-width-0", [*R, "--beam-width", "0"], ("--beam-width", ">= 1")),
    ("replay-trials-neg", [*R, "--random-trials", "-5"], ("--random-trials",)),
    ("replay-rounds-neg", [*R, "--rounds", "-1"], ("--rounds", ">= 0")),
    ("replay-tag-scale-nan", [*R, "--tag-scale", "nan"], ("--tag-scale", "number")),
    ("replay-search", [*R, "--search", "greedy"], ("--search", "invalid choice", "'greedy'")),
    ("replay-uncovered", [*R, "--uncovered", "x"], ("--uncovered", "invalid choice")),
    ("replay-budgets-syntax", [*R, "--budgets", "one"], ("budgets", "'one'")),
    ("replay-budgets-zero", [*R, "--budgets", "0-2"], ("budgets", ">= 1")),
    ("replay-budgets-exceed", [*R, "--budgets", "1-9"], ("exceeds", "3 tasks")),
    ("replay-methods-empty", [*R, "--methods", ","], ("--methods", "no method")),
    ("replay-methods-unknown", [*R, "--methods", "oracle,magic"], ("unknown method", "'magic'")),
    ("replay-tag-method", [*R, "--methods", "tag"], ("TAG", "--tag")),
    ("replay-task-names-empty", [*R, "--task-names", "a,,c"], ("--task-names", "empty name")),
    ("replay-task-names-count", [*R, "--task-names", "a,b"], ("2 task names", "3 gain columns")),
    ("replay-json-exact-alone", [*R, "--json-exact"], ("--json-exact", "--json")),
    ("replay-json-nodir", [*R, "--json", "@nodir/out.json"], ("--json", "does not exist")),
    ("replay-json-folder", [*R, "--json", "@folder"], ("--json", "directory")),
    ("replay-plot-ext", [*R, "--plot", "@out.xyz"], ("--plot", "unknown image type", "'xyz'")),
    ("replay-plot-nodir", [*R, "--plot", "@nodir/out.json"], ("--plot", "does not exist")),
    # files given on the command line
    ("replay-valid-missing", ["replay", "--masks", "@m3.csv", "--valid", "@missing.csv"],
     ("--valid:", "missing.csv", "no such file")),
    ("replay-masks-missing", ["replay", "--masks", "@missing.csv", "--valid", "@g3.csv"],
     ("mask file", "missing.csv", "no such file")),
    ("replay-valid-binary", ["replay", "--masks", "@m3.csv", "--valid", "@binary.csv"],
     ("binary.csv", "binary")),
    ("replay-valid-latin1", ["replay", "--masks", "@m3.csv", "--valid", "@latin1.csv"],
     ("latin1.csv", "UTF-8", "line 3")),
    ("replay-valid-empty", ["replay", "--masks", "@m3.csv", "--valid", "@empty.csv"],
     ("empty.csv", "empty")),
    ("replay-valid-folder", ["replay", "--masks", "@m3.csv", "--valid", "@folder"],
     ("directory",)),
    ("replay-valid-tidy-header", ["replay", "--masks", "@m3.csv", "--valid",
                                  "@tidy_header.csv"], ("no data rows",)),
    ("replay-valid-tidy-abc", ["replay", "--masks", "@m2.csv", "--valid", "@tidy_abc.csv"],
     ("tidy_abc.csv", "line 2", "'abc'")),
    ("replay-valid-parquet-missing", ["replay", "--masks", "@m3.csv", "--valid",
                                      "@missing.parquet"], ("missing.parquet", "no such file")),
    ("replay-valid-parquet-garbage", ["replay", "--masks", "@m3.csv", "--valid",
                                      "@garbage.parquet"], ("garbage.parquet", "Parquet")),
    ("replay-test-missing", [*R, "--test", "@missing.csv"],
     ("--test:", "missing.csv", "no such file")),
    ("replay-hoa-binary", [*R, "--hoa", "@binary.csv"], ("--hoa:", "binary.csv", "binary")),
    ("replay-tag-abc", [*R, "--tag", "@g2_abc.csv"], ("--tag:", "g2_abc.csv", "line 3")),
    ("replay-masks-mismatch", ["replay", "--masks", "@m2.csv", "--valid", "@g3.csv"],
     ("3 rows", "7")),
    ("replay-mask-3.5", ["replay", "--masks", "@m2_35.csv", "--valid", "@g2.csv"],
     ("only 0 and 1", "3.5")),
    # demo / study / group: bad values fail at once, before training
    ("demo-budget-0", ["demo", "--budget", "0"], ("--budget", ">= 1", "got 0")),
    ("demo-budget-neg", ["demo", "--budget", "-2"], ("--budget",)),
    ("demo-budget-11", ["demo", "--budget", "11", "--quiet"], ("--budget 11", "10 tasks")),
    ("demo-rounds-neg", ["demo", "--rounds", "-1"], ("--rounds", ">= 0")),
    ("demo-workers-0", ["demo", "--workers", "0"], ("--workers", ">= 1")),
    ("demo-estimator", ["demo", "--estimator", "best"], ("--estimator", "invalid choice")),
    ("demo-store-nodir", ["demo", "--store", "@nodir/out.json"], ("--store", "does not exist")),
    ("demo-store-folder", ["demo", "--store", "@folder"], ("--store", "directory")),
    ("study-budget-0", ["study", "--suite", "digits", "--budget", "0"],
     ("--budget", ">= 1", "got 0")),
    ("study-no-budget", ["study", "--suite", "digits"], ("required", "--budget")),
    ("study-no-suite", ["study", "--budget", "2"], ("required", "--suite")),
    ("study-budget-str", ["study", "--suite", "digits", "--budget", "two"],
     ("--budget", "integer")),
    ("study-epochs-0", ["study", "--suite", "digits", "--budget", "2", "--epochs", "0"],
     ("--epochs", ">= 1")),
    ("study-patience-0", ["study", "--suite", "digits", "--budget", "2", "--patience", "0"],
     ("--patience",)),
    ("study-lr-0", ["study", "--suite", "digits", "--budget", "2", "--lr", "0"], ("--lr",)),
    ("study-lr-inf", ["study", "--suite", "digits", "--budget", "2", "--lr", "inf"], ("--lr",)),
    ("study-batch-0", ["study", "--suite", "digits", "--budget", "2", "--batch-size", "0"],
     ("--batch-size",)),
    ("study-esa-0", ["study", "--suite", "digits", "--budget", "2", "--esa", "0"], ("--esa",)),
    ("study-esa-2", ["study", "--suite", "digits", "--budget", "2", "--esa", "2"], ("--esa",)),
    ("study-seeds-neg", ["study", "--suite", "digits", "--budget", "2", "--seeds", "-1"],
     ("--seeds",)),
    ("study-seeds-dup", ["study", "--suite", "digits", "--budget", "2", "--seeds", "1", "1"],
     ("--seeds", "distinct")),
    ("study-suite-unknown", ["study", "--suite", "imagenet", "--budget", "2", "--store",
                             "@out.json"], ("--suite", "'imagenet'", "digits")),
    ("study-ett-no-data", ["study", "--suite", "ett", "--budget", "2", "--store", "@out.json"],
     ("--data",)),
    ("study-ett-data-missing", ["study", "--suite", "ett", "--data", "@missing.csv", "--budget",
                                "2", "--store", "@out.json"], ("--data", "no such file")),
    ("study-ett-data-binary", ["study", "--suite", "ett", "--data", "@etth1_binary.csv",
                               "--budget", "2", "--store", "@out.json"],
     ("etth1_binary.csv", "binary")),
    ("study-ett-data-latin1", ["study", "--suite", "ett", "--data", "@etth1_latin1.csv",
                               "--budget", "2", "--store", "@out.json"],
     ("etth1_latin1.csv", "UTF-8", "line 2")),
    ("study-data-not-used", ["study", "--suite", "digits", "--data", "@m3.csv", "--budget", "2",
                             "--store", "@out.json"], ("--data", "not used")),
    ("study-weighting", ["study", "--suite", "digits", "--budget", "2", "--weighting", "magic",
                         "--store", "@out.json"], ("--weighting", "'magic'", "known")),
    ("study-arch", ["study", "--suite", "digits", "--budget", "2", "--arch", "resnet",
                    "--store", "@out.json"], ("--arch", "'resnet'")),
    ("study-budget-exceeds", ["study", "--suite", "digits", "--budget", "11", "--store",
                              "@out.json"], ("--budget 11", "10 tasks")),
    ("study-store-nodir", ["study", "--suite", "digits", "--budget", "2", "--store",
                           "@nodir/out.json"], ("--store", "does not exist")),
    ("study-executor", ["study", "--suite", "digits", "--budget", "2", "--executor", "slurm"],
     ("--executor", "invalid choice")),
    ("study-inprocess-workers", ["study", "--suite", "digits", "--budget", "2", "--store",
                                 "@out.json", "--executor", "inprocess", "--workers", "2"],
     ("--workers 2", "--executor local")),
    ("study-address-local", ["study", "--suite", "digits", "--budget", "2", "--store",
                             "@out.json", "--executor", "local", "--address", "auto"],
     ("--address", "ray")),
    ("study-gpus-local", ["study", "--suite", "digits", "--budget", "2", "--store", "@out.json",
                          "--gpus-per-run", "1"], ("--gpus-per-run", "ray")),
    ("study-gpus-neg", ["study", "--suite", "digits", "--budget", "2", "--gpus-per-run", "-1"],
     ("--gpus-per-run",)),
    ("study-retries-neg", ["study", "--suite", "digits", "--budget", "2", "--max-retries", "-1"],
     ("--max-retries", ">= 0")),
    ("group-store-missing", ["group", "--store", "@missing.db", "--budget", "2"],
     ("--store", "missing.db", "no such file")),
    ("group-store-folder", ["group", "--store", "@folder", "--budget", "2"],
     ("--store", "directory")),
    ("group-store-empty", ["group", "--store", "@empty.db", "--budget", "2"],
     ("--store", "empty file")),
    ("group-no-store", ["group", "--budget", "2"], ("required", "--store")),
    ("group-budget-0", ["group", "--store", "@m3.csv", "--budget", "0"], ("--budget", ">= 1")),
    ("group-estimator", ["group", "--store", "@m3.csv", "--budget", "2", "--estimator", "tag"],
     ("--estimator", "invalid choice")),
]


def _argv(args: list[str], files: dict[str, str]) -> list[str]:
    return [files[a[1:]] if a.startswith("@") else a for a in args]


@pytest.mark.parametrize("name, args, words", CLI, ids=[c[0] for c in CLI])
def test_cli(files: dict[str, str], capsys: pytest.CaptureFixture[str], name: str,
             args: list[str], words: tuple[str, ...]) -> None:
    from mtgfast.cli import main

    rc = main(_argv(args, files))
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert err.count("\n") == 1 and err.startswith("mtgfast: error: "), err
    assert "Traceback" not in err and not out.strip().startswith("Traceback")
    for w in words:
        assert w in err, f"{w!r} not in {err!r}"
    assert not Path(files["missing.db"]).exists()   # `group --store` never creates one


def test_group_never_creates_a_store(files: dict[str, str], capsys: pytest.CaptureFixture[str],
                                     tmp_path: Path) -> None:
    from mtgfast.cli import main

    path = tmp_path / "new.db"
    assert main(["group", "--store", str(path), "--budget", "2"]) == 2
    assert not path.exists()
    assert "no such file" in capsys.readouterr().err


def test_cli_internal_errors_are_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # a bug (not bad input) still ends in one line, status 1, and no traceback by default
    import mtgfast.cli as cli

    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("kaput")

    def broken_parser() -> argparse.ArgumentParser:
        p = cli.Parser(prog="mtgfast")
        sub = p.add_subparsers(dest="command", parser_class=cli.Parser)
        sub.add_parser("x").set_defaults(func=boom)
        return p

    monkeypatch.setattr(cli, "build_parser", broken_parser)
    monkeypatch.delenv("MTGFAST_DEBUG", raising=False)
    assert cli.main(["x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RuntimeError: kaput" in err


def test_every_option_has_help_and_shows_its_default() -> None:
    from mtgfast.cli import build_parser
    from mtgfast.cli_common import HelpFormatter

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) >= {"replay", "demo", "study", "group"}
    for name, sub in subs.choices.items():
        assert sub.allow_abbrev is False, name
        fmt = HelpFormatter(prog=sub.prog)
        for action in sub._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help text"
            text = fmt._get_help_string(action)
            assert "(default" in text or "(required" in text, (name, action.option_strings)
    help_text = subs.choices["replay"].format_help()
    assert "--masks PATH" in help_text and "(required)" in help_text.split("--masks PATH", 2)[2]
    usage = subs.choices["replay"].format_usage()
    assert "--masks PATH" in usage and "[--masks" not in usage   # required, not optional


def test_cli_modules_import_one_way() -> None:
    import ast

    import mtgfast

    root = Path(mtgfast.__file__).parent

    def imports(mod: str) -> set[str]:
        tree = ast.parse((root / f"{mod}.py").read_text())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                out.add(node.module or "")
                out.update(a.name for a in node.names if node.module is None)
        return out

    assert "cli" not in imports("cli_study") and "cli" not in imports("cli_common")
    assert "cli_study" not in imports("cli_common")
    assert {"cli_common", "cli_study"} <= imports("cli")


def test_case_count() -> None:
    n = len(API) + len(GROUP) + len(REPLAY) + len(READERS) + len(MODELS) + len(CLI)
    assert n >= 150, n


def test_cli_executor_uses_the_factory_with_the_agreed_signature(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mtgfast.cli_study import make_cli_executor
    from mtgfast.study import executors

    ray_before = "ray" in sys.modules
    calls = []

    def factory(kind: str, *, workers: int = 1, address: str | None = None,
                gpus_per_run: float = 0.0, max_retries: int = 2) -> str:
        calls.append((kind, workers, address, gpus_per_run, max_retries))
        return f"executor:{kind}"

    monkeypatch.setattr(executors, "make_executor", factory)
    assert make_cli_executor(None, workers=1, address=None, gpus_per_run=0.0,
                             max_retries=2) == "executor:inprocess"
    assert make_cli_executor(None, workers=3, address=None, gpus_per_run=0.0,
                             max_retries=0) == "executor:local"
    assert make_cli_executor("ray", workers=2, address="auto", gpus_per_run=0.5,
                             max_retries=4) == "executor:ray"
    assert calls == [("inprocess", 1, None, 0.0, 2), ("local", 3, None, 0.0, 0),
                     ("ray", 2, "auto", 0.5, 4)]

    assert ("ray" in sys.modules) == ray_before   # ray is imported only when asked for


def test_cli_closed_stdout_is_quiet(files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    # `mtgfast replay ... | head -1`: a closed pipe is not an error worth a message
    from mtgfast.cli import main

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr("sys.stdout", Closed())
    rc = main([*_argv(R, files), "--methods", "oracle", "--quiet"])
    monkeypatch.undo()
    assert rc == 141
    assert capsys.readouterr().err == ""
