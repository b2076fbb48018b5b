"""Gain estimators: fit on measured gains, predict any combination (the random grouping
baseline is not an estimator: it lives in :mod:`mtgfast.baselines`).

Each estimator follows scikit-learn's habits: ``__init__`` only stores arguments, ``fit(table)``
validates them and returns ``self``, learned state ends in ``_``, ``predict(masks)`` returns gains
of shape ``(n_masks, n_tasks)`` with NaN outside each combination. Heavy modules (numba, torch) are
imported only when an estimator needs them.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "GainEstimator": "mtgfast.estimators.base",
    "Oracle": "mtgfast.estimators.oracle",
    "HOA": "mtgfast.estimators.hoa",
    "TAG": "mtgfast.estimators.tag",
    "MTGNet": "mtgfast.estimators.mtgnet",
    "PairPriorMTGNet": "mtgfast.estimators.prior",
    "TablePriorMTGNet": "mtgfast.estimators.prior",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports("mtgfast.estimators", globals(), _LAZY)
