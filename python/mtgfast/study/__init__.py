"""Studies: the active loop of Algorithm 1 (selectors, ask/tell), replay methods, the Study runner,
its executors (in-process, local processes, Ray) and the estimator registry.

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
    "LoopState": "mtgfast.study.active",
    "MemoryLoopState": "mtgfast.study.active",
    "replay_method": "mtgfast.study.replay_methods",
    "Study": "mtgfast.study.study",
    "StudyResult": "mtgfast.study.study",
    "RunFailedError": "mtgfast.study.study",
    "group_stored": "mtgfast.study.study",
    "Executor": "mtgfast.study.executors",
    "InProcessExecutor": "mtgfast.study.executors",
    "LocalExecutor": "mtgfast.study.executors",
    "RayExecutor": "mtgfast.study.executors",
    "make_executor": "mtgfast.study.executors",
    "estimator_names": "mtgfast.study.registry",
    "make_estimator": "mtgfast.study.registry",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports("mtgfast.study", globals(), _LAZY)
