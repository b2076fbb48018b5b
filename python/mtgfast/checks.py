"""Checks of scalar arguments at the public boundary, shared by the modules that take them: a
wrong type is an ``InputTypeError``, a value out of range an ``InputError``, both naming it.

One definition of what counts as an int (Python or numpy integers, never a bool) and as a real
number (ints and floats, never a bool, a string or a complex), used by every module that checks
a scalar, so that ``True``, ``np.bool_``, ``"3"`` and ``3+0j`` are refused the same way everywhere.
"""

from __future__ import annotations

import math
import os
from typing import TypeGuard

import numpy as np

from .errors import InputError, InputTypeError

__all__ = ["check_bool", "check_int", "check_real", "describe", "env_int", "is_int", "is_real"]


def is_int(value: object) -> TypeGuard[int | np.integer]:
    """True for Python and numpy integers; False for bools (``True`` is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """True for Python/numpy ints and floats; False for bools, strings, complex numbers."""
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def describe(value: object, limit: int = 60) -> str:
    """``value`` for an error message: its type and a repr cut at ``limit`` characters."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(value).__name__} {text}"


def _range_text(low: float | None, high: float | None, open_low: bool = False,
                open_high: bool = False) -> str:
    if low is not None and high is not None:
        if not (open_low or open_high):
            return f"between {low} and {high}"
        return f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if low is not None:
        return f"> {low}" if open_low else f">= {low}"
    return f"< {high}" if open_high else f"<= {high}"


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool: Python or numpy bools only (``1`` and ``"no"`` are not switches)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputTypeError(f"{name} must be a bool, got {describe(value)}")
    return bool(value)


def check_int(name: str, value: object, low: int | None = None, high: int | None = None, *,
              expected: str | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (either end open when None); ``expected`` replaces
    the range in the message ("{name} must be {expected}, got {value}")."""
    if not is_int(value):
        raise InputTypeError(f"{name} must be an int, got {describe(value)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise InputError(f"{name} must be {expected or _range_text(low, high)}, got {v}")
    return v


def check_real(name: str, value: object, low: float | None = None, high: float | None = None, *,
               finite: bool = True, open_low: bool = False, open_high: bool = False,
               expected: str | None = None) -> float:
    """``value`` as a float in ``[low, high]`` (an end left out with ``open_low``/``open_high``,
    for rates that must be > 0; finite unless ``finite=False``; NaN never); ``expected``
    replaces "a finite number >= low" in the message."""
    if not is_real(value):
        raise InputTypeError(f"{name} must be a number, got {describe(value)}")
    v = float(value)
    bad = math.isnan(v) or (finite and math.isinf(v)) \
        or (low is not None and (v <= low if open_low else v < low)) \
        or (high is not None and (v >= high if open_high else v > high))
    if bad:
        if expected is None:
            expected = ("a finite number" if finite else "a number") + \
                ("" if low is None and high is None
                 else " " + _range_text(low, high, open_low, open_high))
        raise InputError(f"{name} must be {expected}, got {value!r}")
    return v


def env_int(name: str, default: int) -> int:
    """The environment variable ``name`` as an int >= 0 (``default`` when unset or empty);
    anything else is an ``InputError`` naming the variable (not a bare ``int()`` failure)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise InputError(f"environment variable {name} must be a whole number of bytes, got "
                         f"{raw!r}") from None
    if value < 0:
        raise InputError(f"environment variable {name} must be >= 0, got {value}")
    return value
