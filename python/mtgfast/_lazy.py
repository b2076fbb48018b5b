"""Lazy package exports: a name is imported from its module on first access (PEP 562), so that
``import mtgfast`` stays light and torch/numba/triton load only when something needs them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def exports_by_module(package: str, modules: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """The export table ``{name: "package.module"}`` of ``{module: names}`` (in that order): one
    line per module instead of one per name; a name listed twice is an error."""
    table: dict[str, str] = {}
    for module, names in modules.items():
        for name in names:
            if name in table:
                raise ValueError(f"{package}: {name!r} is exported by {table[name]!r} and "
                                 f"{package}.{module}")
            table[name] = f"{package}.{module}"
    return table


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public names live in the modules given by
    ``exports`` (name -> module); a loaded name is cached in the package ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace.get("__all__", ()), *exports})

    return __getattr__, __dir__
