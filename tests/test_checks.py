"""mtgfast.checks: the one definition of "an int" and "a real number" at the public boundary,
and the modules that now use it (same messages as before the move)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtgfast.checks import check_bool, check_int, check_real, describe, is_int, is_real
from mtgfast.errors import InputError, InputTypeError

INTS = [0, 7, -3, np.int8(3), np.uint64(2**64 - 1), np.int64(-2), 2**70]
NOT_INTS = [True, False, np.True_, 3.0, np.float32(2), "3", b"3", 3 + 0j, None, [3], np.array(3),
            np.datetime64("2020-01-01"), object()]
REALS = [*INTS, 0.5, np.float16(1.5), np.float64("nan"), math.inf]
NOT_REALS = [True, np.bool_(False), "1.0", 1j, np.complex128(1), None, [1.0], Ellipsis]


@pytest.mark.parametrize("v", INTS)
def test_is_int_accepts(v):
    assert is_int(v) and is_real(v)


@pytest.mark.parametrize("v", NOT_INTS)
def test_is_int_refuses(v):
    assert not is_int(v)
    with pytest.raises(InputTypeError, match=r"^k must be an int, got " + type(v).__name__):
        check_int("k", v, 0)


@pytest.mark.parametrize("v", NOT_REALS)
def test_is_real_refuses(v):
    assert not is_real(v)
    with pytest.raises(InputTypeError, match=r"^x must be a number, got"):
        check_real("x", v)


@pytest.mark.parametrize("value,low,high,expected,message", [
    (-1, 0, None, None, r"^k must be >= 0, got -1$"),
    (5, 1, 4, None, r"^k must be between 1 and 4, got 5$"),
    (9, None, 8, None, r"^k must be <= 8, got 9$"),
    (65, 1, 64, "in [1, 64]", r"^k must be in \[1, 64\], got 65$"),
    (2**63, 0, 2**63 - 1, None, r"got 9223372036854775808"),
])
def test_check_int_ranges(value, low, high, expected, message):
    with pytest.raises(InputError, match=message):
        check_int("k", value, low, high, expected=expected)


def test_check_int_returns_python_ints():
    out = check_int("k", np.uint64(2**64 - 1), 0)
    assert type(out) is int and out == 2**64 - 1


@pytest.mark.parametrize("value,kw,message", [
    (math.nan, {}, r"x must be a finite number, got nan"),
    (math.inf, {}, r"x must be a finite number, got inf"),
    (-math.inf, {"finite": False}, None),
    (math.nan, {"finite": False}, r"x must be a number, got nan"),
    (-0.5, {"low": 0.0}, r"x must be a finite number >= 0.0, got -0.5"),
    (2.0, {"low": 0.0, "high": 1.0}, r"between 0.0 and 1.0"),
    (-1, {"low": 0.0, "expected": "a duration"}, r"^x must be a duration, got -1$"),
])
def test_check_real_ranges(value, kw, message):
    if message is None:
        assert check_real("x", value, **kw) == value
        return
    with pytest.raises(InputError, match=message):
        check_real("x", value, **kw)


def test_describe_cuts_long_values():
    text = describe("x" * 500)
    assert text.startswith("str 'xxx") and text.endswith("...") and len(text) < 80


# -- the modules that use it: each refuses bools and strings where an int is due, with the names
#    and the words of the messages they had before the move
def _study_budget():
    from mtgfast.study.study import _check_budget  # noqa: PLC2701 (the module's own helper)
    return _check_budget


@pytest.mark.parametrize("call,exc,words", [
    (lambda: __import__("mtgfast.masks").masks.check_n_tasks(True), InputTypeError,
     "n_tasks must be an int"),
    (lambda: __import__("mtgfast.masks").masks.check_n_tasks(np.int16(65)), InputError,
     "n_tasks must be in [1, 64], got 65"),
    (lambda: __import__("mtgfast.masks").masks.check_n_tasks(np.uint8(3)), None, 3),
    (lambda: _study_budget()(4, 3), InputError, "budget (the number of groups) must be between 1 and 3, got 4"),
    (lambda: _study_budget()(np.True_, 3), InputTypeError, "budget (the number of groups) must be an int"),
    (lambda: _study_budget()(np.int64(2), 3), None, 2),
])
def test_modules_use_the_shared_checks(call, exc, words):
    if exc is None:
        assert call() == words
        return
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize("raw,expected", [("", 7), ("  ", 7), ("1024", 1024), ("1_000", 1000),
                                          ("abc", "whole number"), ("1.5", "whole number"),
                                          ("-3", ">= 0")])
def test_env_int(monkeypatch, raw, expected):
    from mtgfast.checks import env_int

    monkeypatch.setenv("MTGFAST_TEST_BYTES", raw)
    if isinstance(expected, int):
        assert env_int("MTGFAST_TEST_BYTES", 7) == expected
    else:
        with pytest.raises(InputError, match=f"MTGFAST_TEST_BYTES must be.*{expected}"):
            env_int("MTGFAST_TEST_BYTES", 7)


def test_bad_environment_limits_name_the_variable(monkeypatch):
    from mtgfast import all_masks, group

    monkeypatch.setenv("MTGFAST_MAX_DP_BYTES", "4GB")
    with pytest.raises(InputError, match="MTGFAST_MAX_DP_BYTES"):
        group([1], [[0.1]], 1)
    monkeypatch.setenv("MTGFAST_MAX_ENUM_BYTES", "lots")
    with pytest.raises(InputError, match="MTGFAST_MAX_ENUM_BYTES"):
        all_masks(3)


@pytest.mark.parametrize(("value", "kw", "ok", "message"), [
    (0.0, {"low": 0, "open_low": True}, False, r"> 0"),
    (1e-300, {"low": 0, "open_low": True}, True, None),
    (1.0, {"low": 0, "high": 1, "open_high": True}, False, r"in \[0, 1\)"),
    (0.0, {"low": 0, "high": 1, "open_high": True}, True, None),
    (0.0, {"low": 0, "high": 1, "open_low": True}, False, r"in \(0, 1\]"),
    (1.0, {"low": 0, "high": 1, "open_low": True}, True, None),
    (2.0, {"high": 2, "open_high": True}, False, r"< 2"),
    (math.nan, {"low": 0, "open_low": True}, False, r"> 0"),
])
def test_check_real_open_ends(value, kw, ok, message):
    if ok:
        assert check_real("rate", value, **kw) == value
    else:
        with pytest.raises(InputError, match=f"rate must be a finite number {message}"):
            check_real("rate", value, **kw)


def test_check_bool_takes_only_bools():
    assert check_bool("flag", True) is True and check_bool("flag", np.bool_(False)) is False
    for bad in (1, 0, "no", None, 1.0):
        with pytest.raises(InputTypeError, match="flag must be a bool"):
            check_bool("flag", bad)
