"""Studies: the active loop of Algorithm 1 (selectors, ask/tell), replay methods, the Study runner.

Import-light: nothing here imports torch; names are loaded on first access.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "ActiveLoop": "mtgfast.study.active",
    "Selector": "mtgfast.study.active",
    "SelectionContext": "mtgfast.study.active",
    "Trial": "mtgfast.study.active",
    "ExpGainSelector": "mtgfast.study.active",
    "GreedySelector": "mtgfast.study.active",
    "RandomSelector": "mtgfast.study.active",
    "UncertaintySelector": "mtgfast.study.active",
    "make_selector": "mtgfast.study.active",
    "replay_method": "mtgfast.study.replay_methods",
    "Study": "mtgfast.study.study",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports("mtgfast.study", globals(), _LAZY)
