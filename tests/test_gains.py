"""Gain tables: MTG-Net release files, tidy CSV/Parquet, pandas round trips, input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mtgfast.errors import InputError
from mtgfast.gains import GainTable, load_table, read_matrix


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_release_files_load(data_dir):
    d = data_dir / "mtgnet"
    tk = GainTable.from_mtgnet(d / "taskonomy" / "taskonomy_x.csv",
                               d / "taskonomy" / "taskonomy.csv",
                               meta={"split": "valid", "metric": "loss",
                                     "higher_is_better": False})
    assert tk.n_tasks == 5 and len(tk) == 31
    assert tk.meta["split"] == "valid" and tk.meta["higher_is_better"] is False
    member = tk.member()
    assert np.isnan(tk.gains[~member]).all() and np.isfinite(tk.gains[member]).all()
    raw = np.loadtxt(d / "taskonomy" / "taskonomy.csv")
    assert np.array_equal(tk.gains[member], raw[member])
    # the mask file is comma separated, the gains space separated: both read the same way
    ett = GainTable.from_mtgnet(d / "ETT" / "ETTm1_x.csv", d / "ETT" / "ETTm1_TAG_HOA.csv",
                                scale=0.01)
    raw = np.loadtxt(d / "ETT" / "ETTm1_TAG_HOA.csv")
    assert np.allclose(ett.gains[ett.member()], 0.01 * raw[ett.member()])
    assert ett.masks[-1] == 127 and len(ett) == 127
    singles = ett.lookup([1 << j for j in range(7)])
    assert np.nansum(np.abs(singles)) == 0.0


def test_read_matrix_detects_separator(tmp_path):
    a = read_matrix(_write(tmp_path / "a.csv", "1,0, 1\n0,1,1\n"))
    b = read_matrix(_write(tmp_path / "b.csv", "1 0  1\n\n0\t1 1\n"))
    assert np.array_equal(a, b) and a.shape == (2, 3)


@pytest.mark.parametrize("masks_text, gains_text, message", [
    ("1 0\n0 1\n1 1\n", "0 0\n0 0 0\n0.1 0.2\n", "ragged"),
    ("1 0\n0 1\n1 1\n", "0 0 0\n0 0 0\n0.1 0.2 0\n", "columns"),
    ("1 0\n0 1\n1 1\n", "0 0\n0 0\n", "rows"),
    ("1 0\n0 1\n1 0\n", "0 0\n0 0\n0 0\n", "duplicate"),
    ("1 0\n0 1\n", "0 0.5\n0 0\n", "outside"),
    ("1 0\n0 2\n", "0 0\n0 0\n", "only 0 and 1"),
    ("1 0\n0 0\n", "0 0\n0 0\n", "empty"),
    ("1 0\n0 1\n", "0 x\n0 0\n", "non-numeric"),
])
def test_release_file_errors(tmp_path, masks_text, gains_text, message):
    m = _write(tmp_path / "m.csv", masks_text)
    g = _write(tmp_path / "g.csv", gains_text)
    with pytest.raises(InputError, match=message):
        GainTable.from_mtgnet(m, g)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_matrix(tmp_path / "nope.csv")


def test_tidy_with_task_names(tmp_path):
    path = _write(tmp_path / "t.csv", "tasks,task,gain,split\n"
                  "depth+normal,depth,0.1,valid\ndepth+normal,normal,-0.2,valid\n"
                  "depth,depth,0,valid\nnormal,normal,0,valid\n"
                  "depth+normal,depth,0.3,test\ndepth+normal,normal,0.4,test\n")
    with pytest.raises(InputError, match="several splits"):
        GainTable.from_tidy(path)
    valid = GainTable.from_tidy(path, split="valid")
    assert valid.task_names == ("depth", "normal") and valid.meta["split"] == "valid"
    assert valid.lookup([3]).tolist() == [[0.1, -0.2]]
    test = load_table(path, split="test")
    assert test.lookup([3]).tolist() == [[0.3, 0.4]]
    with pytest.raises(InputError, match="not in the table"):
        GainTable.from_tidy(path, split="train")


@pytest.mark.parametrize("text, message", [
    ("mask,task,gain\n3,t0,0.1\n3,t0,0.2\n3,t1,0\n", "duplicate"),
    ("mask,task,gain\n1,t1,0.1\n", "outside"),
    ("mask,task,gain\n3,t0,0.1\n", "no finite gain"),
    ("tasks,task,gain\na+b,c,0.1\n", "outside"),
    ("mask,task,value\n1,t0,0\n", "columns"),
    ("mask,task,gain\n1,depth,0\n", "needs task_names"),
    ("mask,task,gain\nx,t0,0\n", "integers"),
])
def test_tidy_errors(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        GainTable.from_tidy(_write(tmp_path / "t.csv", text))


def test_load_table_needs_masks_for_bare_matrix(data_dir):
    with pytest.raises(InputError, match="mask file"):
        load_table(data_dir / "mtgnet" / "ETT" / "ETTm1_y.csv")


gain_tables = st.integers(1, 5).flatmap(lambda n: st.tuples(
    st.just(n),
    st.sets(st.integers(1, (1 << n) - 1), min_size=1, max_size=(1 << n) - 1),
    st.integers(0, 2**32 - 1)))


@given(gain_tables)
def test_pandas_and_csv_round_trips(tmp_path_factory, spec):
    n, masks, seed = spec
    rng = np.random.default_rng(seed)
    m = np.array(sorted(masks), dtype=np.uint64)
    g = np.round(rng.normal(size=(len(m), n)), 6)
    table = GainTable.from_arrays(m, np.where(GainTable.from_arrays(
        m, np.zeros((len(m), n))).member(), g, np.nan), [f"task{j}" for j in range(n)],
        meta={"split": "test", "seed": 3})
    for kind in ("wide", "tidy"):
        back = GainTable.from_pandas(table.to_pandas(kind))
        assert back.task_names == table.task_names
        back = back.reindex(table.masks)
        assert np.array_equal(back.masks, table.masks)
        assert np.array_equal(back.gains, table.gains, equal_nan=True)
        assert back.meta["split"] == "test"
    path = tmp_path_factory.mktemp("csv") / "g.csv"
    table.to_csv(path)
    back = GainTable.from_tidy(path, table.task_names)
    assert np.array_equal(back.reindex(table.masks).gains, table.gains, equal_nan=True)


def test_tidy_mask_column_names_follow_order(tmp_path):
    df = pd.DataFrame({"mask": [5, 5, 1, 4], "task": ["a", "c", "a", "c"],
                       "gain": [0.5, -0.5, 0.0, 0.0]})
    t = GainTable.from_tidy(df, ["a", "b", "c"])
    assert t.lookup([5]).tolist()[0][0] == 0.5 and np.isnan(t.lookup([5])[0, 1])


def test_parquet_round_trip(tmp_path, data_dir):
    pytest.importorskip("pyarrow")
    d = data_dir / "mtgnet" / "taskonomy"
    t = GainTable.from_mtgnet(d / "taskonomy_x.csv", d / "taskonomy.csv")
    t.to_csv(tmp_path / "t.parquet")
    back = load_table(tmp_path / "t.parquet")
    assert np.array_equal(back.reindex(t.masks).gains, t.gains, equal_nan=True)


def test_reindex_and_existing_api_unchanged(data_dir):
    d = data_dir / "mtgnet" / "taskonomy"
    t = GainTable.from_mtgnet(d / "taskonomy_x.csv", d / "taskonomy.csv")
    r = t.reindex(t.masks[::-1])
    assert np.array_equal(r.masks, t.masks[::-1])
    with pytest.raises(InputError, match="not in the gain table"):
        t.select(np.arange(5)).reindex([31])
    assert t.index_of([31, 1]).tolist() == [30, 0]
    w = t.with_gains(np.nan_to_num(t.gains) * 2, split="x")
    assert w.meta["split"] == "x" and np.allclose(w.gains, t.gains * 2, equal_nan=True)
