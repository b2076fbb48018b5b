"""One exception hierarchy for mtgfast; each also inherits the builtin a caller would catch."""

from __future__ import annotations

from collections.abc import Iterable


class MtgfastError(Exception):
    """Base class of every error raised on purpose by mtgfast."""


class InputError(MtgfastError, ValueError):
    """A value passed to the public API is malformed (shape, range, NaN, duplicates...)."""


class InputTypeError(MtgfastError, TypeError):
    """A value passed to the public API has the wrong type."""


class StoreError(MtgfastError, RuntimeError):
    """The gain store cannot be opened or is inconsistent (schema version, fingerprint...)."""


class SingletonGainWarning(UserWarning):
    """A gain table gave a singleton (one task trained alone) a gain other than 0; it is read
    as 0, the baseline of the others (a singleton's gain is 0 by definition)."""


def did_you_mean(word: object, known: Iterable[str], cutoff: float = 0.6) -> str:
    """``"; did you mean 'x'?"`` for the name of ``known`` closest to a misspelt ``word``, or
    ``""`` when none is close (the hint of every unknown-name message)."""
    import difflib

    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""
