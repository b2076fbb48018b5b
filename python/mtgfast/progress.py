"""Progress bars for the front ends: tqdm on a terminal, plain lines when stderr is a file or pipe.

``progress(total, desc, enabled)`` is the one helper the demo, study and replay use; nested tqdm
bars written to a file garble into escape sequences, so off a terminal each bar prints a few
``desc: k/total`` lines instead.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["LineProgress", "NoProgress", "progress"]


class NoProgress:
    """A bar that shows nothing (``enabled=False``); keeps the count like tqdm does."""

    def __init__(self, total: int = 0, desc: str = "") -> None:
        self.total = total
        self.desc = desc
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += int(n)

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def set_postfix_str(self, s: str = "") -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineProgress(NoProgress):
    """Plain-line progress for non-terminals: a line at about every 10% (and at least ``every``
    seconds apart, except the last), then ``done`` with the elapsed time on ``close`` (or
    ``interrupted at``/``stopped at`` when a Ctrl-C or an error ended it early)."""

    def __init__(self, total: int, desc: str, file: IO[str] | None = None,
                 every: float = 5.0) -> None:
        super().__init__(total, desc)
        self.file = file if file is not None else sys.stderr
        self.every = float(every)
        self.start = time.perf_counter()
        self._last_t = -float("inf")
        self._last_n = 0
        self._postfix = ""
        self._closed = False
        self._exc: type | None = None

    def _write(self, text: str) -> None:
        try:
            print(text, file=self.file, flush=True)
        except (OSError, ValueError):  # a closed pipe must not end the run
            pass

    def set_postfix_str(self, s: str = "") -> None:
        self._postfix = str(s)

    def update(self, n: int = 1) -> None:
        super().update(n)
        now = time.perf_counter()
        step = max(1, self.total // 10) if self.total > 0 else 1
        if self.n - self._last_n >= step and now - self._last_t >= self.every \
                and self.n < self.total:
            extra = f" ({self._postfix})" if self._postfix else ""
            self._write(f"{self.desc}: {self.n}/{self.total}{extra}")
            self._last_t, self._last_n = now, self.n

    def close(self) -> None:
        """The last line: ``done`` when every step ran; ``interrupted at`` (Ctrl-C) or ``stopped
        at`` (an error) when fewer did, read off the exception in flight (``close`` runs in a
        ``finally``, or in ``__exit__``)."""
        if self._closed:
            return
        self._closed = True
        elapsed = time.perf_counter() - self.start
        if self.n >= self.total:
            self._write(f"{self.desc}: {self.n}/{self.total} done in {elapsed:.1f} s")
            return
        exc = self._exc if self._exc is not None else sys.exc_info()[0]
        how = "interrupted" if exc is not None and issubclass(exc, KeyboardInterrupt) \
            else "stopped"
        self._write(f"{self.desc}: {how} at {self.n}/{self.total} after {elapsed:.1f} s")

    def __exit__(self, *exc: object) -> None:
        kind = exc[0] if exc else None
        self._exc = kind if isinstance(kind, type) else None
        self.close()


def progress(total: int, desc: str, enabled: bool = True, *, file: IO[str] | None = None,
             leave: bool = False) -> Any:
    """A tqdm-like bar (``update``, ``close``, ``n``, context manager): tqdm when ``file``
    (default stderr) is a terminal, :class:`LineProgress` otherwise, :class:`NoProgress` when
    ``enabled`` is false or ``total <= 0``."""
    if not enabled or total <= 0:
        return NoProgress(max(int(total), 0), desc)
    out = file if file is not None else sys.stderr
    isatty = getattr(out, "isatty", None)
    try:
        tty = bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        tty = False
    if not tty:
        return LineProgress(int(total), desc, out)
    from tqdm.auto import tqdm

    return tqdm(total=int(total), desc=desc, leave=leave, file=out, dynamic_ncols=True)
