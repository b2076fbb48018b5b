"""Transfer gains from measured metrics: the one definition mtgfast uses (Song et al. 2022).

The gain of task ``j`` in a combination is the relative improvement of its MTL metric over its
single-task (STL) metric: ``(stl - mtl) / |stl|`` for a loss or error (lower is better),
``(mtl - stl) / |stl|`` for a score. Positive = training together helps.

**Zero STL policy:** a single-task metric of exactly 0 makes the relative gain undefined; mtgfast
raises :class:`~mtgfast.errors.InputError` naming the task rather than dividing by a tiny number
(which would turn a small absolute difference into a huge "gain" that dominates any grouping).
Use a metric that is not 0 at its single-task optimum (e.g. add a constant to a loss).
The gain store and the MTL layer both call these functions; nothing else computes gains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from .errors import InputError
from .masks import mask_to_indices

__all__ = ["gain_matrix", "gain_row", "relative_gain"]


def relative_gain(mtl: float | npt.ArrayLike, stl: float | npt.ArrayLike,
                  higher_is_better: bool | npt.ArrayLike, *, task: str | None = None) -> np.ndarray:
    """Relative improvement of ``mtl`` over ``stl`` in the metric's direction (element-wise).

    ``InputError`` for a non-finite metric, a zero STL metric (see the module's policy) or a
    gain that is not finite although the metrics are (an STL metric of 1e-310, an overflow)."""
    mtl_a, stl_a = np.asarray(mtl, dtype=np.float64), np.asarray(stl, dtype=np.float64)
    what = f" of task {task!r}" if task is not None else ""
    if not (np.all(np.isfinite(mtl_a)) and np.all(np.isfinite(stl_a))):
        raise InputError(f"metrics{what} must be finite, got mtl={mtl_a.tolist()}, "
                         f"stl={stl_a.tolist()}")
    if np.any(stl_a == 0):
        raise InputError(f"the single-task (STL) metric{what} is 0, so its relative gain is "
                         "undefined; use a metric that is not 0 at the single-task optimum")
    sign = np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        gain = sign * (mtl_a - stl_a) / np.abs(stl_a)
    if not np.all(np.isfinite(gain)):
        # a subnormal STL metric or an overflowing difference: finite metrics, no finite gain
        raise InputError(f"the gain{what} is not finite ({np.asarray(gain).tolist()}) for "
                         f"mtl={mtl_a.tolist()}, stl={stl_a.tolist()}: the STL metric is too "
                         "close to 0 or the metrics too large for a relative gain in float64")
    return gain


def gain_row(mask: int, metrics: Mapping[str, float], stl: Mapping[str, float],
             task_names: Sequence[str], higher_is_better: Sequence[bool]) -> npt.NDArray[np.float64]:
    """Gain of each task of ``mask`` (NaN outside; 0 for a singleton) from its MTL and STL
    metrics."""
    n = len(task_names)
    if len(higher_is_better) != n:
        raise InputError(f"{len(higher_is_better)} directions for {n} tasks")
    row = np.full(n, np.nan)
    members = mask_to_indices(int(mask))
    for j in members:
        if j >= n:
            raise InputError(f"mask {mask} uses task bit {j} >= n_tasks={n}")
        name = task_names[j]
        if name not in metrics or name not in stl:
            raise InputError(f"task {name!r} lacks an MTL or an STL metric")
        if len(members) == 1:
            mv = float(metrics[name])
            if not math.isfinite(mv):
                raise InputError(f"metric of task {name!r} must be finite, got {mv}")
            row[j] = 0.0
            continue
        row[j] = float(relative_gain(metrics[name], stl[name], bool(higher_is_better[j]),
                                     task=name))
    return row


def gain_matrix(masks: Sequence[int], metrics: Sequence[Mapping[str, float]],
                stl: Mapping[str, float], task_names: Sequence[str],
                higher_is_better: Sequence[bool]) -> npt.NDArray[np.float64]:
    """Gain rows ``(len(masks), n_tasks)`` of combinations with the given member metrics."""
    if len(masks) != len(metrics):
        raise InputError(f"{len(masks)} masks but {len(metrics)} metric mappings")
    out = np.full((len(masks), len(task_names)), np.nan)
    for i, (m, mets) in enumerate(zip(masks, metrics)):
        out[i] = gain_row(int(m), mets, stl, task_names, higher_is_better)
    return out
