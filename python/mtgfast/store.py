"""GainStore: the embedded, durable record of a study, and its single source of truth (SQLite).

One file holds studies (task names, metric and direction per task, code/config fingerprint), their
runs and the active loop's selections. Like Optuna's trials, every requested run is a row with a
state — ``waiting`` (requested), ``running`` (claimed by an owner, who refreshes its heartbeat),
``complete`` (metrics stored) or ``failed`` (traceback stored) — so a study killed at any moment
resumes from the file alone: a running row whose owner died goes back to waiting, finished rows
are never trained again. The store persists; it does not compute: gain tables are derived from
the complete runs by :mod:`mtgfast.transfer`, the one definition of a transfer gain.

On open the store checks that the file is an mtgfast store (``PRAGMA application_id``), sound
(``PRAGMA quick_check``) and of a schema it understands (``PRAGMA user_version``; version-1 stores
of mtgfast 0.1 are migrated in place). ``readonly=True`` opens it with a ``mode=ro`` URI (a store
in a read-only folder can be read); ``create=False`` refuses to create a missing file.

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
import stat
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import numpy as np

from .checks import check_int, is_int, is_real
from .errors import InputError, InputTypeError, StoreError
from .gains import GainTable, check_printable_names
from .masks import check_n_tasks, mask_to_indices
from .transfer import gain_row, relative_gain

__all__ = ["APPLICATION_ID", "MAX_SEED", "SCHEMA_VERSION", "GainStore", "RunRecord", "RunStatus",
           "SelectionRecord", "StudyInfo", "relative_gain"]

#: Version of the on-disk schema this code writes; older ones are migrated, newer refused.
SCHEMA_VERSION = 2
#: ``PRAGMA application_id`` of an mtgfast gain store ("MTGF").
APPLICATION_ID = 0x4D544746
#: largest seed the store keeps (SQLite integers are signed 64-bit)
MAX_SEED = 2**63 - 1

_TABLES = """
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
    status TEXT NOT NULL CHECK (status IN ('waiting', 'running', 'complete', 'failed')),
    metrics_valid TEXT NOT NULL,       -- JSON {task name: metric}
    metrics_test TEXT NOT NULL,
    seconds REAL NOT NULL,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    owner TEXT,                        -- who runs it (host:pid:token) while running
    heartbeat REAL,                    -- last sign of life of the owner
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,                        -- traceback of the last failed attempt
    finished REAL,
    UNIQUE (study, mask, seed, fingerprint)
);
CREATE INDEX IF NOT EXISTS runs_by_study ON runs (study, status);
CREATE TABLE IF NOT EXISTS selections (
    study TEXT NOT NULL REFERENCES studies(name),
    seq INTEGER NOT NULL,              -- order in which the loop chose them
    mask INTEGER NOT NULL,
    round INTEGER,                     -- NULL for the full set
    task INTEGER,
    source TEXT NOT NULL,              -- 'full' or 'selected'
    batch INTEGER NOT NULL,
    PRIMARY KEY (study, seq)
);
CREATE TABLE IF NOT EXISTS batches (
    study TEXT NOT NULL REFERENCES studies(name),
    batch INTEGER NOT NULL,
    slot_start INTEGER NOT NULL,       -- selector slots (round * N + task) this batch consumed
    slot_count INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (study, batch)
)
"""

_MIGRATE_1_TO_2 = """
ALTER TABLE runs RENAME TO runs_v1;
DROP INDEX IF EXISTS runs_by_study;
{runs};
INSERT INTO runs (id, study, mask, seed, fingerprint, status, metrics_valid, metrics_test, seconds,
                  config, created, attempts, finished)
    SELECT id, study, mask, seed, fingerprint,
           CASE status WHEN 'finished' THEN 'complete' ELSE 'failed' END,
           metrics_valid, metrics_test, seconds, config, created, 1, created FROM runs_v1;
DROP TABLE runs_v1
"""


#: Connections this process has open (or is opening) per store file. While one is, nothing in the
#: process may open and close that file beside SQLite: POSIX drops every lock a process holds on a
#: file when it closes any descriptor of it, and another process's last close would then
#: checkpoint and delete the WAL this process still commits into (committed runs lost on a kill).
_LIVE: Counter[str] = Counter()
_LIVE_LOCK = threading.Lock()


def _read_head(path: str) -> tuple[int, bytes] | None:
    """The file's size and its 100-byte SQLite header (None when it cannot be read: SQLite
    then says why)."""
    try:
        with open(path, "rb") as fh:
            return os.fstat(fh.fileno()).st_size, fh.read(100)
    except OSError:
        return None

class RunStatus(str, enum.Enum):
    """State of a run (Optuna's trial model). ``FINISHED`` is the 0.1 name of ``COMPLETE``."""

    WAITING = "waiting"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    FINISHED = "complete"  # alias of COMPLETE (the name of mtgfast 0.1)

    @classmethod
    def _missing_(cls, value: object) -> RunStatus | None:
        return cls.COMPLETE if value == "finished" else None


@dataclass(frozen=True)
class RunRecord:
    """One stored run (immutable). ``metrics_*`` map task name -> metric value."""

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
    owner: str | None = None
    heartbeat: float | None = None
    attempts: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        for name in ("metrics_valid", "metrics_test", "config"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


@dataclass(frozen=True)
class SelectionRecord:
    """One combination the active loop chose: its order, the round and task it serves
    (``None`` for the full set) and the batch it was chosen in."""

    seq: int
    mask: int
    round: int | None
    task: int | None
    source: str
    batch: int


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


def _to_i64(mask: int) -> int:
    return mask - (1 << 64) if mask >= 1 << 63 else mask


def _from_i64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def _dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be JSON-serialisable (finite numbers): {exc}") from exc


def _check_directions(metrics: object, higher_is_better: object,
                      n: int) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """Metric names (non-empty strings) and directions (bools) of ``n`` tasks, one for all or
    one per task, checked as ``StudyProblem`` does: ``bool("no")`` is True and would flip the
    sign of every gain, ``str(1)`` would name a metric silently."""
    for what, v in (("metrics", metrics), ("higher_is_better", higher_is_better)):
        if isinstance(v, (bytes, set, frozenset, Mapping)) or (
                not isinstance(v, (str, bool, np.bool_)) and not isinstance(v, Iterable)):
            raise InputTypeError(f"{what} must be one value for all tasks or a sequence of one "
                                 f"per task (in task order), got {type(v).__name__}")
    mets = (metrics,) * n if isinstance(metrics, str) else tuple(metrics)  # type: ignore[arg-type]
    if not all(isinstance(m, str) and m.strip() for m in mets):
        raise InputError(f"metrics must be non-empty strings, got {list(mets)}")
    hib = ((higher_is_better,) * n if isinstance(higher_is_better, (bool, np.bool_, str))
           else tuple(higher_is_better))  # type: ignore[arg-type]
    if not all(isinstance(h, (bool, np.bool_)) for h in hib):  # "no" is not False
        raise InputTypeError(f"higher_is_better must be bools (True: higher metric is better), "
                             f"got {list(hib)[:8]}")
    return tuple(mets), tuple(bool(h) for h in hib)


def _is_count(value: object) -> bool:
    """An integer >= 0 as SQLite returns it (a Python int, never a bool or a text)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_seed(seed: object) -> int:
    return check_int("seed", seed, 0, MAX_SEED,
                     expected="an int in [0, 2**63 - 1] (what the store keeps)")


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputTypeError(f"{what} must be a non-empty string, got {value!r}")
    return value


class GainStore:
    """A SQLite gain store (WAL mode, busy timeout); open it, or use it as a context manager.

    ``path``: a file, or ``":memory:"`` for a throw-away store. ``timeout``: seconds a writer waits
    for another process's transaction. ``readonly``: open for reading only (``mode=ro``; works in
    a read-only folder). ``create``: create the file when it is missing (``False``: ``StoreError``).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0,
                 readonly: bool = False, create: bool = True) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if not is_real(timeout):
            raise InputTypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not math.isfinite(timeout) or timeout < 0:
            raise InputError(f"timeout must be a finite number of seconds >= 0, got {timeout}")
        for nm, v in (("readonly", readonly), ("create", create)):
            if not isinstance(v, bool):
                raise InputTypeError(f"{nm} must be True or False, got {v!r}")
        self.path = os.fspath(path)
        if not self.path:
            raise InputError("path must not be empty (use ':memory:' for a throw-away store)")
        if self.path.endswith((os.sep, "/")):
            raise InputError(f"path {self.path!r} names a folder (it ends with a separator); a "
                             "gain store is a file: give its name, e.g. "
                             f"{os.path.join(self.path, 'mtgfast.db')!r}")
        self.readonly = readonly
        self.create = create
        self._conn: sqlite3.Connection | None = None
        self._timeout = float(timeout)
        self._key: str | None = None   # this store's entry in _LIVE while it is open
        self._head: tuple[int, bytes] | None = None   # size and header read before connecting
        self.open()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def in_memory(self) -> bool:
        """Whether this is a throw-away ``":memory:"`` store (not shared between processes)."""
        return self.path == ":memory:"

    def open(self) -> GainStore:
        """Open the connection (idempotent), check the file, create or migrate the schema."""
        if self._conn is not None:
            return self
        exists = self.in_memory or os.path.exists(self.path)
        if not exists and (self.readonly or not self.create):
            raise StoreError(f"no gain store at {self.path!r} (opened with "
                             f"{'readonly=True' if self.readonly else 'create=False'}, so it is "
                             "not created): check the path")
        if exists and not self.in_memory and os.path.isdir(self.path):
            raise StoreError(f"{self.path!r} is a folder, not a gain store file")
        if exists and not self.in_memory and not stat.S_ISREG(os.stat(self.path).st_mode):
            raise StoreError(f"{self.path!r} is not a regular file (a FIFO, a device such as "
                             "/dev/null, or a socket): a gain store needs a file SQLite can "
                             "lock and seek in")
        folder = "" if self.in_memory else os.path.dirname(os.path.abspath(self.path))
        if exists and not self.in_memory and not self.readonly and not (
                os.access(self.path, os.W_OK) and os.access(folder, os.W_OK)):
            # (os.access also sees a read-only mount, which stops root too); a WAL store needs
            # its folder as well: the -wal and -shm files live beside it
            which = "file" if not os.access(self.path, os.W_OK) else "folder"
            raise StoreError(f"gain store {self.path!r} cannot be written: its {which} is "
                             "read-only for this process (permissions or a read-only mount); "
                             "to read it, open GainStore(path, readonly=True)")
        self._key = None if self.in_memory else os.path.realpath(self.path)
        self._head = None
        if self._key is not None:
            with _LIVE_LOCK:   # (the header is read only while no connection here holds locks)
                if exists and not _LIVE[self._key]:
                    self._head = _read_head(self.path)
                _LIVE[self._key] += 1   # reserved before connecting: other opens skip the read
        try:
            if self.readonly and not self.in_memory:
                query = "mode=ro"
                if not os.access(folder, os.W_OK) and not os.path.exists(self.path + "-wal"):
                    # SQLite cannot create the WAL index (-shm) in a folder it may not write,
                    # and without it cannot read a WAL store; no -wal file means no writer has
                    # the store open, so it is read as the unchanging file it is
                    query += "&immutable=1"
                uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?" + query
                conn = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None)
            else:
                conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            self._release()
            raise StoreError(f"cannot open gain store {self.path!r}: {exc} (does the folder "
                             "exist and may this process create files there?)") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            self._check_file(conn)
            if not self.readonly:
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
                conn.execute("PRAGMA synchronous = FULL")  # a committed run survives power loss
                conn.execute("PRAGMA foreign_keys = ON")
                self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._explain(exc) from exc
        except StoreError:
            self.close()
            raise
        return self

    def _explain(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "readonly" in text or "read-only" in text or "attempt to write" in text:
            return StoreError(f"gain store {self.path!r} cannot be written (read-only file or "
                              f"folder: {text}); to read it, open GainStore(path, readonly=True)")
        if "not a database" in text:
            return StoreError(f"{self.path!r} is not an mtgfast gain store (not an SQLite "
                              f"database: {text}); check the path")
        if "locked" in text or "busy" in text:
            return StoreError(f"gain store {self.path!r} is locked by another connection or "
                              f"process (waited {self._timeout:g} s: {text}); retry later, give "
                              f"GainStore a longer timeout, or stop the other writer")
        if "malformed" in text or "corrupt" in text:
            return StoreError(f"gain store {self.path!r} is corrupt ({text}); restore it from a "
                              "backup, or recover what is readable with the sqlite3 '.recover' "
                              "command")
        return StoreError(f"{self.path!r} is not a usable gain store: {text}")

    def _check_file(self, conn: sqlite3.Connection) -> None:
        """Refuse another application's file, a corrupt one, or a newer schema."""
        app = int(conn.execute("PRAGMA application_id").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app not in (0, APPLICATION_ID) or (app == 0 and tables and
                                              not {"schema_version", "studies"} <= tables):
            raise StoreError(f"{self.path!r} is not an mtgfast gain store (an SQLite file of "
                             f"another application: application_id {app:#x}, tables "
                             f"{sorted(tables)}); use another path")
        self._check_size(conn)
        check = conn.execute("PRAGMA quick_check").fetchall()
        if [r[0] for r in check] != ["ok"]:
            raise StoreError(f"gain store {self.path!r} is corrupt (quick_check: "
                             f"{'; '.join(str(r[0]) for r in check[:3])}); restore it from a "
                             "backup, or recover what is readable with the sqlite3 '.recover' "
                             "command")
        if (self.readonly or not self.create) and not tables:
            # an SQLite file without tables (empty, or a store a writer is creating right now):
            # a reader cannot wait for its schema, and create=False must not make one
            how = "readonly=True" if self.readonly else "create=False"
            raise StoreError(f"{self.path!r} holds no gain store (yet): an SQLite file without "
                             f"tables, opened with {how}; a study writes it, or it is being "
                             "created right now")
        version = self._version(conn, tables)
        if version > SCHEMA_VERSION:
            raise StoreError(f"gain store {self.path!r} has schema version {version}, newer "
                             f"than this mtgfast understands ({SCHEMA_VERSION}): upgrade mtgfast")
        if self.readonly and version < SCHEMA_VERSION and tables:
            raise StoreError(f"gain store {self.path!r} has the old schema version {version}; "
                             "open it once for writing (it is migrated in place) before reading "
                             "it read-only")

    def _check_size(self, conn: sqlite3.Connection) -> None:
        """A file cut short (a copy or a download that stopped) is refused: SQLite reads the
        missing end of its last page as zeros and quick_check can pass, so check the length
        against the page size and the page count in the file's header."""
        if self._head is None:   # in memory, new, or already open in this process (checked then)
            return
        size, head = self._head
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int.from_bytes(head[28:32], "big") if len(head) == 100 else 0
        valid = len(head) == 100 and head[24:28] == head[92:96]   # the header's count is current
        if size % page or (valid and pages * page > size):
            why = (f"not a whole number of {page:,}-byte pages" if size % page else
                   f"its header counts {pages:,} pages of {page:,} bytes")
            raise StoreError(f"gain store {self.path!r} is truncated ({size:,} bytes, {why}); "
                             "restore it from a backup, or recover what is readable with the "
                             "sqlite3 '.recover' command")

    @staticmethod
    def _version(conn: Any, tables: set[str]) -> int:
        # the PRAGMA and the table (what 0.1 wrote) must both be understood: the larger counts
        user = int(conn.execute("PRAGMA user_version").fetchone()[0])
        table = 0
        if "schema_version" in tables:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            table = int(row[0]) if row else 0
        return max(user, table)

    def close(self) -> None:
        """Close the connection; the store can be reopened with :meth:`open`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._release()

    def _release(self) -> None:
        key, self._key = self._key, None
        if key is not None:
            with _LIVE_LOCK:
                _LIVE[key] -= 1
                if _LIVE[key] <= 0:
                    del _LIVE[key]

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

    def _retry(self, fn: Any) -> Any:
        # journal_mode and BEGIN IMMEDIATE can report "locked" without calling the busy handler:
        # retry those, but within the store's timeout in all (not 50 x the busy timeout)
        deadline = time.monotonic() + self._timeout
        i = 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if "locked" not in str(exc) and "busy" not in str(exc) or left <= 0:
                    raise
                i += 1
                time.sleep(min(0.02 * i, 0.25, left))

    def _transaction(self) -> _Tx:
        if self.readonly:
            raise StoreError(f"gain store {self.path!r} is opened read-only (readonly=True): "
                             "open it without readonly to write")
        return _Tx(self)

    def _init_schema(self) -> None:
        with self._transaction() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master "
                                               "WHERE type='table'")}
            version = self._version(db, tables) if tables else SCHEMA_VERSION
            if version == 1 and "runs" in tables:
                runs_sql = _TABLES.split("CREATE TABLE IF NOT EXISTS runs")[1].split(";")[0]
                db.executescript_in_tx(_MIGRATE_1_TO_2.format(
                    runs="CREATE TABLE runs" + runs_sql))
            db.executescript_in_tx(_TABLES)
            if db.execute("SELECT version FROM schema_version").fetchone() is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            else:
                db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

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
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"study name must be a non-empty string, got {name!r}")
        if isinstance(task_names, str) or not isinstance(task_names, Iterable):
            raise InputTypeError(f"task_names must be a sequence of strings, got {task_names!r}")
        names = tuple(task_names)
        bad = [t for t in names if not isinstance(t, str) or not t.strip() or t != t.strip()]
        if bad:   # str(None) == "None" would name a task; '' fails every read; ' y' no file keeps
            raise InputError(f"task names must be non-empty strings without leading or "
                             f"trailing whitespace, got {bad[0]!r} in {list(names)}")
        check_printable_names(names)
        n = check_n_tasks(len(names))
        if len(set(names)) != n:
            raise InputError(f"task names must be distinct, got {list(names)}")
        mets, hib = _check_directions(metrics, higher_is_better, n)
        if len(mets) != n or len(hib) != n:
            raise InputError(f"metrics and higher_is_better need one entry per task ({n}), got "
                             f"{len(mets)} and {len(hib)}")
        if not isinstance(fingerprint, str):
            raise InputTypeError(f"fingerprint must be a string, got {type(fingerprint).__name__}")
        cfg = _dumps(dict(config or {}), "config")
        existing = self._study_row(self._db, name)
        if existing is None:
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
                raise StoreError(f"study {name!r} of gain store {self.path!r} exists with other "
                                 f"{what}: stored {theirs!r}, given {mine!r}; use a new study "
                                 "name (or another store)")
        return info

    def get_study(self, name: str) -> StudyInfo:
        """The stored study ``name``; ``StoreError`` if absent."""
        if not isinstance(name, str):
            raise InputTypeError(f"study must be a string, got {type(name).__name__}")
        row = self._study_row(self._db, name)
        if row is None:
            raise StoreError(f"no study {name!r} in gain store {self.path!r} (it holds "
                             f"{self.studies()})")
        return self._study_from_row(row)

    def studies(self) -> list[str]:
        """Names of the stored studies."""
        return [r[0] for r in self._db.execute("SELECT name FROM studies ORDER BY created")]

    @staticmethod
    def _study_row(db: Any, name: str) -> tuple[Any, ...] | None:
        return db.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()

    def _study_from_row(self, row: Any) -> StudyInfo:
        where = f"study {row[0]!r}"
        parts = []
        for col, text, kind in (("task_names", row[1], str), ("metrics", row[2], str),
                                ("higher_is_better", row[3], (bool, int)),
                                ("config", row[5], dict)):
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as exc:
                raise self._damaged(f"{where}: {col} is not JSON ({exc})") from None
            ok = isinstance(value, dict) if kind is dict else (
                isinstance(value, list) and all(isinstance(v, kind) for v in value))
            if not ok:
                raise self._damaged(f"{where}: {col} is {text[:80]!r}, not a JSON "
                                    f"{'object' if kind is dict else 'list'} of the right kind")
            parts.append(value)
        names, metrics, hib, cfg = parts
        if not 1 <= len(names) <= 64 or len(set(names)) != len(names) or \
                len(metrics) != len(names) or len(hib) != len(names):
            raise self._damaged(f"{where}: {len(names)} task names {names[:8]!r} (distinct, "
                                f"1 to 64), {len(metrics)} metrics and {len(hib)} "
                                "directions do not describe one set of tasks")
        return StudyInfo(row[0], tuple(names), tuple(metrics), tuple(bool(h) for h in hib),
                         row[4], MappingProxyType(cfg), row[6])

    # -- finished runs --------------------------------------------------------------------------
    def record_run(self, study: str, mask: int, seed: int, *,
                   metrics_valid: Mapping[str, float] | None = None,
                   metrics_test: Mapping[str, float] | None = None, seconds: float = 0.0,
                   status: RunStatus | Literal["complete", "finished", "failed"] =
                   RunStatus.COMPLETE, fingerprint: str | None = None,
                   config: Mapping[str, Any] | None = None, error: str | None = None) -> bool:
        """Store one finished run in one transaction; ``False`` (nothing written) if that
        complete run ``(study, mask, seed, fingerprint)`` is already stored.

        A complete run needs a finite metric for every member task (``metrics_valid``; test is
        optional) and replaces a waiting, running or failed row of its key; a failed run only
        fills an empty key or a waiting/running one. ``fingerprint`` defaults to the study's.
        """
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        sd = _check_seed(seed)
        try:
            st = RunStatus(status)
        except ValueError as exc:
            raise InputError(f"status must be 'complete' or 'failed', got {status!r}") from exc
        if st not in (RunStatus.COMPLETE, RunStatus.FAILED):
            raise InputError(f"status must be 'complete' or 'failed' (a finished run), got "
                             f"{st.value!r}; waiting runs are made by request_runs()")
        fp = self._fp(info, fingerprint)
        members = [info.task_names[k] for k in mask_to_indices(m)]
        mv = self._check_metrics(metrics_valid or {}, members, "metrics_valid",
                                 required=st is RunStatus.COMPLETE)
        mt = self._check_metrics(metrics_test or {}, members, "metrics_test", required=False)
        secs = self._check_seconds(seconds)
        now = time.time()
        key = (study, _to_i64(m), sd, fp)
        with self._transaction() as db:
            old = db.execute("SELECT status FROM runs WHERE study = ? AND mask = ? AND seed = ? "
                             "AND fingerprint = ?", key).fetchone()
            if old is not None:
                if old[0] == "complete" or (st is RunStatus.FAILED and old[0] == "failed"):
                    return False
                db.execute("DELETE FROM runs WHERE study = ? AND mask = ? AND seed = ? AND "
                           "fingerprint = ?", key)
            db.execute("INSERT INTO runs (study, mask, seed, fingerprint, status, metrics_valid, "
                       "metrics_test, seconds, config, created, attempts, error, finished) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                       (*key, st.value, _dumps(mv, "metrics_valid"), _dumps(mt, "metrics_test"),
                        secs, _dumps(dict(config or {}), "config"), now, error, now))
        return True

    def has_run(self, study: str, mask: int, seed: int, *, fingerprint: str | None = None,
                include_failed: bool = False) -> bool:
        """Whether a complete (or, with ``include_failed``, a complete or failed) run of this key
        is stored."""
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        row = self._db.execute("SELECT status FROM runs WHERE study = ? AND mask = ? AND seed = ? "
                               "AND fingerprint = ?", (study, _to_i64(m), _check_seed(seed),
                                                       self._fp(info, fingerprint))).fetchone()
        if row is None:
            return False
        return row[0] == "complete" or (include_failed and row[0] == "failed")

    def runs(self, study: str, *, status: RunStatus | str | None = None,
             fingerprint: str | None = None) -> list[RunRecord]:
        """Stored runs of a study in insertion order, optionally filtered by state; without
        ``status``, the finished (complete or failed) ones."""
        sql, args = "SELECT * FROM runs WHERE study = ?", [study]
        if status is None:
            sql += " AND status IN ('complete', 'failed')"
        else:
            sql += " AND status = ?"
            args.append(self._status(status).value)
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            args.append(fingerprint)
        info = self.get_study(study)
        return [self._record(r, info) for r in self._db.execute(sql + " ORDER BY id", args)]

    def count_runs(self, study: str | None = None, *,
                   status: RunStatus | str | None = None) -> int:
        """Number of stored finished runs (of one study, or all); ``status`` counts one state."""
        cond = ("status IN ('complete', 'failed')" if status is None
                else f"status = '{self._status(status).value}'")
        if study is None:
            return int(self._db.execute(f"SELECT COUNT(*) FROM runs WHERE {cond}").fetchone()[0])
        return int(self._db.execute(f"SELECT COUNT(*) FROM runs WHERE study = ? AND {cond}",
                                    (study,)).fetchone()[0])

    def __iter__(self) -> Iterator[str]:
        return iter(self.studies())

    # -- the trial model: request, claim, heartbeat, finish ---------------------------------------
    def request_runs(self, study: str, keys: Iterable[tuple[int, int]], *,
                     config: Mapping[str, Any] | None = None) -> int:
        """Add a ``waiting`` row for every ``(mask, seed)`` not stored yet, and put failed ones
        back to waiting (a new try); one transaction. Returns the number of rows made waiting."""
        info = self.get_study(study)
        ks = [(self._check_mask(info, m), _check_seed(s)) for m, s in keys]
        with self._transaction() as db:
            return self._request_in_tx(db, info, ks, _dumps(dict(config or {}), "config"))

    def _request_in_tx(self, db: _Tx, info: StudyInfo, keys: list[tuple[int, int]],
                       cfg: str) -> int:
        n = 0
        now = time.time()
        for m, s in dict.fromkeys(keys):
            key = (info.name, _to_i64(m), s, info.fingerprint)
            old = db.execute("SELECT status FROM runs WHERE study = ? AND mask = ? AND seed = ? "
                             "AND fingerprint = ?", key).fetchone()
            if old is None:
                db.execute("INSERT INTO runs (study, mask, seed, fingerprint, status, "
                           "metrics_valid, metrics_test, seconds, config, created) "
                           "VALUES (?, ?, ?, ?, 'waiting', '{}', '{}', 0, ?, ?)", (*key, cfg, now))
                n += 1
            elif old[0] == "failed":
                db.execute("UPDATE runs SET status = 'waiting', owner = NULL, heartbeat = NULL, "
                           "attempts = 0 WHERE study = ? AND mask = ? AND seed = ? AND "
                           "fingerprint = ?", key)
                n += 1
        return n

    def claim_runs(self, study: str, owner: str, *, limit: int | None = None) -> list[RunRecord]:
        """Atomically move up to ``limit`` waiting runs (oldest first) to ``running`` under
        ``owner`` (attempts + 1, heartbeat now) and return them."""
        info = self.get_study(study)
        _check_str(owner, "owner")
        if limit is not None and (not is_int(limit) or limit < 0):
            raise InputError(f"limit must be an int >= 0 or None, got {limit!r}")
        with self._transaction() as db:
            rows = db.execute("SELECT id FROM runs WHERE study = ? AND status = 'waiting' "
                              "ORDER BY id" + ("" if limit is None else f" LIMIT {int(limit)}"),
                              (study,)).fetchall()
            ids = [r[0] for r in rows]
            now = time.time()
            for i in ids:
                db.execute("UPDATE runs SET status = 'running', owner = ?, heartbeat = ?, "
                           "attempts = attempts + 1 WHERE id = ?", (owner, now, i))
            out = [self._record(db.execute("SELECT * FROM runs WHERE id = ?", (i,)).fetchone(),
                                info) for i in ids]
        return out

    def heartbeat(self, study: str, owner: str) -> int:
        """Refresh the heartbeat of every running row of ``owner``; returns how many."""
        _check_str(owner, "owner")
        with self._transaction() as db:
            cur = db.execute("UPDATE runs SET heartbeat = ? WHERE study = ? AND owner = ? AND "
                             "status = 'running'", (time.time(), study, owner))
            return int(cur.rowcount)

    def complete_run(self, study: str, mask: int, seed: int, *,
                     metrics_valid: Mapping[str, float],
                     metrics_test: Mapping[str, float] | None = None,
                     seconds: float = 0.0) -> bool:
        """Store the metrics of a requested run and mark it complete; ``False`` (nothing written)
        when it is complete already, so a run reported twice is recorded once."""
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        members = [info.task_names[k] for k in mask_to_indices(m)]
        mv = self._check_metrics(metrics_valid, members, "metrics_valid", required=True)
        mt = self._check_metrics(metrics_test or {}, members, "metrics_test", required=False)
        secs = self._check_seconds(seconds)
        key = (study, _to_i64(m), _check_seed(seed), info.fingerprint)
        with self._transaction() as db:
            old = db.execute("SELECT status, config FROM runs WHERE study = ? AND mask = ? AND "
                             "seed = ? AND fingerprint = ?", key).fetchone()
            if old is None:
                raise StoreError(f"run (mask {m}, seed {seed}) of study {study!r} was never "
                                 "requested; use record_run() for an unrequested run")
            if old[0] == "complete":
                return False
            db.execute("UPDATE runs SET status = 'complete', metrics_valid = ?, metrics_test = ?, "
                       "seconds = ?, finished = ?, owner = NULL WHERE study = ? AND mask = ? AND "
                       "seed = ? AND fingerprint = ?",
                       (_dumps(mv, "metrics_valid"), _dumps(mt, "metrics_test"), secs,
                        time.time(), *key))
        return True

    def fail_run(self, study: str, mask: int, seed: int, *, error: str, retry: bool) -> None:
        """Record a failed attempt with its traceback: ``retry`` keeps the row running for the
        next attempt (attempts + 1), else the row is ``failed``. A complete row is left alone."""
        info = self.get_study(study)
        m = self._check_mask(info, mask)
        if not isinstance(error, str):
            raise InputTypeError(f"error must be a string (a traceback), got {error!r}")
        key = (study, _to_i64(m), _check_seed(seed), info.fingerprint)
        with self._transaction() as db:
            if retry:
                db.execute("UPDATE runs SET error = ?, attempts = attempts + 1, heartbeat = ? "
                           "WHERE study = ? AND mask = ? AND seed = ? AND fingerprint = ? AND "
                           "status != 'complete'", (error, time.time(), *key))
            else:
                db.execute("UPDATE runs SET status = 'failed', error = ?, owner = NULL, "
                           "finished = ? WHERE study = ? AND mask = ? AND seed = ? AND "
                           "fingerprint = ? AND status != 'complete'", (error, time.time(), *key))

    def requeue_stale(self, study: str, *, older_than: float,
                      owners: Iterable[str] = ()) -> int:
        """Put back to ``waiting`` every running row whose heartbeat is older than ``older_than``
        seconds, or whose owner is in ``owners`` (known dead); returns how many."""
        if not is_real(older_than) or not math.isfinite(older_than) or older_than < 0:
            raise InputError(f"older_than must be a finite number of seconds >= 0, got "
                             f"{older_than!r}")
        self.get_study(study)
        dead = list(owners)
        with self._transaction() as db:
            cur = db.execute("UPDATE runs SET status = 'waiting', owner = NULL WHERE study = ? AND "
                             "status = 'running' AND (heartbeat < ? OR owner IN (%s))"
                             % ",".join("?" * len(dead)) if dead else
                             "UPDATE runs SET status = 'waiting', owner = NULL WHERE study = ? "
                             "AND status = 'running' AND heartbeat < ?",
                             (study, time.time() - older_than, *dead))
            return int(cur.rowcount)

    def running_owners(self, study: str) -> list[str]:
        """Distinct owners of the running rows of a study."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT owner FROM runs WHERE study = ? "
                                               "AND status = 'running'", (study,))]

    # -- the active loop's selections -----------------------------------------------------------
    def add_selection_batch(self, study: str, *, slot_start: int, slot_count: int,
                            selections: Sequence[tuple[int, int | None, int | None, str]],
                            seeds: Sequence[int], config: Mapping[str, Any] | None = None
                            ) -> int:
        """Record one batch of the active loop — the selector slots it consumed and the chosen
        ``(mask, round, task, source)`` — and request a run of each mask for every seed, in one
        transaction (so a kill never leaves a choice without its runs). Returns the batch index."""
        info = self.get_study(study)
        for nm, v in (("slot_start", slot_start), ("slot_count", slot_count)):
            if not is_int(v) or v < 0:
                raise InputError(f"{nm} must be an int >= 0, got {v!r}")
        sel = [(self._check_mask(info, m), r, t, str(src)) for m, r, t, src in selections]
        sds = [_check_seed(s) for s in seeds]
        with self._transaction() as db:
            row = db.execute("SELECT COALESCE(MAX(batch) + 1, 0), COALESCE(MAX(slot_start + "
                             "slot_count), 0) FROM batches WHERE study = ?", (study,)).fetchone()
            batch, next_slot = int(row[0]), int(row[1])
            if slot_start != next_slot:
                raise StoreError(f"study {study!r} in {self.path!r}: batch starts at slot "
                                 f"{slot_start}, but the store's selections end at slot "
                                 f"{next_slot}: another process runs the same study's loop; let "
                                 "it finish (or stop it), then run this study again to resume")
            seq = int(db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM selections WHERE "
                                 "study = ?", (study,)).fetchone()[0])
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?)",
                       (study, batch, slot_start, slot_count, time.time()))
            for i, (m, r, t, src) in enumerate(sel):
                db.execute("INSERT INTO selections VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (study, seq + i, _to_i64(m), r, t, src, batch))
            self._request_in_tx(db, info, [(m, s) for m, *_ in sel for s in sds],
                                _dumps(dict(config or {}), "config"))
        return batch

    def selections(self, study: str) -> list[SelectionRecord]:
        """The active loop's choices in the order they were made."""
        info = self.get_study(study)
        return [self._selection(r, info)
                for r in self._db.execute("SELECT seq, mask, round, task, source, batch FROM "
                                          "selections WHERE study = ? ORDER BY seq", (study,))]

    def slots_used(self, study: str) -> int:
        """Selector slots consumed by the recorded batches (round = slot // N, task = slot % N)."""
        info = self.get_study(study)
        end = 0
        for batch, start, count in self._db.execute(
                "SELECT batch, slot_start, slot_count FROM batches WHERE study = ?", (study,)):
            for col, v in (("batch", batch), ("slot_start", start), ("slot_count", count)):
                if not _is_count(v):   # SQLite reads the text 'x' as 0 in MAX(): check each row
                    raise self._damaged(f"batch row {batch!r} of study {info.name!r}: {col} = "
                                        f"{v!r}, not an integer >= 0")
            end = max(end, start + count)
        return end

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _status(status: RunStatus | str) -> RunStatus:
        try:
            return RunStatus(status)
        except ValueError as exc:
            raise InputError(f"status must be one of waiting, running, complete, failed; got "
                             f"{status!r}") from exc

    @staticmethod
    def _fp(info: StudyInfo, fingerprint: str | None) -> str:
        fp = info.fingerprint if fingerprint is None else fingerprint
        if not isinstance(fp, str):
            raise InputTypeError(f"fingerprint must be a string, got {type(fp).__name__}")
        return fp

    @staticmethod
    def _check_seconds(seconds: object) -> float:
        if not is_real(seconds) or not math.isfinite(seconds) or seconds < 0:
            raise InputError(f"seconds must be a finite number >= 0, got {seconds!r}")
        return float(seconds)

    def _damaged(self, what: str) -> StoreError:
        return StoreError(f"gain store {self.path!r}: {what} (the file was changed outside "
                          "mtgfast or is damaged); restore it from a backup, or delete that row")

    def _record(self, r: Any, info: StudyInfo) -> RunRecord:
        """A run row as a record, after checking what mtgfast itself always writes: a mask of
        the study's tasks, JSON objects of finite metrics of member tasks, a finite duration."""
        where = f"run row {r[0]} of study {info.name!r}"
        m = self._mask(r[2], where, info)
        members = {info.task_names[k] for k in mask_to_indices(m)}
        decoded = []
        for col, text in (("metrics_valid", r[6]), ("metrics_test", r[7]), ("config", r[9])):
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as exc:
                raise self._damaged(f"{where}: {col} is not JSON ({exc})") from None
            if not isinstance(value, dict):
                raise self._damaged(f"{where}: {col} is not a JSON object, got "
                                    f"{type(value).__name__}")
            if col != "config":
                for t, v in value.items():
                    if t not in members:
                        raise self._damaged(f"{where} (mask {m}): {col} has task {t!r}, which "
                                            "is not in the combination")
                    if not is_real(v) or not math.isfinite(v):
                        raise self._damaged(f"{where} (mask {m}): {col}[{t!r}] = {v!r}, not a "
                                            "finite number")
            decoded.append(value)
        if r[5] == RunStatus.COMPLETE.value and set(decoded[0]) != members:
            raise self._damaged(f"{where} (mask {m}) is complete but its metrics_valid lacks "
                                f"{sorted(members - set(decoded[0]))}")
        if not is_real(r[8]) or not math.isfinite(r[8]) or r[8] < 0:
            raise self._damaged(f"{where}: seconds = {r[8]!r}, not a finite number >= 0")
        return RunRecord(study=r[1], mask=m, seed=r[3], fingerprint=r[4],
                         status=RunStatus(r[5]), metrics_valid=decoded[0],
                         metrics_test=decoded[1], seconds=float(r[8]), config=decoded[2],
                         created=r[10], owner=r[11], heartbeat=r[12], attempts=r[13],
                         error=r[14])

    def _mask(self, mask: object, where: str, info: StudyInfo) -> int:
        """A mask column read back: an integer naming a combination of the study's tasks."""
        if not isinstance(mask, int) or isinstance(mask, bool):
            raise self._damaged(f"{where} has mask {mask!r}, not an integer")
        m = _from_i64(mask)
        if m <= 0 or m >> info.n_tasks:
            raise self._damaged(f"{where} has mask {m}, not a combination of the study's "
                                f"{info.n_tasks} tasks")
        return m

    def _selection(self, r: Any, info: StudyInfo) -> SelectionRecord:
        """A selection row as a record, after checking what ``add_selection_batch`` writes: a
        mask of the study's tasks, a round and task index (both or neither), a text source."""
        where = f"selection row {r[0]!r} of study {info.name!r}"
        seq, mask, rnd, task, source, batch = r
        for col, v in (("seq", seq), ("batch", batch)):
            if not _is_count(v):
                raise self._damaged(f"{where}: {col} = {v!r}, not an integer >= 0")
        m = self._mask(mask, where, info)
        if rnd is not None and not _is_count(rnd):
            raise self._damaged(f"{where} (mask {m}): round = {rnd!r}, not NULL or an integer "
                                ">= 0")
        if task is not None and not (_is_count(task) and task < info.n_tasks):
            raise self._damaged(f"{where} (mask {m}): task = {task!r}, not NULL or a task index "
                                f"in [0, {info.n_tasks})")
        if not isinstance(source, str) or not source:
            raise self._damaged(f"{where} (mask {m}): source = {source!r}, not a text")
        return SelectionRecord(seq, m, rnd, task, source, batch)

    @staticmethod
    def _check_mask(info: StudyInfo, mask: object) -> int:
        if not is_int(mask):
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
            if isinstance(v, (bool, str, bytes)):
                raise InputTypeError(f"{what}[{t!r}] must be a number, got {v!r}")
            try:
                fv = float(v)
            except (TypeError, ValueError) as exc:
                raise InputTypeError(f"{what}[{t!r}] must be a number, got {v!r}") from exc
            if not math.isfinite(fv):
                raise InputError(f"{what}[{t!r}] must be finite, got {fv}")
            out[str(t)] = fv
        return out

    # -- derived tables (computed by mtgfast.transfer) -----------------------------------------
    def mean_metrics(self, study: str, split: Literal["valid", "test"] = "valid", *,
                     fingerprint: str | None = None) -> dict[int, dict[str, float]]:
        """Mean over seeds of each member's metric, per combination with a complete run that
        has ``split`` metrics (persisted values; no gain computed)."""
        info = self.get_study(study)
        key = _split_key(split)
        acc: dict[int, dict[str, list[float]]] = {}
        for r in self.runs(study, status=RunStatus.COMPLETE, fingerprint=self._fp(info,
                                                                                  fingerprint)):
            metrics = getattr(r, key)
            if metrics:
                slot = acc.setdefault(r.mask, {})
                for t, v in metrics.items():
                    slot.setdefault(t, []).append(v)
        return {m: {t: float(np.mean(v)) for t, v in per.items()} for m, per in acc.items()}

    def stl_metrics(self, study: str, split: Literal["valid", "test"] = "valid", *,
                    fingerprint: str | None = None) -> dict[str, float]:
        """Single-task baselines: each task's metric in its singleton runs, mean over seeds
        (tasks without a complete singleton run are absent)."""
        info = self.get_study(study)
        means = self.mean_metrics(study, split, fingerprint=fingerprint)
        out = {}
        for j, t in enumerate(info.task_names):
            if (1 << j) in means and t in means[1 << j]:
                out[t] = means[1 << j][t]
        return out

    def gain_table(self, study: str, split: Literal["valid", "test"] = "valid", *,
                   fingerprint: str | None = None) -> GainTable:
        """Gains of every combination with a complete run (mean metric over seeds against the
        mean STL metric; singletons 0), computed by :func:`mtgfast.transfer.gain_row`.

        ``StoreError`` when a member task has no STL baseline or a zero one.
        """
        info = self.get_study(study)
        means = self.mean_metrics(study, split, fingerprint=fingerprint)
        stl = self.stl_metrics(study, split, fingerprint=fingerprint)
        masks = sorted(means, key=lambda m: (bin(m).count("1"), m))
        gains = np.full((len(masks), info.n_tasks), np.nan)
        for i, m in enumerate(masks):
            missing = [t for t in means[m] if t not in stl]
            if missing and m & (m - 1):
                raise StoreError(f"study {study!r}: task {missing[0]!r} has no finished STL "
                                 f"(singleton) run with {split} metrics, so its gains are "
                                 "undefined")
            try:
                gains[i] = gain_row(m, means[m], stl, info.task_names, info.higher_is_better)
            except InputError as exc:   # e.g. a stored run whose metrics give no finite gain
                members = [info.task_names[k] for k in mask_to_indices(m)]
                raise StoreError(f"study {study!r} of gain store {self.path!r}, {split} split, "
                                 f"combination {m} {members} (mean of its complete runs): "
                                 f"{exc}") from exc
        seeds = sorted({r.seed for r in self.runs(study, status=RunStatus.COMPLETE)})
        meta = {"split": split, "study": study, "metric": ",".join(dict.fromkeys(info.metrics)),
                "higher_is_better": ",".join(str(h) for h in dict.fromkeys(info.higher_is_better)),
                "fingerprint": self._fp(info, fingerprint),
                "seed": ",".join(str(s) for s in seeds)}
        return GainTable(np.array(masks, dtype=np.uint64), gains, info.task_names, meta)

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
        try:
            self._store._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
        except sqlite3.DatabaseError as exc:
            raise self._store._explain(exc) from exc
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
            except sqlite3.DatabaseError as err:
                self._db.execute("ROLLBACK")
                raise self._store._explain(err) from err
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        else:
            self._db.execute("ROLLBACK")
