"""GainStore at its boundaries: every bad file, bad open option and bad argument gives a clear
StoreError / InputError / InputTypeError naming what is wrong (table-driven), plus the read-only
and create=False paths that must work."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import mtgfast
from mtgfast.errors import InputError, InputTypeError, StoreError
from mtgfast.store import SCHEMA_VERSION, GainStore

TASKS = ("a", "b", "c")
#: the schema mtgfast 0.1 wrote (its store.py ``_SCHEMA``, version 1), as a released store has it
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE studies (name TEXT PRIMARY KEY, task_names TEXT NOT NULL, metrics TEXT NOT NULL,
    higher_is_better TEXT NOT NULL, fingerprint TEXT NOT NULL, config TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, study TEXT NOT NULL REFERENCES studies(name),
    mask INTEGER NOT NULL, seed INTEGER NOT NULL, fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('finished', 'failed')), metrics_valid TEXT NOT NULL,
    metrics_test TEXT NOT NULL, seconds REAL NOT NULL, config TEXT NOT NULL,
    created REAL NOT NULL, UNIQUE (study, mask, seed, fingerprint));
CREATE INDEX runs_by_study ON runs (study, status);
INSERT INTO schema_version VALUES (1);
"""


def _healthy(path: Path, n_runs: int = 40) -> Path:
    with GainStore(path) as s:
        s.create_study("s", TASKS, fingerprint="fp")
        for seed in range(n_runs):
            s.record_run("s", 0b011, seed, metrics_valid={"a": 1.0 + seed, "b": 2.0},
                         config={"pad": "x" * 200})
    return path


def _corrupt(tmp: Path) -> Path:
    path = _healthy(tmp / "corrupt.db")
    size = path.stat().st_size
    assert size > 4 * 4096
    with path.open("r+b") as fh:   # scribble over a b-tree page in the middle of the file
        fh.seek(2 * 4096)
        fh.write(b"\xff\x13" * 2048)
    return path


def _sqlite(path: Path, script: str) -> Path:
    """``path`` after running the SQL ``script`` on it with plain sqlite3 (not through the store)."""
    con = sqlite3.connect(path)
    con.executescript(script)
    con.commit()
    con.close()
    return path


def _foreign(tmp: Path) -> Path:
    return _sqlite(tmp / "other.db", "CREATE TABLE customers (id INTEGER, name TEXT);")


def _foreign_app_id(tmp: Path) -> Path:
    return _sqlite(tmp / "app.db", "PRAGMA application_id = 1234; CREATE TABLE studies (x); "
                   "CREATE TABLE schema_version (version INTEGER);")


def _newer(tmp: Path) -> Path:
    return _sqlite(_healthy(tmp / "newer.db", 1), f"PRAGMA user_version = {SCHEMA_VERSION + 1};")


def _v1(tmp: Path) -> Path:
    return _sqlite(tmp / "v1.db", V1_SCHEMA)


def _text(tmp: Path) -> Path:
    path = tmp / "notes.db"
    path.write_text("these are my notes, not a database\n" * 50)
    return path


def _store(tmp: Path) -> GainStore:
    s = GainStore(tmp / "g.db")
    s.create_study("s", TASKS, metrics="mae", fingerprint="fp")
    return s


def _call(method: str, *args: object, **kwargs: object) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        with _store(tmp) as s:
            return getattr(s, method)(*args, **kwargs)
    return run


def _open(path_of: Callable[[Path], object], **kwargs: object) -> Callable[[Path], object]:
    def run(tmp: Path) -> object:
        p = path_of(tmp)
        with GainStore(p, **kwargs):  # type: ignore[arg-type]
            return None
    return run


def _readonly_write(tmp: Path) -> None:
    path = _healthy(tmp / "ro.db", 1)
    with GainStore(path, readonly=True) as s:
        s.record_run("s", 0b001, 0, metrics_valid={"a": 1.0})


def _zero_stl(tmp: Path) -> None:
    with _store(tmp) as s:
        s.record_run("s", 0b001, 0, metrics_valid={"a": 0.0})
        s.record_run("s", 0b010, 0, metrics_valid={"b": 1.0})
        s.record_run("s", 0b011, 0, metrics_valid={"a": 0.5, "b": 1.0})
        s.gain_table("s")


def _closed(tmp: Path) -> None:
    s = _store(tmp)
    s.close()
    s.runs("s")


def _complete_unrequested(tmp: Path) -> None:
    with _store(tmp) as s:
        s.complete_run("s", 0b011, 0, metrics_valid={"a": 1.0, "b": 1.0})


def _slot_gap(tmp: Path) -> None:
    with _store(tmp) as s:
        s.add_selection_batch("s", slot_start=0, slot_count=1,
                              selections=[(0b011, 0, 0, "selected")], seeds=[0])
        s.add_selection_batch("s", slot_start=5, slot_count=1,
                              selections=[(0b101, 0, 1, "selected")], seeds=[0])


def _mkdir(name: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).mkdir()
        return tmp / name
    return make


MV = {"a": 1.0, "b": 1.0}

#: (id, action(tmp_path), exception type, words the message must contain)
CASES: list[tuple[str, Callable[[Path], object], type[Exception], tuple[str, ...]]] = [
    # -- the file on open --
    ("corrupt page", _open(_corrupt), StoreError, ("corrupt", "corrupt.db")),
    ("text file", _open(_text), StoreError, ("not an mtgfast gain store", "notes.db")),
    ("another app's sqlite", _open(_foreign), StoreError, ("not an mtgfast gain store",
                                                           "customers")),
    ("foreign application_id", _open(_foreign_app_id), StoreError, ("not an mtgfast gain store",
                                                                    "application_id")),
    ("newer schema", _open(_newer), StoreError, ("newer", "upgrade mtgfast")),
    ("create=False, missing", _open(lambda t: t / "missing.db", create=False), StoreError,
     ("no gain store", "missing.db", "create=False")),
    ("readonly, missing", _open(lambda t: t / "missing.db", readonly=True), StoreError,
     ("no gain store", "readonly=True")),
    ("path is a folder", _open(_mkdir("adir")), StoreError, ("folder", "adir")),
    ("folder does not exist", _open(lambda t: t / "no" / "such" / "g.db"), StoreError,
     ("cannot open", "g.db")),
    ("old schema read-only", _open(_v1, readonly=True), StoreError, ("old schema", "migrated")),
    ("write to a read-only store", _readonly_write, StoreError, ("read-only", "readonly")),
    ("closed store", _closed, StoreError, ("closed",)),
    # -- open options --
    ("timeout -1", _open(lambda t: t / "g.db", timeout=-1), InputError, ("timeout", ">= 0")),
    ("timeout nan", _open(lambda t: t / "g.db", timeout=float("nan")), InputError, ("timeout",)),
    ("timeout str", _open(lambda t: t / "g.db", timeout="10"), InputTypeError, ("timeout",)),
    ("readonly str", _open(lambda t: t / "g.db", readonly="yes"), InputTypeError, ("readonly",)),
    ("create int", _open(lambda t: t / "g.db", create=0), InputTypeError, ("create",)),
    ("path int", _open(lambda t: 123), InputTypeError, ("path",)),
    ("path empty", _open(lambda t: ""), InputError, ("path", "empty")),
    # -- record_run --
    ("seed -1", _call("record_run", "s", 0b011, -1, metrics_valid=MV), InputError,
     ("seed", "2**63")),
    ("seed 2**70", _call("record_run", "s", 0b011, 2**70, metrics_valid=MV), InputError,
     ("seed", str(2**70))),
    ("seed float", _call("record_run", "s", 0b011, 1.5, metrics_valid=MV), InputTypeError,
     ("seed", "float")),
    ("seed bool", _call("record_run", "s", 0b011, True, metrics_valid=MV), InputTypeError,
     ("seed",)),
    ("mask str", _call("record_run", "s", "3", 0, metrics_valid=MV), InputTypeError, ("mask",)),
    ("mask bool", _call("record_run", "s", True, 0, metrics_valid=MV), InputTypeError, ("mask",)),
    ("mask too wide", _call("record_run", "s", 0b1011, 0, metrics_valid=MV), InputError,
     ("mask 11", "not a combination")),
    ("metric 'abc'", _call("record_run", "s", 0b011, 0, metrics_valid={"a": "abc", "b": 1.0}),
     InputTypeError, ("metrics_valid['a']", "number", "abc")),
    ("metric bool", _call("record_run", "s", 0b011, 0, metrics_valid={"a": True, "b": 1.0}),
     InputTypeError, ("metrics_valid['a']",)),
    ("metric inf", _call("record_run", "s", 0b011, 0, metrics_valid={"a": float("inf"),
                                                                    "b": 1.0}),
     InputError, ("finite",)),
    ("metrics not a mapping", _call("record_run", "s", 0b011, 0, metrics_valid=[1.0, 2.0]),
     InputTypeError, ("mapping",)),
    ("status bogus", _call("record_run", "s", 0b011, 0, metrics_valid=MV, status="bogus"),
     InputError, ("status", "bogus")),
    ("status waiting", _call("record_run", "s", 0b011, 0, metrics_valid=MV, status="waiting"),
     InputError, ("status", "request_runs")),
    ("seconds nan", _call("record_run", "s", 0b011, 0, metrics_valid=MV,
                          seconds=float("nan")), InputError, ("seconds",)),
    ("fingerprint int", _call("record_run", "s", 0b011, 0, metrics_valid=MV, fingerprint=3),
     InputTypeError, ("fingerprint",)),
    ("unknown study", _call("record_run", "zz", 0b011, 0, metrics_valid=MV), StoreError,
     ("no study", "zz")),
    # -- create_study --
    ("study name empty", _call("create_study", "", TASKS), InputError, ("study name",)),
    ("task names one string", _call("create_study", "t", "abc"), InputTypeError,
     ("task_names",)),
    ("duplicate task names", _call("create_study", "t", ["a", "a"]), InputError, ("distinct",)),
    ("metrics per task", _call("create_study", "t", TASKS, metrics=["m"]), InputError,
     ("one entry per task",)),
    ("fingerprint not str", _call("create_study", "t", TASKS, fingerprint=5), InputTypeError,
     ("fingerprint",)),
    ("redefined study", _call("create_study", "s", TASKS, metrics="mae", fingerprint="other"),
     StoreError, ("fingerprint", "new study name")),
    # -- the trial model --
    ("owner empty", _call("claim_runs", "s", ""), InputTypeError, ("owner",)),
    ("claim limit -1", _call("claim_runs", "s", "me", limit=-1), InputError, ("limit",)),
    ("requeue older_than -1", _call("requeue_stale", "s", older_than=-1), InputError,
     ("older_than",)),
    ("complete unrequested", _complete_unrequested, StoreError, ("never requested",)),
    ("fail_run error None", _call("fail_run", "s", 0b011, 0, error=None, retry=False),
     InputTypeError, ("error", "traceback")),
    ("selection slot gap", _slot_gap, StoreError, ("slot 5", "slot 1")),
    ("runs status bogus", _call("runs", "s", status="done"), InputError, ("status", "done")),
    # -- derived tables --
    ("split train", _call("gain_table", "s", "train"), InputError, ("split", "train")),
    ("zero STL metric", _zero_stl, StoreError, ("STL", "is 0", "'a'")),
]


@pytest.mark.parametrize("action, exc, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_store_boundary(tmp_path: Path, action, exc, words) -> None:
    with pytest.raises(exc) as info:
        action(tmp_path)
    assert type(info.value) is exc or issubclass(type(info.value), exc)
    message = str(info.value)
    for w in words:
        assert w in message, (w, message)


def test_enough_cases() -> None:
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


def test_read_only_folder_can_be_read(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _healthy(folder / "g.db", 3)
    assert not (folder / "g.db-wal").exists()   # closed cleanly: the WAL is merged
    before = path.read_bytes()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with GainStore(path, readonly=True) as s:
            assert s.studies() == ["s"] and len(s.runs("s")) == 3
            assert s.stl_metrics("s") == {} and set(s.mean_metrics("s")) == {0b011}
        assert path.read_bytes() == before   # reading changed nothing
    finally:
        folder.chmod(stat.S_IRWXU)


_RO_PROBE = """
import json, sys
from mtgfast.errors import StoreError
from mtgfast.store import GainStore
path, out = sys.argv[1], {}
try:
    GainStore(path)
    out["rw"] = "opened for writing"
except StoreError as exc:
    out["rw"] = "StoreError: " + str(exc)
except BaseException as exc:
    out["rw"] = "OTHER " + type(exc).__name__ + ": " + str(exc)
try:
    with GainStore(path, readonly=True) as s:
        out["ro"] = [s.studies(), len(s.runs("s"))]
except BaseException as exc:
    out["ro"] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


def _read_only_run(folder: Path, args: list[str]) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` with ``folder`` read-only even to that process. As root (chmod does
    not stop root) in a private mount namespace where ``folder`` is a read-only bind mount
    (``unshare -m``), else as user nobody; otherwise with the folder and its files made
    read-only by permissions. Skips only when none of these is possible here."""
    env = {**os.environ, "PYTHONPATH": str(Path(mtgfast.__file__).resolve().parents[1])}
    cmd = [sys.executable, *args]
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(stat.S_IRUSR | (stat.S_IXUSR if p.is_dir() else 0))
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
    unshare = shutil.which("unshare")
    if unshare:
        script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
        out = subprocess.run([unshare, "-m", "sh", "-c", script, "sh", str(folder), *cmd],
                             capture_output=True, text=True, timeout=120, env=env)
        if "mount" not in out.stderr and "unshare" not in out.stderr:
            return out
    # no mount namespace: drop to user nobody, the folder reachable and read-only to it
    for p in [*folder.parents][:-1]:
        if not os.access(p, os.X_OK, effective_ids=False) or p.stat().st_mode & 0o001 == 0:
            pytest.skip(f"no read-only mount here (unshare -m failed) and {p} is closed to "
                        "other users: nothing makes a file read-only to this root process")
    folder.chmod(0o555)
    for p in folder.iterdir():
        p.chmod(0o444)

    def nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env,
                              preexec_fn=nobody)
    finally:
        folder.chmod(0o755)


def test_read_only_store_is_a_clear_error_and_still_readable(tmp_path: Path) -> None:
    """A store the process cannot write (even as root: a read-only mount): opening it for writing
    is a StoreError naming the file and the way out, before any work; readonly=True reads it
    (also in a folder where SQLite cannot create the WAL index) and changes nothing."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _healthy(folder / "g.db", 3)
    before = path.read_bytes()
    out = _read_only_run(folder, ["-c", _RO_PROBE, str(path)])
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["rw"].startswith("StoreError: "), res["rw"]
    for words in (repr(str(path)), "cannot be written", "read-only", "readonly=True"):
        assert words in res["rw"], (words, res["rw"])
    assert res["ro"] == [["s"], 3], res["ro"]
    assert path.read_bytes() == before and sorted(os.listdir(folder)) == ["g.db"]


def test_read_only_store_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    """``mtgfast demo --store`` on a store it cannot write: exit 2, one line naming the option
    and the file, no traceback, before any training."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _healthy(folder / "g.db", 1)
    t0 = time.perf_counter()
    out = _read_only_run(folder, ["-m", "mtgfast", "demo", "--store", str(path)])
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("mtgfast: error: --store") and str(path) in lines[0], lines
    assert time.perf_counter() - t0 < 60 and "runs" not in out.stdout  # nothing was trained


def test_create_false_opens_an_existing_store(tmp_path: Path) -> None:
    path = _healthy(tmp_path / "g.db", 2)
    with GainStore(path, create=False) as s:
        assert len(s.runs("s")) == 2
    assert not (tmp_path / "other.db").exists()
    with pytest.raises(StoreError):
        GainStore(tmp_path / "other.db", create=False)
    assert not (tmp_path / "other.db").exists()   # refusing did not create it
