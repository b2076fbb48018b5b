"""GainStore: the embedded, durable record of every MTL run of a study (SQLite, stdlib only).

One file holds studies (task names, metric and direction per task, code/config fingerprint) and
finished or failed runs (combination, seed, per-task validation/test metrics, seconds, config JSON).
Gain tables are derived from the runs: the gain of task ``j`` in ``C`` is its metric's relative
improvement over its single-task (STL = singleton) run. Writes are single transactions in WAL mode,
so a study killed at any moment loses no finished run and duplicates none when resumed, and several
processes may write to one store at once.

API used by a study loop::

    with GainStore("runs.db") as store:
        store.create_study("ett", task_names, metrics="mae", higher_is_better=False, fingerprint=fp)
        if not store.has_run("ett", mask, seed):
            store.record_run("ett", mask, seed, metrics_valid={...}, metrics_test={...}, seconds=t)
        table = store.gain_table("ett", "valid")
"""

from __future__ import annotations

import enum
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import numpy as np

from .errors import InputError, InputTypeError, StoreError
from .gains import GainTable
from .masks import check_n_tasks, mask_to_indices

__all__ = ["SCHEMA_VERSION", "GainStore", "RunRecord", "RunStatus", "StudyInfo", "relative_gain"]

#: Version of the on-disk schema this code writes; a store with a newer version is refused.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    task_names TEXT NOT NULL,          -- JSON list
    metrics TEXT NOT NULL,             -- JSON list, one metric name per task
    higher_is_better TEXT NOT NULL,    -- JSON list of booleans, one per task
    fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,              -- JSON object
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL REFERENCES studies(name),
    mask INTEGER NOT NULL,             -- uint64 stored as its two's-complement int64
    seed INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('finished', 'failed')),
    metrics_valid TEXT NOT NULL,       -- JSON {task name: metric}
    metrics_test TEXT NOT NULL,
    seconds REAL NOT NULL,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    UNIQUE (study, mask, seed, fingerprint)
);
CREATE INDEX IF NOT EXISTS runs_by_study ON runs (study, status);
"""


class RunStatus(str, enum.Enum):
    """Final state of an MTL run."""

    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class RunRecord:
    """One stored MTL run (immutable). ``metrics_*`` map task name -> metric value."""

    study: str
    mask: int
    seed: int
    fingerprint: str
    status: RunStatus
    metrics_valid: Mapping[str, float]
    metrics_test: Mapping[str, float]
    seconds: float
    config: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def __post_init__(self) -> None:
        for name in ("metrics_valid", "metrics_test", "config"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class StudyInfo:
    """A study's definition: its tasks and how each task's metric is read."""

    name: str
    task_names: tuple[str, ...]
    metrics: tuple[str, ...]
    higher_is_better: tuple[bool, ...]
    fingerprint: str
    config: Mapping[str, Any]
    created: float

    @property
    def n_tasks(self) -> int:
        return len(self.task_names)


def relative_gain(mtl: float | np.ndarray, stl: float | np.ndarray,
                  higher_is_better: bool | np.ndarray) -> np.ndarray:
    """Relative improvement over STL: ``(stl - mtl) / |stl|`` for losses/errors,
    ``(mtl - stl) / |stl|`` for scores."""
    mtl_a, stl_a = np.asarray(mtl, dtype=np.float64), np.asarray(stl, dtype=np.float64)
    sign = np.where(np.asarray(higher_is_better), 1.0, -1.0)
    return sign * (mtl_a - stl_a) / np.abs(stl_a)


def _to_i64(mask: int) -> int:
    return mask - (1 << 64) if mask >= 1 << 63 else mask


def _from_i64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be JSON-serialisable (finite numbers): {exc}") from exc


class GainStore:
    """A SQLite gain store (WAL mode, busy timeout); open it, or use it as a context manager.

    ``path`` may be ``":memory:"`` for a throw-away store. ``timeout`` is how long a writer waits
    for another process's transaction (seconds).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = os.fspath(path)
        self._conn: sqlite3.Connection | None = None
        self._timeout = float(timeout)
        self.open()

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> GainStore:
        """Open the connection (idempotent), create or check the schema."""
        if self._conn is not None:
            return self
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gain store {self.path!r}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("PRAGMA synchronous = FULL")  # a committed run survives power loss too
            conn.execute("PRAGMA foreign_keys = ON")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{self.path!r} is not a usable gain store: {exc}") from exc
        except StoreError:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the connection; the store can be reopened with :meth:`open`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> GainStore:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GainStore({self.path!r}{'' if self._conn else ', closed'})"

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"gain store {self.path!r} is closed")
        return self._conn

    def _retry(self, fn: Any, attempts: int = 50) -> Any:
        # journal_mode and BEGIN IMMEDIATE can report "locked" without calling the busy handler
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.02 * (i + 1))
        return None  # pragma: no cover

    def _transaction(self) -> _Tx:
        return _Tx(self)

    def _init_schema(self) -> None:
        with self._transaction() as db:
            db.executescript_in_tx(_SCHEMA)
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(f"gain store {self.path!r} has schema version {row[0]}, newer "
                                 f"than this mtgfast understands ({SCHEMA_VERSION}): upgrade "
                                 "mtgfast")
            # older versions would be migrated here, inside the same transaction

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the file."""
        return int(self._db.execute("SELECT version FROM schema_version").fetchone()[0])

    # -- studies --------------------------------------------------------------------------------
    def create_study(self, name: str, task_names: Sequence[str], *,
                     metrics: str | Sequence[str] = "loss",
                     higher_is_better: bool | Sequence[bool] = False, fingerprint: str = "",
                     config: Mapping[str, Any] | None = None, exist_ok: bool = True) -> StudyInfo:
        """Create a study, or return the stored one when its definition is the same.

        ``metrics``/``higher_is_better``: one for all tasks or one per task. A stored study with
        other tasks, metrics, directions or fingerprint raises ``StoreError``.
        """
        if not isinstance(name, str) or not name:
            raise InputError(f"study name must be a non-empty string, got {name!r}")
        names = tuple(str(t) for t in task_names)
        n = check_n_tasks(len(names))
        if len(set(names)) != n:
            raise InputError(f"task names must be distinct, got {list(names)}")
        mets = (metrics,) * n if isinstance(metrics, str) else tuple(str(m) for m in metrics)
        hib = ((bool(higher_is_better),) * n if isinstance(higher_is_better, (bool, np.bool_))
               else tuple(bool(h) for h in higher_is_better))
        if len(mets) != n or len(hib) != n:
            raise InputError(f"metrics and higher_is_better need one entry per task ({n}), got "
                             f"{len(mets)} and {len(hib)}")
        if not isinstance(fingerprint, str):
            raise InputTypeError(f"fingerprint must be a string, got {type(fingerprint).__name__}")
        cfg = _dumps(dict(config or {}), "config")
        with self._transaction() as db:
            existing = self._study_row(db, name)
            if existing is None:
                db.execute("INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (name, json.dumps(names), json.dumps(mets), json.dumps(hib),
                            fingerprint, cfg, time.time()))
                return self._study_from_row(self._study_row(db, name))
        info = self._study_from_row(existing)
        if not exist_ok:
            raise StoreError(f"study {name!r} already exists in {self.path!r}")
        for what, mine, theirs in (("task names", names, info.task_names),
                                   ("metrics", mets, info.metrics),
                                   ("higher_is_better", hib, info.higher_is_better),
                                   ("fingerprint", fingerprint, info.fingerprint)):
            if mine != theirs:
                raise StoreError(f"study {name!r} exists with other {what}: stored {theirs!r}, "
                                 f"given {mine!r}; use a new study name")
        return info

    def get_study(self, name: str) -> StudyInfo:
        """The stored study ``name``; ``StoreError`` if absent."""
        row = self._study_row(self._db, name)
        if row is None:
            raise StoreError(f"no study {name!r} in gain store {self.path!r}")
        return self._study_from_row(row)

    def studies(self) -> list[str]:
        """Names of the stored studies."""
        return [r[0] for r in self._db.execute("SELECT name FROM studies ORDER BY created")]

    @staticmethod
    def _study_row(db: Any, name: str) -> tuple[Any, ...] | None:
        return db.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()

    @staticmethod
    def _study_from_row(row: Any) -> StudyInfo:
        return StudyInfo(row[0], tuple(json.loads(row[1])), tuple(json.loads(row[2])),
                         tuple(bool(h) for h in json.loads(row[3])), row[4],
                         MappingProxyType(json.loads(row[5])), row[6])

    # -- runs -----------------------------------------------------------------------------------
    def record_run(self, study: str, mask: int, seed: int, *,
                   metrics_valid: Mapping[str, float] | None = None,
                   metrics_test: Mapping[str, float] | None = None, seconds: float = 0.0,
                   status: RunStatus | Literal["finished", "failed"] = RunStatus.FINISHED,
                   fingerprint: str | None = None, config: Mapping[str, Any] | None = None) -> bool:
        """Store one run in one transaction; ``False`` (nothing written) if that finished run
        ``(study, mask, seed, fingerprint)`` is already stored.

        A finished run needs a finite metric for every member task (``metrics_valid``; test is
        optional). A finished run replaces a stored *failed* one; a failed run never replaces
        anything. ``fingerprint`` defaults to the study's.
        """
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise InputTypeError(f"seed must be an int, got {type(seed).__name__}")
        try:
            st = RunStatus(status)
        except ValueError as exc:
            raise InputError(f"status must be 'finished' or 'failed', got {status!r}") from exc
        fp = info.fingerprint if fingerprint is None else fingerprint
        if not isinstance(fp, str):
            raise InputTypeError(f"fingerprint must be a string, got {type(fp).__name__}")
        members = [info.task_names[k] for k in mask_to_indices(m)]
        mv = self._check_metrics(metrics_valid or {}, members, "metrics_valid",
                                 required=st is RunStatus.FINISHED)
        mt = self._check_metrics(metrics_test or {}, members, "metrics_test", required=False)
        if not isinstance(seconds, (int, float, np.floating)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise InputError(f"seconds must be a finite number >= 0, got {seconds!r}")
        row = (study, _to_i64(m), int(seed), fp, st.value, _dumps(mv, "metrics_valid"),
               _dumps(mt, "metrics_test"), float(seconds), _dumps(dict(config or {}), "config"),
               time.time())
        with self._transaction() as db:
            old = db.execute("SELECT status FROM runs WHERE study = ? AND mask = ? AND seed = ? "
                             "AND fingerprint = ?", row[:2] + row[2:4]).fetchone()
            if old is not None:
                if old[0] == RunStatus.FINISHED.value or st is RunStatus.FAILED:
                    return False
                db.execute("DELETE FROM runs WHERE study = ? AND mask = ? AND seed = ? AND "
                           "fingerprint = ?", row[:4])
            db.execute("INSERT INTO runs (study, mask, seed, fingerprint, status, metrics_valid, "
                       "metrics_test, seconds, config, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       row)
        return True

    def has_run(self, study: str, mask: int, seed: int, *, fingerprint: str | None = None,
                include_failed: bool = False) -> bool:
        """Whether a finished (or, with ``include_failed``, any) run of this key is stored."""
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        fp = info.fingerprint if fingerprint is None else fingerprint
        sql = ("SELECT status FROM runs WHERE study = ? AND mask = ? AND seed = ? AND "
               "fingerprint = ?")
        row = self._db.execute(sql, (study, _to_i64(m), int(seed), fp)).fetchone()
        return row is not None and (include_failed or row[0] == RunStatus.FINISHED.value)

    def runs(self, study: str, *, status: RunStatus | str | None = None,
             fingerprint: str | None = None) -> list[RunRecord]:
        """All stored runs of a study in insertion order, optionally filtered."""
        self.get_study(study)
        sql, args = "SELECT * FROM runs WHERE study = ?", [study]
        if status is not None:
            sql += " AND status = ?"
            args.append(RunStatus(status).value)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            args.append(fingerprint)
        return [self._record(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.studies())

    @staticmethod
    def _record(r: Any) -> RunRecord:
        return RunRecord(study=r[1], mask=_from_i64(r[2]), seed=r[3], fingerprint=r[4],
                         status=RunStatus(r[5]), metrics_valid=json.loads(r[6]),
                         metrics_test=json.loads(r[7]), seconds=r[8], config=json.loads(r[9]),
                         created=r[10])

    @staticmethod
    def _check_mask(info: StudyInfo, mask: object) -> int:
        if isinstance(mask, bool) or not isinstance(mask, (int, np.integer)):
            raise InputTypeError(f"mask must be an int, got {type(mask).__name__}")
        m = int(mask)
        if m <= 0 or m >> info.n_tasks:
            raise InputError(f"mask {m} is not a combination of the {info.n_tasks} tasks of study "
                             f"{info.name!r}")
        return m

    @staticmethod
    def _check_metrics(metrics: Mapping[str, float], members: list[str], what: str, *,
                       required: bool) -> dict[str, float]:
        if not isinstance(metrics, Mapping):
            raise InputTypeError(f"{what} must be a mapping task name -> value")
        extra = [t for t in metrics if t not in members]
        if extra:
            raise InputError(f"{what} has tasks outside the combination {members}: {extra}")
        missing = [t for t in members if t not in metrics]
        if metrics and missing or required and missing:
            raise InputError(f"{what} lacks tasks of the combination: {missing}")
        out = {}
        for t, v in metrics.items():
            try:
                fv = float(v)
            except (TypeError, ValueError) as exc:
                raise InputTypeError(f"{what}[{t!r}] must be a number, got {v!r}") from exc
            if not math.isfinite(fv):
                raise InputError(f"{what}[{t!r}] must be finite, got {fv}")
            out[str(t)] = fv
        return out

    # -- derived tables -------------------------------------------------------------------------
    def _finished(self, study: str, fingerprint: str | None) -> tuple[StudyInfo, list[RunRecord]]:
        info = self.get_study(study)
        fp = info.fingerprint if fingerprint is None else fingerprint
        return info, self.runs(study, status=RunStatus.FINISHED, fingerprint=fp)

    def stl_metrics(self, study: str, split: Literal["valid", "test"] = "valid", *,
                    fingerprint: str | None = None) -> dict[str, float]:
        """Single-task baselines: each task's metric in its singleton runs, mean over seeds
        (tasks without a finished singleton run are absent)."""
        info, runs = self._finished(study, fingerprint)
        key = _split_key(split)
        acc: dict[str, list[float]] = {}
        for r in runs:
            if r.mask & (r.mask - 1) == 0:
                task = info.task_names[r.mask.bit_length() - 1]
                value = getattr(r, key).get(task)
                if value is not None:
                    acc.setdefault(task, []).append(value)
        return {t: float(np.mean(acc[t])) for t in info.task_names if t in acc}

    def gain_table(self, study: str, split: Literal["valid", "test"] = "valid", *,
                   fingerprint: str | None = None) -> GainTable:
        """Gains of every combination with a finished run: relative improvement of each member's
        metric (mean over seeds) over its STL metric (mean over seeds); singletons are 0.

        ``StoreError`` when a member task has no STL baseline or a zero one.
        """
        info, runs = self._finished(study, fingerprint)
        key = _split_key(split)
        stl = self.stl_metrics(study, split, fingerprint=fingerprint)
        per_mask: dict[int, dict[str, list[float]]] = {}
        for r in runs:
            metrics = getattr(r, key)
            if not metrics:
                continue
            slot = per_mask.setdefault(r.mask, {})
            for t, v in metrics.items():
                slot.setdefault(t, []).append(v)
        masks = sorted(per_mask, key=lambda m: (bin(m).count("1"), m))
        gains = np.full((len(masks), info.n_tasks), np.nan)
        index = {t: j for j, t in enumerate(info.task_names)}
        for i, m in enumerate(masks):
            for t, values in per_mask[m].items():
                j = index[t]
                if m & (m - 1) == 0:
                    gains[i, j] = 0.0
                    continue
                if t not in stl:
                    raise StoreError(f"study {study!r}: task {t!r} has no finished STL (singleton) "
                                     f"run with {split} metrics, so its gains are undefined")
                if stl[t] == 0:
                    raise StoreError(f"study {study!r}: STL {split} metric of task {t!r} is 0, so "
                                     "its relative gains are undefined")
                gains[i, j] = relative_gain(float(np.mean(values)), stl[t],
                                            info.higher_is_better[j])
        meta = {"split": split, "study": study, "metric": ",".join(dict.fromkeys(info.metrics)),
                "higher_is_better": ",".join(str(h) for h in dict.fromkeys(info.higher_is_better)),
                "fingerprint": info.fingerprint if fingerprint is None else fingerprint,
                "seed": ",".join(str(s) for s in sorted({r.seed for r in runs}))}
        return GainTable(np.array(masks, dtype=np.uint64), gains, info.task_names, meta)

    def count_runs(self, study: str | None = None) -> int:
        """Number of stored runs (of one study, or all)."""
        if study is None:
            return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM runs WHERE study = ?",
                                    (study,)).fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``"ok"`` when the file is sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def _split_key(split: str) -> str:
    if split not in ("valid", "test"):
        raise InputError(f"split must be 'valid' or 'test', got {split!r}")
    return "metrics_valid" if split == "valid" else "metrics_test"


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): a writer takes the lock up front,
    so two writers never deadlock upgrading a read lock."""

    def __init__(self, store: GainStore) -> None:
        self._store = store
        self._db = store._db

    def __enter__(self) -> _Tx:
        self._store._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
        return self

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def executescript_in_tx(self, script: str) -> None:
        # executescript would COMMIT first; run statement by statement inside the transaction
        for stmt in script.split(";"):
            body = "\n".join(line.split("--")[0] for line in stmt.splitlines()).strip()
            if body:
                self._db.execute(body)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        else:
            self._db.execute("ROLLBACK")
