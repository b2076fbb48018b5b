"""The store across study definitions and processes, and files that are not (whole) stores.

A study of the same name but another task list, task order, fingerprint, metric or direction is
refused with a ``StoreError`` naming the file (never mixed into the stored runs); two
``multiprocessing`` processes driving studies on one store train and store every run once; a
truncated, compressed, zeroed or foreign file is a ``StoreError`` naming its path (API, Study and
CLI alike).
"""

from __future__ import annotations

import gzip
import multiprocessing as mp
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from mtgfast import GainStore, Study
from mtgfast.cli import main
from mtgfast.errors import InputError, StoreError

TASKS = ["a", "b", "c", "d"]


def train(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
    """A cheap deterministic 'training run'; appends one line per call to $H7_TRAIN_LOG."""
    log = os.environ.get("H7_TRAIN_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{'+'.join(tasks)} {seed} {os.getpid()}\n")
        time.sleep(0.01)   # let the two processes interleave
    return {t: 1.0 - 0.02 * len(tasks) + 0.003 * (ord(t[0]) % 7) + 0.001 * seed for t in tasks}


def _study(store: Path, **kw: Any) -> Study:
    opts: dict[str, Any] = {"task_names": TASKS, "estimator": "oracle", "progress": False,
                            "name": "s"}
    opts.update(kw)
    return Study(train, store=store, **opts)


@pytest.mark.parametrize("change,words", [
    ({"task_names": ["a", "b", "c", "e"]}, ("other task names", "'e'")),
    ({"task_names": ["b", "a", "c", "d"]}, ("other task names",)),   # same tasks, other columns
    ({"task_names": ["a", "b", "c"]}, ("other task names",)),
    ({"fingerprint": "trainer-v2"}, ("other fingerprint", "trainer-v2")),
    ({"metric": "accuracy"}, ("other metrics", "accuracy")),
    ({"higher_is_better": True}, ("other higher_is_better",)),
])
def test_another_definition_is_refused_not_mixed(tmp_path: Path, change: dict[str, Any],
                                                 words: tuple[str, ...]) -> None:
    db = tmp_path / "s.db"
    with _study(db) as s:
        s.run()
        before = sorted((r.mask, r.seed, r.status) for r in s.store.runs("s"))
    with pytest.raises(StoreError) as err:
        _study(db, **change)
    msg = str(err.value)
    for w in (str(db), "'s'", *words):
        assert w in msg, (w, msg)
    with GainStore(str(db), readonly=True) as g:   # nothing was added, changed or created
        assert g.studies() == ["s"]
        assert sorted((r.mask, r.seed, r.status) for r in g.runs("s")) == before
    rc = main(["group", "--store", str(db), "--budget", "2"])   # and the store still works
    assert rc == 0


def test_blank_study_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="non-empty"):
        _study(tmp_path / "s.db", name="   ")
    assert not (tmp_path / "s.db").exists()


def _drive(db: str, name: str, log: str, start: Any, seeds: tuple[int, ...]) -> None:
    os.environ["H7_TRAIN_LOG"] = log
    start.wait(30)
    with _study(Path(db), name=name, seeds=seeds) as s:
        s.run()


def _run_two(db: Path, log: Path, names: tuple[str, str], seeds: tuple[int, ...]) -> None:
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_drive, args=(str(db), n, str(log), start, seeds))
             for n in names]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]


def _expected(seeds: tuple[int, ...]) -> set[tuple[int, int]]:
    return {(m, s) for m in range(1, 1 << len(TASKS)) for s in seeds}


def test_two_processes_one_study_train_every_run_once(tmp_path: Path) -> None:
    db, log = tmp_path / "s.db", tmp_path / "train.log"
    seeds = (0, 1)
    _run_two(db, log, ("s", "s"), seeds)
    lines = log.read_text().splitlines()
    trained = [(ln.split()[0], int(ln.split()[1])) for ln in lines]
    assert len(trained) == len(set(trained)) == len(_expected(seeds))   # none twice, none lost
    # (a driver claims its runs as a batch, so the second one may find them all claimed and
    # wait for them: both exit 0 with the whole table either way)
    with GainStore(str(db), readonly=True) as g:
        runs = g.runs("s")
        assert sorted((r.mask, r.seed) for r in runs) == sorted(_expected(seeds))
        assert all("complete" in str(r.status).lower() for r in runs)


def test_two_processes_two_studies_one_store(tmp_path: Path) -> None:
    db, log = tmp_path / "s.db", tmp_path / "train.log"
    _run_two(db, log, ("left", "right"), (0,))
    assert len(log.read_text().splitlines()) == 2 * len(_expected((0,)))
    with GainStore(str(db), readonly=True) as g:
        assert sorted(g.studies()) == ["left", "right"]
        for name in ("left", "right"):
            assert sorted((r.mask, r.seed) for r in g.runs(name)) == sorted(_expected((0,)))
        a, b = g.gain_table("left"), g.gain_table("right")
        assert a.task_names == b.task_names and (a.gains[a.member()] ==
                                                 b.gains[b.member()]).all()


def _damaged(src: bytes) -> dict[str, bytes]:
    page = 4096
    return {
        "one byte short": src[:-1],
        "one page short": src[:-page],
        "half": src[:len(src) // 2],
        "header only": src[:100],
        "zeros": b"\0" * len(src),
        "gzip of a store": gzip.compress(src),
        "text": b"mask,task,gain\n3,a,0.1\n",
    }


@pytest.fixture(scope="module")
def store_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    db = tmp_path_factory.mktemp("whole") / "s.db"
    with _study(db) as s:
        s.run()
    conn = sqlite3.connect(db)   # fold the WAL into the file: its bytes are the whole store
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = db.read_bytes()
    assert len(data) > 2 * 4096
    return data


@pytest.mark.parametrize("kind", list(_damaged(b"x" * 20000)))
def test_damaged_files_name_the_path(tmp_path: Path, store_bytes: bytes, kind: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.db"
    p.write_bytes(_damaged(store_bytes)[kind])
    with pytest.raises(StoreError, match=str(p)):
        GainStore(str(p)).open()
    with pytest.raises(StoreError, match=str(p)):
        GainStore(str(p), readonly=True).open()
    with pytest.raises(StoreError, match=str(p)):
        _study(p)
    rc = main(["group", "--store", str(p), "--budget", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(p) in err, err


def test_whole_copy_still_opens(tmp_path: Path, store_bytes: bytes) -> None:
    """The size check refuses only what is cut short: the same bytes, whole, open and group."""
    p = tmp_path / "s.db"
    p.write_bytes(store_bytes)
    with GainStore(str(p), readonly=True) as g:
        assert g.studies() == ["s"] and len(g.runs("s")) == len(_expected((0,)))
    assert main(["group", "--store", str(p), "--budget", "2"]) == 0


@pytest.mark.parametrize("names,words", [
    (["", "b"], ("non-empty", "''")),
    (["  ", "b"], ("non-empty",)),
    ([None, "b"], ("non-empty", "None")),
    (["a\nb", "c"], ("control character",)),
    (["a\tb", "c"], ("control character",)),
])
def test_store_refuses_task_names_no_table_could_hold(tmp_path: Path, names: list[Any],
                                                      words: tuple[str, ...]) -> None:
    """Used to be stored (str(None) became the task 'None'; '' failed only when read back)."""
    with GainStore(str(tmp_path / "s.db")) as g:
        with pytest.raises(InputError) as err:
            g.create_study("s", names)
        assert g.studies() == []
    for w in words:
        assert w in str(err.value)
    with pytest.raises(InputError, match="control character"):
        _study(tmp_path / "t.db", task_names=["a", "b\nc"])
    with pytest.raises(InputError, match="non-empty"):
        GainStore(str(tmp_path / "s.db")).open().create_study("   ", ["a"])
