"""TAG aggregation (Fifty et al. 2021): a group's gain for task ``j`` from inter-task affinities.

``A[i, j]`` is the affinity of task ``i``'s update onto task ``j`` (lookahead loss change of ``j``);
``gain_j(C) = mean_{i in C, i != j} A[i, j]``, 0 for singletons, NaN outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable, check_task_names, real_matrix
from ..masks import MaskArray, all_masks, check_n_tasks
from .base import GainEstimator, pair_matrix
from .hoa import aggregate_pairs

__all__ = ["TAG"]


class TAG(GainEstimator):
    """Group gains aggregated from an ``N x N`` affinity matrix.

    ``TAG(affinity=A).fit(table)`` takes task names from ``table``; ``TAG().fit(table)`` reads the
    affinities off the pair rows of ``table`` (``A[i, j]`` = gain of ``j`` in ``{i, j}``, which
    makes it HOA on that table); ``TAG().fit_affinity(A, task_names)`` needs no table.
    """

    def __init__(self, affinity: object = None, *, scale: float = 1.0,
                 backend: Literal["auto", "numpy", "numba"] = "auto") -> None:
        self.affinity = affinity
        self.scale = scale
        self.backend = backend

    def fit_affinity(self, matrix: object, task_names: Sequence[str]) -> TAG:
        """Fit from an affinity matrix alone (e.g. the output of a TAG training run)."""
        names = check_task_names(task_names)   # a bare string would become its letters
        n = check_n_tasks(len(names))
        self._set_affinity(matrix, n)
        self.task_names_ = names
        self.n_tasks_ = n
        return self

    def _set_affinity(self, matrix: object, n: int) -> None:
        if self.backend not in ("auto", "numpy", "numba"):
            raise InputError(f"backend must be 'auto', 'numpy' or 'numba', got {self.backend!r}")
        if isinstance(self.scale, (bool, np.bool_)) or \
                not isinstance(self.scale, (int, float, np.integer, np.floating)):
            raise InputTypeError(f"scale must be a finite number, got {self.scale!r}")
        if not np.isfinite(self.scale):
            raise InputError(f"scale must be a finite number, got {self.scale!r}")
        a = real_matrix(matrix, "affinity")   # bool, text, ragged: a type error
        if a.shape != (n, n):
            raise InputError(f"affinity must be an ({n}, {n}) matrix for {n} tasks, got {a.shape}")
        off = ~np.eye(n, dtype=bool)
        if not np.all(np.isfinite(a[off])):
            raise InputError("affinity must be finite off the diagonal")
        np.fill_diagonal(a, 0.0)
        with np.errstate(over="ignore"):   # an overflow is the InputError below
            scaled = a * float(self.scale)
        if not np.all(np.isfinite(scaled)):
            raise InputError(f"affinity * scale overflows (largest |affinity| "
                             f"{np.max(np.abs(a)):g}, scale {self.scale!r})")
        self.affinity_ = scaled

    def _fit(self, table: GainTable) -> None:
        if self.affinity is None:
            pairs = pair_matrix(table, what="TAG (affinities from pairs)")
            self._set_affinity(pairs.T, table.n_tasks)
        else:
            self._set_affinity(self.affinity, table.n_tasks)

    def _predict(self, masks: MaskArray) -> FloatArray:
        # aggregate_pairs averages p[j, k] over k; TAG averages A[k, j] over k: p = A.T
        return aggregate_pairs(masks, self.affinity_.T, backend=self.backend)

    def predict_all(self) -> GainTable:
        """Predictions for all ``2**N - 1`` combinations (lex order)."""
        return self.predict_table(all_masks(self.n_tasks_))
