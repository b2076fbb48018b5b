"""numba kernels of the estimators (imported lazily: ``import mtgfast`` never imports numba).

Compiled on first use and cached on disk beside this file (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["hoa_kernel"]


@numba.njit(parallel=True, cache=True)
def hoa_kernel(masks, p, out):
    """``out[i, j] = mean_{k in masks[i], k != j} p[j, k]``; 0 for singletons, NaN outside.

    ``masks`` is the int64 view of the uint64 masks (bit tests are the same).
    """
    n = p.shape[0]
    for i in numba.prange(masks.shape[0]):
        m = masks[i]
        size = 0
        for j in range(n):
            out[i, j] = 0.0
        for k in range(n):
            if (m >> k) & 1:
                size += 1
                for j in range(n):
                    out[i, j] += p[j, k]
        for j in range(n):
            if (m >> j) & 1:
                out[i, j] = out[i, j] / (size - 1) if size > 1 else 0.0
            else:
                out[i, j] = np.nan

