"""Baselines a grouping method is compared with (not estimators: they predict no gains). Today:
the random grouping baseline, ``RandomGrouping`` / ``random_grouping_scores``. numba is imported
only when a baseline is scored."""

from __future__ import annotations

from .._lazy import exports_by_module, lazy_exports

_LAZY: dict[str, str] = exports_by_module("mtgfast.baselines", {
    "random": ("RandomGrouping", "random_grouping_scores", "with_singletons"),
})

__all__ = ["RandomGrouping", "random_grouping_scores", "with_singletons"]

__getattr__, __dir__ = lazy_exports("mtgfast.baselines", globals(), _LAZY)
