"""Deprecated location of the random grouping baseline: it is a baseline, not an estimator, and
lives in ``mtgfast.baselines`` (``RandomGrouping``, ``random_grouping_scores``,
``with_singletons``). Importing a name from here still works and warns."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["RandomGrouping", "random_grouping_scores", "with_singletons"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        warnings.warn(f"mtgfast.estimators.random.{name} moved to mtgfast.baselines.{name}",
                      DeprecationWarning, stacklevel=2)
        from .. import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'mtgfast.estimators.random' has no attribute {name!r}")
