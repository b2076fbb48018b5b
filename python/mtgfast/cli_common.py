"""What every ``mtgfast`` subcommand shares: the parser class (one-line errors, no abbreviations,
defaults in the help), checked option types, pass-through options, path checks, error lines.

Imported by ``mtgfast.cli`` and ``mtgfast.cli_study``; it imports neither (one-way imports).
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .errors import InputError
from .files import atomic_write

__all__ = ["EXIT_INTERNAL", "EXIT_USAGE", "HelpFormatter", "Parser", "UsageError",
           "atomic_write", "check_known_options", "check_new_file", "check_new_folder",
           "check_not_input", "check_readable_file", "error_line", "extra_options",
           "float_range", "int_at_least", "misspelt_options", "parse_option_value", "parse_set",
           "repeated_options", "require_extra", "write_output"]

#: exit status of bad input (argparse's convention) and of an unexpected internal error
EXIT_USAGE = 2
EXIT_INTERNAL = 1


class UsageError(InputError):
    """A command line that does not parse (unknown option, missing or malformed value)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default (or that it is required) after its help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings \
                or "(default" in text or "(required" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if isinstance(action, argparse._AppendAction) and action.default is None:
            return f"{text} (default: none)"
        if action.default is None:
            return f"{text} (default: none)"
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that never abbreviates options and raises :class:`UsageError`
    instead of printing usage and exiting (``main`` turns it into one line and status 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise UsageError(f"{sub + ': ' if sub else ''}{message} (see '{self.prog} --help')")


_ASCII_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def int_at_least(low: int, what: str = "", *, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (``--budget 0`` fails while parsing), and <= ``high``
    when given (a typo such as ``--seeds 100000000000`` fails too, not after years of work)."""

    def parse(text: str) -> int:
        # ASCII digits only: int() would also take '1_000' and other scripts' digits ('٣')
        if not _ASCII_INT.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"expected an integer{what}, got {text!r}")
        v = int(text, 10)
        if v < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}{what}, got {v}")
        if high is not None and v > high:
            raise argparse.ArgumentTypeError(f"expected an integer in [{low}, {high}]{what}, "
                                             f"got {v}")
        return v

    parse.__name__ = f"int >= {low}" if high is None else f"int in [{low}, {high}]"
    return parse


def float_range(low: float, high: float = math.inf, *, low_inclusive: bool = True,
                high_inclusive: bool = True) -> Callable[[str], float]:
    """An argparse type: a finite float in the given interval."""
    lo_b, hi_b = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
    shown = f"{lo_b}{low:g}, {high:g}{hi_b}"

    def parse(text: str) -> float:
        try:
            if not text.isascii() or "_" in text:   # float() takes '1_0' and '٣' too
                raise ValueError(text)
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(v) and (v >= low if low_inclusive else v > low) \
            and (v <= high if high_inclusive else v < high)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a number in {shown}, got {text}")
        return v

    parse.__name__ = f"number in {shown}"
    return parse


def parse_option_value(value: str) -> Any:
    """A command-line option value: an int, a float, ``true``/``false`` (any case) as a bool, or
    else the string itself (so ``--use-measured false`` is False, not the truthy "false")."""
    if value.isascii() and "_" not in value:   # int()/float() take '1_0' and '١٦' too
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return {"true": True, "false": False}.get(value.lower(), value)


def extra_options(extra: Sequence[str]) -> dict[str, Any]:
    """``--key value``, ``--key=value`` and bare ``--flag`` (True) -> keyword options."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise UsageError(f"unexpected argument {tok!r}")
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        if key in out:
            raise UsageError(f"option --{key.replace('_', '-')} given twice")
        if eq:
            out[key] = parse_option_value(val)
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out[key] = parse_option_value(extra[i + 1])
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def parse_set(items: Iterable[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` items (of a repeatable ``--set``) -> keyword options with typed values."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, eq, val = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        if key in out:
            raise UsageError(f"{flag} {key} given twice")
        out[key] = parse_option_value(val.strip())
    return out


def check_known_options(options: Iterable[str], known: Iterable[str], target: str,
                        also: Iterable[str] = ()) -> None:
    """Unknown keys are a :class:`UsageError` naming the closest known option (``known`` are the
    target's parameters; ``also`` the command's own options, for misspelt ones)."""
    known_s = sorted(set(known))
    for key in options:
        if key in known_s:
            continue
        flag = f"--{key.replace('_', '-')}"
        pool = [f"--{k.replace('_', '-')}" for k in known_s] + list(also)
        close = difflib.get_close_matches(flag, pool, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"unknown option {flag} for {target} (accepted: "
                         f"{', '.join(known_s)}){hint}")


def misspelt_options(tokens: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """A hint for ``--option`` tokens the parser does not know, naming close known ones
    (``--budjets: did you mean --budgets?``); empty when nothing looks misspelt."""
    flags = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    hints = []
    for tok in tokens:
        if not tok.startswith("--") or len(tok) <= 2:
            continue
        name = tok.split("=", 1)[0]
        if name in flags:
            continue
        close = difflib.get_close_matches(name, flags, n=1, cutoff=0.6)
        if close:
            hints.append(f"{name}: did you mean {close[0]}?")
    return "; ".join(hints)


def repeated_options(tokens: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """The first option that takes a value and appears more than once in ``tokens`` (argparse
    would silently keep the last), e.g. ``--masks``; empty when none does."""
    single = {s for a in parser._actions if isinstance(a, argparse._StoreAction)
              for s in a.option_strings}
    canonical = {s: a.option_strings[-1] for a in parser._actions for s in a.option_strings}
    seen: set[str] = set()
    for tok in tokens:
        if tok == "--":
            break
        name = tok.split("=", 1)[0]
        if name in single:
            key = canonical[name]
            if key in seen:
                return key
            seen.add(key)
    return ""


def require_extra(module: str, extra: str, flag: str) -> None:
    """``InputError`` naming the option and the extra to install when ``module`` is missing, so
    that ``--plot`` fails before the work, not after it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(f"{flag} needs {module}, which is not installed: "
                         f"pip install \"mtgfast[{extra}]\"")


def check_readable_file(path: str, flag: str) -> str:
    """``path`` names an existing regular file (else ``InputError`` naming the option)."""
    if not os.path.exists(path):
        raise InputError(f"{flag} {path!r}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{flag} {path!r}: is a directory, expected a file")
    _check_regular(path, flag)
    if not os.access(path, os.R_OK):
        raise InputError(f"{flag} {path!r}: permission denied (cannot read)")
    return path


def _check_regular(path: str, flag: str) -> None:
    """A FIFO, a device (/dev/null) or a socket is no data file: reading one blocks or reads
    nothing, and SQLite cannot keep a store in it."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise InputError(f"{flag} {path!r}: is {kind}, expected a regular file")


def _check_can_create(folder: str, path: str, flag: str) -> None:
    """Create and remove a file in ``folder``: permissions, read-only mounts and /proc-like
    folders that refuse new files show here, before the work whose result would be lost."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".mtgfast-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{flag} {path!r}: cannot create files in {folder!r} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _check_not_empty(path: str, flag: str) -> None:
    if not isinstance(path, str) or not path.strip():
        raise InputError(f"{flag}: expected a path, got {path!r}")


def check_new_folder(path: str, flag: str) -> str:
    """``path`` is an existing folder or can be created in an existing, writable parent."""
    _check_not_empty(path, flag)
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag} {path!r}: is a file, expected a folder (created if missing)")
    parent = os.path.dirname(os.path.abspath(path))
    target = path if os.path.isdir(path) else parent
    if not os.path.isdir(target):
        raise InputError(f"{flag} {path!r}: folder {parent!r} does not exist")
    if not os.access(target, os.W_OK):
        raise InputError(f"{flag} {path!r}: permission denied (cannot write)")
    _check_can_create(target, path, flag)
    return path


def check_new_file(path: str, flag: str, *, device_ok: bool = False) -> str:
    """``path`` can be written: its folder exists and is writable, and it is not a folder (nor
    a FIFO or a device, unless ``device_ok``: ``--json /dev/null`` discards the output)."""
    _check_not_empty(path, flag)
    if os.path.isdir(path) or path.endswith(tuple(s for s in (os.sep, os.altsep) if s)):
        raise InputError(f"{flag} {path!r}: is a directory, expected a file name")
    if os.path.exists(path) and not (device_ok and stat.S_ISCHR(os.stat(path).st_mode)):
        _check_regular(path, flag)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{flag} {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise InputError(f"{flag} {path!r}: permission denied (cannot write)")
    if not os.path.exists(path):
        _check_can_create(folder, path, flag)
    return path


def _same_file(a: str, b: str) -> bool:
    """``a`` and ``b`` name one file: the same real path, or (both existing) the same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(path: str, flag: str, inputs: Mapping[str, str | None]) -> None:
    """An output ``path`` must not be one of the ``inputs`` (option -> path; None: not given):
    ``--json m.csv`` beside ``--masks m.csv`` would replace the mask file."""
    for in_flag, in_path in inputs.items():
        if in_path is not None and in_flag != flag and _same_file(path, in_path):
            raise UsageError(f"{flag} {path!r} is the file of {in_flag}: it would be "
                             "overwritten; choose another output path")


def write_output(path: str, flag: str, write: Callable[[str], Any], *,
                 folder: bool = False) -> None:
    """``write(path)``, an ``OSError`` (disk full, a folder removed meanwhile) reported as an
    ``InputError`` naming the option. A file is written atomically (``write`` gets a temporary
    path, moved over ``path`` when complete: :func:`atomic_write`); with ``folder`` (``--plot
    DIR``) ``write`` gets the folder and writes each of its files atomically itself."""
    try:
        if folder:
            write(path)
        else:
            atomic_write(path, write)
    except OSError as exc:
        raise InputError(f"{flag} {path!r}: cannot write ({exc.strerror or exc})") from None


def error_line(exc: BaseException) -> str:
    """One line for an error: an OSError names its file; whitespace is collapsed."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename!r}" if exc.filename is not None else ""
        msg = f"{exc.strerror}:{where}" if where else exc.strerror
    else:
        msg = str(exc)
    msg = " ".join(msg.split())
    return msg or type(exc).__name__
