"""HOA (higher-order approximation, Standley et al. 2020): pairwise gains averaged over members.

``gain_j(C) = mean_{k in C, k != j} P[j, k]`` where ``P[j, k]`` is task ``j``'s gain trained with
``k`` alone; singletons get 0. Only the ``N (N - 1) / 2`` pairs need to be measured.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, masks_to_dense
from .base import GainEstimator, pair_matrix

__all__ = ["HOA", "aggregate_pairs"]

#: ``backend="auto"`` uses the numba kernel from this many masks on (below it, JIT costs more).
NUMBA_MIN_MASKS = 1 << 16


class HOA(GainEstimator):
    """Higher-order approximation from the pair rows of the fitted table.

    ``backend``: ``"numpy"`` (dense matrix product), ``"numba"`` (parallel bit loop, low memory) or
    ``"auto"`` (numba from 65,536 masks on).
    """

    def __init__(self, backend: Literal["auto", "numpy", "numba"] = "auto") -> None:
        self.backend = backend

    def _fit(self, table: GainTable) -> None:
        if self.backend not in ("auto", "numpy", "numba"):
            raise InputError(f"backend must be 'auto', 'numpy' or 'numba', got {self.backend!r}")
        self.pairs_ = pair_matrix(table, what="HOA")

    def _predict(self, masks: MaskArray) -> FloatArray:
        return aggregate_pairs(masks, self.pairs_, backend=self.backend)


def aggregate_pairs(masks: MaskArray, pairs: FloatArray, *,
                    backend: Literal["auto", "numpy", "numba"] = "auto") -> FloatArray:
    """``out[i, j] = mean_{k in masks[i], k != j} pairs[j, k]`` (0 for singletons, NaN outside).

    Shared by HOA (``pairs`` = pair gains) and TAG (``pairs`` = transposed affinities).
    """
    n = pairs.shape[0]
    p = np.ascontiguousarray(pairs, dtype=np.float64).copy()
    np.fill_diagonal(p, 0.0)
    use_numba = backend == "numba" or (backend == "auto" and masks.shape[0] >= NUMBA_MIN_MASKS)
    if use_numba:
        out = np.empty((masks.shape[0], n))
        _numba_kernel()(masks.view(np.int64), p, out)
        return out
    return _aggregate_numpy(masks, p)


def _aggregate_numpy(masks: MaskArray, p: FloatArray, chunk: int = 1 << 18) -> FloatArray:
    n = p.shape[0]
    out = np.empty((masks.shape[0], n))
    for s in range(0, masks.shape[0], chunk):
        d = masks_to_dense(masks[s:s + chunk], n).astype(np.float64)
        size = d.sum(axis=1, keepdims=True)
        sums = d @ p.T  # sums[i, j] = sum_k d[i, k] p[j, k]
        with np.errstate(invalid="ignore", divide="ignore"):
            block = np.where(size > 1, sums / np.maximum(size - 1, 1), 0.0)
        block[d == 0] = np.nan
        out[s:s + chunk] = block
    return out


def _numba_kernel():
    from ._kernels import hoa_kernel  # numba is imported here, on first use

    return hoa_kernel
