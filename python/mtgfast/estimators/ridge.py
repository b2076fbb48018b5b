"""A per-task ridge surrogate: a task's gain as a linear function of which partners share its group.

``gain_j(C) = b_j + sum_{k in C, k != j} w_jk`` (the linear surrogate of Li, Nguyen and Zhang,
TMLR 2023), fitted per task on the measured combinations of >= 2 tasks that hold it, the
intercept unpenalised and the penalty chosen on a grid by the exact leave-one-out error (the hat
matrix's shortcut). A low-capacity estimate to blend with MTG-Net (``BlendMTGNet(base="ridge")``):
on smooth tables it ranks unmeasured combinations better than the network does from the same rows.
Its uncertainty is the ridge posterior's: coefficients ``N(beta, s2 (X'X + P)^-1)`` with ``s2``
the leave-one-out mean squared error (``predict(return_std=True)``, ``predict_draws``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..checks import check_int
from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks, masks_to_dense
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
    tasks in task order), ``penalty_`` per task (NaN: too few rows, the mean is used),
    ``loo_``, the leave-one-out predictions of the table's own rows (NaN where not held out),
    and ``cov_`` ``(N, N, N)``, each task's coefficient covariance ``s2 (X'X + P)^-1`` (0 where
    the mean is used). Singletons are predicted 0, their gain by definition.
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
        self.cov_ = np.zeros((n, n, n))
        for t in range(n):
            rows = np.flatnonzero(mem[:, t] & (size >= 2) & np.isfinite(table.gains[:, t]))
            y = table.gains[rows, t]
            if rows.size < MIN_ROWS:
                self.coef_[t, 0] = float(y.mean()) if y.size else 0.0
                continue
            x = np.hstack([np.ones((rows.size, 1)), np.delete(mem[rows], t, axis=1)])
            best: tuple[float, FloatArray, FloatArray, float, FloatArray] | None = None
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
                    best = (err, beta, loo, lam, inv)
            assert best is not None
            self.coef_[t] = best[1]
            self.loo_[rows, t] = best[2]
            self.penalty_[t] = best[3]
            inv = best[4]
            self.cov_[t] = best[0] * 0.5 * (inv + inv.T)   # s2 (X'X + P)^-1, symmetric

    def _design(self, masks: object) -> tuple[npt.NDArray[np.bool_], list[FloatArray | None]]:
        """Membership, and per task the rows (intercept, partners) of the masks holding it in a
        combination of >= 2 tasks (None where none does)."""
        if not hasattr(self, "n_tasks_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(table) "
                             "first")
        n = self.n_tasks_
        out = masks_to_dense(as_masks(masks, n), n)
        multi = out.sum(axis=1) >= 2
        xs: list[FloatArray | None] = []
        for t in range(n):
            sel = out[:, t] & multi
            xs.append(np.hstack([np.ones((int(sel.sum()), 1)), np.delete(out[sel], t, axis=1)])
                      if sel.any() else None)
        return out, xs

    def _mean_std(self, out: npt.NDArray[np.bool_], xs: list[FloatArray | None],
                  with_std: bool) -> tuple[FloatArray, FloatArray | None]:
        """The fit on the design of :meth:`_design`, and its posterior spread ``sqrt(x' cov_j x)``."""
        multi = out.sum(axis=1) >= 2
        pred = np.where(out, 0.0, np.nan)
        std = np.where(out, 0.0, np.nan) if with_std else None
        for t, x in enumerate(xs):
            if x is not None:
                sel = out[:, t] & multi
                pred[sel, t] = x @ self.coef_[t]
                if std is not None:
                    std[sel, t] = np.sqrt(np.maximum(
                        np.einsum("ij,jk,ik->i", x, self.cov_[t], x), 0.0))
        return pred, std

    def predict(self, masks: object, *, return_std: bool = False) -> Any:
        """Gains ``(n_masks, N)`` (NaN outside each combination, 0 for singletons);
        ``return_std=True`` also returns the posterior spread ``sqrt(x' cov_j x)``."""
        if not isinstance(return_std, (bool, np.bool_)):
            raise InputTypeError(f"return_std must be a bool, got {return_std!r}")
        pred, std = self._mean_std(*self._design(masks), bool(return_std))
        return (pred, std) if return_std else pred

    def predict_draws(self, masks: object, n_draws: int, seed: int = 0) -> FloatArray:
        """``(n_draws, n_masks, N)`` predictions of coefficient draws from each task's posterior,
        centred on the fit and scaled so that their spread (``std(axis=0)``) estimates
        :meth:`predict`'s without bias: their mean is exactly the prediction. Seeded."""
        n_draws = check_int("n_draws", n_draws, 2)
        out, xs = self._design(masks)
        multi = out.sum(axis=1) >= 2
        rng = np.random.default_rng([int(seed), 0x5EED])
        n = self.n_tasks_
        draws = np.repeat(self._mean_std(out, xs, False)[0][None], n_draws, axis=0)
        for t, x in enumerate(xs):
            w, v = np.linalg.eigh(self.cov_[t])
            root = v * np.sqrt(np.maximum(w, 0.0))                    # cov = root @ root.T
            z = rng.standard_normal((n_draws, n))                    # drawn for every task,
            if x is None or not np.any(w > 0):                        # so tasks stay aligned
                continue
            z = (z - z.mean(axis=0)) * np.sqrt(n_draws / (n_draws - 1.0))
            sel = out[:, t] & multi
            draws[:, sel, t] += (z @ root.T) @ x.T
        return draws

    def _predict(self, masks: MaskArray) -> FloatArray:
        out = self.predict(masks)
        assert isinstance(out, np.ndarray)
        return out
