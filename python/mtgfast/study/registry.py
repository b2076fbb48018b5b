"""The one estimator registry: names -> gain estimators and how a study collects their data.

``Study``, ``group_stored`` and the command line all build estimators through
:func:`make_estimator` and list them with :func:`estimator_names`, so a new estimator is added
here once. Estimator modules are imported on first use (MTG-Net imports torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InputError, InputTypeError

__all__ = ["EstimatorSpec", "ESTIMATORS", "estimator_names", "estimator_spec", "make_estimator"]

Collect = Literal["active", "pairs", "all", "affinity"]


@dataclass(frozen=True)
class EstimatorSpec:
    """How to build an estimator (``"module:Class"``) and what a study measures for it:
    ``active`` (the loop of Algorithm 1), ``pairs`` (every pair), ``all`` (every candidate),
    ``affinity`` (one all-task run per seed). ``fits_table``: can be fitted on stored gains alone
    (what ``group_stored`` needs)."""

    target: str
    collect: Collect
    fits_table: bool
    help: str


ESTIMATORS: dict[str, EstimatorSpec] = {
    "mtgnet": EstimatorSpec("mtgfast.estimators.blend:ridge_blend", "active", True,
                            "MTG-Net blended with a per-task ridge surrogate (weight fitted out "
                            "of fold) on the combinations the active loop chose"),
    "hoa": EstimatorSpec("mtgfast.estimators.hoa:HOA", "pairs", True,
                         "higher-order approximation from every pair"),
    "tag": EstimatorSpec("mtgfast.estimators.tag:TAG", "affinity", False,
                         "TAG: lookahead affinities of one all-task run"),
    "oracle": EstimatorSpec("mtgfast.estimators.oracle:Oracle", "all", True,
                            "every candidate measured; the measured gains themselves"),
    "mtgnet-plain": EstimatorSpec("mtgfast.estimators.mtgnet:MTGNet", "active", True,
                                  "MTG-Net alone on the combinations the active loop chose "
                                  "(the default before the fifteenth pass of issue 13)"),
}


def estimator_names(*, fits_table: bool = False) -> tuple[str, ...]:
    """Names :func:`make_estimator` accepts (for ``--estimator`` choices); ``fits_table=True``:
    only those that can be fitted on stored gains alone (``mtgfast group``)."""
    return tuple(k for k, v in ESTIMATORS.items() if v.fits_table or not fits_table)


def estimator_spec(name: str) -> EstimatorSpec:
    """The registry entry of ``name``; ``InputError`` listing the known names otherwise."""
    if not isinstance(name, str):
        raise InputTypeError(f"estimator must be a name (str), got {type(name).__name__}")
    if name not in ESTIMATORS:
        raise InputError(f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")
    return ESTIMATORS[name]


def make_estimator(name: str, **options: Any) -> Any:
    """A fresh, unfitted estimator ``name`` built with ``options``; bad options raise
    ``InputError`` here, before any training."""
    spec = estimator_spec(name)
    module, cls = spec.target.split(":")
    klass = getattr(importlib.import_module(module), cls)   # a class or a constructor function
    try:
        est = klass(**options)
    except TypeError as exc:
        raise InputError(f"bad options for estimator {name!r}: {exc}") from exc
    check = getattr(est, "_check_params", None)   # MTG-Net validates its hyper-parameters
    if callable(check):
        check()
    return est
