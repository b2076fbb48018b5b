"""GainStore: records, derived gain tables, schema versioning, crash safety, concurrent writers."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mtgfast.errors import InputError, StoreError
from mtgfast.store import SCHEMA_VERSION, GainStore, RunRecord, RunStatus, relative_gain

TASKS = ["a", "b", "c"]


def metric(mask: int, seed: int, task: int, split: str = "valid") -> float:
    """A deterministic fake metric: every run's values can be checked after the fact."""
    return 1.0 + 0.01 * task + 0.001 * (mask % 17) + 0.0001 * seed + (0.5 if split == "test" else 0)


@pytest.fixture
def store(tmp_path):
    with GainStore(tmp_path / "gains.db") as s:
        s.create_study("s", TASKS, metrics=["mae", "mae", "acc"],
                       higher_is_better=[False, False, True], fingerprint="v1",
                       config={"arch": "mlp"})
        yield s


def test_create_and_get_study(store):
    info = store.get_study("s")
    assert info.task_names == tuple(TASKS) and info.metrics == ("mae", "mae", "acc")
    assert info.higher_is_better == (False, False, True) and info.config["arch"] == "mlp"
    # same definition: returns the stored one (resume); other definition: refused
    assert store.create_study("s", TASKS, metrics=["mae", "mae", "acc"],
                              higher_is_better=[False, False, True], fingerprint="v1") == info
    with pytest.raises(StoreError, match="fingerprint"):
        store.create_study("s", TASKS, metrics=["mae", "mae", "acc"],
                           higher_is_better=[False, False, True], fingerprint="v2")
    with pytest.raises(StoreError, match="task names"):
        store.create_study("s", ["a", "b"], fingerprint="v1")
    with pytest.raises(StoreError, match="already exists"):
        store.create_study("s", TASKS, metrics=["mae", "mae", "acc"],
                           higher_is_better=[False, False, True], fingerprint="v1", exist_ok=False)
    with pytest.raises(StoreError, match="no study"):
        store.get_study("nope")
    with pytest.raises(InputError, match="one entry per task"):
        store.create_study("t", TASKS, metrics=["mae"])
    assert store.studies() == ["s"]


def test_record_run_and_duplicates(store):
    mv = {"a": 1.0, "b": 2.0}
    assert store.record_run("s", 0b011, 0, metrics_valid=mv, metrics_test=mv, seconds=1.5,
                            config={"lr": 0.1}) is True
    assert store.record_run("s", 0b011, 0, metrics_valid=mv) is False  # already stored
    assert store.record_run("s", 0b011, 1, metrics_valid=mv) is True  # other seed
    assert store.record_run("s", 0b011, 0, metrics_valid=mv, fingerprint="v2") is True
    assert store.has_run("s", 0b011, 0) and store.has_run("s", 0b011, 0, fingerprint="v2")
    assert not store.has_run("s", 0b011, 2)
    runs = store.runs("s", fingerprint="v1")
    assert [r.seed for r in runs] == [0, 1]
    r = runs[0]
    assert isinstance(r, RunRecord) and r.status is RunStatus.FINISHED and r.seconds == 1.5
    assert dict(r.metrics_valid) == mv and r.config["lr"] == 0.1 and r.created > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.metrics_valid["a"] = 0.0  # type: ignore[index]


def test_failed_run_is_retried_not_duplicated(store):
    assert store.record_run("s", 0b101, 0, status="failed", config={"error": "OOM"})
    assert not store.has_run("s", 0b101, 0) and store.has_run("s", 0b101, 0, include_failed=True)
    assert store.record_run("s", 0b101, 0, status="failed") is False
    assert store.record_run("s", 0b101, 0, metrics_valid={"a": 1.0, "c": 0.5}) is True
    assert store.has_run("s", 0b101, 0)
    assert [r.status for r in store.runs("s")] == [RunStatus.FINISHED]
    # a failed run never replaces a finished one
    assert store.record_run("s", 0b101, 0, status="failed") is False


@pytest.mark.parametrize("kwargs, message", [
    ({"mask": 0b1000}, "not a combination"),
    ({"mask": 0}, "not a combination"),
    ({"metrics_valid": {"a": 1.0}}, "lacks tasks"),
    ({"metrics_valid": {"a": 1.0, "b": 1.0, "c": 1.0}}, "outside the combination"),
    ({"metrics_valid": {"a": float("nan"), "b": 1.0}}, "finite"),
    ({"status": "running"}, "status"),
    ({"seconds": -1.0}, "seconds"),
    ({"config": {"x": object()}}, "JSON"),
    ({"metrics_test": {"a": 1.0}}, "lacks tasks"),
])
def test_record_run_validation(store, kwargs, message):
    args = {"mask": 0b011, "metrics_valid": {"a": 1.0, "b": 1.0}, **kwargs}
    with pytest.raises(InputError, match=message):
        store.record_run("s", args.pop("mask"), 0, **args)


def test_gain_table_relative_to_stl(store):
    stl = {0: {"a": 2.0}, 1: {"b": 4.0}, 2: {"c": 0.5}}
    for seed, (sa, sb, sc) in enumerate([(2.0, 4.0, 0.5), (2.2, 4.4, 0.6)]):
        store.record_run("s", 0b001, seed, metrics_valid={"a": sa}, metrics_test={"a": sa + 1})
        store.record_run("s", 0b010, seed, metrics_valid={"b": sb}, metrics_test={"b": sb + 1})
        store.record_run("s", 0b100, seed, metrics_valid={"c": sc}, metrics_test={"c": sc})
    store.record_run("s", 0b111, 0, metrics_valid={"a": 1.5, "b": 5.0, "c": 0.66},
                     metrics_test={"a": 3.0, "b": 5.4, "c": 0.5})
    store.record_run("s", 0b111, 1, metrics_valid={"a": 1.7, "b": 5.0, "c": 0.70},
                     metrics_test={"a": 3.2, "b": 5.4, "c": 0.6})
    store.record_run("s", 0b011, 0, status="failed")
    del stl
    assert store.stl_metrics("s") == pytest.approx({"a": 2.1, "b": 4.2, "c": 0.55})
    valid = store.gain_table("s", "valid")
    assert valid.meta["split"] == "valid" and valid.task_names == tuple(TASKS)
    assert valid.masks.tolist() == [1, 2, 4, 7]  # the failed run has no row
    row = valid.lookup([7])[0]
    # lower is better for a, b: (stl - mtl) / |stl|; higher is better for c: (mtl - stl) / |stl|
    assert row == pytest.approx([(2.1 - 1.6) / 2.1, (4.2 - 5.0) / 4.2, (0.68 - 0.55) / 0.55])
    assert valid.lookup([1])[0][0] == 0.0
    test = store.gain_table("s", "test")
    assert test.lookup([7])[0] == pytest.approx([(3.1 - 3.1) / 3.1, (5.2 - 5.4) / 5.2,
                                                 (0.55 - 0.55) / 0.55])
    with pytest.raises(InputError, match="split"):
        store.gain_table("s", "train")


def test_gain_table_needs_stl(store):
    store.record_run("s", 0b011, 0, metrics_valid={"a": 1.0, "b": 1.0})
    store.record_run("s", 0b001, 0, metrics_valid={"a": 1.0})
    with pytest.raises(StoreError, match="task 'b' has no finished STL"):
        store.gain_table("s")


def test_relative_gain_directions():
    assert relative_gain(0.8, 1.0, False) == pytest.approx(0.2)
    assert relative_gain(0.8, 1.0, True) == pytest.approx(-0.2)
    assert relative_gain(-0.5, -1.0, True) == pytest.approx(0.5)


def test_schema_version_newer_is_refused(tmp_path):
    path = tmp_path / "g.db"
    with GainStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer"):
        GainStore(path)


def test_not_a_store_and_closed(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an mtgfast gain store"):
        GainStore(bad)
    s = GainStore(tmp_path / "ok.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.studies()
    s.open()
    assert s.studies() == []
    s.close()


def test_wal_mode_and_masks_up_to_64_tasks(tmp_path):
    with GainStore(tmp_path / "g.db") as s:
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = [f"t{j}" for j in range(64)]
        s.create_study("big", names)
        top = (1 << 63) | 1
        assert s.record_run("big", top, 0, metrics_valid={"t0": 1.0, "t63": 2.0})
        assert s.has_run("big", top, 0) and s.runs("big")[0].mask == top


# -- crash safety and concurrency: real writer processes -------------------------------------------
WRITER = r"""
import sys, time
from mtgfast.store import GainStore
path, n, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
delay, reverse = float(sys.argv[4]), sys.argv[5] == "1"
def metric(mask, seed, task, split="valid"):
    return 1.0 + 0.01 * task + 0.001 * (mask % 17) + 0.0001 * seed + (0.5 if split == "test" else 0)
names = [f"t{j}" for j in range(n)]
keys = [(m, s) for m in range(1, 1 << n) for s in range(seeds)]
if reverse:
    keys.reverse()
written = skipped = 0
with GainStore(path) as store:
    store.create_study("crash", names, metrics="mae", fingerprint="fp")
    for m, s in keys:
        if store.has_run("crash", m, s):
            skipped += 1
            continue
        members = [j for j in range(n) if m >> j & 1]
        ok = store.record_run("crash", m, s, seconds=delay,
                              metrics_valid={names[j]: metric(m, s, j) for j in members},
                              metrics_test={names[j]: metric(m, s, j, "test") for j in members})
        written += ok
        skipped += not ok
        print("wrote", m, s, flush=True)
        time.sleep(delay)
print(f"DONE written={written} skipped={skipped}", flush=True)
"""


def _writer(tmp_path: Path, db: Path, n: int, seeds: int, delay: float,
            reverse: bool = False) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(db), str(n), str(seeds), str(delay),
                             "1" if reverse else "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _check_store(db: Path, n: int) -> set[tuple[int, int]]:
    with GainStore(db) as s:
        assert s.integrity_check() == "ok"
        runs = s.runs("crash")
        keys = [(r.mask, r.seed) for r in runs]
        assert len(keys) == len(set(keys)), "duplicate runs"
        for r in runs:
            members = [j for j in range(n) if r.mask >> j & 1]
            assert r.status is RunStatus.FINISHED
            assert dict(r.metrics_valid) == {f"t{j}": metric(r.mask, r.seed, j) for j in members}
            assert dict(r.metrics_test) == {f"t{j}": metric(r.mask, r.seed, j, "test")
                                            for j in members}
        return set(keys)


def test_kill_9_loses_nothing_and_resume_skips(tmp_path):
    n, seeds = 5, 2
    db = tmp_path / "crash.db"
    expected = {(m, s) for m in range(1, 1 << n) for s in range(seeds)}
    proc = _writer(tmp_path, db, n, seeds, delay=0.02)
    deadline = time.time() + 120
    count = 0
    while time.time() < deadline:
        time.sleep(0.05)
        if db.exists():
            try:
                with GainStore(db) as s:
                    count = s.count_runs()
            except StoreError:
                continue
            if count >= 10:
                break
    assert proc.poll() is None, "the writer finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _check_store(db, n)
    assert 10 <= len(before) < len(expected) and before <= expected
    resumed = _writer(tmp_path, db, n, seeds, delay=0.0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"DONE written={len(expected) - len(before)} skipped={len(before)}" in out
    assert _check_store(db, n) == expected
    with GainStore(db) as s:  # the derived table sees every combination
        assert len(s.gain_table("crash")) == (1 << n) - 1


def test_two_concurrent_writers(tmp_path):
    n, seeds = 5, 2
    db = tmp_path / "concurrent.db"
    expected = {(m, s) for m in range(1, 1 << n) for s in range(seeds)}
    procs = [_writer(tmp_path, db, n, seeds, 0.0, reverse=r) for r in (False, True)]
    outs = [p.communicate(timeout=180) for p in procs]
    written = 0
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        line = [ln for ln in out.splitlines() if ln.startswith("DONE")][0]
        w, s = (int(part.split("=")[1]) for part in line.split()[1:])
        assert w + s == len(expected)
        written += w
    assert written == len(expected)  # each run was written by exactly one writer
    assert _check_store(db, n) == expected


# -- schema migration and the trial model ----------------------------------------------------------
def test_store_written_by_version_1_opens_and_is_migrated(tmp_path):
    """A store as mtgfast 0.1 wrote it (schema 1, 'finished' runs) opens, keeps every run and
    gains the trial columns; the released DDL is copied here verbatim."""
    from test_store_boundaries import V1_SCHEMA

    path = tmp_path / "v1.db"
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    con.execute("INSERT INTO studies VALUES ('old', '[\"a\", \"b\"]', '[\"mae\", \"mae\"]', "
                "'[false, false]', 'fp', '{}', 1.0)")
    rows = [(1, 0, "finished", '{"a": 2.0}'), (2, 0, "finished", '{"b": 4.0}'),
            (3, 0, "finished", '{"a": 1.0, "b": 5.0}'), (3, 1, "failed", "{}")]
    for mask, seed, status, mv in rows:
        con.execute("INSERT INTO runs (study, mask, seed, fingerprint, status, metrics_valid, "
                    "metrics_test, seconds, config, created) VALUES ('old', ?, ?, 'fp', ?, ?, "
                    "'{}', 1.0, '{}', 2.0)", (mask, seed, status, mv))
    con.commit()
    con.close()
    with GainStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
        assert [(r.mask, r.seed, r.status) for r in s.runs("old")] == [
            (1, 0, RunStatus.COMPLETE), (2, 0, RunStatus.COMPLETE), (3, 0, RunStatus.COMPLETE),
            (3, 1, RunStatus.FAILED)]
        assert s.gain_table("old").lookup([3])[0] == pytest.approx([0.5, -0.25])
        assert s.integrity_check() == "ok" and s.selections("old") == []
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x4D544746
    con.close()
    with GainStore(path, readonly=True) as s:   # migrated: now readable read-only
        assert len(s.runs("old")) == 4


def test_trial_model_request_claim_heartbeat_requeue_complete(store):
    assert RunStatus("finished") is RunStatus.COMPLETE is RunStatus.FINISHED
    assert store.request_runs("s", [(0b011, 0), (0b011, 1), (0b101, 0)]) == 3
    assert store.request_runs("s", [(0b011, 0)]) == 0            # already requested
    assert store.count_runs("s") == 0 and store.count_runs("s", status="waiting") == 3
    got = store.claim_runs("s", "host:1:a", limit=2)
    assert [(r.mask, r.seed, r.status, r.owner, r.attempts) for r in got] == [
        (0b011, 0, RunStatus.RUNNING, "host:1:a", 1), (0b011, 1, RunStatus.RUNNING, "host:1:a", 1)]
    assert store.claim_runs("s", "host:2:b")[0].mask == 0b101    # the rest, to another owner
    assert store.claim_runs("s", "host:3:c") == []
    assert store.heartbeat("s", "host:1:a") == 2
    time.sleep(0.05)
    store.heartbeat("s", "host:1:a")
    # owner 2 went silent: a short staleness takes its row back, owner 1's stay
    assert store.requeue_stale("s", older_than=0.04) == 1
    assert [r.mask for r in store.runs("s", status="waiting")] == [0b101]
    assert store.requeue_stale("s", older_than=1e9, owners=["host:1:a"]) == 2
    again = store.claim_runs("s", "host:4:d")
    assert sorted((r.mask, r.seed, r.attempts) for r in again) == [
        (0b011, 0, 2), (0b011, 1, 2), (0b101, 0, 2)]
    assert store.complete_run("s", 0b011, 0, metrics_valid={"a": 1.0, "b": 2.0}) is True
    assert store.complete_run("s", 0b011, 0, metrics_valid={"a": 9.0, "b": 9.0}) is False
    store.fail_run("s", 0b011, 1, error="Traceback: boom", retry=True)
    r = [x for x in store.runs("s", status="running") if x.seed == 1][0]
    assert r.error == "Traceback: boom" and r.attempts == 3
    store.fail_run("s", 0b011, 1, error="Traceback: boom again", retry=False)
    store.fail_run("s", 0b011, 0, error="late", retry=False)     # a complete row is left alone
    states = {(x.mask, x.seed): (x.status, x.error) for x in store.runs("s")}
    assert states == {(0b011, 0): (RunStatus.COMPLETE, None),
                      (0b011, 1): (RunStatus.FAILED, "Traceback: boom again")}
    assert dict(store.runs("s", status="complete")[0].metrics_valid) == {"a": 1.0, "b": 2.0}
    assert store.request_runs("s", [(0b011, 1)]) == 1               # a failed run is retried
    assert store.runs("s", status="waiting")[0].attempts == 0


def test_selection_batches_are_recorded_with_their_runs(store):
    b0 = store.add_selection_batch("s", slot_start=0, slot_count=0,
                                   selections=[(0b111, None, None, "full")], seeds=[0, 1])
    b1 = store.add_selection_batch("s", slot_start=0, slot_count=2,
                                   selections=[(0b011, 0, 0, "selected"),
                                               (0b110, 0, 1, "selected")],
                                   seeds=[0, 1])
    assert (b0, b1) == (0, 1) and store.slots_used("s") == 2
    assert [(x.seq, x.mask, x.round, x.task, x.source, x.batch)
            for x in store.selections("s")] == [(0, 7, None, None, "full", 0),
                                                (1, 3, 0, 0, "selected", 1),
                                                (2, 6, 0, 1, "selected", 1)]
    assert store.count_runs("s", status="waiting") == 6


def test_one_gain_definition_and_zero_stl_policy():
    """store, the MTL layer and mtgfast.transfer are one function; a zero STL metric raises in
    all of them (no division by a tiny number)."""
    from mtgfast import transfer
    from mtgfast.mtl import gains_from_metrics

    assert relative_gain is transfer.relative_gain is gains_from_metrics.relative_gain
    assert gains_from_metrics.gain_row is transfer.gain_row
    for f in (relative_gain, gains_from_metrics.relative_gain):
        with pytest.raises(InputError, match="STL.*is 0"):
            f(0.5, 0.0, False)
    with pytest.raises(InputError, match="task 'b'"):
        gains_from_metrics.gain_row(0b11, {"a": 1.0, "b": 0.1}, {"a": 1.0, "b": 0.0},
                                    ("a", "b"), (False, True))
    row = transfer.gain_row(0b01, {"a": 0.0}, {"a": 0.0}, ("a", "b"), (False, False))
    assert row[0] == 0.0 and np.isnan(row[1])   # a singleton is 0 by definition


def test_study_modules_import_neither_torch_nor_ray():
    code = ("import sys, mtgfast.store, mtgfast.study.executors, mtgfast.study.study, "
            "mtgfast.study.registry, mtgfast.mtl.study_adapter; "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
