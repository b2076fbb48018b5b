"""Gain tables: measured or estimated transfer gains of task combinations.

A table holds ``masks`` (uint64, shape ``(n_masks,)``) and ``gains`` (float64, shape
``(n_masks, n_tasks)``) where ``gains[i, j]`` is the gain of task ``j`` trained in combination
``masks[i]`` and NaN when task ``j`` is not in it. Singletons have gain 0 by definition.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from .checks import is_real
from .errors import InputError, InputTypeError, SingletonGainWarning
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

__all__ = ["GainTable", "SingletonGainWarning", "check_gains", "check_printable_names",
           "check_task_names", "load_table", "read_matrix", "read_text"]

#: Metadata keys with a fixed meaning (all optional): which split the gains were measured on, the
#: seed(s), the metric they derive from, whether that metric is higher-is-better, the source file.
META_KEYS = ("split", "seed", "metric", "higher_is_better", "source")


def check_gains(masks: MaskArray, gains: object, n_tasks: int, *, name: str = "gains",
                allow_nan_inside: bool = False) -> FloatArray:
    """Validate a ``(n_masks, n_tasks)`` gain matrix against ``masks``; NaN outside each mask.

    Returns a float64 copy whose entries outside each combination are NaN. Raises ``ValueError``
    for a wrong shape, non-finite values inside a combination, or duplicate masks.
    """
    g = real_matrix(gains, name)
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

    A singleton's gain is 0 by definition (a task trained alone is the baseline of its own
    gain): a singleton row holding another number is read as 0, with a ``SingletonGainWarning``
    naming it, so that every search and score treats it alike (NaN stays where
    ``allow_nan_inside``). Task
    names are distinct, printable, non-empty and without outer whitespace (file readers strip
    cells, so ``' y'`` could not round-trip through :meth:`to_csv`; it is refused, not changed).
    ``meta`` is free-form provenance: split (``"valid"``/``"test"``), seed, metric, source file...
    """

    masks: MaskArray
    gains: FloatArray
    task_names: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_names_type(self.task_names)
        if not isinstance(self.meta, Mapping):
            raise InputTypeError(f"meta must be a mapping (dict), got {type(self.meta).__name__}")
        names = tuple(str(t) for t in self.task_names)
        n = check_n_tasks(len(names)) if names else check_n_tasks(0)
        check_task_names(names, stripped=True)
        shape = np.shape(self.gains) if isinstance(self.gains, np.ndarray) else None
        if shape is not None and len(shape) == 2 and shape[1] != n:
            raise InputError(f"gains has {shape[1]} columns (tasks) but {n} task names were "
                             f"given: {list(names)}")
        masks = as_masks(self.masks, n)
        uniq, counts = np.unique(masks, return_counts=True)
        if uniq.shape[0] != masks.shape[0]:
            dup = int(uniq[np.argmax(counts > 1)])
            raise InputError(f"duplicate combination (mask {dup}) in gain table")
        gains = check_gains(masks, self.gains, n, allow_nan_inside=bool(
            dict(self.meta).get("allow_nan_inside", False)))
        gains = _zero_singletons(masks, gains, names)
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
        g = real_matrix(gains, "gains")
        if g.ndim != 2:
            raise InputError(f"gains must be 2-D (n_masks, n_tasks), got shape {g.shape}")
        n = g.shape[1]
        if task_names is not None:
            _check_names_type(task_names)
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
        return cls(m, g, names, meta_dict(meta))

    @classmethod
    def from_mtgnet(cls, masks_path: PathLike, gains_path: PathLike,
                    task_names: Sequence[str] | None = None, *, scale: float = 1.0,
                    meta: Mapping[str, Any] | None = None) -> GainTable:
        """Read a mask file (0/1 rows) and a gain file of the MTG-Net release, aligned row by row.

        Separators (comma or whitespace) are detected per file; the 0 written outside a combination
        becomes NaN; ``scale`` multiplies the gains (0.01 for the TAG file given in percent).
        """
        scale = _check_scale(scale)
        if task_names is not None:
            _check_names_type(task_names)
        dense = read_matrix(masks_path, name="mask file")
        _check_mask_matrix(dense, masks_path)
        g = read_matrix(gains_path, name="gain file")
        if dense.shape[0] != g.shape[0]:
            raise InputError(f"mask file {os.fspath(masks_path)!r} has {dense.shape[0]} rows but "
                             f"gain file {os.fspath(gains_path)!r} has {g.shape[0]}")
        if dense.shape[1] != g.shape[1]:
            raise InputError(f"mask file has {dense.shape[1]} columns but gain file has "
                             f"{g.shape[1]}: both need one column per task")
        with np.errstate(over="ignore", invalid="ignore"):
            g = g * scale
        bad = ~np.isfinite(g) & (dense == 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(f"gain file {os.fspath(gains_path)!r} row {int(r) + 1}, column "
                             f"{int(c) + 1}: gain must be a finite number"
                             f"{' after scaling' if scale != 1.0 else ''}, got {g[r, c]}")
        outside = (dense == 0) & ~np.isnan(g) & (g != 0)
        if outside.any():
            r, c = np.argwhere(outside)[0]
            raise InputError(f"gain file {os.fspath(gains_path)!r} row {int(r) + 1}, column "
                             f"{int(c) + 1}: gain {float(g[r, c])!r} given for a task outside its "
                             f"combination (mask file {os.fspath(masks_path)!r} has 0 there; "
                             "expected 0 or NaN)")
        lone = (dense.sum(axis=1) == 1)[:, None] & (dense == 1) & ~np.isnan(g) & (g != 0)
        if lone.any():
            r, c = np.argwhere(lone)[0]
            _warn_singletons(f"gain file {os.fspath(gains_path)!r} row {int(r) + 1}, column "
                             f"{int(c) + 1}: gain {float(g[r, c])!r} for a singleton (one task "
                             "trained alone)", int(lone.sum()))
            g = np.where(lone, 0.0, g)
        m = dense_to_masks(dense.astype(np.uint8))
        info = {"source": os.fspath(gains_path), **meta_dict(meta)}
        return cls.from_arrays(m, g, task_names, outside="nan", meta=info)

    @classmethod
    def from_tidy(cls, data: pd.DataFrame | PathLike, task_names: Sequence[str] | None = None, *,
                  split: str | None = None, meta: Mapping[str, Any] | None = None) -> GainTable:
        """Build from a tidy table: one row per (combination, task) with columns ``task``, ``gain``
        and either ``mask`` (integer) or ``tasks`` (member names joined by ``+``, ``|``, ``;`` or
        spaces). A ``split`` column, if present, is filtered on ``split``. Reads CSV or Parquet.

        Every bad entry is an ``InputError`` naming the file and line (or the frame row).
        """
        import pandas as pd

        if task_names is not None:
            _check_names_type(task_names)
        if split is not None and not isinstance(split, str):
            raise InputTypeError(f"split must be a str or None, got {type(split).__name__}")
        if meta is not None and not isinstance(meta, Mapping):
            raise InputTypeError(f"meta must be a mapping (dict), got {type(meta).__name__}")
        if isinstance(data, pd.DataFrame):
            cols = {str(c): data[c].tolist() for c in data.columns}
            where: Sequence[str] = _Where("row {!r}", list(data.index))
        elif isinstance(data, (str, os.PathLike)):
            cols, where = _read_tidy(data)
        else:
            raise InputTypeError("data must be a pandas DataFrame or a path to a CSV/Parquet "
                                 f"file, got {type(data).__name__}")
        if "task" not in cols or "gain" not in cols or not ({"mask", "tasks"} & set(cols)):
            raise InputError(f"{_origin(data)}: a tidy gain table needs columns 'task', 'gain' "
                             f"and 'mask' or 'tasks' (lower case); got {list(cols)}")
        if "split" in cols:
            splits = sorted({str(v) for v in cols["split"]})
            if split is None and len(splits) > 1:
                raise InputError(f"{_origin(data)} holds several splits {splits}: pass "
                                 "split=...")
            if split is not None:
                if split not in splits:
                    raise InputError(f"{_origin(data)}: split {split!r} not in the table (has "
                                     f"{splits})")
                keep = [i for i, v in enumerate(cols["split"]) if str(v) == split]
                cols = {k: [v[i] for i in keep] for k, v in cols.items()}
                where = where.pick(keep) if isinstance(where, _Where) else [where[i] for i in keep]
            split = split if split is not None else (splits[0] if splits else None)
        if not where:
            raise InputError(f"{_origin(data)} has no data rows (a header only)")
        task_col = [t.strip() if isinstance(t, str) else "" for t in cols["task"]]
        if not all(task_col):
            r = task_col.index("")
            task_col[r] = _task_label(cols["task"][r], where[r])   # raises for an empty name
            task_col = [_task_label(t, w) for t, w in zip(cols["task"], where)]
        if "mask" in cols:
            fast = _fast_masks(cols["mask"])
            row_masks = fast if fast is not None else [
                _parse_mask(v, w) for v, w in zip(cols["mask"], where)]
            labels = set(task_col)
            t_like = all(re.fullmatch(r"t\d+", t) for t in labels)
            by_bit: list[str] | None = None
            if task_names is None and "tasks" in cols:
                # what to_csv writes: the member names say which bit is which (whatever the
                # names: 't1', 't2' or 'a+b' too); t<j> names may still skip a bit
                try:
                    by_bit = _names_by_bit(row_masks, task_col, cols["tasks"], where, data)
                except InputError:
                    # a t<j> file whose cells do not list bits in order, or skip a bit: bit j
                    # is "t<j>" if every cell names just those tasks
                    if not (t_like and _t_names_fit(row_masks, cols["tasks"], labels)):
                        raise
            if task_names is not None:
                names = [str(t) for t in task_names]
            elif by_bit is not None:
                names = by_bit
            elif t_like:
                # without names, bit j is task "t<j>" (the names to_pandas writes by default)
                top = max([max((m.bit_length() for m in row_masks), default=0),
                           *(int(t[1:]) + 1 for t in labels)])
                if top > 64:
                    raise InputError(f"a gain table has at most 64 tasks; the 'mask' column "
                                     f"and task labels need {top}")
                names = [f"t{j}" for j in range(top)]
            else:
                raise InputError(f"{_origin(data)}: a table with a 'mask' column needs "
                                 "task_names (bit order), a 'tasks' column, or tasks named "
                                 "t0, t1, ...")
        else:
            known = set(task_col) if task_names is None else {str(t) for t in task_names}
            cells = [str(v) for v in cols["tasks"]]
            # one split per distinct cell: a combination's cell repeats on each of its rows
            members = {c: _split_members(c, known) for c in dict.fromkeys(cells)}
            if task_names is None:
                # bit order = order of first appearance, so a round trip keeps the columns
                names = list(dict.fromkeys([t for group in members.values() for t in group]
                                           + task_col))
            else:
                names = [str(t) for t in task_names]
            if len(names) > 64:
                raise InputError(f"a gain table has at most 64 tasks; the table names "
                                 f"{len(names)}")
            index = {t: j for j, t in enumerate(names)}
            mask_of: dict[str, int] = {}
            for cell, group in members.items():
                if not group or len(set(group)) != len(group) or any(t not in index
                                                                      for t in group):
                    _bad_members(where[cells.index(cell)], group, index, names)
                mask_of[cell] = sum(1 << index[t] for t in group)
            row_masks = [mask_of[c] for c in cells]
        index = {t: j for j, t in enumerate(names)}
        n = check_n_tasks(len(names))
        allow_nan = bool(meta_dict(meta).get("allow_nan_inside", False))
        fast_g = _fast_gains(cols["gain"], allow_nan)
        gains_col = fast_g.tolist() if fast_g is not None else [
            _parse_gain(v, w, allow_nan) for v, w in zip(cols["gain"], where)]
        order: dict[int, int] = {}
        for m in row_masks:
            order.setdefault(m, len(order))
        g = np.full((len(order), n), np.nan)
        seen: set[tuple[int, int]] = set()
        lone: list[str] = []
        for r, (m, t, v) in enumerate(zip(row_masks, task_col, gains_col)):
            j = index.get(t, -1)
            if j < 0 or m <= 0 or m >> n or not (m >> j) & 1 or (m, j) in seen:
                _bad_tidy_row(where[r], m, t, j, n, names)
            seen.add((m, j))
            if v != 0 and not m & (m - 1) and not math.isnan(v):
                lone.append(f"{where[r]}: gain {v!r} for the singleton of task {t!r} (a task "
                            "trained alone)")
                v = 0.0
            g[order[m], j] = v
        if lone:
            _warn_singletons(lone[0], len(lone))
        masks = np.fromiter(order, dtype=np.uint64, count=len(order))
        missing = masks_to_dense(masks, n) & np.isnan(g)
        if missing.any() and not allow_nan:
            r, c = np.argwhere(missing)[0]
            raise InputError(f"{_origin(data)}: combination "
                             f"{[names[k] for k in mask_to_indices(int(masks[r]))]} "
                             f"has no finite gain for its task {names[c]!r} (no row gives it)")
        info = meta_dict(meta)
        if split is not None:
            info.setdefault("split", split)
        return cls(masks, g, tuple(names), info)

    @classmethod
    def from_pandas(cls, df: pd.DataFrame, *, meta: Mapping[str, Any] | None = None) -> GainTable:
        """Inverse of :meth:`to_pandas`: a tidy frame (``task``/``gain`` columns) or a wide one
        (index or column ``mask``, one column per task, NaN outside)."""
        if "task" in df.columns and "gain" in df.columns:
            info = {**dict(df.attrs.get("mtgfast_meta", {})), **meta_dict(meta)}
            return cls.from_tidy(df, df.attrs.get("mtgfast_task_names"), meta=info)
        wide = df.set_index("mask") if "mask" in df.columns else df
        try:
            m = np.array([int(v) for v in wide.index], dtype=np.uint64)
        except (TypeError, ValueError) as exc:
            raise InputError("a wide gain frame needs integer masks as index or 'mask' "
                             "column") from exc
        info = {**dict(df.attrs.get("mtgfast_meta", {})), **meta_dict(meta)}
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
            rows: list[tuple[int, str, str, float]] = []
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
                raise InputError("writing Parquet needs pyarrow: pip install "
                                 "\"mtgfast[parquet]\"") from exc
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
        if not len(self):   # nothing to index: every mask is absent
            return np.full(q.shape, -1, dtype=np.int64)
        order = np.argsort(self.masks, kind="stable")
        sorted_masks = self.masks[order]
        pos = np.searchsorted(sorted_masks, q)
        pos_c = np.minimum(pos, len(self) - 1)
        found = (pos < len(self)) & (sorted_masks[pos_c] == q)
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
        n = len(self)
        if sel.dtype == bool:
            if sel.shape != (n,):
                raise InputError(f"rows as a boolean mask must have shape ({n},), got {sel.shape}")
        elif sel.size and not np.issubdtype(sel.dtype, np.integer):
            raise InputTypeError(f"rows must be integer indices or a boolean mask, got dtype "
                                 f"{sel.dtype}")
        elif sel.ndim > 1:
            raise InputError(f"rows must be 1-D, got shape {sel.shape}")
        elif sel.size and not (-n <= int(sel.min()) and int(sel.max()) < n):
            raise InputError(f"row indices must be in [-{n}, {n}), got "
                             f"{int(sel.min()) if int(sel.min()) < -n else int(sel.max())}")
        if sel.size == 0:
            sel = sel.astype(np.int64)
        return GainTable(self.masks[sel], self.gains[sel], self.task_names, dict(self.meta))

    def with_task_order(self, task_names: Sequence[str]) -> GainTable:
        """The same table with its tasks (bits and columns) in the order of ``task_names``,
        which must name the same tasks: aligns two tables written with other column orders."""
        _check_names_type(task_names)
        names = tuple(str(t) for t in task_names)
        if names == self.task_names:
            return self
        if sorted(names) != sorted(self.task_names) or len(set(names)) != len(names):
            raise InputError(f"task_names {list(names)} are not the table's tasks "
                             f"{list(self.task_names)} in another order")
        perm = [self.task_names.index(t) for t in names]   # new column k = old column perm[k]
        old_bits = masks_to_dense(self.masks, self.n_tasks)[:, perm]
        return GainTable(dense_to_masks(old_bits), self.gains[:, perm], names, dict(self.meta))

    def aligned_to(self, task_names: Sequence[str], what: str = "the table",
                   other: str = "the other") -> GainTable:
        """This table in the task order ``task_names`` of another (``other``): the same tasks
        in another column order are reordered, other tasks are an ``InputError`` naming both
        lists (``what`` names this table). Columns are read by position, so every table that
        meets another goes through here."""
        names = tuple(str(t) for t in task_names)
        if self.n_tasks != len(names):
            raise InputError(f"{what} has {self.n_tasks} tasks, {other} {len(names)}")
        if self.task_names == names:
            return self
        if sorted(self.task_names) != sorted(names):
            raise InputError(f"{what} names the tasks {list(self.task_names)}, {other} "
                             f"{list(names)}: both must describe the same tasks")
        return self.with_task_order(names)   # same tasks, other column order

    def with_gains(self, gains: object, **meta: Any) -> GainTable:
        """Same combinations with other gains (e.g. test instead of validation)."""
        return GainTable(self.masks, np.asarray(gains), self.task_names, {**self.meta, **meta})

    def member(self) -> npt.NDArray[np.bool_]:
        """Boolean membership matrix ``(n_masks, n_tasks)``."""
        return masks_to_dense(self.masks, self.n_tasks)

    def __repr__(self) -> str:
        return f"GainTable(n_tasks={self.n_tasks}, n_masks={len(self)}, meta={dict(self.meta)})"


def _warn_singletons(first: str, count: int) -> None:
    more = f" (and {count - 1} more)" if count > 1 else ""
    warnings.warn(f"{first}{more}: a singleton's gain is 0 by definition (a task trained alone "
                  "is its own baseline); read as 0", SingletonGainWarning, stacklevel=4)


def _zero_singletons(masks: MaskArray, gains: FloatArray, names: Sequence[str]) -> FloatArray:
    """``gains`` with each singleton row's non-zero number read as 0 (warned): a table that said
    otherwise would be scored one way by a search that leaves the task alone and another by one
    that picks the row (NaN stays where ``allow_nan_inside`` lets a gain be unmeasured)."""
    if not masks.shape[0]:
        return gains
    single = (masks & (masks - np.uint64(1))) == 0
    if not single.any():
        return gains
    rows = np.flatnonzero(single)
    vals = gains[rows]
    bad = ~np.isnan(vals) & (vals != 0)
    if not bad.any():
        return gains
    r, c = np.argwhere(bad)[0]
    row = int(rows[r])
    _warn_singletons(f"row {row} (mask {int(masks[row])}) is the singleton of task "
                     f"{names[int(c)]!r} with gain {float(vals[r, c])!r}", int(bad.sum()))
    out = np.array(gains, dtype=np.float64, copy=True)
    out[rows] = np.where(bad, 0.0, vals)
    return out


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
            for k, v in meta.items()}


def check_task_names(task_names: object, *, stripped: bool = False) -> tuple[str, ...]:
    """``task_names`` as a tuple of str, refused (``InputTypeError``/``InputError``) when it is
    no collection of names, names a task twice, has an empty or unprintable name, or, with
    ``stripped``, a name with outer whitespace (no file keeps it: readers strip cells)."""
    _check_names_type(task_names)
    names = tuple(str(t) for t in task_names)   # type: ignore[attr-defined]
    if len(set(names)) != len(names):
        raise InputError(f"task names must be distinct, got {list(names)}")
    if any(not t.strip() for t in names):
        raise InputError(f"task names must not be empty, got {list(names)}")
    spaced = next((t for t in names if t != t.strip()), None) if stripped else None
    if spaced is not None:   # every reader strips cells: ' y' would come back as 'y'
        raise InputError(f"task name {spaced!r} has leading or trailing whitespace, which "
                         "no file keeps (readers strip cells); use "
                         f"{spaced.strip()!r}")
    check_printable_names(names)
    return names


def check_printable_names(names: Sequence[str]) -> None:
    """``InputError`` for a task name holding a control character (line break, tab, NUL...):
    it would break every one-line message, table row and file line that shows it."""
    odd = next((t for t in names if any(unicodedata.category(c) == "Cc" for c in t)), None)
    if odd is not None:
        raise InputError(f"task name {odd!r} holds a control character (a line break, tab or "
                         "NUL would break every one-line message and file row)")


#: Types that are sequences but never a list of task names.
_NAME_TYPES = (str, bytes)


def _check_names_type(task_names: object) -> None:
    """Task names must be a collection of names (list, tuple, array, pandas Index...): a bare
    string would silently become its letters, None is no list."""
    if isinstance(task_names, _NAME_TYPES) or not hasattr(task_names, "__iter__"):
        raise InputTypeError("task_names must be a sequence of names (list or tuple of str), "
                             f"got {type(task_names).__name__}")
    if isinstance(task_names, (set, frozenset)):  # no order: which column is which a guess
        raise InputTypeError("task_names must be an ordered sequence (list or tuple of str), "
                             f"got a {type(task_names).__name__}: column j is the j-th name")


#: Integers beyond this magnitude have no exact float64 (gains are float64 everywhere).
MAX_EXACT_INT = 2**53


def _as_numpy(values: object) -> np.ndarray:
    """``values`` as a numpy array: torch tensors through ``detach().cpu()`` (bfloat16, which
    numpy lacks, as float32), anything else through ``np.asarray``."""
    if isinstance(values, np.ndarray):
        return values
    if type(values).__module__.partition(".")[0] == "torch" and hasattr(values, "detach"):
        t = values.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return np.asarray(t.numpy())
    return np.asarray(values)


def _bool_at(values: list[Any] | tuple[Any, ...],
             at: tuple[int, ...] = ()) -> tuple[object, tuple[int, ...]] | None:
    """The first bool inside nested lists/tuples and its index, else None (numpy would read
    ``[True, 0.2]`` as ``[1.0, 0.2]``)."""
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)):
            return v, (*at, i)
        if isinstance(v, (list, tuple)):
            found = _bool_at(v, (*at, i))
            if found is not None:
                return found
    return None


def meta_dict(meta: object) -> dict[str, Any]:
    """``meta`` (a mapping or None) as a fresh dict; anything else is an ``InputTypeError``."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InputTypeError(f"meta must be a mapping (provenance: split, seed, source...), "
                             f"got {type(meta).__name__}")
    return dict(meta)


def real_matrix(values: object, name: str, *, copy: bool = True) -> FloatArray:
    """``values`` as a float64 array (a copy unless ``copy=False`` and it already is one). Lists,
    tuples, DataFrames, torch tensors and numpy arrays of ints and floats are accepted; bools,
    strings, complex numbers, dates and objects that are not real numbers are type errors (numpy
    would turn them into 0/1, parse them, drop the imaginary part); ``None`` in an object array
    (or a pandas ``NA``) is a missing entry (NaN); integers beyond 2**53 are refused (no exact
    float64)."""
    if values is None:
        raise InputTypeError(f"{name} must be a numeric array of real numbers, got None")
    found = _bool_at(values) if isinstance(values, (list, tuple)) else None
    if found is not None:
        raise InputTypeError(f"{name} must hold real numbers, got bool {found[0]!r} at index "
                             f"{found[1]}")
    try:
        raw = _as_numpy(values)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputTypeError(f"{name} must be a numeric array of real numbers (ragged or mixed "
                             f"rows?), got {type(values).__name__}: {exc}") from exc
    kind = raw.dtype.kind
    if kind not in "iufO":
        what = {"b": "bool", "U": "str", "S": "bytes", "c": "complex", "M": "datetime",
                "m": "timedelta"}.get(kind, kind)
        raise InputTypeError(f"{name} must be a numeric array of real numbers, got dtype "
                             f"{raw.dtype} ({what} values)")
    if kind == "O":
        flat = raw.reshape(-1)
        clean = np.empty(flat.shape[0], dtype=np.float64)
        for i, v in enumerate(flat):
            if v is None or type(v).__name__ == "NAType":
                clean[i] = np.nan
            elif not is_real(v):
                at = np.unravel_index(i, raw.shape) if raw.ndim else ()
                raise InputTypeError(f"{name} must hold real numbers, got {type(v).__name__} "
                                     f"{v!r:.40} at index {tuple(int(k) for k in at)}")
            elif isinstance(v, (int, np.integer)) and abs(int(v)) > MAX_EXACT_INT:
                raise InputError(f"{name} holds the integer {int(v)}, which has no exact float64 "
                                 f"(|value| > 2**53); pass floats")
            else:
                clean[i] = float(v)
        return clean.reshape(raw.shape)
    if kind in "iu" and raw.size:
        top = max(abs(int(raw.min())), abs(int(raw.max())))
        if top > MAX_EXACT_INT:
            raise InputError(f"{name} holds the integer {top if raw.max() >= top else -top}, "
                             f"which has no exact float64 (|value| > 2**53); pass floats")
    if not copy and raw.dtype == np.float64:
        return raw
    return np.array(raw, dtype=np.float64, copy=True)


def _origin(data: object) -> str:
    return f"file {os.fspath(data)!r}" if isinstance(data, (str, os.PathLike)) else "the frame"


class _Where(Sequence[str]):
    """Lazy row locations for messages: ``file 'x' line 7`` or ``row 3`` (no string per row)."""

    def __init__(self, fmt: str, keys: Sequence[Any]) -> None:
        self.fmt = fmt
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return _Where(self.fmt, self.keys[i])
        return self.fmt.format(self.keys[i])

    def pick(self, rows: Sequence[int]) -> _Where:
        return _Where(self.fmt, [self.keys[i] for i in rows])


def _bad_members(where: str, group: list[str], index: Mapping[str, int],
                 names: Sequence[str]) -> None:
    """Raise the message for a ``tasks`` cell that is empty, names a task twice or an unknown
    one."""
    if not group:
        raise InputError(f"{where}: empty combination in column 'tasks'")
    unknown = [t for t in group if t not in index]
    if unknown:
        raise InputError(f"{where}: combination {group!r} names unknown tasks {unknown}; known: "
                         f"{list(names)}")
    dup = next(t for t in group if group.count(t) > 1)
    raise InputError(f"{where}: combination {group!r} names task {dup!r} twice")


def _bad_tidy_row(where: str, m: int, t: str, j: int, n: int, names: Sequence[str]) -> None:
    """Raise the message for a tidy row whose task, mask or (mask, task) pair is wrong."""
    if j < 0:
        raise InputError(f"{where}: unknown task {t!r}; known: {list(names)}")
    if m <= 0 or m >> n:
        raise InputError(f"{where}: mask {m} is not a combination of {n} tasks")
    members = [names[k] for k in mask_to_indices(m)]
    if not (m >> j) & 1:
        raise InputError(f"{where}: gain given for task {t!r} outside its combination {members}")
    raise InputError(f"{where}: duplicate gain for task {t!r} in combination {members}")


def _split_members(value: object, known: set[str]) -> list[str]:
    """Member names of a ``tasks`` cell: split on ``+``, ``|`` or ``;`` when the cell has one
    (names may hold spaces and commas), else the whole cell if it is a known task, else spaces."""
    text = str(value).strip()
    if text in known:
        return [text]
    if re.search(r"[+|;]", text):
        parts = [t.strip() for t in re.split(r"[+|;]", text) if t.strip()]
        if all(t in known for t in parts) or not known:
            return parts
        return _segment(text, known) or parts   # names that hold a separator: 'C++'
    return [t for t in text.split() if t]


def _segment(text: str, known: set[str], count: int | None = None) -> list[str] | None:
    """``text`` as known names joined by one of ``+ | ;`` (the longest name first at each
    step; exactly ``count`` names when given: ``'a+b'`` is two names for a mask of two bits even
    when ``'a+b'`` is a task too), or ``None`` when it is not such a join."""
    by_length = sorted(known, key=len, reverse=True)
    failed: set[tuple[int, int | None]] = set()   # each (position, names left) tried once

    def rest(at: int, left: int | None) -> list[str] | None:
        if (at, left) in failed or left == 0:
            return None
        for name in by_length:
            end = at + len(name)
            if text.startswith(name, at) and (end == len(text) or text[end] in "+|;"):
                if end == len(text):
                    if left is None or left == 1:
                        return [name]
                    continue
                tail = rest(end + 1, None if left is None else left - 1)
                if tail is not None:
                    return [name, *tail]
        failed.add((at, left))
        return None

    return rest(0, count)


def _names_by_bit(row_masks: Sequence[int], task_col: Sequence[str], tasks_col: Sequence[Any],
                  where: Sequence[str], data: object) -> list[str]:
    """Task names in bit order for a table with ``mask`` and ``tasks`` columns but no
    ``task_names``: a row's members, listed as ``to_csv`` writes them (ascending bits), name its
    bits; every row must then agree (its ``task`` inside its mask, its members = its bits)."""
    by_bit: dict[int, str] = {}
    bit_of: dict[str, int] = {}
    # a combination's rows name its members in column 'task': its cell is split into those
    # names (as many as the mask has bits), so a name holding '+' ('a+b') is not two names
    members_of: dict[int, set[str]] = {}
    for m, t in zip(row_masks, task_col):
        members_of.setdefault(m, set()).add(t)
    split: dict[tuple[str, int], list[str]] = {}   # one split per distinct (cell, mask)
    keys = []
    for m, v in zip(row_masks, tasks_col):
        key = (str(v), m)
        if key not in split:
            own = members_of[m]
            group = _split_members(key[0], own)
            if 0 < m < 1 << 64 and (len(group) != m.bit_count() or set(group) != own):
                group = _segment(key[0].strip(), own, m.bit_count()) or group
            split[key] = group
        keys.append(key)
    for (_, m), group in split.items():   # first appearance first, as the rows come
        if m <= 0 or m >> 64:
            continue   # reported below with its line
        bits = mask_to_indices(m)
        if len(bits) == len(group) == len(set(group)):
            for b, t in zip(bits, group):
                if b not in by_bit and t not in bit_of:
                    by_bit[b] = t
                    bit_of[t] = b
    bad = {key for key, group in split.items() if key[1] <= 0 or key[1] >> 64
           or set(group) != {by_bit.get(b) for b in mask_to_indices(key[1])}}
    for r, (key, t) in enumerate(zip(keys, task_col)):
        if key in bad or t not in bit_of:
            m = key[1]
            if m <= 0 or m >> 64:
                raise InputError(f"{where[r]}: mask {m} is not a combination of at most 64 "
                                 "tasks")
            raise InputError(f"{where[r]}: mask {m} and tasks {str(tasks_col[r]).strip()!r} "
                             "disagree with the other rows about which bit is which task "
                             "(pass task_names in bit order)")
    top = max(by_bit) + 1 if by_bit else 0
    missing = [b for b in range(top) if b not in by_bit]
    if missing:
        raise InputError(f"{_origin(data)}: no row names the task of bit {missing[0]} of column "
                         "'mask' (pass task_names in bit order)")
    return [by_bit[b] for b in range(top)]


def _t_names_fit(row_masks: Sequence[int], tasks_col: Sequence[Any], labels: set[str]) -> bool:
    """Whether every ``tasks`` cell names the tasks ``t<j>`` of its mask's bits ``j``."""
    for cell, m in dict.fromkeys(zip((str(v) for v in tasks_col), row_masks)):
        if m <= 0 or m >> 64 or set(_split_members(cell, labels)) != {
                f"t{b}" for b in mask_to_indices(m)}:
            return False
    return True


#: The numbers a gain or mask file may hold: ASCII decimal or scientific notation, or a spelling
#: of inf/nan; never Python-only forms (``1_0``) or other scripts' digits (``٣``), which
#: ``float``/``int`` accept and would silently read as other values.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
                     r"|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def _plain_text(col: Sequence[str]) -> bool:
    """Whether a column of text cannot hold a Python-only number: ASCII and no ``_`` (one
    pass over the joined text, so the fast paths stay fast)."""
    joined = "".join(col)
    return joined.isascii() and "_" not in joined


def _fast_masks(col: Sequence[Any]) -> list[int] | None:
    """Masks of a clean column in one pass (text of digits or ints); ``None`` -> check per row."""
    kinds = {type(v) for v in col}
    try:
        if kinds <= {str}:
            return [int(v, 10) for v in col] if _plain_text(col) else None
        if kinds <= {int, np.int64, np.int32, np.uint64, np.uint32}:
            return [int(v) for v in col]
    except ValueError:
        return None
    return None


def _fast_gains(col: Sequence[Any], allow_nan: bool) -> FloatArray | None:
    """Gains of a clean column in one pass (numeric text or numbers); ``None`` -> check per row."""
    kinds = {type(v) for v in col}
    if not (kinds <= {str} or kinds <= {float, int, np.float64, np.float32, np.int64}):
        return None
    if kinds <= {str} and not _plain_text(col):
        return None
    try:
        g = np.array(col, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    ok = np.isfinite(g) | np.isnan(g) if allow_nan else np.isfinite(g)
    return g if ok.all() else None


def _task_label(value: object, where: str) -> str:
    label = str(value).strip() if value is not None else ""
    if not label or (isinstance(value, float) and math.isnan(value)):
        raise InputError(f"{where}: empty task name in column 'task'")
    return label


def _parse_mask(value: object, where: str) -> int:
    """An integer mask from a cell: ``3`` or ``3.0``; never a truncated ``3.5``."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{where}: column 'mask' must hold integers, got the bool {value}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise InputError(f"{where}: column 'mask' must hold integers, got {value!r}")
    text = str(value).strip()
    if not _NUMBER.fullmatch(text):   # '1_1' is not 11, nor '٣' 3
        raise InputError(f"{where}: column 'mask' must hold integers (ASCII digits), got "
                         f"{text!r}")
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        f = math.nan
    if math.isfinite(f) and f.is_integer():
        return int(f)
    raise InputError(f"{where}: column 'mask' must hold integers, got {text!r}")


def _parse_gain(value: object, where: str, allow_nan: bool) -> float:
    """A finite float from a cell; the text of a non-number is shown."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{where}: column 'gain' must hold numbers, got the bool {value}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    else:
        text = str(value).strip()
        if not text:
            v = math.nan
        elif not _NUMBER.fullmatch(text):   # '1_0' is not 10, nor '٠.٥' 0.5
            raise InputError(f"{where}, column 'gain': gain {text!r} is not a number (ASCII "
                             "decimal or scientific notation)")
        else:
            v = float(text)
    if math.isnan(v) and allow_nan:
        return v
    if not math.isfinite(v):
        raise InputError(f"{where}: gain must be a finite number, got {value!r}")
    return v


def _read_bytes(p: str) -> bytes:
    """The bytes of a file; a FIFO (``<(zcat x.gz)``) is read to its end without waiting for a
    writer that never comes (opened non-blocking: no writer reads as empty, not a hang)."""
    if not stat.S_ISFIFO(os.stat(p).st_mode):
        return Path(p).read_bytes()
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        os.set_blocking(fd, True)  # with a writer: block for its data; without: EOF at once
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(path: PathLike, what: str = "file") -> str:
    """The text of a UTF-8 file; ``InputError`` naming ``what`` and the file when it is missing,
    unreadable, binary (NUL bytes) or not UTF-8 (with the line of the first bad byte)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"{what} must be a path (str or os.PathLike), got "
                             f"{type(path).__name__}")
    p = os.fspath(path)
    try:
        data = _read_bytes(p)
    except FileNotFoundError:
        raise InputError(f"cannot read {what} {p!r}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {what} {p!r}: it is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"cannot read {what} {p!r}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {p!r}: {exc.strerror or exc}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise InputError(f"{what} {p!r} is a binary file, not text (NUL byte on line {line})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{what} {p!r} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line "
                         f"{line}") from None
    return text


def read_matrix(path: PathLike, *, name: str = "file") -> FloatArray:
    """Read a numeric matrix without header; comma-, semicolon- or whitespace-separated (detected
    per line; one trailing separator is allowed).

    Raises ``InputError`` naming the file and line for ragged rows or non-numeric fields.
    """
    text = read_text(path, name)
    p = os.fspath(path)
    plain = text.isascii() and "_" not in text   # else check each field: float('1_0') is 10
    rows: list[list[float]] = []
    width = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        sep = ";" if ";" in line else ("," if "," in line else None)  # per line, as documented
        fields = [f for f in re.split(r"\s+", line) if f != ""] if sep is None \
            else [f.strip() for f in line.split(sep)]
        if sep is not None and len(fields) > 1 and fields[-1] == "":
            fields.pop()  # one trailing separator (spreadsheet exports) ends the row
        try:
            if not plain and not all(_NUMBER.fullmatch(f) for f in fields):
                raise ValueError
            values = [float(f) for f in fields]
        except ValueError:
            col, f = next((c, f) for c, f in enumerate(fields, start=1) if not _is_float(f))
            shown = f if len(f) <= 40 else f[:37] + "..."
            raise InputError(f"{name} {p!r} line {lineno}, column {col}: non-numeric field "
                             f"{shown!r}") from None
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise InputError(f"{name} {p!r} line {lineno}: {len(values)} fields, "
                             f"expected {width} like the first row (ragged rows)")
        rows.append(values)
    if not rows:
        raise InputError(f"{name} {p!r} is empty (no numeric rows)")
    return np.array(rows, dtype=np.float64)


def _is_float(text: str) -> bool:
    """Whether ``text`` is a number a gain or mask file may hold (see ``_NUMBER``)."""
    if not _NUMBER.fullmatch(text):
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_parquet(path: PathLike) -> bool:
    return os.fspath(path).lower().endswith((".parquet", ".pq"))


def _read_tidy(path: PathLike) -> tuple[dict[str, list[Any]], Sequence[str]]:
    """Columns of a tidy CSV/Parquet file and the location of each row (``file 'x' line 3``)."""
    p = os.fspath(path)
    if _is_parquet(p):
        import pandas as pd

        if not os.path.exists(p):
            raise InputError(f"cannot read tidy gain file {p!r}: no such file")
        if os.path.isdir(p):
            raise InputError(f"cannot read tidy gain file {p!r}: it is a directory, not a file")
        if not stat.S_ISREG(os.stat(p).st_mode):
            raise InputError(f"cannot read tidy gain file {p!r}: Parquet needs a regular file "
                             "(not a FIFO or a device)")
        try:
            df = pd.read_parquet(p)
        except ImportError as exc:
            raise InputError(f"reading Parquet {p!r} needs pyarrow: pip install "
                             f"\"mtgfast[parquet]\"") from exc
        except Exception as exc:  # pyarrow raises its own types (ArrowInvalid...) for bad files
            why = " ".join(str(exc).split())[:200]
            raise InputError(f"cannot read tidy gain file {p!r}: not a readable Parquet file "
                             f"({type(exc).__name__}: {why})") from None
        return ({str(c): df[c].tolist() for c in df.columns},
                [f"file {p!r} row {i + 1}" for i in range(len(df))])
    text = read_text(p, "tidy gain file")
    first = next((ln for ln in text.splitlines() if ln.strip()), None)
    if first is None:
        raise InputError(f"tidy gain file {p!r} is empty: expected a header line like "
                         "'mask,task,gain'")
    delim = next((d for d in (",", "\t", ";") if d in first), None)
    try:
        if delim is None:
            rows = [ln.split() for ln in text.splitlines()]
            numbers = None
        elif '"' not in text:   # one record per line: line numbers are the positions
            rows = list(csv.reader(text.splitlines(), delimiter=delim))
            numbers = None
        else:                   # quoted fields may span lines: ask the reader
            reader = csv.reader(io.StringIO(text), delimiter=delim, strict=True)
            pairs = []
            try:
                for row in reader:
                    pairs.append((reader.line_num, row))
            except csv.Error as exc:   # an unterminated quote would swallow the lines after it
                raise InputError(f"cannot parse tidy gain file {p!r} line {reader.line_num}: "
                                 f"{exc} (a quote opened and not closed?)") from None
            numbers = [i for i, _ in pairs]
            rows = [row for _, row in pairs]
    except csv.Error as exc:
        raise InputError(f"cannot parse tidy gain file {p!r}: {exc}") from None
    kept = [i for i, row in enumerate(rows) if row and (len(row) > 1 or row[0].strip())]
    if not kept:
        raise InputError(f"tidy gain file {p!r} has no header line: expected one like "
                         "'mask,task,gain'")
    line_of = (lambda i: i + 1) if numbers is None else numbers.__getitem__
    header = [h.strip() for h in rows[kept[0]]]
    if len(set(header)) != len(header):
        raise InputError(f"tidy gain file {p!r} line {line_of(kept[0])}: duplicate column names "
                         f"{header}")
    body = [rows[i] for i in kept[1:]]
    width = len(header)
    for k, row in enumerate(body):
        if len(row) != width:
            raise InputError(f"tidy gain file {p!r} line {line_of(kept[k + 1])}: {len(row)} "
                             f"fields, expected {width} like the header {header}")
    columns = list(zip(*body)) if body else [() for _ in header]
    cols: dict[str, list[Any]] = {h: list(c) for h, c in zip(header, columns)}
    return cols, _Where(f"file {p!r} line {{}}", [line_of(i) for i in kept[1:]])


def _looks_tidy(path: PathLike) -> bool:
    if _is_parquet(path):
        return True
    text = read_text(path, "gain file")
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.lstrip().startswith(("{", "[")):
        raise InputError(f"gain file {os.fspath(path)!r} looks like JSON (line 1 starts with "
                         f"{first.lstrip()[0]!r}); gain tables are read from a tidy CSV/Parquet "
                         "file (header with 'gain') or an MTG-Net gain matrix with its mask file")
    return bool(re.search(r"[A-Za-z_]{2,}", first)) and "gain" in first.lower()


def load_table(path: PathLike, masks_path: PathLike | None = None, *,
               task_names: Sequence[str] | None = None, scale: float = 1.0,
               split: str | None = None, meta: Mapping[str, Any] | None = None) -> GainTable:
    """Load a gain table whatever its format: tidy CSV/Parquet (header with ``gain``), or an
    MTG-Net gain matrix, which needs ``masks_path`` (the 0/1 mask file of the same rows).

    With a tidy table, a ``masks_path`` puts its rows in the mask file's order (the table must
    hold exactly those combinations)."""
    _check_scale(scale)
    if _looks_tidy(path):
        table = GainTable.from_tidy(path, task_names, split=split,
                                    meta={"source": os.fspath(path), **meta_dict(meta)})
        if scale != 1.0:
            table = table.with_gains(table.gains * float(scale))
        if masks_path is not None:
            dense = read_matrix(masks_path, name="mask file")
            _check_mask_matrix(dense, masks_path)
            if dense.shape[1] != table.n_tasks:
                raise InputError(f"mask file {os.fspath(masks_path)!r} has {dense.shape[1]} "
                                 f"columns but {os.fspath(path)!r} has {table.n_tasks} tasks")
            if dense.shape[0] != len(table):
                raise InputError(f"mask file {os.fspath(masks_path)!r} has {dense.shape[0]} "
                                 f"rows but {os.fspath(path)!r} holds {len(table)} combinations")
            table = table.reindex(dense_to_masks(dense.astype(np.uint8)))
        return table
    if masks_path is None:
        raise InputError(f"{os.fspath(path)!r} is a bare gain matrix: its mask file is needed "
                         "(--masks)")
    info = meta_dict(meta)
    if split is not None:
        info.setdefault("split", split)
    return GainTable.from_mtgnet(masks_path, path, task_names, scale=scale, meta=info)


def _check_scale(scale: object) -> float:
    if not is_real(scale):
        raise InputTypeError(f"scale must be a number, got {type(scale).__name__}")
    if not math.isfinite(float(scale)) or float(scale) == 0.0:
        raise InputError(f"scale must be a finite non-zero number, got {scale!r}")
    return float(scale)


def _check_mask_matrix(dense: FloatArray, masks_path: PathLike) -> None:
    """0/1 entries, 1 to 64 columns, no empty row (1-based line/column in the messages)."""
    if not np.isin(dense, (0.0, 1.0)).all():
        r, c = np.argwhere(~np.isin(dense, (0.0, 1.0)))[0]
        raise InputError(f"mask file {os.fspath(masks_path)!r} must hold only 0 and 1, got "
                         f"{dense[r, c]} at row {int(r) + 1}, column {int(c) + 1}")
    if dense.shape[1] == 0 or dense.shape[1] > 64:
        raise InputError(f"a gain table has 1 to 64 tasks, the mask file has {dense.shape[1]}")
    empty = ~dense.any(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty)[0]) + 1
        raise InputError(f"mask file {os.fspath(masks_path)!r} row {row} is all zeros (empty "
                         "combination)")
