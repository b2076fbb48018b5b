"""Gain tables: measured or estimated transfer gains of task combinations.

A table holds ``masks`` (uint64, shape ``(n_masks,)``) and ``gains`` (float64, shape
``(n_masks, n_tasks)``) where ``gains[i, j]`` is the gain of task ``j`` trained in combination
``masks[i]`` and NaN when task ``j`` is not in it. Singletons have gain 0 by definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InputError
from .masks import MaskArray, as_masks, check_n_tasks, masks_to_dense

FloatArray = npt.NDArray[np.float64]

__all__ = ["GainTable", "check_gains"]


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
