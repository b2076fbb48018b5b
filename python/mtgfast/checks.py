"""Checks of scalar arguments at the public boundary, shared by the modules that take them: a
wrong type is an ``InputTypeError``, a value out of range an ``InputError``, both naming it."""

from __future__ import annotations

import numpy as np

from .errors import InputError, InputTypeError

__all__ = ["check_int"]


def check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int >= ``low`` (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, got {type(value).__name__}")
    if int(value) < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    return int(value)
