"""How sure is a grouping chosen on estimated gains? Ensemble spread and measured-vs-estimated.

:func:`grouping_confidence` takes the fitted estimator, the chosen :class:`Grouping` and the
measured table and reports (1) the chosen grouping's estimated average gain and its spread over
the ensemble members (measured groups count with their measured gains, so only the unverified
part is uncertain), raw and calibrated: each task's spread scaled by how far the estimator's
out-of-fold error exceeds it (an ensemble's disagreement understates its error, and a blend's
spread is only the network's share of it), and (2) for the groups that were measured, the
measured against the estimated gains: how far the estimator is off where it can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..gains import GainTable
from ..grouping import Grouping, check_grouping_table
from ..masks import as_masks, masks_to_dense, popcount
from .final import out_of_fold_residuals, spread_calibration

__all__ = ["GroupConfidence", "GroupingConfidence", "grouping_confidence"]


@dataclass(frozen=True)
class GroupConfidence:
    """One chosen group: its tasks, the mean estimated gain over the tasks it serves, the
    members' spread of that mean, and the measured mean when the group was measured."""

    mask: int
    tasks: tuple[str, ...]
    served: tuple[str, ...]
    estimated: float
    spread: float
    measured: float | None
    #: ``spread`` with each task's member deviations scaled by its calibration (None: unknown)
    calibrated_spread: float | None = None


@dataclass(frozen=True)
class GroupingConfidence:
    """How sure the estimate of a grouping is (gains are fractions: 0.05 = 5 %).

    ``estimated``: average gain over tasks under the grouping (measured gains where measured);
    ``spread``: standard deviation of that average over ensemble members (0 when every group is
    measured or the estimator has no ensemble; None when it cannot tell); ``n_verified`` of
    ``n_groups`` groups of >= 2 tasks were measured, serving ``verified_share`` of the tasks;
    ``verified_error``: mean absolute difference between estimated and measured gains of the
    measured groups' served tasks (None when no group was measured). ``calibrated_spread``:
    ``spread`` with each task's members' deviations from their mean multiplied by
    ``calibration[j]`` (:func:`~mtgfast.study.final.spread_calibration`: out-of-fold error over
    ensemble spread on the candidates); None without candidates or out-of-fold rows.
    """

    estimated: float
    spread: float | None
    n_groups: int
    n_verified: int
    verified_share: float
    verified_measured: float | None
    verified_estimated: float | None
    verified_error: float | None
    groups: tuple[GroupConfidence, ...]
    calibrated_spread: float | None = None
    calibration: tuple[float, ...] | None = None

    def format(self) -> str:
        """A few lines for people: the estimate with its spread, then what was verified."""
        pct = (lambda v: f"{100 * v:+.2f}%")
        head = f"estimated average gain, measured groups at their measured gains: " \
               f"{pct(self.estimated)}"
        if self.spread is not None:
            head += f" ± {100 * self.spread:.2f} points (ensemble spread"
            if self.calibrated_spread is not None:
                head += f"; ± {100 * self.calibrated_spread:.2f} calibrated on the out-of-fold " \
                        "error"
            head += ")"
        lines = [head, f"{self.n_verified} of {self.n_groups} groups measured "
                       f"(serving {self.verified_share:.0%} of the tasks)"]
        if self.verified_measured is not None and self.verified_estimated is not None:
            lines.append(f"on the measured groups: measured {pct(self.verified_measured)}, "
                         f"estimated {pct(self.verified_estimated)}, mean |error| "
                         f"{100 * (self.verified_error or 0.0):.2f} points per task")
        for g in self.groups:
            meas = f"measured {pct(g.measured)}" if g.measured is not None else "not measured"
            sd = f"{100 * g.spread:.2f}" + ("" if g.calibrated_spread is None else
                                            f" (calibrated ± {100 * g.calibrated_spread:.2f})")
            lines.append(f"  {'+'.join(g.tasks)}: serves {', '.join(g.served) or '-'}; "
                         f"estimated {pct(g.estimated)} ± {sd}, {meas}")
        sure = self.spread if self.calibrated_spread is None else self.calibrated_spread
        if sure is not None and self.n_verified < self.n_groups and sure > 0.01:
            lines.append("the unmeasured groups are uncertain: measure them before relying on "
                         "this grouping")
        return "\n".join(lines)


def _member_predictions(estimator: Any, masks: np.ndarray) -> np.ndarray:
    """(members, masks, tasks): an ensemble's members, or the point estimate as one member."""
    if hasattr(estimator, "predict_members"):
        return np.asarray(estimator.predict_members(masks), dtype=np.float64)
    if hasattr(estimator, "predict"):
        return np.asarray(estimator.predict(masks), dtype=np.float64)[None]
    raise InputTypeError(f"estimator must have predict(masks), got {type(estimator).__name__}")


def _calibration(estimator: Any, measured: GainTable, candidates: object, n: int
                 ) -> np.ndarray | None:
    """Per task, out-of-fold error over ensemble spread on ``candidates`` (None: no ensemble,
    no record of held-out rows, or none held out)."""
    if not callable(getattr(estimator, "predict_held_out", None)):
        return None
    cand = as_masks(candidates, n)
    cand = cand[popcount(cand) >= 2]
    if cand.size == 0:
        return None
    try:
        oof = out_of_fold_residuals(measured, estimator)
    except InputError:    # e.g. an MTGNet loaded from a file: no record of its held-out rows
        return None
    if not np.isfinite(oof.residual).any():
        return None   # checked before the members predict every candidate
    std = _member_predictions(estimator, cand).std(axis=0)             # (C, N)
    return np.asarray(spread_calibration(oof, masks_to_dense(cand, n), std), dtype=np.float64)


def grouping_confidence(estimator: Any, grouping: Grouping, measured: GainTable,
                        candidates: object = None) -> GroupingConfidence:
    """Ensemble spread of ``grouping``'s estimated average gain and measured-vs-estimated
    gains on the groups ``measured`` holds (a fitted estimator: MTGNet, HOA, TAG...).
    ``candidates`` (masks; the combinations the search chose from): where the ensemble spread
    is compared with the out-of-fold error of the measured rows, to calibrate it per task."""
    n = check_grouping_table(grouping, measured, "measured")
    if getattr(estimator, "n_tasks_", n) != n:
        raise InputError(f"the estimator was fitted on {estimator.n_tasks_} tasks, the grouping "
                         f"has {n}")
    groups = np.asarray(grouping.groups, dtype=np.uint64)
    members = _member_predictions(estimator, groups)                 # (E, G, N)
    has_ensemble = members.shape[0] > 1
    factors = _calibration(estimator, measured, candidates, n) \
        if has_ensemble and candidates is not None else None
    rows = measured.index_of(groups)
    names = measured.task_names
    measured_gain = np.full(n, np.nan)
    serving = [-1] * n     # the group serving task j, where it is a group of >= 2 tasks
    for j, a in enumerate(grouping.assignment.tolist()):
        if a < 0 or bin(int(groups[a])).count("1") < 2:
            continue
        serving[j] = a
        if rows[a] >= 0 and np.isfinite(measured.gains[rows[a], j]):
            measured_gain[j] = measured.gains[rows[a], j]
    mean_est = members.mean(axis=0)                                   # (G, N)
    served_by = [[j for j in range(n) if grouping.assignment[j] == a] for a in range(len(groups))]

    def spreads(mem: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per member: the average served gain (measured where measured), each group's mean."""
        served_gain = np.zeros((mem.shape[0], n))
        for j, a in enumerate(serving):
            if a >= 0:
                served_gain[:, j] = measured_gain[j] if np.isfinite(measured_gain[j]) else \
                    np.nan_to_num(mem[:, a, j])
        per_group = [np.nan_to_num(mem[:, a, served]).mean(axis=1) if served else
                     np.zeros(mem.shape[0]) for a, served in enumerate(served_by)]
        return served_gain.mean(axis=1), per_group

    value, per_group = spreads(members)                              # (E,), G x (E,)
    spread = float(value.std()) if has_ensemble else None
    c_value, c_group = (None, None) if factors is None else \
        spreads(mean_est[None] + factors[None, None, :] * (members - mean_est[None]))
    verified = np.isfinite(measured_gain)
    out_groups = []
    n_groups = n_ver = 0
    for a, g in enumerate(groups.tolist()):
        tasks = tuple(names[j] for j in range(n) if (g >> j) & 1)
        if len(tasks) < 2:
            continue
        n_groups += 1
        served = served_by[a]
        meas = None
        if rows[a] >= 0:
            n_ver += 1
            if served:
                meas = float(np.mean(measured.gains[rows[a], served]))
        out_groups.append(GroupConfidence(
            int(g), tasks, tuple(names[j] for j in served),
            float(per_group[a].mean()), float(per_group[a].std()), meas,
            None if c_group is None else float(c_group[a].std())))
    v_meas: float | None
    v_est: float | None
    v_err: float | None
    if verified.any():
        v_meas = float(measured_gain[verified].mean())
        est_v = np.array([mean_est[grouping.assignment[j], j] for j in np.flatnonzero(verified)])
        v_est = float(np.mean(est_v))
        v_err = float(np.mean(np.abs(est_v - measured_gain[verified])))
    else:
        v_meas = v_est = v_err = None
    return GroupingConfidence(float(value.mean()), spread, n_groups, n_ver,
                              float(verified.mean()), v_meas, v_est, v_err, tuple(out_groups),
                              None if c_value is None else float(c_value.std()),
                              None if factors is None else tuple(float(x) for x in factors))
