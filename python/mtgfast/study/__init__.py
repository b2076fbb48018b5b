"""Studies: the active loop of Algorithm 1 (selectors, ask/tell), replay methods, the Study runner,
its executors (in-process, local processes, Ray) and the estimator registry.

Import-light: nothing here imports torch; names are loaded on first access.
"""

from __future__ import annotations

from .._lazy import exports_by_module, lazy_exports

_LAZY: dict[str, str] = exports_by_module("mtgfast.study", {
    "active": ("ActiveLoop", "Selector", "SelectionContext", "Trial", "ExpGainSelector",
               "GreedySelector", "RandomSelector", "UncertaintySelector", "make_selector",
               "LoopState", "MemoryLoopState"),
    "replay_methods": ("replay_method",),
    "study": ("Study", "StudyResult", "RunFailedError", "group_stored"),
    "executors": ("Executor", "InProcessExecutor", "LocalExecutor", "RayExecutor",
                  "make_executor"),
    "registry": ("estimator_names", "make_estimator"),
})

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports("mtgfast.study", globals(), _LAZY)
