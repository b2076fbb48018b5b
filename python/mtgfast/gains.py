"""Gain tables: measured or estimated transfer gains of task combinations.

A table holds ``masks`` (uint64, shape ``(n_masks,)``) and ``gains`` (float64, shape
``(n_masks, n_tasks)``) where ``gains[i, j]`` is the gain of task ``j`` trained in combination
``masks[i]`` and NaN when task ``j`` is not in it. Singletons have gain 0 by definition.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import InputError
from .masks import (
    MaskArray,
    as_masks,
    check_n_tasks,
    dense_to_masks,
    mask_to_indices,
    masks_to_dense,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
PathLike = str | os.PathLike[str]

__all__ = ["GainTable", "check_gains", "load_table", "read_matrix"]

#: Metadata keys with a fixed meaning (all optional): which split the gains were measured on, the
#: seed(s), the metric they derive from, whether that metric is higher-is-better, the source file.
META_KEYS = ("split", "seed", "metric", "higher_is_better", "source")

_TASK_SPLIT = re.compile(r"[+|;\s]+")


def check_gains(masks: MaskArray, gains: object, n_tasks: int, *, name: str = "gains",
                allow_nan_inside: bool = False) -> FloatArray:
    """Validate a ``(n_masks, n_tasks)`` gain matrix against ``masks``; NaN outside each mask.

    Returns a float64 copy whose entries outside each combination are NaN. Raises ``ValueError``
    for a wrong shape, non-finite values inside a combination, or duplicate masks.
    """
    g = np.array(gains, dtype=np.float64, copy=True)
    if g.ndim != 2 or g.shape != (masks.shape[0], n_tasks):
        raise InputError(f"{name} must have shape (n_masks, n_tasks) = ({masks.shape[0]}, "
                         f"{n_tasks}), got {g.shape}")
    member = masks_to_dense(masks, n_tasks)
    inside = g[member]
    if not allow_nan_inside and not np.all(np.isfinite(inside)):
        rows, cols = np.nonzero(member & ~np.isfinite(g))
        raise InputError(f"{name} must be finite inside each combination: row {int(rows[0])} "
                         f"(mask {int(masks[rows[0]])}), task {int(cols[0])} is {g[rows[0], cols[0]]}")
    g[~member] = np.nan
    return g


@dataclass(frozen=True, eq=False)
class GainTable:
    """Per-task transfer gains of a set of distinct combinations (immutable).

    ``meta`` is free-form provenance: split (``"valid"``/``"test"``), seed, metric, source file...
    """

    masks: MaskArray
    gains: FloatArray
    task_names: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(str(t) for t in self.task_names)
        n = check_n_tasks(len(names)) if names else check_n_tasks(0)
        if len(set(names)) != len(names):
            raise InputError(f"task names must be distinct, got {list(names)}")
        masks = as_masks(self.masks, n)
        uniq, counts = np.unique(masks, return_counts=True)
        if uniq.shape[0] != masks.shape[0]:
            dup = int(uniq[np.argmax(counts > 1)])
            raise InputError(f"duplicate combination (mask {dup}) in gain table")
        gains = check_gains(masks, self.gains, n, allow_nan_inside=bool(
            dict(self.meta).get("allow_nan_inside", False)))
        masks.setflags(write=False)
        gains.setflags(write=False)
        object.__setattr__(self, "task_names", names)
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "gains", gains)
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, masks: object, gains: object, task_names: Sequence[str] | None = None,
                    *, outside: str = "nan", meta: Mapping[str, Any] | None = None) -> GainTable:
        """Build from arrays. ``outside="zero"`` accepts any value (e.g. the 0 of the MTG-Net
        files) outside a combination; ``"nan"`` (default) requires NaN or 0 there."""
        g = np.asarray(gains, dtype=np.float64)
        if g.ndim != 2:
            raise InputError(f"gains must be 2-D (n_masks, n_tasks), got shape {g.shape}")
        n = g.shape[1]
        names = tuple(task_names) if task_names is not None else tuple(f"t{j}" for j in range(n))
        if len(names) != n:
            raise InputError(f"{len(names)} task names for {n} gain columns")
        m = as_masks(masks, check_n_tasks(n))
        if m.shape[0] != g.shape[0]:
            raise InputError(f"{m.shape[0]} masks but {g.shape[0]} gain rows")
        if outside not in ("nan", "zero"):
            raise InputError(f"outside must be 'nan' or 'zero', got {outside!r}")
        if outside == "nan":
            member = masks_to_dense(m, n)
            bad = ~member & ~np.isnan(g) & (g != 0)
            if bad.any():
                r, c = np.argwhere(bad)[0]
                raise InputError(f"gain given for task {int(c)} outside its combination "
                                 f"(row {int(r)}, mask {int(m[r])})")
        return cls(m, g, names, dict(meta or {}))

    @classmethod
    def from_mtgnet(cls, masks_path: PathLike, gains_path: PathLike,
                    task_names: Sequence[str] | None = None, *, scale: float = 1.0,
                    meta: Mapping[str, Any] | None = None) -> GainTable:
        """Read a mask file (0/1 rows) and a gain file of the MTG-Net release, aligned row by row.

        Separators (comma or whitespace) are detected per file; the 0 written outside a combination
        becomes NaN; ``scale`` multiplies the gains (0.01 for the TAG file given in percent).
        """
        dense = read_matrix(masks_path, name="mask file")
        g = read_matrix(gains_path, name="gain file")
        if dense.shape[0] != g.shape[0]:
            raise InputError(f"mask file {os.fspath(masks_path)!r} has {dense.shape[0]} rows but "
                             f"gain file {os.fspath(gains_path)!r} has {g.shape[0]}")
        if dense.shape[1] != g.shape[1]:
            raise InputError(f"mask file has {dense.shape[1]} columns but gain file has "
                             f"{g.shape[1]}: both need one column per task")
        if not np.isin(dense, (0.0, 1.0)).all():
            r, c = np.argwhere(~np.isin(dense, (0.0, 1.0)))[0]
            raise InputError(f"mask file {os.fspath(masks_path)!r} must hold only 0 and 1, got "
                             f"{dense[r, c]} at row {int(r) + 1}, column {int(c) + 1}")
        if dense.shape[1] == 0 or dense.shape[1] > 64:
            raise InputError(f"a gain table has 1 to 64 tasks, the mask file has {dense.shape[1]}")
        if not isinstance(scale, (int, float, np.floating)) or not np.isfinite(scale):
            raise InputError(f"scale must be a finite number, got {scale!r}")
        empty = ~dense.any(axis=1)
        if empty.any():
            raise InputError(f"mask file row {int(np.flatnonzero(empty)[0]) + 1} is all zeros "
                             "(empty combination)")
        m = dense_to_masks(dense.astype(np.uint8))
        info = {"source": os.fspath(gains_path), **dict(meta or {})}
        return cls.from_arrays(m, g * float(scale), task_names, outside="nan", meta=info)

    @classmethod
    def from_tidy(cls, data: pd.DataFrame | PathLike, task_names: Sequence[str] | None = None, *,
                  split: str | None = None, meta: Mapping[str, Any] | None = None) -> GainTable:
        """Build from a tidy table: one row per (combination, task) with columns ``task``, ``gain``
        and either ``mask`` (integer) or ``tasks`` (member names joined by ``+``, ``|``, ``;`` or
        spaces). A ``split`` column, if present, is filtered on ``split``. Reads CSV or Parquet.
        """
        import pandas as pd

        df = _read_frame(data) if not isinstance(data, pd.DataFrame) else data
        cols = set(df.columns)
        if "task" not in cols or "gain" not in cols or not ({"mask", "tasks"} & cols):
            raise InputError("a tidy gain table needs columns 'task', 'gain' and 'mask' or "
                             f"'tasks'; got {list(df.columns)}")
        if "split" in cols:
            splits = sorted({str(v) for v in df["split"].unique()})
            if split is None and len(splits) > 1:
                raise InputError(f"the table holds several splits {splits}: pass split=...")
            if split is not None:
                if split not in splits:
                    raise InputError(f"split {split!r} not in the table (has {splits})")
                df = df[df["split"].astype(str) == split]
            split = split if split is not None else (splits[0] if splits else None)
        task_col = [str(t) for t in df["task"]]
        if "mask" in cols:
            try:
                row_masks = [int(v) for v in df["mask"]]
            except (TypeError, ValueError) as exc:
                raise InputError("column 'mask' must hold integers") from exc
            if task_names is None:
                # without names, bit j is task "t<j>" (the names to_pandas writes by default)
                top = max((m.bit_length() for m in row_masks), default=0)
                labels = set(task_col)
                if not all(re.fullmatch(r"t\d+", t) for t in labels):
                    raise InputError("a table with a 'mask' column needs task_names (bit order) "
                                     "unless its tasks are named t0, t1, ...")
                top = max([top, *(int(t[1:]) + 1 for t in labels)])
                names = [f"t{j}" for j in range(top)]
            else:
                names = [str(t) for t in task_names]
        else:
            members = [[t for t in _TASK_SPLIT.split(str(v).strip()) if t] for v in df["tasks"]]
            if task_names is None:
                # bit order = order of first appearance, so a round trip keeps the columns
                names = list(dict.fromkeys([t for group in members for t in group] + task_col))
            else:
                names = [str(t) for t in task_names]
            index = {t: j for j, t in enumerate(names)}
            row_masks = []
            for r, group in enumerate(members):
                unknown = [t for t in group if t not in index]
                if unknown or not group:
                    raise InputError(f"row {r}: combination {group!r} names unknown tasks "
                                     f"{unknown}; known: {names}")
                row_masks.append(sum(1 << index[t] for t in group))
        index = {t: j for j, t in enumerate(names)}
        n = check_n_tasks(len(names))
        gains_col = pd.to_numeric(df["gain"], errors="coerce").to_numpy(dtype=np.float64)
        order: dict[int, int] = {}
        for m in row_masks:
            order.setdefault(m, len(order))
        g = np.full((len(order), n), np.nan)
        seen: set[tuple[int, int]] = set()
        for r, (m, t, v) in enumerate(zip(row_masks, task_col, gains_col)):
            if t not in index:
                raise InputError(f"row {r}: unknown task {t!r}; known: {names}")
            j = index[t]
            if m <= 0 or m >> n:
                raise InputError(f"row {r}: mask {m} is not a combination of {n} tasks")
            if not (m >> j) & 1:
                raise InputError(f"row {r}: gain given for task {t!r} outside its combination "
                                 f"{[names[k] for k in mask_to_indices(m)]}")
            if (m, j) in seen:
                raise InputError(f"row {r}: duplicate gain for task {t!r} in combination "
                                 f"{[names[k] for k in mask_to_indices(m)]}")
            seen.add((m, j))
            g[order[m], j] = v
        masks = np.fromiter(order, dtype=np.uint64, count=len(order))
        missing = masks_to_dense(masks, n) & np.isnan(g)
        if missing.any():
            r, c = np.argwhere(missing)[0]
            raise InputError(f"combination {[names[k] for k in mask_to_indices(int(masks[r]))]} "
                             f"has no finite gain for its task {names[c]!r}")
        info = dict(meta or {})
        if split is not None:
            info.setdefault("split", split)
        return cls(masks, g, tuple(names), info)

    @classmethod
    def from_pandas(cls, df: pd.DataFrame, *, meta: Mapping[str, Any] | None = None) -> GainTable:
        """Inverse of :meth:`to_pandas`: a tidy frame (``task``/``gain`` columns) or a wide one
        (index or column ``mask``, one column per task, NaN outside)."""
        if "task" in df.columns and "gain" in df.columns:
            info = {**dict(df.attrs.get("mtgfast_meta", {})), **dict(meta or {})}
            return cls.from_tidy(df, df.attrs.get("mtgfast_task_names"), meta=info)
        wide = df.set_index("mask") if "mask" in df.columns else df
        try:
            m = np.array([int(v) for v in wide.index], dtype=np.uint64)
        except (TypeError, ValueError) as exc:
            raise InputError("a wide gain frame needs integer masks as index or 'mask' "
                             "column") from exc
        info = {**dict(df.attrs.get("mtgfast_meta", {})), **dict(meta or {})}
        return cls.from_arrays(m, wide.to_numpy(dtype=np.float64), [str(c) for c in wide.columns],
                               meta=info)

    def to_pandas(self, kind: Literal["wide", "tidy"] = "wide") -> pd.DataFrame:
        """A DataFrame: ``wide`` (index ``mask``, one column per task, NaN outside) or ``tidy``
        (columns ``mask``, ``tasks``, ``task``, ``gain``; one row per member). Meta -> attrs."""
        import pandas as pd

        if kind == "wide":
            df = pd.DataFrame(self.gains, columns=list(self.task_names),
                              index=pd.Index([int(m) for m in self.masks], name="mask"))
        elif kind == "tidy":
            rows = []
            for m, row in zip(self.masks, self.gains):
                idx = mask_to_indices(int(m))
                label = "+".join(self.task_names[k] for k in idx)
                rows.extend((int(m), label, self.task_names[k], float(row[k])) for k in idx)
            df = pd.DataFrame(rows, columns=["mask", "tasks", "task", "gain"])
        else:
            raise InputError(f"kind must be 'wide' or 'tidy', got {kind!r}")
        df.attrs["mtgfast_meta"] = _jsonable(dict(self.meta))
        df.attrs["mtgfast_task_names"] = list(self.task_names)
        return df

    def to_csv(self, path: PathLike) -> None:
        """Write the tidy form (``mask,tasks,task,gain``) as CSV, or Parquet for ``.parquet``."""
        df = self.to_pandas("tidy")
        if os.fspath(path).endswith((".parquet", ".pq")):
            try:
                df.to_parquet(path, index=False)
            except ImportError as exc:
                raise InputError(f"writing Parquet needs pyarrow or fastparquet: {exc}") from exc
        else:
            df.to_csv(path, index=False)

    def reindex(self, masks: object) -> GainTable:
        """The rows of the given combinations, in that order; ``ValueError`` for an absent one."""
        idx = self.index_of(masks)
        if np.any(idx < 0):
            missing = int(as_masks(masks)[np.flatnonzero(idx < 0)[0]])
            raise InputError(f"combination {missing} "
                             f"({[self.task_names[k] for k in mask_to_indices(missing)]}) "
                             "is not in the gain table")
        return self.select(idx)

    # -- queries ------------------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def index_of(self, masks: object) -> npt.NDArray[np.int64]:
        """Row of each mask in this table, -1 where the combination is absent."""
        q = as_masks(masks, self.n_tasks)
        order = np.argsort(self.masks, kind="stable")
        sorted_masks = self.masks[order]
        pos = np.searchsorted(sorted_masks, q)
        pos_c = np.minimum(pos, max(len(self) - 1, 0))
        found = (pos < len(self)) & (sorted_masks[pos_c] == q) if len(self) else np.zeros(q.shape, bool)
        return np.where(found, order[pos_c], -1).astype(np.int64)

    def lookup(self, masks: object) -> FloatArray:
        """Gain rows of the given combinations; ``ValueError`` if one was not measured."""
        idx = self.index_of(masks)
        if np.any(idx < 0):
            missing = int(as_masks(masks)[np.flatnonzero(idx < 0)[0]])
            raise InputError(f"combination {missing} is not in the gain table")
        return self.gains[idx]

    def select(self, rows: object) -> GainTable:
        """A new table with the given rows (indices or boolean mask)."""
        sel = np.asarray(rows)
        return GainTable(self.masks[sel], self.gains[sel], self.task_names, dict(self.meta))

    def with_gains(self, gains: object, **meta: Any) -> GainTable:
        """Same combinations with other gains (e.g. test instead of validation)."""
        return GainTable(self.masks, np.asarray(gains), self.task_names, {**self.meta, **meta})

    def member(self) -> npt.NDArray[np.bool_]:
        """Boolean membership matrix ``(n_masks, n_tasks)``."""
        return masks_to_dense(self.masks, self.n_tasks)

    def __repr__(self) -> str:
        return f"GainTable(n_tasks={self.n_tasks}, n_masks={len(self)}, meta={dict(self.meta)})"


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
            for k, v in meta.items()}


def read_matrix(path: PathLike, *, name: str = "file") -> FloatArray:
    """Read a numeric matrix without header; comma- or whitespace-separated (detected).

    Raises ``InputError`` naming the line for ragged rows or non-numeric fields.
    """
    p = Path(os.fspath(path))
    try:
        text = p.read_text()
    except OSError as exc:
        raise InputError(f"cannot read {name} {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    rows: list[list[float]] = []
    width = None
    for lineno, line in enumerate(io.StringIO(text), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f for f in re.split(r"\s*,\s*|\s+", line) if f != ""] if "," not in line \
            else [f.strip() for f in line.split(",")]
        try:
            values = [float(f) for f in fields]
        except ValueError as exc:
            raise InputError(f"{name} {os.fspath(path)!r} line {lineno}: non-numeric field "
                             f"({exc})") from exc
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise InputError(f"{name} {os.fspath(path)!r} line {lineno}: {len(values)} fields, "
                             f"expected {width} like the first row (ragged rows)")
        rows.append(values)
    if not rows:
        raise InputError(f"{name} {os.fspath(path)!r} is empty")
    return np.array(rows, dtype=np.float64)


def _read_frame(path: PathLike) -> pd.DataFrame:
    import pandas as pd

    p = os.fspath(path)
    if p.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(p)
        except ImportError as exc:
            raise InputError(f"reading Parquet {p!r} needs pyarrow or fastparquet: {exc}") from exc
        except OSError as exc:
            raise InputError(f"cannot read {p!r}: {exc}") from exc
    try:
        return pd.read_csv(p, sep=None, engine="python")
    except OSError as exc:
        raise InputError(f"cannot read {p!r}: {exc.strerror or exc}") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot parse {p!r}: {exc}") from exc


def _looks_tidy(path: PathLike) -> bool:
    p = os.fspath(path)
    if p.endswith((".parquet", ".pq")):
        return True
    try:
        with open(p) as fh:
            first = fh.readline()
    except OSError as exc:
        raise InputError(f"cannot read {p!r}: {exc.strerror or exc}") from exc
    return bool(re.search(r"[A-Za-z_]{2,}", first)) and "gain" in first.lower()


def load_table(path: PathLike, masks_path: PathLike | None = None, *,
               task_names: Sequence[str] | None = None, scale: float = 1.0,
               split: str | None = None, meta: Mapping[str, Any] | None = None) -> GainTable:
    """Load a gain table whatever its format: tidy CSV/Parquet (header with ``gain``), or an
    MTG-Net gain matrix, which needs ``masks_path`` (the 0/1 mask file of the same rows)."""
    if _looks_tidy(path):
        table = GainTable.from_tidy(path, task_names, split=split,
                                    meta={"source": os.fspath(path), **dict(meta or {})})
        if scale != 1.0:
            table = table.with_gains(table.gains * float(scale))
        return table
    if masks_path is None:
        raise InputError(f"{os.fspath(path)!r} is a bare gain matrix: its mask file is needed "
                         "(--masks)")
    info = dict(meta or {})
    if split is not None:
        info.setdefault("split", split)
    return GainTable.from_mtgnet(masks_path, path, task_names, scale=scale, meta=info)
