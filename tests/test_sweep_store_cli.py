"""Fourth boundary pass: stores changed outside mtgfast, damaged files and store files of other
studies at every command, and several processes racing on one store.

Every case is a clear ``StoreError``/``InputError`` naming the file (and the row or the option),
exit status 2 with one line at the command line, before any training — never a crash, a
traceback, a "database is locked" or a silent wrong answer. Cases marked "(fixed)" failed on the
code before this pass."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mtgfast.cli import main
from mtgfast.errors import StoreError
from mtgfast.store import SCHEMA_VERSION, GainStore

TASKS = ("a", "b", "c")
DIGITS = tuple(f"digit{j}" for j in range(10))


def _healthy(path: Path) -> Path:
    """A complete 3-task study 's' (every combination measured once, metric mae)."""
    with GainStore(path) as s:
        s.create_study("s", TASKS, metrics="mae", fingerprint="fp")
        for m in range(1, 8):
            s.record_run("s", m, 0, metrics_valid={t: 1.0 + 0.1 * m for k, t in enumerate(TASKS)
                                                   if m >> k & 1})
    return path


def _edited(path: Path, sql: str, *args: object) -> Path:
    """``path`` holding the healthy study after one statement run by plain sqlite3 (a file
    changed by hand or by another program)."""
    _healthy(path)
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()
    return path


_M3 = "UPDATE runs SET metrics_valid = ? WHERE mask = 3"
# name, the edit, words the error must hold (besides the file's name)
EDITED_ROWS: list[tuple[str, str, tuple[object, ...], tuple[str, ...]]] = [
    ("NaN metric (fixed: runs() returned it)", _M3, ('{"a": NaN, "b": 1.0}',), ("row 3", "nan", "finite")),
    ("inf metric (fixed)", _M3, ('{"a": Infinity, "b": 1.0}',), ("row 3", "inf", "finite")),
    ("NaN single-task metric (fixed)", "UPDATE runs SET metrics_valid = ? WHERE mask = 1", ('{"a": NaN}',), ("row 1", "nan")),
    ("text metric (fixed: numpy dtype error)", _M3, ('{"a": "x", "b": 1.0}',), ("row 3", "'x'", "finite number")),
    ("bool metric (fixed)", _M3, ('{"a": true, "b": 1.0}',), ("row 3", "True")),
    ("metric not JSON (fixed: JSONDecodeError)", _M3, ("{oops",), ("row 3", "metrics_valid is not JSON")),
    ("metrics a JSON list (fixed: TypeError)", _M3, ("[1, 2]",), ("row 3", "not a JSON object")),
    ("metric of a task outside the run (fixed)", _M3, ('{"a": 1.0, "b": 1.0, "c": 1.0}',), ("row 3", "'c'", "not in the combination")),
    ("complete run lacking a metric (fixed: blamed the STL run)", _M3, ('{"a": 1.0}',), ("row 3", "lacks", "'b'")),
    ("mask beyond the 3 tasks (fixed: message without file)", "UPDATE runs SET mask = 8 WHERE mask = 3", (), ("row 3", "mask 8", "3 tasks")),
    ("mask 0 (fixed: 'masks contains the empty combination')", "UPDATE runs SET mask = 0 WHERE mask = 3", (), ("row 3", "mask 0")),
    ("negative mask (fixed: blamed task c)", "UPDATE runs SET mask = -1 WHERE mask = 3", (), ("row 3", "18446744073709551615")),
    ("mask as text (fixed: '<' not supported)", "UPDATE runs SET mask = 'x' WHERE mask = 3", (), ("row 3", "'x'", "not an integer")),
    ("NaN duration (fixed: accepted)", "UPDATE runs SET seconds = 'nan' WHERE mask = 3", (), ("row 3", "seconds")),
    ("task names not JSON (fixed: JSONDecodeError)", "UPDATE studies SET task_names = 'zz'", (), ("study 's'", "task_names is not JSON")),
    ("task names repeated (fixed: blamed a metric)", "UPDATE studies SET task_names = ?", ('["a", "a", "c"]',), ("study 's'", "distinct")),
    ("fewer metrics than tasks (fixed)", "UPDATE studies SET metrics = ?", ('["mae"]',), ("study 's'", "1 metrics")),
    ("config a JSON list (fixed)", "UPDATE studies SET config = '[]'", (), ("study 's'", "config")),
]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40] + ".db"


@pytest.mark.parametrize("case", EDITED_ROWS, ids=[c[0] for c in EDITED_ROWS])
def test_rows_changed_outside_mtgfast_are_named_when_read(tmp_path: Path, case) -> None:
    name, sql, args, words = case
    path = _edited(tmp_path / _slug(name), sql, *args)
    for read in (lambda s: s.runs("s"), lambda s: s.gain_table("s"),
                 lambda s: s.mean_metrics("s")):
        with GainStore(path, readonly=True) as s, pytest.raises(StoreError) as info:
            read(s)
        text = str(info.value)
        assert str(path) in text and "outside mtgfast" in text, text
        for w in words:
            assert w in text, (w, text)


@pytest.mark.parametrize("case", EDITED_ROWS[:4] + EDITED_ROWS[9:11],
                         ids=[c[0] for c in EDITED_ROWS[:4] + EDITED_ROWS[9:11]])
def test_group_command_on_an_edited_store_is_one_line(tmp_path: Path, capsys, case) -> None:
    name, sql, args, words = case
    path = _edited(tmp_path / _slug(name), sql, *args)
    assert main(["group", "--store", str(path), "--budget", "2"]) == 2
    out, err = capsys.readouterr()
    assert not out and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("mtgfast: error: ") and str(path) in err and words[0] in err


def test_a_clean_store_still_reads_and_the_writers_write_only_what_reads_back(tmp_path):
    path = _healthy(tmp_path / "ok.db")
    with GainStore(path) as s:
        s.request_runs("s", [(3, 1), (5, 1)])
        claimed = s.claim_runs("s", "me")
        assert sorted(r.mask for r in claimed) == [3, 5]
        s.complete_run("s", 3, 1, metrics_valid={"a": 2.0, "b": 2.0})
        s.fail_run("s", 5, 1, error="boom", retry=False)
        assert len(s.runs("s")) == 9 and len(s.runs("s", status="complete")) == 8
        assert s.gain_table("s").gains.shape == (7, 3)


# -- damaged files and files of other studies at every command ---------------------------------
def _newer(p: Path) -> Path:
    _healthy(p)
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    return p


def _truncated(p: Path, keep: int | None = None) -> Path:
    data = _healthy(p.with_suffix(".full")).read_bytes()
    p.write_bytes(data[:len(data) // 2 if keep is None else keep])
    return p


def _other_fingerprint(p: Path) -> Path:
    with GainStore(p) as s:
        s.create_study("x", DIGITS, metrics="bce", fingerprint="another-config")
    return p


def _no_tables(p: Path) -> Path:
    """An SQLite file with a header and no tables (what a store is for an instant while the
    first writer creates it)."""
    con = sqlite3.connect(p)
    con.executescript("CREATE TABLE t (x); DROP TABLE t;")
    con.close()
    return p


FILES: dict[str, Callable[[Path], Path]] = {
    "SQLite without tables": _no_tables,
    "empty": lambda p: (p.write_bytes(b""), p)[1],
    "text": lambda p: (p.write_text("not a database\n"), p)[1],
    "folder": lambda p: (p.mkdir(), p)[1],
    "newer schema": _newer,
    "truncated to half": _truncated,
    "truncated to 100 bytes": lambda p: _truncated(p, 100),
    "other tasks": _healthy,
    "other fingerprint": _other_fingerprint,
    "two studies": lambda p: _other_fingerprint(_healthy(p)),
}
T = ["--rounds", "0", "--quiet"]
# command, file, words (the file's name is always asserted too)
CLI_FILES: list[tuple[str, list[str], str, tuple[str, ...]]] = [
    ("group", ["group", "--budget", "2"], "empty", ("empty file",)),
    ("group", ["group", "--budget", "2"], "newer schema", ("schema version", "upgrade mtgfast")),
    ("group", ["group", "--budget", "2"], "truncated to half", ("corrupt",)),
    ("group", ["group", "--budget", "2"], "truncated to 100 bytes", ("corrupt",)),
    ("group", ["group", "--budget", "2"], "folder", ("directory",)),
    ("group (fixed: sqlite3.OperationalError 'no such table: studies')", ["group", "--budget", "2"], "SQLite without tables", ("no gain store (yet)",)),
    ("group, two studies (fixed: 'pass study=')", ["group", "--budget", "2"], "two studies", ("2 studies", "'s', 'x'", "--study")),
    ("group other study name", ["group", "--budget", "2", "--study", "nope"], "other tasks", ("no study 'nope'", "['s']")),
    ("group too many groups", ["group", "--budget", "9"], "other tasks", ("between 1 and 3",)),
    ("demo", ["demo", *T], "newer schema", ("schema version",)),
    ("demo", ["demo", *T], "truncated to half", ("corrupt",)),
    ("demo", ["demo", *T], "text", ("not an mtgfast gain store",)),
    ("study", ["study", "--suite", "digits", "--budget", "2", *T], "newer schema", ("schema version",)),
    ("study", ["study", "--suite", "digits", "--budget", "2", *T], "truncated to 100 bytes", ("corrupt",)),
    ("study", ["study", "--suite", "digits", "--budget", "2", *T], "folder", ("directory",)),
    ("study of another study's tasks (fixed: the file unnamed)", ["study", "--suite", "digits", "--budget", "2", "--name", "s", *T], "other tasks", ("study 's' of gain store", "other task names", "new study name")),
    ("demo --workers 2 (fixed: 'give either workers= or executor=')", ["demo", "--workers", "2", *T], "newer schema", ("schema version",)),
    ("study --workers 2 (fixed: the same)", ["study", "--suite", "digits", "--budget", "2", "--workers", "2", *T], "newer schema", ("schema version",)),
    ("study of another config (fixed: the file unnamed)", ["study", "--suite", "digits", "--budget", "2", "--name", "x", *T], "other fingerprint", ("other fingerprint", "another-config")),
]


@pytest.mark.parametrize("case", CLI_FILES, ids=[f"{c[0]}: {c[2]}" for c in CLI_FILES])
def test_every_command_refuses_a_bad_store_in_one_line(tmp_path: Path, capsys, case) -> None:
    _, argv, kind, words = case
    path = FILES[kind](tmp_path / "store.db")
    before = sorted(os.listdir(tmp_path))
    start = time.monotonic()
    rc = main([*argv, "--store", str(path)])
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtgfast: error: "), err
    assert "Traceback" not in err and not out.strip(), (out, err)
    assert str(path) in lines[0] or "--budget 9" in " ".join(argv), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert time.monotonic() - start < 20, "it trained before refusing"
    # nothing written beside it (SQLite's own -wal/-shm files of a store opened for writing
    # aside: Study leaves its store open when the study's definition is refused)
    assert [f for f in sorted(os.listdir(tmp_path)) if not f.startswith("store.db-")] == before


def test_reading_a_store_while_it_is_created_is_a_store_error(tmp_path: Path) -> None:
    """(fixed) a reader that opened the file before the first writer made the schema got
    sqlite3.OperationalError "no such table: studies" from studies()."""
    path = _no_tables(tmp_path / "young.db")
    with pytest.raises(StoreError, match="no gain store"):
        GainStore(path, readonly=True).studies()
    with GainStore(path) as s:             # a writer makes it a store, then it reads
        s.create_study("s", TASKS)
    with GainStore(path, readonly=True) as s:
        assert s.studies() == ["s"]


def test_replay_names_the_mask_file_option(tmp_path: Path, capsys) -> None:
    """(fixed) an empty or unreadable --masks file was reported as '--valid: mask file ...'."""
    (tmp_path / "m.csv").write_text("")
    (tmp_path / "g.csv").write_text("0.1 0.2\n")
    assert main(["replay", "--masks", str(tmp_path / "m.csv"), "--valid", str(tmp_path / "g.csv"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtgfast: error: --masks: mask file") and "m.csv" in err, err


# -- output paths that cannot be written: refused before the work, not after it -----------------
_M = "1 0 0\n0 1 0\n0 0 1\n1 1 0\n1 0 1\n0 1 1\n1 1 1\n"
_G = "0 0 0\n0 0 0\n0 0 0\n0.1 0.2 0\n0.1 0 -0.1\n0 0.3 0.1\n0.2 0.1 0.05\n"
REPLAY = ["replay", "--masks", "@m.csv", "--valid", "@g.csv", "--methods", "oracle", "--quiet"]
STUDY = ["study", "--suite", "digits", "--budget", "2", "--store", "@s.db", "--quiet"]
# /proc and /sys refuse new files even to root, so these hold on every machine
OUTPUTS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("replay --json in /proc (fixed: after the replay, option unnamed)", REPLAY + ["--json", "/proc/x.json"], ("--json", "/proc", "cannot create files")),
    ("replay --json in /sys (fixed)", REPLAY + ["--json", "/sys/x.json"], ("--json", "cannot create files")),
    ("replay --plot in /proc (fixed)", REPLAY + ["--plot", "/proc/x.png"], ("--plot", "cannot create files")),
    ("replay --json '' (fixed: silently wrote nothing)", REPLAY + ["--json", ""], ("--json", "expected a path")),
    ("replay --plot '' (fixed: silently drew nothing)", REPLAY + ["--plot", ""], ("--plot", "expected a path")),
    ("demo --store in /proc (fixed: sqlite's 'unable to open')", ["demo", "--store", "/proc/x.db"], ("--store", "cannot create files")),
    ("demo --store '' (fixed: ran the whole demo on a temporary store)", ["demo", "--store", ""], ("--store", "expected a path")),
    ("demo --plot in /proc (fixed: failed after the whole demo)", ["demo", "--plot", "/proc/pictures"], ("--plot", "cannot create files")),
    ("demo --plot '' (fixed)", ["demo", "--plot", ""], ("--plot", "expected a path")),
    ("study --plot /proc (fixed: failed after the whole study)", STUDY + ["--plot", "/proc"], ("--plot", "cannot create files")),
    ("study --store in /proc (fixed)", ["study", "--suite", "digits", "--budget", "2", "--store", "/proc/s.db"], ("--store", "cannot create files")),
    ("study --store '' (fixed)", ["study", "--suite", "digits", "--budget", "2", "--store", ""], ("--store", "expected a path")),
]


@pytest.mark.parametrize("case", OUTPUTS, ids=[c[0] for c in OUTPUTS])
def test_unwritable_outputs_are_refused_first(tmp_path: Path, capsys, case) -> None:
    _, argv, words = case
    (tmp_path / "m.csv").write_text(_M)
    (tmp_path / "g.csv").write_text(_G)
    argv = [str(tmp_path / a[1:]) if a.startswith("@") else a for a in argv]
    start = time.monotonic()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtgfast: error: "), err
    assert not out.strip(), out                      # no replay table, no banner: nothing ran
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert time.monotonic() - start < 20
    assert sorted(os.listdir(tmp_path)) == ["g.csv", "m.csv"]   # no store, no probe file left


def test_an_output_that_fails_at_the_end_names_its_option(tmp_path: Path, capsys) -> None:
    """(fixed) /dev/full takes the check (a device, like --json /dev/null) and fails on write:
    the line names --json, not only "No space left on device"."""
    (tmp_path / "m.csv").write_text(_M)
    (tmp_path / "g.csv").write_text(_G)
    rc = main(["replay", "--masks", str(tmp_path / "m.csv"), "--valid", str(tmp_path / "g.csv"),
               "--methods", "oracle", "--quiet", "--json", "/dev/full"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("mtgfast: error: --json '/dev/full': cannot write"), err


# -- several processes on one store at once ------------------------------------------------------
_RACER = """
import json, sys, time
from mtgfast.store import GainStore
db, start, who = sys.argv[1], float(sys.argv[2]), sys.argv[3]
while time.time() < start:
    time.sleep(0.001)
names = [f"t{j}" for j in range(5)]
done = []
with GainStore(db, timeout=30) as s:          # the first of them creates the file
    s.create_study("race", names, metrics="mae", fingerprint="fp")
    s.request_runs("race", [(m, 0) for m in range(1, 32)])
    while True:
        got = s.claim_runs("race", who, limit=2)
        if not got:
            break
        for r in got:
            s.complete_run("race", r.mask, 0, metrics_valid={names[j]: 1.0 + r.mask + j
                                                             for j in range(5) if r.mask >> j & 1})
            done.append(r.mask)
print(json.dumps(done))
"""


def test_processes_racing_to_create_and_work_one_store(tmp_path: Path) -> None:
    """Four processes start at the same instant on a store that does not exist yet: they create
    it, define the study, request and claim runs, complete them — each run is claimed and
    completed by exactly one of them, nothing is lost, no one sees "database is locked"."""
    db = tmp_path / "race.db"
    start = time.time() + 1.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__import__("mtgfast").__file__).resolve().parents[1]),
         os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(db), repr(start), f"w{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and not err.strip(), err
    done = [m for out, _ in outs for m in json.loads(out)]
    assert sorted(done) == list(range(1, 32))          # each exactly once, by one process
    with GainStore(db, readonly=True) as s:
        assert s.count_runs("race", status="complete") == 31
        assert s.count_runs("race", status="waiting") == s.count_runs("race", status="running") == 0
        assert s.integrity_check() == "ok"


# -- resume: `mtgfast study` killed with SIGKILL mid-study, real training in worker processes --------
_STUDY = ["study", "--suite", "synthetic", "--budget", "2", "--rounds", "1", "--epochs", "5",
          "--workers", "2", "--quiet"]


def _stored(db: Path) -> tuple[list[int], dict[tuple[int, int], dict[str, float]]]:
    with GainStore(db, readonly=True) as s:
        name = s.studies()[0]
        return ([r.mask for r in s.selections(name)],
                {(r.mask, r.seed): dict(r.metrics_valid) for r in s.runs(name)})


@pytest.mark.slow
def test_cli_study_killed_mid_run_resumes_to_the_uninterrupted_choices(tmp_path: Path) -> None:
    """The command killed (SIGKILL, workers and all) twice while it trains, then run again:
    it resumes from the store and ends with the choices, runs and grouping of one uninterrupted
    run (real MTL training of the synthetic suite; about 2 minutes on 2 loaded cores)."""
    import signal

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__import__("mtgfast").__file__).resolve().parents[1]),
         os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "mtgfast"]
    ref = subprocess.run([*cmd, *_STUDY, "--store", str(tmp_path / "ref.db")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    db = tmp_path / "killed.db"
    for kill_at in (3, 8):
        proc = subprocess.Popen([*cmd, *_STUDY, "--store", str(db)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
                try:
                    if db.exists() and len(_stored(db)[1]) >= kill_at:
                        break
                except (StoreError, IndexError):
                    pass
            assert proc.poll() is None, "the study ended before it could be killed"
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and its worker processes
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=30)
    before = _stored(db)[1]
    assert 3 <= len(before) < len(_stored(tmp_path / "ref.db")[1])
    again = subprocess.run([*cmd, *_STUDY, "--store", str(db)], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming study" in again.stdout
    choices, runs = _stored(db)
    ref_choices, ref_runs = _stored(tmp_path / "ref.db")
    assert choices == ref_choices and runs == ref_runs
    for key, metrics in before.items():
        assert runs[key] == metrics                     # nothing finished was lost or redone
    tail = lambda out: out[out.index("group(s)"):].splitlines()[:4]   # noqa: E731
    assert tail(again.stdout) == tail(ref.stdout)       # the same grouping printed


def test_selftest_is_a_command(capsys) -> None:
    """`mtgfast selftest` (new) is `python -m mtgfast.selftest`: one line a check, then the
    summary; usage errors are one line with status 2."""
    assert main(["selftest"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok   ") and "all 8 checks passed" in out[-1]
    assert main(["selftest", "--quiet"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["selftest", "--fast"]) == 2
    assert "unrecognized arguments: --fast" in capsys.readouterr().err
