"""Second adversarial pass over files, stores and the command line (table-driven).

Readers: line endings, BOMs, separators, headers, numbers at the float64 edge, long lines,
directories, /dev/null and FIFOs (read without hanging). Stores: FIFOs and devices, a locked
database (waits at most its timeout, then says so). CLI: every error is one ``mtgfast: error:``
line with exit status 2, naming the option and file, before any training. Cases marked "fixed"
failed before this pass."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mtgfast import GainStore, GainTable
from mtgfast.cli import main
from mtgfast.errors import InputError, StoreError

M = "1 0 0\n0 1 0\n0 0 1\n1 1 0\n1 0 1\n0 1 1\n1 1 1\n"
G = "0 0 0\n0 0 0\n0 0 0\n0.1 0.2 0\n0.1 0 -0.1\n0 0.3 0.1\n0.2 0.1 0.05\n"
EXPECTED = np.array([[0.1, 0.2, np.nan], [0.1, np.nan, -0.1], [np.nan, 0.3, 0.1],
                     [0.2, 0.1, 0.05]])

GAIN_FILES: dict[str, bytes] = {
    "plain.csv": G.encode(),
    "crlf.csv": G.replace("\n", "\r\n").encode(),
    "bom.csv": b"\xef\xbb\xbf" + G.encode(),
    "bom_crlf.csv": b"\xef\xbb\xbf" + G.replace("\n", "\r\n").encode(),
    "tabs.csv": G.replace(" ", "\t").encode(),
    "commas.csv": G.replace(" ", ",").encode(),
    "semicolons.csv": G.replace(" ", ";").encode(),                    # fixed
    "trailing_comma.csv": G.replace(" ", ",").replace("\n", ",\n").encode(),  # fixed
    "trailing_semicolon.csv": G.replace(" ", ";").replace("\n", ";\n").encode(),  # fixed
    "blank_lines.csv": ("\n\n" + G.replace("\n", "\n\n")).encode(),
    "scientific.csv": G.replace("0.1", "1e-1").replace("0.2", "2E-1").replace("0.3", "3.0e-01").encode(),
    "no_final_newline.csv": G.rstrip("\n").encode(),
}

BAD_GAIN_FILES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "header.csv": (("a b c\n" + G).encode(), ("header.csv", "line 1", "non-numeric", "'a'")),
    "1e999.csv": (G.replace("0.3", "1e999").encode(), ("1e999.csv", "row 6", "column 2", "finite")),
    "nan_inside.csv": (G.replace("0.3", "nan").encode(), ("row 6", "finite", "nan")),
    "long_line.csv": ((G + "0 " * 200_000 + "\n").encode(), ("long_line.csv", "line 8", "200000 fields")),
    "ragged.csv": (G.replace("0.1 0.2 0", "0.1 0.2").encode(), ("line 4", "2 fields")),
    "mixed_separators.csv": (G.replace("0.1 0.2 0", "0.1,0.2 0").encode(), ("line 4", "'0.2 0'")),
    "two_trailing.csv": (G.replace(" ", ",").replace("\n", ",,\n").encode(), ("line 1", "non-numeric")),
    "comment.csv": (("# gains\n" + G).encode(), ("line 1", "'#'")),
    "utf16.csv": (G.encode("utf-16"), ("binary", "NUL")),
    "latin1.csv": (G.encode() + b"caf\xe9\n", ("not UTF-8", "0xe9", "line 8")),
    "empty.csv": (b"", ("empty",)),
    "whitespace.csv": (b"  \n\t\n", ("empty",)),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    (d / "m.csv").write_text(M)
    for name, data in {**GAIN_FILES, **{k: v[0] for k, v in BAD_GAIN_FILES.items()}}.items():
        (d / name).write_bytes(data)
    (d / "adir").mkdir()
    (d / "store_dir").mkdir()
    (d / "text.db").write_text("not sqlite\n")
    return d


@pytest.mark.parametrize("name", list(GAIN_FILES))
def test_gain_file_formats_read_the_same(folder: Path, name: str) -> None:
    t = GainTable.from_mtgnet(folder / "m.csv", folder / name)
    np.testing.assert_array_equal(t.gains[3:], EXPECTED)


@pytest.mark.parametrize("name", list(BAD_GAIN_FILES))
def test_bad_gain_files_name_file_and_line(folder: Path, name: str) -> None:
    with pytest.raises(InputError) as info:
        GainTable.from_mtgnet(folder / "m.csv", folder / name)
    for word in BAD_GAIN_FILES[name][1]:
        assert word in str(info.value), str(info.value)


def test_near_max_gains_read_exactly(folder: Path) -> None:
    (folder / "huge.csv").write_text(G.replace("0.3", "1.5e308").replace("0.2", "1.6e308"))
    t = GainTable.from_mtgnet(folder / "m.csv", folder / "huge.csv")
    assert t.gains[3, 1] == 1.6e308 and t.gains[5, 1] == 1.5e308


@pytest.mark.parametrize("path,words", [
    ("adir", ("directory",)),
    ("/dev/null", ("empty",)),
    ("missing.csv", ("no such file",)),
])
def test_special_paths(folder: Path, path: str, words: tuple[str, ...]) -> None:
    p = path if path.startswith("/") else folder / path
    with pytest.raises(InputError) as info:
        GainTable.from_mtgnet(folder / "m.csv", p)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_without_writer_does_not_hang(tmp_path: Path) -> None:
    """fixed: reading a FIFO nobody writes to blocked forever."""
    (tmp_path / "m.csv").write_text(M)
    os.mkfifo(tmp_path / "g.fifo")
    start = time.monotonic()
    with pytest.raises(InputError, match="empty"):
        GainTable.from_mtgnet(tmp_path / "m.csv", tmp_path / "g.fifo")
    assert time.monotonic() - start < 10


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_with_a_writer_is_read(tmp_path: Path) -> None:
    """``--valid <(zcat g.csv.gz)``: a pipe with a writer is read to its end."""
    (tmp_path / "m.csv").write_text(M)
    fifo = tmp_path / "g.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "w") as f:  # blocks until the reader opens
            f.write(G)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(0.2)  # the writer waits in open(), as a shell's process substitution does
    t = GainTable.from_mtgnet(tmp_path / "m.csv", fifo)
    writer.join(5)
    np.testing.assert_array_equal(t.gains[3:], EXPECTED)


# -- stores ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,words", [
    ("/dev/null", ("not a regular file",)),          # fixed: "disk I/O error"
    ("store_dir", ("folder",)),
    ("text.db", ("not an mtgfast gain store", "text.db")),
])
def test_store_special_paths(folder: Path, path: str, words: tuple[str, ...]) -> None:
    p = path if path.startswith("/") else str(folder / path)
    with pytest.raises(StoreError) as info:
        GainStore(p)
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_store_on_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "s.db")
    with pytest.raises(StoreError, match="not a regular file"):
        GainStore(tmp_path / "s.db")


def test_locked_store_waits_its_timeout_then_says_so(tmp_path: Path) -> None:
    """fixed: with another connection holding the write lock, opening waited 50 x the timeout
    (50 minutes at the default 60 s) and then reported "not a usable gain store"."""
    path = tmp_path / "g.db"
    with GainStore(path) as s:
        s.create_study("s", ["a", "b"], metrics="mae")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for action in (lambda: GainStore(path, timeout=0.3),
                       lambda: GainStore(path, timeout=0.3, readonly=True).studies()):
            start = time.monotonic()
            try:
                action()
            except StoreError as exc:
                assert "locked" in str(exc) and "timeout" in str(exc), str(exc)
            assert time.monotonic() - start < 5
        reader = GainStore(path, readonly=True, timeout=0.3)   # readers are not blocked (WAL)
        assert reader.studies() == ["s"]
        reader.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with GainStore(path, timeout=0.3) as s:  # and the lock gone, it opens
        assert s.studies() == ["s"]


def test_locked_store_write_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    store = GainStore(path, timeout=0.3)
    store.create_study("s", ["a", "b"], metrics="mae")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    start = time.monotonic()
    try:
        with pytest.raises(StoreError, match="locked by another connection"):
            store.record_run("s", 1, 0, metrics_valid={"a": 1.0})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - start < 5
    store.record_run("s", 1, 0, metrics_valid={"a": 1.0})
    store.close()


# -- the command line ---------------------------------------------------------------------------
R = ["replay", "--masks", "@m.csv", "--valid", "@plain.csv", "--methods", "oracle", "--quiet"]

CLI_ERRORS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("top-level unknown option (fixed: printed the whole help)", ["--bogus"], ("unrecognized arguments: --bogus", "command")),
    ("unknown command", ["frobnicate"], ("invalid choice", "frobnicate")),
    ("replay without args", ["replay"], ("--masks", "--valid", "required")),
    ("study without args", ["study"], ("--suite", "--budget")),
    ("group without args", ["group"], ("--store", "--budget")),
    ("replay misspelt option", R + ["--budjets", "2"], ("--budjets", "--budgets")),
    ("replay option twice (fixed: last one won)", R + ["--masks", "@m.csv"], ("--masks", "more than once")),
    ("study option twice (fixed)", ["study", "--suite", "digits", "--budget", "2", "--seeds", "1", "--seeds", "2"], ("--seeds", "more than once")),
    ("replay header row", ["replay", "--masks", "@m.csv", "--valid", "@header.csv"], ("--valid", "header.csv", "line 1")),
    ("replay 1e999", ["replay", "--masks", "@m.csv", "--valid", "@1e999.csv"], ("--valid", "1e999.csv", "row 6")),
    ("replay long line", ["replay", "--masks", "@m.csv", "--valid", "@long_line.csv"], ("--valid", "line 8")),
    ("replay valid is a directory", ["replay", "--masks", "@m.csv", "--valid", "@adir"], ("--valid", "directory")),
    ("replay valid is /dev/null", ["replay", "--masks", "@m.csv", "--valid", "/dev/null"], ("--valid", "empty")),
    ("replay json into a directory", R + ["--json", "@adir"], ("--json", "directory")),
    ("replay json-exact without json", R + ["--json-exact"], ("--json-exact", "--json")),
    ("replay conflicting --set without mtgnet", R + ["--set", "dim=3"], ("--set", "mtgnet")),
    ("demo --store /dev/null (fixed: disk I/O error after the banner)", ["demo", "--store", "/dev/null"], ("--store", "device")),
    ("demo --store is text", ["demo", "--store", "@text.db"], ("text.db", "not an mtgfast gain store")),
    ("demo --plot is a file (fixed: failed after the whole demo)", ["demo", "--plot", "@m.csv"], ("--plot", "is a file")),
    ("demo --budget 0", ["demo", "--budget", "0"], ("--budget", ">= 1")),
    ("study --address without ray", ["study", "--suite", "digits", "--budget", "2", "--address", "auto"], ("--address", "ray")),
    ("study ett data is not a series (fixed: 21 failed runs first)", ["study", "--suite", "ett", "--budget", "2", "--data", "@plain.csv", "--store", "@new.db"], ("--data", "plain.csv", "columns")),
    ("study --store is a directory", ["study", "--suite", "digits", "--budget", "2", "--store", "@adir"], ("--store", "directory")),
    ("group --store /dev/null", ["group", "--store", "/dev/null", "--budget", "2"], ("--store", "device")),
    ("group --store missing", ["group", "--store", "@missing.db", "--budget", "2"], ("--store", "no such file")),
    ("group --store text", ["group", "--store", "@text.db", "--budget", "2"], ("text.db", "not an mtgfast gain store")),
]



def _args(folder: Path, argv: list[str]) -> list[str]:
    return [str(folder / a[1:]) if a.startswith("@") else a for a in argv]


@pytest.mark.parametrize("argv,words", [c[1:] for c in CLI_ERRORS], ids=[c[0] for c in CLI_ERRORS])
def test_cli_error_is_one_line(folder: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                               words: tuple[str, ...]) -> None:
    rc = main(_args(folder, argv))
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("mtgfast: error: "), err
    assert "Traceback" not in err and not out.strip(), (out, err)
    for w in words:
        assert w in lines[0], lines[0]
    assert not (folder / "new.db").exists()  # nothing created, nothing trained


@pytest.mark.parametrize("valid", ["semicolons.csv", "trailing_comma.csv", "bom_crlf.csv"])
def test_cli_reads_the_formats(folder: Path, capsys: pytest.CaptureFixture[str], valid: str) -> None:
    rc = main(_args(folder, ["replay", "--masks", "@m.csv", "--valid", "@" + valid, "--methods",
                             "oracle", "--quiet"]))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "oracle" in out and "20.00" in out


def test_cli_json_to_dev_null_is_allowed(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(folder, R + ["--json", "/dev/null"])) == 0


@pytest.mark.parametrize("command", ["replay", "demo", "study", "group", "selftest"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: mtgfast {command}") and "--help" in out


def test_no_args_prints_usage_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: mtgfast" in capsys.readouterr().err


# -- tidy files and Parquet with the wrong dtypes ------------------------------------------------
TIDY = "mask,task,gain\n3,a,0.1\n3,b,0.2\n1,a,0\n2,b,0\n"


@pytest.mark.parametrize("text", [TIDY, TIDY.replace("\n", "\r\n"), "\ufeff" + TIDY,
                                  TIDY.replace(",", ";"), TIDY.replace(",", "\t"),
                                  TIDY.replace("0.2", "2e-1"), TIDY.replace("3,a", "3.0,a")],
                         ids=["plain", "crlf", "bom", "semicolons", "tabs", "scientific",
                              "integral float mask"])
def test_tidy_formats(tmp_path: Path, text: str) -> None:
    (tmp_path / "t.csv").write_text(text, newline="")
    t = GainTable.from_tidy(tmp_path / "t.csv", ["a", "b"])
    assert t.masks.tolist() == [3, 1, 2] and t.gains[0].tolist() == [0.1, 0.2]


@pytest.mark.parametrize("text,words", [
    (TIDY.replace("0.2", "1e999"), ("line 3", "finite", "1e999")),
    (TIDY.replace("3,a", "3.5,a"), ("line 2", "integers", "3.5")),
    (TIDY.replace("3,a", "0x3,a"), ("line 2", "integers")),
    (TIDY + "3,a,0.5\n", ("line 6", "duplicate")),
    ("mask,task,gain\n", ("no data rows",)),
])
def test_tidy_errors_name_the_line(tmp_path: Path, text: str, words: tuple[str, ...]) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError) as info:
        GainTable.from_tidy(tmp_path / "t.csv", ["a", "b"])
    assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("change,error", [
    ({}, None),
    ({"mask": [3.0, 3.0, 1.0, 2.0]}, None),                          # integral floats are masks
    ({"mask": np.array([3, 3, 1, 2], np.uint64)}, None),
    ({"task": "category"}, None),
    ({"mask": [3.5, 3.0, 1.0, 2.0]}, ("row 1", "integers", "3.5")),
    ({"gain": [True, False, True, False]}, ("row 1", "bool")),
    ({"task": [1, 2, 1, 2]}, ("row 1", "unknown task")),
])
def test_parquet_dtypes(tmp_path: Path, change: dict, error: tuple[str, ...] | None) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"mask": [3, 3, 1, 2], "task": ["a", "b", "a", "b"],
                       "gain": [0.1, 0.2, 0.0, 0.0]})
    for col, v in change.items():
        df[col] = df[col].astype(v) if isinstance(v, str) else v
    df.to_parquet(tmp_path / "t.parquet")
    if error is None:
        t = GainTable.from_tidy(tmp_path / "t.parquet", ["a", "b"])
        assert t.masks.tolist() == [3, 1, 2] and t.gains[0].tolist() == [0.1, 0.2]
        return
    with pytest.raises(InputError) as info:
        GainTable.from_tidy(tmp_path / "t.parquet", ["a", "b"])
    assert all(w in str(info.value) for w in error), str(info.value)


@pytest.mark.parametrize("data,words", [(b"PAR1garbage", ("not a readable Parquet",)),
                                        (TIDY.encode(), ("not a readable Parquet",))])
def test_parquet_that_is_not(tmp_path: Path, data: bytes, words: tuple[str, ...]) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "t.parquet").write_bytes(data)
    with pytest.raises(InputError) as info:
        GainTable.from_tidy(tmp_path / "t.parquet", ["a", "b"])
    assert all(w in str(info.value) for w in words) and "t.parquet" in str(info.value)


def test_a_file_rewritten_between_reads_is_read_whole(tmp_path: Path) -> None:
    """Each reader takes one snapshot of a file: rewriting it between two reads gives two
    consistent tables, never a mix (the second read sees the new content whole)."""
    (tmp_path / "m.csv").write_text(M)
    g = tmp_path / "g.csv"
    g.write_text(G)
    first = GainTable.from_mtgnet(tmp_path / "m.csv", g)
    g.write_text(G.replace("0.3", "0.4"))
    second = GainTable.from_mtgnet(tmp_path / "m.csv", g)
    assert first.gains[5, 1] == 0.3 and second.gains[5, 1] == 0.4
