"""mtgfast: which tasks should be trained together?

Measure transfer gains on a few task combinations, predict the rest (MTG-Net, HOA, TAG), and search
the best grouping under a budget of groups. ``import mtgfast`` is light: torch, triton and numba are
imported only by the estimators, trainers and kernels that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import exports_by_module, lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = exports_by_module("mtgfast", {
    "gains": ("GainTable",),
    "store": ("GainStore",),
    "grouping": ("Grouping", "group", "evaluate", "evaluate_tasks"),
    "masks": ("all_masks", "k_subsets", "sample_masks"),
    "estimators.mtgnet": ("MTGNet",),
    "estimators.whole_space": ("score_whole_space",),
    "estimators.hoa": ("HOA",),
    "estimators.tag": ("TAG",),
    "estimators.oracle": ("Oracle",),
    "study.study": ("Study",),
})

__all__ = [  # literal, so that type checkers and linters see the public names
    "__version__",
    "GainTable",
    "GainStore",
    "Grouping",
    "group",
    "evaluate",
    "evaluate_tasks",
    "all_masks",
    "k_subsets",
    "sample_masks",
    "MTGNet",
    "score_whole_space",
    "HOA",
    "TAG",
    "Oracle",
    "Study",
]

if TYPE_CHECKING:  # pragma: no cover
    from .estimators.hoa import HOA
    from .estimators.mtgnet import MTGNet
    from .estimators.oracle import Oracle
    from .estimators.tag import TAG
    from .estimators.whole_space import score_whole_space
    from .gains import GainTable
    from .grouping import Grouping, evaluate, evaluate_tasks, group
    from .masks import all_masks, k_subsets, sample_masks
    from .store import GainStore
    from .study.study import Study


__getattr__, __dir__ = lazy_exports("mtgfast", globals(), _LAZY)
