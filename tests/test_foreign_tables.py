"""Gain tables a newcomer brings: other N, odd task names, other file habits, partial tables.

Each file is written here (tmp dir) in a format the README documents as loadable and is either
read into the table built by hand, or refused with an ``InputError`` that names the file, the
line/row (and column) and what was expected. The public paths (``group``, ``replay`` API and CLI,
HOA / TAG / MTG-Net fit + predict) then run end to end on N = 9 and N = 27 partial tables.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mtgfast import HOA, TAG, GainTable, MTGNet, evaluate, group
from mtgfast.cli import main
from mtgfast.errors import InputError, MtgfastError
from mtgfast.gains import load_table
from mtgfast.masks import masks_to_dense, popcount
from mtgfast.replay import replay

# names with spaces, commas, unicode, a '|'-free dot; none holds the separators + | ;
ODD_NAMES = ("sales, EU", "déjà vu", "温度 1", "a.b", "x y z", "Ω", "t-7", "mean(ax)", "z")


def partial_table(n: int, extra: int, names: tuple[str, ...], seed: int = 0) -> GainTable:
    """Singletons, all pairs, the full set and ``extra`` random larger combinations, shuffled."""
    rng = np.random.default_rng(seed)
    ms = {1 << j for j in range(n)} | {(1 << i) | (1 << j) for i in range(n)
                                       for j in range(i + 1, n)} | {(1 << n) - 1}
    target = len(ms) + extra
    while len(ms) < target and n > 2:
        k = int(rng.integers(3, n + 1))
        ms.add(int(sum(1 << int(t) for t in rng.choice(n, k, replace=False))))
    masks = np.array(sorted(ms), dtype=np.uint64)[rng.permutation(len(ms))]
    member = masks_to_dense(masks, n)
    g = np.where(member, rng.normal(0.0, 0.1, member.shape), np.nan)
    g[popcount(masks) == 1] = np.where(member[popcount(masks) == 1], 0.0, np.nan)
    return GainTable(masks, g, names)


def write_mtgnet(t: GainTable, folder: Path, stem: str, *, sep: str = " ", crlf: bool = False,
                 bom: bool = False, fmt: str = "{:.17e}") -> tuple[Path, Path]:
    """The release format: a 0/1 mask file and a gain file, 0 outside each combination."""
    end = "\r\n" if crlf else "\n"
    head = "\ufeff" if bom else ""
    member = t.member()
    x = head + end.join(sep.join(str(int(v)) for v in row) for row in member) + end
    y = head + end.join(sep.join(fmt.format(float(v)) if m else "0" for v, m in zip(row, mrow))
                        for row, mrow in zip(t.gains, member)) + end
    xp, yp = folder / f"{stem}_x.csv", folder / f"{stem}_y.csv"
    xp.write_bytes(x.encode())
    yp.write_bytes(y.encode())
    return xp, yp


def write_tidy(t: GainTable, path: Path, *, with_mask: bool, crlf: bool = False,
               bom: bool = False, reverse_rows: bool = False) -> Path:
    """A tidy CSV written by hand (csv module: quoted names with commas), not by ``to_csv``."""
    rows = []
    for m, g in zip(t.masks, t.gains):
        members = [t.task_names[j] for j in range(t.n_tasks) if (int(m) >> j) & 1]
        for j in range(t.n_tasks):
            if (int(m) >> j) & 1:
                rows.append(([str(int(m))] if with_mask else [])
                            + ["+".join(members), t.task_names[j], f"{float(g[j]):.17e}"])
    if reverse_rows:
        rows.reverse()
    with open(path, "w", newline="", encoding="utf-8") as f:
        if bom:
            f.write("\ufeff")
        w = csv.writer(f, lineterminator="\r\n" if crlf else "\n")
        w.writerow((["mask"] if with_mask else []) + ["tasks", "task", "gain"])
        w.writerows(rows)
    return path


def served_mean(groups: object, assignment: object, table: GainTable) -> float:
    """Plain reference of the replay score: each task's gain, in ``table``, in the group the
    search assigned it to (chosen on the validation gains); 0 for a task trained alone."""
    rows = table.lookup(groups)
    a = np.asarray(assignment)
    return float(np.mean([rows[a[j], j] if a[j] >= 0 else 0.0 for j in range(table.n_tasks)]))


def same_table(a: GainTable, b: GainTable) -> None:
    assert a.task_names == b.task_names
    ia = np.argsort(a.masks)
    ib = np.argsort(b.masks)
    np.testing.assert_array_equal(a.masks[ia], b.masks[ib])
    np.testing.assert_array_equal(a.gains[ia], b.gains[ib])


@pytest.mark.parametrize("n", [1, 2, 9, 27, 63, 64])
@pytest.mark.parametrize("style", ["space", "comma-crlf-bom", "semicolon-short"])
def test_mtgnet_format_any_n(tmp_path: Path, n: int, style: str) -> None:
    names = tuple(f"task {j}" for j in range(n))
    t = partial_table(n, 40 if n > 2 else 0, names, seed=n)
    sep, crlf, fmt = {"space": (" ", False, "{:.17e}"), "comma-crlf-bom": (",", True, "{!r}"),
                      "semicolon-short": (";", False, "{:.3E}")}[style]
    xp, yp = write_mtgnet(t, tmp_path, "g", sep=sep, crlf=crlf, bom=crlf, fmt=fmt)
    got = load_table(yp, xp, task_names=names)
    if fmt == "{:.3E}":   # 4 significant digits written: compare with what was written
        t = t.with_gains(np.vectorize(lambda v: float(f"{v:.3E}"))(t.gains))
    np.testing.assert_array_equal(got.masks, t.masks)   # row order kept (shuffled)
    np.testing.assert_array_equal(got.gains, t.gains)


@pytest.mark.parametrize("n", [1, 2, 9, 27, 64])
@pytest.mark.parametrize("with_mask", [True, False])
def test_tidy_csv_odd_names_any_n(tmp_path: Path, n: int, with_mask: bool) -> None:
    names = tuple((ODD_NAMES[j] if j < len(ODD_NAMES) else f"τ {j}, x") for j in range(n))
    t = partial_table(n, 30 if n > 2 else 0, names, seed=n + 1)
    p = write_tidy(t, tmp_path / "g.csv", with_mask=with_mask, crlf=True, bom=True,
                   reverse_rows=True)
    # no task_names: the names come from the file (with a mask column: which bit is which too)
    got = load_table(p)
    assert sorted(got.task_names) == sorted(names)
    same_table(got.with_task_order(names), t)
    same_table(load_table(p, task_names=names), t)


def test_to_csv_round_trip_without_task_names(tmp_path: Path) -> None:
    """``to_csv`` writes mask + tasks; reading it back needed task_names for any name but t<j>."""
    t = partial_table(5, 6, ("alpha", "beta gamma", "δ", "e, f", "g"), seed=3)
    t.to_csv(tmp_path / "t.csv")
    same_table(load_table(tmp_path / "t.csv"), t)


def test_with_task_order(tmp_path: Path) -> None:
    t = partial_table(4, 3, ("a", "b", "c", "d"), seed=4)
    r = t.with_task_order(("c", "a", "d", "b"))
    assert r.task_names == ("c", "a", "d", "b")
    for m, g in zip(t.masks, t.gains):
        members = {t.task_names[j] for j in range(4) if (int(m) >> j) & 1}
        rm = sum(1 << r.task_names.index(x) for x in members)
        row = r.lookup([rm])[0]
        for x in members:
            assert row[r.task_names.index(x)] == g[t.task_names.index(x)]
    with pytest.raises(InputError, match="not the table's tasks"):
        t.with_task_order(("a", "b", "c", "e"))


def _files(tmp_path: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode())


M3 = "1 0 0\n0 1 0\n0 0 1\n1 1 0\n1 1 1\n"
G3 = "0 0 0\n0 0 0\n0 0 0\n0.1 2e-2 0\n-1.5E-1 0.3 0.25\n"

#: (files, call, words every message must hold)
BAD: dict[str, tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]] = {
    "outside gain (mtgnet)": ({"x.csv": M3, "y.csv": G3.replace("0.1 2e-2 0", "0.1 2e-2 0.7")},
                              ("y.csv", "x.csv"), ("y.csv", "row 4", "column 3", "outside")),
    "nan inside (mtgnet)": ({"x.csv": M3, "y.csv": G3.replace("0.3", "nan")},
                            ("y.csv", "x.csv"), ("y.csv", "row 5", "column 2", "finite")),
    "inf inside (mtgnet)": ({"x.csv": M3, "y.csv": G3.replace("0.3", "-inf")},
                            ("y.csv", "x.csv"), ("y.csv", "row 5", "column 2", "finite")),
    "empty cell (mtgnet)": ({"x.csv": M3.replace(" ", ","),
                             "y.csv": G3.replace(" ", ",").replace(",0.3,", ",,")},
                            ("y.csv", "x.csv"), ("y.csv", "line 5", "column 2")),
    "one row fewer (mtgnet)": ({"x.csv": M3, "y.csv": G3.rsplit("\n", 2)[0] + "\n"},
                               ("y.csv", "x.csv"), ("x.csv", "y.csv", "5 rows", "4")),
    "duplicate mask row": ({"x.csv": M3 + "1 1 0\n", "y.csv": G3 + "0.1 0.1 0\n"},
                           ("y.csv", "x.csv"), ("duplicate", "mask 3")),
    "json given": ({"y.json": '{"masks": [1, 3], "gain": [0, 0.1]}\n', "x.csv": M3},
                   ("y.json", "x.csv"), ("y.json", "JSON")),
    "wrong header case": ({"t.csv": "Tasks,Task,Gain\na+b,a,0.1\n"}, ("t.csv",),
                          ("t.csv", "'task'", "got")),
    "member twice": ({"t.csv": "tasks,task,gain\na+a,b,0.1\n"}, ("t.csv", ["a", "b"]),
                     ("t.csv", "line 2", "twice")),
    "empty combination": ({"t.csv": "tasks,task,gain\n+,a,0.1\n"}, ("t.csv",),
                          ("t.csv", "line 2", "empty combination")),
    "unterminated quote": ({"t.csv": 'tasks,task,gain\na+b,a,"0.1\na+b,b,0.2\n'}, ("t.csv",),
                           ("t.csv", "line", "quote")),
    "task outside its combination": ({"t.csv": "tasks,task,gain\na+b,a,0.1\na+b,c,0.2\n"},
                                     ("t.csv", ["a", "b", "c"]),
                                     ("t.csv", "line 3", "'c'", "outside")),
    "missing member row": ({"t.csv": "tasks,task,gain\na+b,a,0.1\n"}, ("t.csv",),
                           ("t.csv", "'b'", "no row gives it")),
    "empty gain cell": ({"t.csv": "tasks,task,gain\r\na+b,a,0.1\r\na+b,b,\r\n"}, ("t.csv",),
                        ("t.csv", "line 3", "finite")),
    "nan gain": ({"t.csv": "tasks,task,gain\na+b,a,NaN\na+b,b,0.1\n"}, ("t.csv",),
                 ("t.csv", "line 2", "finite")),
    "decimal comma": ({"t.csv": "tasks;task;gain\na+b;a;0,1\na+b;b;0,2\n"}, ("t.csv",),
                      ("t.csv", "line 2", "'0,1'", "not a number")),
    "two splits, none chosen": ({"t.csv": "tasks,task,gain,split\na,a,0,valid\na,a,0,test\n"},
                                ("t.csv",), ("t.csv", "several splits")),
    "mask and tasks disagree": ({"t.csv": "mask,tasks,task,gain\n1,a,a,0\n2,b,b,0\n"
                                          "3,a+c,a,0.1\n3,a+c,c,0.2\n"}, ("t.csv",),
                                ("t.csv", "line 4", "disagree")),
    "duplicate task names given": ({"x.csv": M3, "y.csv": G3}, ("y.csv", "x.csv", ["a", "b", "a"]),
                                   ("distinct", "'a'")),
    "duplicate (combination, task) row": ({"t.csv": "tasks,task,gain\na+b,a,0.1\na+b,b,0.2\n"
                                                   "b+a,a,0.3\n"}, ("t.csv",),
                                          ("t.csv", "line 4", "duplicate", "'a'")),
    "mask column, no names": ({"t.csv": "mask,task,gain\n3,a,0.1\n3,b,0.2\n"}, ("t.csv",),
                              ("t.csv", "task_names")),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_foreign_tables_are_named(tmp_path: Path, case: str) -> None:
    files, call, words = BAD[case]
    _files(tmp_path, files)
    path, *rest = call
    kw: dict[str, object] = {}
    masks = None
    for r in rest:
        if isinstance(r, list):
            kw["task_names"] = r
        else:
            masks = tmp_path / r
    with pytest.raises(InputError) as err:
        load_table(tmp_path / path, masks, **kw)   # type: ignore[arg-type]
    msg = str(err.value)
    for w in words:
        assert w in msg, (w, msg)


def test_member_twice_was_loaded_as_another_combination(tmp_path: Path) -> None:
    """'a+a' used to add the bit twice: mask 2, i.e. the singleton {b}, loaded silently."""
    (tmp_path / "t.csv").write_text("tasks,task,gain\na+a,b,0.0\na,a,0\n")
    with pytest.raises(InputError, match="twice"):
        load_table(tmp_path / "t.csv", task_names=["a", "b"])


def test_names_with_spaces_in_tasks_column(tmp_path: Path) -> None:
    """Members are split on + | ; when one is present: 'x y+z' is the tasks 'x y' and 'z'."""
    (tmp_path / "t.csv").write_text('tasks,task,gain\n"x y+z, w",x y,0.5\n"x y+z, w",'
                                    '"z, w",-0.25\nx y,x y,0\n')
    t = load_table(tmp_path / "t.csv")
    assert t.task_names == ("x y", "z, w")
    np.testing.assert_array_equal(t.lookup([3])[0], [0.5, -0.25])
    np.testing.assert_array_equal(t.lookup([1])[0], [0.0, np.nan])


def test_validation_and_test_in_other_task_orders(tmp_path: Path) -> None:
    names = ("a", "b", "c", "d")
    v = partial_table(4, 2, names, seed=5)
    rng = np.random.default_rng(9)
    t = v.with_gains(np.where(v.member(), v.gains + rng.normal(0, 0.05, v.gains.shape), np.nan))
    shuffled = t.with_task_order(("d", "b", "a", "c"))
    want = replay(v, t, methods=["oracle", "test-oracle", "hoa"])
    got = replay(v, shuffled, methods=["oracle", "test-oracle", "hoa"])
    assert got.to_dict() == want.to_dict()
    # other tasks altogether: named, not mixed
    with pytest.raises(InputError, match="same tasks"):
        replay(v, GainTable(t.masks, t.gains, ("a", "b", "c", "e")), methods=["oracle"])
    # a tidy test file that lists its tasks in another order reads into the validation's order
    write_tidy(v, tmp_path / "v.csv", with_mask=False)
    write_tidy(shuffled, tmp_path / "t.csv", with_mask=False, reverse_rows=True)
    np.savetxt(tmp_path / "x.csv", v.member().astype(int), fmt="%d")
    rc = main(["replay", "--masks", str(tmp_path / "x.csv"), "--valid", str(tmp_path / "v.csv"),
               "--test", str(tmp_path / "t.csv"), "--methods", "oracle,test-oracle", "--quiet",
               "--json", str(tmp_path / "r.json"), "--json-exact"])
    assert rc == 0
    import json

    curves = json.loads((tmp_path / "r.json").read_text())
    assert curves["methods"]["test-oracle"]["average_test_gain"] == list(
        want.methods["test-oracle"].average_test_gain)


def test_validation_without_test_and_test_without_validation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = partial_table(5, 4, ("a", "b", "c", "d", "e"), seed=6)
    xp, yp = write_mtgnet(v, tmp_path, "v")
    rc = main(["replay", "--masks", str(xp), "--valid", str(yp), "--methods", "oracle,hoa",
               "--quiet"])
    out = capsys.readouterr()
    assert rc == 0 and "average validation gain" in out.out
    rc = main(["replay", "--masks", str(xp), "--test", str(yp), "--methods", "oracle"])
    err = capsys.readouterr().err
    assert rc == 2 and "--valid" in err and len(err.strip().splitlines()) == 1
    # a test table that lacks a validation row: named
    short = v.select(np.arange(len(v) - 1))
    with pytest.raises(InputError, match="lacks a combination"):
        replay(v, short, methods=["oracle"])


@pytest.mark.parametrize("n,extra", [(9, 120), (27, 300)])
def test_public_paths_on_partial_foreign_tables(tmp_path: Path, n: int, extra: int,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    names = tuple((ODD_NAMES[j] if j < len(ODD_NAMES) else f"τ {j}") for j in range(n))
    v = partial_table(n, extra, names, seed=n)
    rng = np.random.default_rng(n)
    t = v.with_gains(np.where(v.member(), v.gains + rng.normal(0, 0.02, v.gains.shape), np.nan))
    write_tidy(v, tmp_path / "valid.csv", with_mask=True, crlf=True, bom=True)
    xp, yp = write_mtgnet(t, tmp_path, "test", sep=",", crlf=True)
    lv = load_table(tmp_path / "valid.csv")
    lt = load_table(yp, xp, task_names=lv.task_names)
    same_table(lv, v)
    same_table(lt, t)

    budgets = list(range(1, 6))
    curve = group(lv.masks, lv.gains, budget=budgets)
    assert [g.budget for g in curve] == budgets and all(g.optimal for g in curve)
    assert all(b.value >= a.value - 1e-12 for a, b in zip(curve, curve[1:]))
    assert evaluate(curve[-1], lt) == pytest.approx(served_mean(
        curve[-1].groups, curve[-1].assignment, lt), abs=1e-12)

    r = replay(lv, lt, methods=["oracle", "test-oracle", "hoa", "random"], budgets="1-4",
               random_trials=200)
    assert r.n_tasks == n and r.methods["oracle"].measured == sum(
        bin(int(m)).count("1") >= 2 for m in lv.masks)

    # the CLI on the same files: tidy validation (rows put in the mask file's order) + matrix
    rc = main(["replay", "--masks", str(xp), "--valid", str(tmp_path / "valid.csv"),
               "--test", str(yp), "--methods", "oracle,test-oracle,hoa", "--budgets", "1-4",
               "--quiet", "--json", str(tmp_path / "r.json"), "--json-exact"])
    assert rc == 0, capsys.readouterr().err
    import json

    got = json.loads((tmp_path / "r.json").read_text())["methods"]
    for m in ("oracle", "test-oracle", "hoa"):
        assert got[m]["average_test_gain"] == pytest.approx(
            list(r.methods[m].average_test_gain), abs=1e-12), m

    # estimators fit on the pairs (+ full set), predict every combination of the table
    seen = lv.select(popcount(lv.masks) <= 2)
    for est in (HOA().fit(seen), TAG().fit(seen),
                MTGNet(seed=0, n_estimators=1, max_epochs=15, dim=16).fit(seen)):
        p = est.predict(lv.masks)
        assert p.shape == lv.gains.shape
        assert np.isfinite(p[lv.member()]).all() and np.isnan(p[~lv.member()]).all()
        g = group(lv.masks, p, budget=3)
        assert np.isfinite(evaluate(g, lt))


def test_errors_are_project_errors_not_bare(tmp_path: Path) -> None:
    """No KeyError / IndexError / struct.error / pandas traceback from any bad case above."""
    for case, (files, call, _) in BAD.items():
        sub = tmp_path / str(abs(hash(case)))
        sub.mkdir()
        _files(sub, files)
        path, *rest = call
        masks = next((sub / r for r in rest if isinstance(r, str)), None)
        names = next((r for r in rest if isinstance(r, list)), None)
        try:
            load_table(sub / path, masks, task_names=names)
        except MtgfastError:
            continue
        raise AssertionError(f"{case}: loaded")


def test_names_that_hold_a_separator(tmp_path: Path) -> None:
    """'C++' and 'a|b' are task names too: to_csv joins them with '+', the reader splits on
    the names the 'task' column knows."""
    t = partial_table(4, 2, ("C++", "Java", "a|b", "x;y"), seed=8)
    t.to_csv(tmp_path / "t.csv")
    same_table(load_table(tmp_path / "t.csv"), t)
    write_tidy(t, tmp_path / "u.csv", with_mask=False)
    got = load_table(tmp_path / "u.csv")
    same_table(got.with_task_order(t.task_names), t)


def test_task_name_with_a_line_break(tmp_path: Path) -> None:
    """A quoted name may hold a line break in CSV; no task name may (it loaded before)."""
    (tmp_path / "t.csv").write_text('tasks,task,gain\n"a\nb+c","a\nb",0.1\n"a\nb+c",c,0.2\n')
    with pytest.raises(InputError, match="control character"):
        load_table(tmp_path / "t.csv")
    with pytest.raises(InputError, match="control character"):
        GainTable(np.array([1], dtype=np.uint64), np.zeros((1, 1)), ("x\ty",))


@pytest.mark.parametrize("n", [2, 27])
def test_parquet_with_odd_names(tmp_path: Path, n: int) -> None:
    pytest.importorskip("pyarrow")
    names = tuple((ODD_NAMES[j] if j < len(ODD_NAMES) else f"τ {j}") for j in range(n))
    t = partial_table(n, 50 if n > 2 else 0, names, seed=11)
    t.to_csv(tmp_path / "t.parquet")
    same_table(load_table(tmp_path / "t.parquet"), t)
    same_table(load_table(tmp_path / "t.parquet", task_names=names), t)


def test_store_of_a_study_with_odd_names(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The store as a table source: a study over names with spaces, commas, unicode and '+'."""
    from mtgfast import GainStore, Study

    names = ["x y", "C++", "é, z", "日本"]

    def train(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
        return {t: 1.0 - 0.02 * len(tasks) + 0.01 * names.index(t) for t in tasks}

    db = tmp_path / "s.db"
    with Study(train, task_names=names, store=db, estimator="oracle", progress=False,
               name="odd") as s:
        s.run()
    with GainStore(str(db), readonly=True) as g:
        table = g.gain_table("odd")
    assert table.task_names == tuple(names) and len(table) == 15
    table.to_csv(tmp_path / "t.csv")
    same_table(load_table(tmp_path / "t.csv"), table)
    best = group(table.masks, table.gains, budget=2)
    assert main(["group", "--store", str(db), "--budget", "2"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in names) and best.value > 0
