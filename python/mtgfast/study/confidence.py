"""How sure is a grouping chosen on estimated gains? Ensemble spread and measured-vs-estimated.

:func:`grouping_confidence` takes the fitted estimator, the chosen :class:`Grouping` and the
measured table and reports (1) the chosen grouping's estimated average gain and its spread over
the ensemble members (measured groups count with their measured gains, so only the unverified
part is uncertain), and (2) for the groups that were measured, the measured against the estimated
gains: how far the estimator is off where it can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InputTypeError
from ..gains import GainTable
from ..grouping import Grouping, check_grouping_table

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


@dataclass(frozen=True)
class GroupingConfidence:
    """How sure the estimate of a grouping is (gains are fractions: 0.05 = 5 %).

    ``estimated``: average gain over tasks under the grouping (measured gains where measured);
    ``spread``: standard deviation of that average over ensemble members (0 when every group is
    measured or the estimator has no ensemble; None when it cannot tell); ``n_verified`` of
    ``n_groups`` groups of >= 2 tasks were measured, serving ``verified_share`` of the tasks;
    ``verified_error``: mean absolute difference between estimated and measured gains of the
    measured groups' served tasks (None when no group was measured).
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

    def format(self) -> str:
        """A few lines for people: the estimate with its spread, then what was verified."""
        pct = (lambda v: f"{100 * v:+.2f}%")
        head = f"estimated average gain, measured groups at their measured gains: " \
               f"{pct(self.estimated)}"
        if self.spread is not None:
            head += f" ± {100 * self.spread:.2f} points (ensemble spread)"
        lines = [head, f"{self.n_verified} of {self.n_groups} groups measured "
                       f"(serving {self.verified_share:.0%} of the tasks)"]
        if self.verified_measured is not None and self.verified_estimated is not None:
            lines.append(f"on the measured groups: measured {pct(self.verified_measured)}, "
                         f"estimated {pct(self.verified_estimated)}, mean |error| "
                         f"{100 * (self.verified_error or 0.0):.2f} points per task")
        for g in self.groups:
            meas = f"measured {pct(g.measured)}" if g.measured is not None else "not measured"
            lines.append(f"  {'+'.join(g.tasks)}: serves {', '.join(g.served) or '-'}; "
                         f"estimated {pct(g.estimated)} ± {100 * g.spread:.2f}, {meas}")
        if self.spread is not None and self.n_verified < self.n_groups and self.spread > 0.01:
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


def grouping_confidence(estimator: Any, grouping: Grouping, measured: GainTable
                        ) -> GroupingConfidence:
    """Ensemble spread of ``grouping``'s estimated average gain and measured-vs-estimated
    gains on the groups ``measured`` holds (a fitted estimator: MTGNet, HOA, TAG...)."""
    n = check_grouping_table(grouping, measured, "measured")
    if getattr(estimator, "n_tasks_", n) != n:
        raise InputError(f"the estimator was fitted on {estimator.n_tasks_} tasks, the grouping "
                         f"has {n}")
    groups = np.asarray(grouping.groups, dtype=np.uint64)
    members = _member_predictions(estimator, groups)                 # (E, G, N)
    rows = measured.index_of(groups)
    names = measured.task_names
    # per member: task j's gain in its serving group (measured where the group was measured)
    served_gain = np.zeros((members.shape[0], n))
    measured_gain = np.full(n, np.nan)
    for j, a in enumerate(grouping.assignment.tolist()):
        if a < 0 or bin(int(groups[a])).count("1") < 2:
            continue
        est = members[:, a, j]
        if rows[a] >= 0 and np.isfinite(measured.gains[rows[a], j]):
            measured_gain[j] = measured.gains[rows[a], j]
            served_gain[:, j] = measured_gain[j]
        else:
            served_gain[:, j] = np.nan_to_num(est)
    value = served_gain.mean(axis=1)                                  # (E,)
    has_ensemble = members.shape[0] > 1
    spread = float(value.std()) if has_ensemble else None
    mean_est = members.mean(axis=0)                                   # (G, N)
    verified = np.isfinite(measured_gain)
    out_groups = []
    n_groups = n_ver = 0
    for a, g in enumerate(groups.tolist()):
        tasks = tuple(names[j] for j in range(n) if (g >> j) & 1)
        if len(tasks) < 2:
            continue
        n_groups += 1
        served = [j for j in range(n) if grouping.assignment[j] == a]
        per_member = np.nan_to_num(members[:, a, served]).mean(axis=1) if served else \
            np.zeros(members.shape[0])
        meas = None
        if rows[a] >= 0:
            n_ver += 1
            if served:
                meas = float(np.mean(measured.gains[rows[a], served]))
        out_groups.append(GroupConfidence(
            int(g), tasks, tuple(names[j] for j in served),
            float(per_member.mean()), float(per_member.std()), meas))
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
                              float(verified.mean()), v_meas, v_est, v_err, tuple(out_groups))
