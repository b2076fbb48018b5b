"""The store keeps SQLite's file locks for as long as it is open: nothing in mtgfast opens and
closes the database file beside SQLite (POSIX drops every lock a process holds on a file when it
closes any descriptor of that file, and another process's last close would then checkpoint and
delete the WAL the study still commits into: finished runs lost on a kill)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtgfast.store import GainStore

TASKS = ("a", "b", "c", "d")


def _driver(path: Path, second_store: bool) -> str:
    """Driver A: completes a run, lets another process open and close the store read-write,
    completes a second run, then dies without closing (as under SIGKILL)."""
    return textwrap.dedent(f"""
        import os, subprocess, sys
        from mtgfast.store import GainStore
        a = GainStore({str(path)!r})
        a.create_study("s", {list(TASKS)!r}, metrics="mae")
        a.request_runs("s", [(m, 0) for m in (3, 5)])
        if {second_store!r}:
            GainStore({str(path)!r}).close()   # e.g. the heartbeat's store of a Study
        a.complete_run("s", 3, 0, metrics_valid={{"a": 1.0, "b": 1.0}})
        other = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                 "c.execute('select count(*) from runs').fetchone(); c.close()")
        subprocess.run([sys.executable, "-c", other, {str(path)!r}], check=True)
        a.complete_run("s", 5, 0, metrics_valid={{"a": 1.0, "c": 1.0}})
        os._exit(0)   # no close: a killed driver
    """)


@pytest.mark.parametrize("second_store", [False, True])
def test_a_killed_driver_keeps_every_committed_run_when_others_open_the_store(
        tmp_path: Path, second_store: bool) -> None:
    path = tmp_path / "study.db"
    subprocess.run([sys.executable, "-c", _driver(path, second_store)], check=True)
    with GainStore(path, readonly=True) as s:
        done = sorted(r.mask for r in s.runs("s", status="complete"))
    assert done == [3, 5]
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    c.close()


def test_group_stored_names_a_study_with_no_finished_multi_task_run(tmp_path: Path) -> None:
    """Grouping a study whose runs are all waiting (or only its baselines done) says so, instead
    of failing inside the search."""
    from mtgfast.errors import InputError
    from mtgfast.study.study import group_stored

    path = tmp_path / "s.db"
    with GainStore(path) as s:
        s.create_study("s", list(TASKS), metrics="mae")
        s.request_runs("s", [(m, 0) for m in (1, 2, 4, 8, 3)])
    for done in ((), (1, 2, 4, 8)):
        with GainStore(path) as s:
            for m in done:
                s.complete_run("s", m, 0, metrics_valid={TASKS[m.bit_length() - 1]: 1.0})
        with pytest.raises(InputError, match="no finished multi-task run yet"):
            group_stored(path, 2)


def test_a_store_path_ending_in_a_separator_is_refused_and_creates_nothing(
        tmp_path: Path) -> None:
    from mtgfast.errors import InputError

    with pytest.raises(InputError, match="names a folder"):
        GainStore(str(tmp_path / "new") + "/")
    assert list(tmp_path.iterdir()) == []
