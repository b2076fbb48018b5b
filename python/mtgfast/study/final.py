"""The gains the final grouping is chosen on, from what was measured and what was estimated.

One function for the replay (``study.replay_methods``) and :class:`~mtgfast.study.study.Study`:
``"estimate"`` takes measured gains where measured and the estimate elsewhere; ``"measured"`` lets
only measured combinations (and singletons, gain 0 by definition) into a grouping, so every chosen
group was verified; ``"shrunk"`` is ``"measured"`` with each measured gain pulled towards the
network's out-of-fold estimate by an empirical-Bayes weight (a noisy measurement that happens to
be high is the winner's curse of choosing on measurements alone).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks, masks_to_dense, popcount

__all__ = ["CALIBRATION_PRIOR_ROWS", "FINAL_CHOICES", "OutOfFold", "final_gains",
           "out_of_fold_residuals", "shrunk_measured_gains", "spread_calibration"]

#: how the final search sees the combinations (see the module docstring)
FINAL_CHOICES = ("estimate", "measured", "shrunk")
#: fewer out-of-fold residuals than this for a task: its measurements are not shrunk
MIN_RESIDUALS = 3


class OutOfFold(NamedTuple):
    """Out-of-fold estimates of the measured rows of >= 2 tasks (see out_of_fold_residuals)."""

    rows: npt.NDArray[np.intp]      #: their rows in the measured table
    estimate: FloatArray            #: (R, N) mean of the members that held the row out; NaN else
    held: npt.NDArray[np.int64]     #: (R,) how many members held each row out
    residual: FloatArray            #: (R, N) measured - estimate; NaN where none held it out


def out_of_fold_residuals(measured: GainTable, estimator: Any) -> OutOfFold:
    """Per task, how far the fitted ``estimator`` is from the measurements it did not train on:
    its out-of-fold estimates (``predict_held_out``) of the measured rows of >= 2 tasks and the
    residuals. One helper for the sampler's calibration and the shrunk final choice."""
    predict_held_out = getattr(estimator, "predict_held_out", None)
    if not callable(predict_held_out):
        raise InputTypeError(f"out-of-fold residuals need an estimator with predict_held_out "
                             f"(an MTGNet), got {type(estimator).__name__}")
    n = measured.n_tasks
    rows = np.flatnonzero(popcount(measured.masks) >= 2)
    if rows.size == 0:
        empty = np.zeros((0, n))
        return OutOfFold(rows, empty, np.zeros(0, dtype=np.int64), empty.copy())
    oof, count = predict_held_out(measured.masks[rows])
    oof = np.asarray(oof, dtype=np.float64)
    count = np.asarray(count, dtype=np.int64)
    resid = np.where(count[:, None] > 0, measured.gains[rows] - oof, np.nan)
    return OutOfFold(rows, oof, count, resid)


#: spread_calibration: a task's residual variance is shrunk towards the pooled one as if it had
#: this many more out-of-fold rows at the pooled value
CALIBRATION_PRIOR_ROWS = 3.0


def spread_calibration(oof: OutOfFold, member: npt.NDArray[np.bool_],
                       std: FloatArray) -> FloatArray:
    """Per task, how many times its error on unseen rows exceeds the ensemble spread:
    ``sqrt(r_j / v_j)``, ``r_j`` the mean squared out-of-fold residual ``oof`` of task j (shrunk
    towards the pooled one as if :data:`CALIBRATION_PRIOR_ROWS` more rows had it), ``v_j`` the
    mean ensemble variance ``std ** 2`` over the candidates holding j (``member``: candidates x
    tasks, where the estimate is out of sample). 1 where either is unknown. One helper for the
    sampler's calibrated optimism and the spread a study reports."""
    n = member.shape[1]
    ones = np.ones(n)
    if oof.rows.size == 0:
        return ones
    res = oof.residual ** 2                                    # NaN: not held out
    rows = np.isfinite(res)
    count = rows.sum(axis=0).astype(np.float64)
    if count.sum() == 0:
        return ones
    total = np.where(rows, res, 0.0).sum(axis=0)
    pooled = total.sum() / count.sum()
    r = (total + CALIBRATION_PRIOR_ROWS * pooled) / (count + CALIBRATION_PRIOR_ROWS)
    var = np.where(member, np.nan_to_num(std) ** 2, 0.0).sum(axis=0)
    cands = member.sum(axis=0)
    v = var / np.maximum(cands, 1)
    ok = (cands > 0) & (v > 0)
    return np.where(ok, np.sqrt(r / np.where(ok, v, 1.0)), 1.0)


def shrunk_measured_gains(measured: GainTable, estimator: Any,
                          masks: MaskArray | None = None,
                          noise: GainTable | None = None) -> FloatArray:
    """Measured gains pulled towards the estimator's out-of-fold estimate, per task.

    Per task j, the out-of-fold residuals r = measured - estimate have variance s2 = noise +
    model error; the model error m2 is the mean ensemble variance of the estimates on ``masks``
    (the unmeasured candidates, where the estimate is out of sample); noise = max(s2 - m2, 0).
    A measurement keeps weight m2 / (m2 + noise) (1 without noise), its estimate the rest; rows
    no member held out are pulled towards the in-sample estimate. Singletons stay 0.

    ``noise``: a table of the per-entry noise variance of the measurements (from replicates:
    the variance of their mean). Then noise_j is its mean over the measured rows holding j, the
    model error max(s2 - noise_j, m2) (identified, not assumed: s2 - m2 would call model error
    noise), and the weight model error / (model error + noise_j).
    """
    if not callable(getattr(estimator, "predict_held_out", None)):
        raise InputTypeError(f"final='shrunk' needs an estimator with predict_held_out (an "
                             f"MTGNet), got {type(estimator).__name__}")
    n = measured.n_tasks
    out = np.array(measured.gains, dtype=np.float64)
    multi, oof, count, resid = out_of_fold_residuals(measured, estimator)
    if multi.size == 0:
        return out
    y = out[multi]
    insample = np.asarray(estimator.predict(measured.masks[multi]), dtype=np.float64)
    est = np.where(count[:, None] > 0, oof, insample)
    if masks is not None and len(masks):
        _, std = estimator.predict(masks, return_std=True)
        held = masks_to_dense(masks, n)
        # a task no candidate holds has no model error here (0, not a warning and a NaN)
        model_var = np.where(held, np.asarray(std, dtype=np.float64) ** 2, 0.0).sum(axis=0) \
            / np.maximum(held.sum(axis=0), 1)
    else:
        model_var = np.zeros(n)
    known_noise = None if noise is None else _noise_per_task(measured, multi, noise)
    for j in range(n):
        r = resid[:, j][np.isfinite(resid[:, j])]
        if r.size < MIN_RESIDUALS:
            continue
        m2 = float(np.nan_to_num(model_var[j]))
        if known_noise is None:
            nz = max(float(np.mean(r * r)) - m2, 0.0)
            err = m2
        else:
            nz = float(known_noise[j])
            err = max(float(np.mean(r * r)) - nz, m2)
        if nz <= 0.0 or err + nz <= 0.0:
            continue
        w = err / (err + nz)
        col = np.isfinite(y[:, j])
        y[col, j] = w * y[col, j] + (1.0 - w) * est[col, j]
    out[multi] = y
    return out


def _noise_per_task(measured: GainTable, rows: npt.NDArray[np.intp],
                    noise: GainTable) -> FloatArray:
    """Per task, the mean noise variance of the measured ``rows`` holding it (0 where ``noise``
    has none of them)."""
    if not isinstance(noise, GainTable):
        raise InputTypeError(f"noise must be a GainTable of noise variances, got "
                             f"{type(noise).__name__}")
    if noise.n_tasks != measured.n_tasks:
        raise InputError(f"noise has {noise.n_tasks} tasks, the measured table "
                         f"{measured.n_tasks}")
    idx = noise.index_of(measured.masks[rows])
    v = np.where((idx >= 0)[:, None], noise.gains[np.maximum(idx, 0)], np.nan)
    v = np.where(measured.member()[rows], v, np.nan)
    if np.any(v[np.isfinite(v)] < 0):
        raise InputError("noise must hold variances (>= 0), found a negative entry")
    ok = np.isfinite(v)
    count = ok.sum(axis=0)
    return np.where(count > 0, np.where(ok, v, 0.0).sum(axis=0) / np.maximum(count, 1), 0.0)


def final_gains(masks: object, measured: GainTable, final: str = "estimate", *,
                estimate: object = None, estimator: Any = None,
                noise: GainTable | None = None) -> FloatArray:
    """Gains ``(len(masks), N)`` the final grouping search runs on (NaN outside each mask).

    ``measured``: the measured combinations (the full set among them for the measured-only
    choices). ``estimate``: the estimator's gains on ``masks`` (needed by ``"estimate"``).
    Under ``"measured"``/``"shrunk"`` every unmeasured combination of >= 2 tasks counts below
    its tasks' singletons, so no search picks it; ``"shrunk"`` needs ``estimator`` (fitted)
    and takes ``noise`` (replicate variances, see :func:`shrunk_measured_gains`).
    """
    if final not in FINAL_CHOICES:
        raise InputError(f"final must be one of {', '.join(FINAL_CHOICES)}, got {final!r}")
    if not isinstance(measured, GainTable):
        raise InputTypeError(f"measured must be a GainTable, got {type(measured).__name__}")
    m = as_masks(masks, measured.n_tasks)
    member = masks_to_dense(m, measured.n_tasks)
    rows = measured.index_of(m)
    found = rows >= 0
    if final == "estimate":
        if estimate is None:
            raise InputError("final='estimate' needs estimate=, the estimator's gains on masks")
        out = np.array(estimate, dtype=np.float64)
        if out.shape != member.shape:
            raise InputError(f"estimate has shape {out.shape}, expected {member.shape}")
        out[found] = measured.gains[rows[found]]   # a measurement beats an estimate
        out[~member] = np.nan
        return out
    gains = measured.gains
    if final == "shrunk":
        if estimator is None:
            raise InputError("final='shrunk' needs estimator=, the fitted estimator")
        gains = shrunk_measured_gains(measured, estimator, m[~found], noise)
    known = np.where(masks_to_dense(measured.masks, measured.n_tasks), gains, 0.0)
    floor = min(0.0, float(np.nanmin(known))) - 1.0 if len(measured) else -1.0
    size = member.sum(axis=1)
    out = np.where(member, np.where(size[:, None] >= 2, floor, 0.0), np.nan)
    out[found] = gains[rows[found]]
    out[~member] = np.nan
    return out
