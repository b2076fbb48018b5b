"""Files written whole or not at all: outputs (``--json``, plots, replay tables) go to a
temporary file beside their path and are moved over it when complete."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = ["atomic_write"]


def _new_file_mode(target: str) -> int:
    """The permissions ``open(target, "w")`` would leave: the existing file's, else 0o666 less
    the umask (``mkstemp`` makes 0o600 files)."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], Any]) -> Any:
    """``write(tmp)`` into a temporary file beside ``path`` (same folder, same suffix, so that
    savefig infers the format), then ``os.replace`` it over ``path``: a failed or interrupted
    write leaves the previous file whole, never part of a new one. A device (``/dev/null``) is
    written in place; a symbolic link keeps pointing at the file it names. Returns ``write``'s
    value."""
    name = os.fspath(path)
    try:
        device = stat.S_ISCHR(os.stat(name).st_mode)
    except OSError:   # a new file
        device = False
    if device:   # its errors (/dev/full: no space) are the caller's, never a replaced device
        return write(name)
    target = os.path.realpath(name) if os.path.islink(name) else name
    folder, base = os.path.split(os.path.abspath(target))
    suffix = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, _new_file_mode(target))
        out = write(tmp)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return out
