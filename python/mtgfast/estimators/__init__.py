"""Gain estimators: fit on measured gains, predict any combination (the random grouping
baseline is not an estimator: it lives in :mod:`mtgfast.baselines`).

Each estimator follows scikit-learn's habits: ``__init__`` only stores arguments, ``fit(table)``
validates them and returns ``self``, learned state ends in ``_``, ``predict(masks)`` returns gains
of shape ``(n_masks, n_tasks)`` with NaN outside each combination. Heavy modules (numba, torch) are
imported only when an estimator needs them.
"""

from __future__ import annotations

from .._lazy import exports_by_module, lazy_exports

_LAZY: dict[str, str] = exports_by_module("mtgfast.estimators", {
    "base": ("GainEstimator",),
    "oracle": ("Oracle",),
    "hoa": ("HOA",),
    "tag": ("TAG",),
    "mtgnet": ("MTGNet",),
    "prior": ("PairPriorMTGNet", "TablePriorMTGNet"),
})

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports("mtgfast.estimators", globals(), _LAZY)
