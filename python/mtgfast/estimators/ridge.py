"""A per-task ridge surrogate: a task's gain as a linear function of which partners share its group.

``gain_j(C) = b_j + sum_{k in C, k != j} w_jk`` (the linear surrogate of Li, Nguyen and Zhang,
TMLR 2023), fitted per task on the measured combinations of >= 2 tasks that hold it, the
intercept unpenalised and the penalty chosen on a grid by the exact leave-one-out error (the hat
matrix's shortcut). A low-capacity estimate to blend with MTG-Net (``BlendMTGNet(base="ridge")``):
on smooth tables it ranks unmeasured combinations better than the network does from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, masks_to_dense
from .base import GainEstimator

__all__ = ["DEFAULT_PENALTIES", "RidgeSurrogate"]

#: the penalty grid (as scikit-learn's RidgeCV examples: 1e-4 .. 1e2, two per decade)
DEFAULT_PENALTIES: tuple[float, ...] = tuple(float(x) for x in np.logspace(-4, 2, 13))
#: fewer rows than this for a task: its gain is the mean of its rows (no penalty to choose)
MIN_ROWS = 3


class RidgeSurrogate(GainEstimator):
    """Per-task ridge regression on the partners' indicators, the penalty by leave-one-out.

    ``penalties``: the grid the leave-one-out error chooses from (first of the smallest errors).
    After ``fit``: ``coef_`` ``(N, N)`` (row j: the intercept, then the weights of the other
    tasks in task order), ``penalty_`` per task (NaN: too few rows, the mean is used) and
    ``loo_``, the leave-one-out predictions of the table's own rows (NaN where not held out).
    Singletons are predicted 0, their gain by definition.
    """

    def __init__(self, penalties: Sequence[float] | None = None) -> None:
        self.penalties = penalties

    def _grid(self) -> tuple[float, ...]:
        if self.penalties is None:
            return DEFAULT_PENALTIES
        try:
            grid = tuple(float(x) for x in self.penalties)
        except (TypeError, ValueError) as exc:
            raise InputError(f"penalties must be a sequence of numbers, got "
                             f"{self.penalties!r}") from exc
        if not grid or not all(np.isfinite(x) and x >= 0.0 for x in grid):
            raise InputError(f"penalties must be a non-empty sequence of finite numbers >= 0, "
                             f"got {self.penalties!r}")
        return grid

    def _fit(self, table: GainTable) -> None:
        grid = self._grid()
        n = table.n_tasks
        mem = masks_to_dense(table.masks, n)
        size = mem.sum(axis=1)
        self.coef_ = np.zeros((n, n))
        self.penalty_ = np.full(n, np.nan)
        self.loo_ = np.full(table.gains.shape, np.nan)
        for t in range(n):
            rows = np.flatnonzero(mem[:, t] & (size >= 2) & np.isfinite(table.gains[:, t]))
            y = table.gains[rows, t]
            if rows.size < MIN_ROWS:
                self.coef_[t, 0] = float(y.mean()) if y.size else 0.0
                continue
            x = np.hstack([np.ones((rows.size, 1)), np.delete(mem[rows], t, axis=1)])
            best: tuple[float, FloatArray, FloatArray, float] | None = None
            for lam in grid:
                pen = np.full(n, lam)
                pen[0] = 0.0                         # the intercept is not shrunk
                inv = np.linalg.pinv(x.T @ x + np.diag(pen))
                beta = inv @ x.T @ y
                h = np.einsum("ij,jk,ik->i", x, inv, x)
                fit = x @ beta
                loo = y - (y - fit) / np.maximum(1.0 - h, 1e-9)
                err = float(np.mean((y - loo) ** 2))
                if best is None or err < best[0]:
                    best = (err, beta, loo, lam)
            assert best is not None
            self.coef_[t] = best[1]
            self.loo_[rows, t] = best[2]
            self.penalty_[t] = best[3]

    def _predict(self, masks: MaskArray) -> FloatArray:
        n = self.n_tasks_
        out = masks_to_dense(masks, n)
        multi = out.sum(axis=1) >= 2
        pred = np.where(out, 0.0, np.nan)
        for t in range(n):
            sel = out[:, t] & multi
            if sel.any():
                x = np.hstack([np.ones((int(sel.sum()), 1)), np.delete(out[sel], t, axis=1)])
                pred[sel, t] = x @ self.coef_[t]
        return pred
