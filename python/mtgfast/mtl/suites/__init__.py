"""Built-in task suites and their registry: ``get_suite(name, **kw)``.

"digits" (scikit-learn's digits, 10 one-vs-rest tasks), "ett" (7 ETT forecasting tasks from a CSV),
"synthetic" (planted task clusters with a known best grouping), "multidigits" (written with the
loss-weighting methods; imported on first use).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ...errors import InputError
from .base import TaskSuite

__all__ = ["SUITES", "TaskSuite", "get_suite", "register_suite"]

#: name -> "module:class", imported on first use
SUITES: dict[str, str] = {
    "digits": "mtgfast.mtl.suites.digits:DigitsSuite",
    "ett": "mtgfast.mtl.suites.ett:ETTSuite",
    "synthetic": "mtgfast.mtl.suites.synthetic:SyntheticSuite",
    "multidigits": "mtgfast.mtl.suites.multidigits:MultiDigitsSuite",
}


def register_suite(name: str, target: str) -> None:
    """Register a suite class as ``"module:Class"`` under ``name``."""
    if not isinstance(name, str) or not isinstance(target, str) or ":" not in target:
        raise InputError("register_suite(name, 'module:Class') takes two strings")
    SUITES[name] = target


def get_suite(name: str, **kw: Any) -> TaskSuite:
    """An instance of the suite registered as ``name``, built with ``kw``."""
    if not isinstance(name, str) or name not in SUITES:
        raise InputError(f"unknown suite {name!r}; known: {sorted(SUITES)}")
    module, cls = SUITES[name].split(":")
    try:
        klass = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise InputError(f"suite {name!r} needs module {module}, which is not available ({exc})"
                         ) from exc
    try:  # an unknown or missing option names the suite and what it takes, not a bare TypeError
        inspect.signature(klass).bind(**kw)
    except TypeError as exc:
        takes = [p for p in inspect.signature(klass).parameters]
        raise InputError(f"suite {name!r}: {exc}; it takes {takes}") from None
    return klass(**kw)
