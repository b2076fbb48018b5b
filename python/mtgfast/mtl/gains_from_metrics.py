"""Transfer gains from measured metrics: relative improvement of MTL over STL (Song et al. 2022).

For a loss or error (lower is better) the gain is the relative reduction ``(stl - mtl) / |stl|``;
for a score (higher is better) the relative improvement ``(mtl - stl) / |stl|``. Positive = MTL helps.
No torch here: the study and the store use these on plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..masks import mask_to_indices

__all__ = ["gain_row", "relative_gain"]

# an STL metric of exactly 0 (a perfect loss) would divide by 0; gains then measure in absolute units
_TINY = 1e-12


def relative_gain(mtl: float, stl: float, higher_is_better: bool) -> float:
    """Relative improvement of ``mtl`` over ``stl`` in the metric's own direction."""
    mtl_f, stl_f = float(mtl), float(stl)
    if not (math.isfinite(mtl_f) and math.isfinite(stl_f)):
        raise InputError(f"metrics must be finite, got mtl={mtl_f}, stl={stl_f}")
    diff = mtl_f - stl_f if higher_is_better else stl_f - mtl_f
    return diff / max(abs(stl_f), _TINY)


def gain_row(mask: int, metrics: Mapping[str, float], stl: Mapping[str, float],
             task_names: Sequence[str], higher_is_better: Sequence[bool]) -> npt.NDArray[np.float64]:
    """Gain of each task of ``mask`` (NaN outside) from its MTL metric and its STL metric."""
    n = len(task_names)
    if len(higher_is_better) != n:
        raise InputError(f"{len(higher_is_better)} directions for {n} tasks")
    row = np.full(n, np.nan)
    for j in mask_to_indices(mask):
        if j >= n:
            raise InputError(f"mask {mask} uses task bit {j} >= n_tasks={n}")
        name = task_names[j]
        if name not in metrics or name not in stl:
            raise InputError(f"task {name!r} lacks an MTL or an STL metric")
        row[j] = relative_gain(metrics[name], stl[name], bool(higher_is_better[j]))
    return row
