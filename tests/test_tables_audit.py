"""Audit fixes of gain tables, the gain store, transfer gains and the generator (findings 4, 10,
12, 16, 17, 18, 19, 20 of the API audit): each test failed before its fix."""

from __future__ import annotations

import math
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtgfast import GainStore, GainTable, evaluate_tasks, group
from mtgfast.errors import InputError, InputTypeError, SingletonGainWarning, StoreError
from mtgfast.gains import load_table, read_matrix
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import all_masks, masks_to_dense, popcount
from mtgfast.transfer import relative_gain


def table_of(names: tuple[str, ...], seed: int = 0) -> GainTable:
    """Every combination of ``names``; singletons 0, the others random."""
    n = len(names)
    m = all_masks(n)
    member = masks_to_dense(m, n)
    g = np.where(member, np.random.default_rng(seed).normal(0.0, 0.1, member.shape), np.nan)
    g[popcount(m) == 1] = np.where(member[popcount(m) == 1], 0.0, np.nan)
    return GainTable(m, g, names)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- 4: create_study checks metric names and directions ----------------------------------------
@pytest.mark.parametrize("hib", ["yes", "no", ["no", "no"], ["False", "False"], [1, 0], None,
                                 {True, False}])
def test_create_study_refuses_non_bool_directions(hib: object) -> None:
    with GainStore(":memory:") as s, pytest.raises(InputTypeError, match="higher_is_better"):
        s.create_study("x", ["a", "b"], higher_is_better=hib)  # type: ignore[arg-type]
    with GainStore(":memory:") as s:
        assert s.studies() == []


@pytest.mark.parametrize("metrics, error", [
    ("", InputError), (" ", InputError), ([1, 2], InputError), (["loss", ""], InputError),
    (None, InputTypeError), (b"loss", InputTypeError), ({"loss", "acc"}, InputTypeError)])
def test_create_study_refuses_bad_metric_names(metrics: object, error: type) -> None:
    with GainStore(":memory:") as s, pytest.raises(error, match="metrics"):
        s.create_study("x", ["a", "b"], metrics=metrics)  # type: ignore[arg-type]


def test_create_study_keeps_bool_directions_and_their_sign() -> None:
    with GainStore(":memory:") as s:
        assert s.create_study("b", ["a", "b"], higher_is_better=np.bool_(True)) \
            .higher_is_better == (True, True)
        assert s.create_study("c", ["a", "b"], metrics=("mae", "acc"),
                              higher_is_better=[False, np.bool_(True)]).higher_is_better == (
            False, True)
        s.create_study("g", ["a", "b"], higher_is_better=[False, False])
        s.record_run("g", 1, 0, metrics_valid={"a": 1.0})
        s.record_run("g", 2, 0, metrics_valid={"b": 1.0})
        s.record_run("g", 3, 0, metrics_valid={"a": 0.5, "b": 0.5})   # the loss is halved
        assert s.gain_table("g").gains[-1].tolist() == [0.5, 0.5]


# -- 10: finite metrics whose gain is not finite ----------------------------------------------
@pytest.mark.parametrize("mtl, stl, hib", [(0.5, 1e-310, False), (1e308, -1e308, True),
                                           (-1e308, 1e308, False)])
def test_relative_gain_refuses_an_infinite_gain(mtl: float, stl: float, hib: bool) -> None:
    with pytest.raises(InputError, match=r"task 'a'.*not finite.*mtl=.*stl="):
        relative_gain(mtl, stl, hib, task="a")


@given(st.floats(allow_nan=False, allow_infinity=False),
       st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != 0),
       st.booleans())
def test_relative_gain_is_finite_or_refused(mtl: float, stl: float, hib: bool) -> None:
    try:
        g = relative_gain(mtl, stl, hib)
    except InputError as exc:
        assert "not finite" in str(exc)
    else:
        assert math.isfinite(float(g))


def test_gain_table_names_study_combination_and_task_of_a_bad_run() -> None:
    with GainStore(":memory:") as s:
        s.create_study("st", ["a", "b"], fingerprint="f")
        s.record_run("st", 1, 0, metrics_valid={"a": 1e-310})
        s.record_run("st", 2, 0, metrics_valid={"b": 1.0})
        s.record_run("st", 3, 0, metrics_valid={"a": 0.5, "b": 0.5})
        with pytest.raises(StoreError, match=r"study 'st'.*combination 3 \['a', 'b'\].*task "
                                             r"'a'.*mtl=0\.5, stl=1e-310"):
            s.gain_table("st")


# -- 12: mask lookups on an empty table -------------------------------------------------------
def test_empty_table_lookups() -> None:
    empty = GainTable(np.zeros(0, np.uint64), np.zeros((0, 3)), ("a", "b", "c"))
    assert empty.index_of([1, 7]).tolist() == [-1, -1]
    assert empty.index_of([]).tolist() == []
    with pytest.raises(InputError, match="not in the gain table"):
        empty.lookup([1])
    with pytest.raises(InputError, match="not in the gain table"):
        empty.reindex([3])
    assert len(empty.reindex([])) == 0


# -- 16: a singleton's gain is 0 by definition -------------------------------------------------
def test_singleton_with_a_gain_is_read_as_zero_with_a_warning() -> None:
    t = table_of(("a", "b", "c"))
    g = t.gains.copy()
    row = t.index_of([2])[0]
    g[row, 1] = 0.3
    with pytest.warns(SingletonGainWarning, match=r"singleton of task 'b' with gain 0\.3.*0 by "
                                                  "definition"):
        back = GainTable(t.masks, g, t.task_names)
    assert back.gains[row, 1] == 0.0
    assert np.array_equal(np.delete(back.gains, row, 0), np.delete(g, row, 0), equal_nan=True)
    with pytest.warns(SingletonGainWarning, match="singleton"):
        assert t.with_gains(g).gains[row, 1] == 0.0
    # a search that leaves b alone and one that picks its row score the grouping alike
    r = group(back.masks, back.gains, 2)
    assert np.allclose(evaluate_tasks(r, back), r.task_gains)
    # NaN stays a missing entry where the table allows one; -0.0 is 0: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingletonGainWarning)
        g[row, 1] = np.nan
        GainTable(t.masks, g, t.task_names, {"allow_nan_inside": True})
        g[row, 1] = -0.0
        GainTable(t.masks, g, t.task_names)


def test_singleton_with_a_gain_in_files_names_file_and_line(tmp_path: Path) -> None:
    m = write(tmp_path / "m.csv", "1 0\n0 1\n1 1\n")
    with pytest.warns(SingletonGainWarning,
                      match=r"g\.csv' row 2, column 2: gain 0\.3 for a singleton"):
        t = load_table(write(tmp_path / "g.csv", "0 0\n0 0.3\n0.1 0.2\n"), m)
    assert t.lookup([2])[0, 1] == 0.0 and t.lookup([3]).tolist() == [[0.1, 0.2]]
    with pytest.warns(SingletonGainWarning, match=r"t\.csv' line 3: gain 0\.3 for the singleton "
                                                  "of task 't1'"):
        t = load_table(write(tmp_path / "t.csv", "mask,task,gain\n1,t0,0\n2,t1,0.3\n3,t0,0.1\n"
                                                 "3,t1,0.2\n"))
    assert t.lookup([2])[0, 1] == 0.0


def test_public_producers_keep_singletons_at_zero(data_dir: Path) -> None:
    s = synthetic_gain_tables(6, n_random=None, replicates=3)
    for t in (s.valid, s.test, s.truth, s.valid_var):
        assert t is not None and np.all(t.gains[popcount(t.masks) == 1][
            t.member()[popcount(t.masks) == 1]] == 0)
    d = data_dir / "mtgnet" / "ETT"
    load_table(d / "ETTm1_val_y.csv", d / "ETTm1_x.csv")
    load_table(d / "ETTm1_TAG_HOA.csv", d / "ETTm1_x.csv", scale=0.01)


# -- 17: to_csv -> load_table keeps the task names ---------------------------------------------
@pytest.mark.parametrize("names", [("t1", "t2", "t3"), ("t1", "t0", "t2"), ("a", "b", "a+b"),
                                   ("C++", "C", "+"), ("a|b", "a", "b;c"), ("t2", "x y", "t0")])
def test_to_csv_round_trips_names(tmp_path: Path, names: tuple[str, ...]) -> None:
    t = table_of(names)
    t.to_csv(tmp_path / "t.csv")
    back = load_table(tmp_path / "t.csv")
    assert back.task_names == names
    assert np.array_equal(back.reindex(t.masks).gains, t.gains, equal_nan=True)


_name = st.text(st.sampled_from("tab01+|; xé温"), min_size=1, max_size=4).filter(
    lambda s: s == s.strip())


@given(st.lists(_name, min_size=1, max_size=4, unique=True), st.integers(0, 2**32 - 1),
       st.data())
def test_to_csv_round_trip_property(tmp_path_factory: pytest.TempPathFactory,
                                    names: list[str], seed: int, data: st.DataObject) -> None:
    full = table_of(tuple(names), seed)
    rows = data.draw(st.lists(st.sampled_from(range(len(full))), min_size=1, unique=True))
    t = full.select(sorted(rows))
    path = tmp_path_factory.mktemp("rt") / "t.csv"
    t.to_csv(path)
    try:
        back = load_table(path)
    except InputError as exc:
        # only a table that leaves some task out of every row (or so interlocked by '+' that
        # its rows name no bit alone) may ask for task_names; never a wrong table
        assert "task_names" in str(exc)
        back = load_table(path, task_names=names)
    else:
        present = {names[j] for j in np.flatnonzero(t.member().any(axis=0))}
        assert set(back.task_names) == present
    same = back.with_task_order([n for n in names if n in back.task_names]) \
        if back.task_names != tuple(names) else back
    keep = [names.index(n) for n in same.task_names]
    sub = masks_to_dense(t.masks, len(names))[:, keep]
    assert np.array_equal(same.reindex(
        np.array([sum(1 << k for k in np.flatnonzero(r)) for r in sub], np.uint64)).gains,
        t.gains[:, keep], equal_nan=True)


@pytest.mark.parametrize("names", [("x", " y"), ("x", "z "), ("x", "\u00a0y")])
def test_names_with_outer_whitespace_are_refused(names: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match="leading or trailing whitespace"):
        table_of(names)
    with GainStore(":memory:") as s, pytest.raises(InputError, match="whitespace"):
        s.create_study("x", list(names))


# -- 18: selection and batch rows are checked when read back -----------------------------------
@pytest.mark.parametrize("sql, what, read", [
    ("UPDATE selections SET mask = 'abc' WHERE seq = 1", r"selection row 1 .*mask 'abc'",
     "selections"),
    ("UPDATE selections SET mask = 64 WHERE seq = 1", r"selection row 1 .*mask 64, not a comb",
     "selections"),
    ("UPDATE selections SET task = 9 WHERE seq = 1", r"selection row 1 .*task = 9", "selections"),
    ("UPDATE selections SET round = 'r' WHERE seq = 1", r"selection row 1 .*round = 'r'",
     "selections"),
    ("UPDATE batches SET slot_count = 'x' WHERE batch = 1", r"batch row 1 .*slot_count = 'x'",
     "slots_used"),
    ("UPDATE batches SET slot_start = -4 WHERE batch = 0", r"batch row 0 .*slot_start = -4",
     "slots_used")])
def test_damaged_selection_rows_name_file_row_and_study(tmp_path: Path, sql: str, what: str,
                                                        read: str) -> None:
    db = tmp_path / "s.db"
    with GainStore(db) as s:
        s.create_study("st", ["a", "b", "c", "d"])
        s.add_selection_batch("st", slot_start=0, slot_count=0,
                              selections=[(15, None, None, "full")], seeds=[0])
        s.add_selection_batch("st", slot_start=0, slot_count=4,
                              selections=[(3, 0, 0, "selected"), (5, 0, 2, "selected")],
                              seeds=[0])
        assert [r.mask for r in s.selections("st")] == [15, 3, 5] and s.slots_used("st") == 4
    c = sqlite3.connect(db)
    c.execute(sql)
    c.commit()
    c.close()
    with GainStore(db) as s, pytest.raises(StoreError, match=rf"s\.db'.*{what}") as err:
        getattr(s, read)("st")
    assert "of study 'st'" in str(err.value) and "outside mtgfast or is damaged" in str(err.value)


# -- 19: ASCII numbers only in gain and mask files ---------------------------------------------
@pytest.mark.parametrize("field", ["1_0", "٠.٥", "１", "0x1", "1__0"])
def test_matrix_file_refuses_python_only_numbers(tmp_path: Path, field: str) -> None:
    with pytest.raises(InputError, match=r"g\.csv' line 3, column 1: non-numeric field"):
        read_matrix(write(tmp_path / "g.csv", f"0 0\n0 0\n{field} 0.2\n"))


@pytest.mark.parametrize("field", ["1e-2", "-.5", "+3.", "1E+3", "nan", "inf", "-Infinity"])
def test_matrix_file_keeps_ascii_numbers(tmp_path: Path, field: str) -> None:
    got = read_matrix(write(tmp_path / "g.csv", f"0 0\n{field} 0.2\n"))
    assert np.array_equal(got[1, :1], [float(field)], equal_nan=True)


@pytest.mark.parametrize("field", ["1_0", "٠.٥", "٣"])
def test_tidy_gain_refuses_python_only_numbers(tmp_path: Path, field: str) -> None:
    with pytest.raises(InputError, match=r"t\.csv' line 2, column 'gain'"):
        load_table(write(tmp_path / "t.csv", f"mask,task,gain\n3,t0,{field}\n3,t1,0.2\n"))


@pytest.mark.parametrize("field", ["1_1", "١١", "1_1.0"])
def test_tidy_mask_refuses_python_only_numbers(tmp_path: Path, field: str) -> None:
    with pytest.raises(InputError, match=rf"t\.csv' line 4: column 'mask' .*{field!r}"):
        load_table(write(tmp_path / "t.csv", f"mask,task,gain\n1,t0,0\n2,t1,0\n{field},t0,0.1\n"
                                             f"{field},t1,0.2\n"))


def test_tidy_with_unicode_names_still_reads(tmp_path: Path) -> None:
    t = load_table(write(tmp_path / "t.csv", "mask,tasks,task,gain\n3,温+é,温,1e-2\n"
                                             "3,温+é,é,-.5\n"))
    assert t.task_names == ("温", "é") and t.gains.tolist() == [[0.01, -0.5]]


# -- 20: the generator refuses sizes beyond memory before allocating --------------------------
def test_synthetic_tables_refuse_huge_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    # a low limit keeps a regression cheap (about 200 MB drawn, not the machine's memory)
    monkeypatch.setenv("MTGFAST_MAX_ENUM_BYTES", str(1 << 20))
    with pytest.raises(InputError, match=r"1000 replicate.*need about [0-9,]+ bytes.*"
                                         "MTGFAST_MAX_ENUM_BYTES"):
        synthetic_gain_tables(27, n_random=100, replicates=1000)
    with pytest.raises(InputError, match="bytes"):
        synthetic_gain_tables(12, n_random=None)
    monkeypatch.delenv("MTGFAST_MAX_ENUM_BYTES")
    with pytest.raises(InputError, match="bytes"):   # the default bound: checked, not drawn
        synthetic_gain_tables(27, n_random=100, replicates=10**9)
    assert len(synthetic_gain_tables(5, n_random=None, replicates=2).valid) == 31


# -- core audit 7 / 11: bools in lists, meta that is not a mapping ------------------------------
def test_bools_in_lists_and_a_meta_that_is_no_mapping_are_type_errors(tmp_path: Path) -> None:
    with pytest.raises(InputTypeError, match="bool"):
        GainTable.from_arrays([3], [[True, 0.2]])
    with pytest.raises(InputTypeError, match="bool"):
        GainTable.from_arrays([3], ([0.1, (0.2,)[0]], [np.bool_(False), 0.3])[1:])
    with pytest.raises(InputTypeError, match="meta must be a mapping"):
        GainTable.from_arrays([3], [[0.1, 0.2]], meta=[1])
    m = write(tmp_path / "m.csv", "1 1\n")
    with pytest.raises(InputTypeError, match="meta must be a mapping"):
        load_table(write(tmp_path / "g.csv", "0.1 0.2\n"), m, meta=[("split", "valid")])
    assert GainTable.from_arrays([3], [[1, 0.2]]).gains.tolist() == [[1.0, 0.2]]
