"""Base class of gain estimators: ``fit`` on a measured :class:`GainTable`, ``predict`` masks."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, TypeVar

import numpy as np

from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks

__all__ = ["GainEstimator", "check_table"]

E = TypeVar("E", bound="GainEstimator")


def check_table(table: object, name: str = "table") -> GainTable:
    """``table`` itself if it is a :class:`GainTable`, else ``InputTypeError``."""
    if not isinstance(table, GainTable):
        raise InputTypeError(f"{name} must be a GainTable, got {type(table).__name__}")
    return table


class GainEstimator(ABC):
    """Predicts per-task gains of combinations from a measured gain table.

    Subclasses implement ``_fit(table)`` (validate parameters, learn state ending in ``_``) and
    ``_predict(masks)`` returning ``(n_masks, n_tasks)`` float64 gains, NaN outside each mask.
    """

    def fit(self: E, table: GainTable) -> E:
        """Learn from ``table`` (measured gains); returns ``self``."""
        check_table(table)
        self._fit(table)
        self.task_names_: tuple[str, ...] = table.task_names
        self.n_tasks_: int = table.n_tasks
        return self

    def predict(self, masks: object) -> FloatArray:
        """Predicted gains of ``masks``: shape ``(n_masks, n_tasks)``, NaN outside each mask."""
        if not hasattr(self, "n_tasks_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(table) first")
        return self._predict(as_masks(masks, self.n_tasks_))

    def predict_table(self, masks: object, **meta: Any) -> GainTable:
        """Predictions wrapped as a :class:`GainTable` (``meta`` records the estimator)."""
        m = as_masks(masks, getattr(self, "n_tasks_", None))
        return GainTable(m, self.predict(m), self.task_names_,
                         {"estimator": type(self).__name__, **meta})

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (scikit-learn convention: ``__init__`` only stores them)."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def _fit(self, table: GainTable) -> None: ...

    @abstractmethod
    def _predict(self, masks: MaskArray) -> FloatArray: ...


def pair_matrix(table: GainTable, *, what: str = "HOA") -> FloatArray:
    """``P[j, k]`` = gain of task ``j`` trained with ``k`` alone (diagonal 0), from the pair rows.

    Raises ``InputError`` naming the missing pairs.
    """
    n = table.n_tasks
    p = np.zeros((n, n))
    have = np.zeros((n, n), dtype=bool)
    member = table.member()
    rows = np.flatnonzero(member.sum(axis=1) == 2)
    for r in rows:
        j, k = np.flatnonzero(member[r])
        p[j, k] = table.gains[r, j]
        p[k, j] = table.gains[r, k]
        have[j, k] = have[k, j] = True
    iu = np.triu_indices(n, 1)
    missing = [(table.task_names[a], table.task_names[b])
               for a, b in zip(*iu) if not have[a, b]]
    if missing:
        shown = ", ".join(f"{a}+{b}" for a, b in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputError(f"{what} needs the gains of every pair of tasks; missing {len(missing)} "
                         f"pair(s): {shown}{more}")
    return p
