"""What a :class:`~mtgfast.study.study.Study` needs, built from a task suite: a measure callable,
task names, metric directions and a fingerprint (:class:`StudyProblem`).

The study knows nothing of suites or trainers; this adapter is the one place that turns a
``TaskSuite`` and a ``TrainConfig`` into a problem, through the public trainer API
(:class:`~mtgfast.mtl.trainer.SuiteTrainFn`). Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import describe
from ..errors import InputError, InputTypeError
from ..gains import check_printable_names

__all__ = ["StudyProblem", "SuiteAffinity", "suite_problem"]


@dataclass(frozen=True)
class StudyProblem:
    """A study's problem: ``measure(tasks, seed) -> {task: metric}`` or ``{task: (valid, test)}``
    (picklable to run in workers), the task names, one metric name and direction per task, a
    fingerprint that changes whenever the training procedure does, a default study name, the
    config stored with each run, and optionally ``affinity(seed) -> (N, N)`` for TAG."""

    measure: Callable[[tuple[str, ...], int], Mapping[str, Any]]
    task_names: tuple[str, ...]
    metrics: tuple[str, ...]
    higher_is_better: tuple[bool, ...]
    fingerprint: str
    name: str
    config: Mapping[str, Any] = field(default_factory=dict)
    affinity: Callable[[int], Any] | None = None

    def __post_init__(self) -> None:
        if not callable(self.measure):
            raise InputTypeError("measure must be a callable (tasks, seed) -> {task: metric}")
        for what in ("task_names", "metrics", "higher_is_better"):
            v = getattr(self, what)
            if isinstance(v, (str, bytes, set, frozenset)) or not isinstance(v, Iterable):
                raise InputTypeError(f"{what} must be a sequence (one entry per task, in task "
                                     f"order; not a set), got {describe(v)}")
        names = tuple(self.task_names)
        bad = [t for t in names if not isinstance(t, str) or not t.strip()]
        if bad:  # str(None) == "None" would name a task silently
            raise InputError(f"task names must be non-empty strings, got {bad[0]!r} in "
                             f"{list(names)}")
        n = len(names)
        if n == 0 or len(set(names)) != n:
            raise InputError(f"task_names must be distinct and non-empty, got {list(names)}")
        check_printable_names(names)
        metrics = tuple(self.metrics)
        if not all(isinstance(m, str) and m for m in metrics):
            raise InputError(f"metrics must be non-empty strings, got {list(metrics)}")
        hib = tuple(self.higher_is_better)
        if not all(isinstance(h, (bool, np.bool_)) for h in hib):  # "yes" is not three bools
            raise InputTypeError(f"higher_is_better must be bools, got {list(hib)}")
        hib = tuple(bool(h) for h in hib)
        if len(metrics) != n or len(hib) != n:
            raise InputError(f"metrics and higher_is_better need one entry per task ({n}), got "
                             f"{len(metrics)} and {len(hib)}")
        for what in ("fingerprint", "name"):
            if not isinstance(getattr(self, what), str) or not getattr(self, what):
                raise InputTypeError(f"{what} must be a non-empty string")
        if self.affinity is not None and not callable(self.affinity):
            raise InputTypeError("affinity must be None or a callable seed -> (N, N) matrix")
        object.__setattr__(self, "task_names", names)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "higher_is_better", hib)
        object.__setattr__(self, "config", dict(self.config))


class SuiteAffinity:
    """TAG's lookahead inter-task affinity of one all-task run of a suite (picklable)."""

    def __init__(self, suite: Any, config: Any) -> None:
        self.suite, self.config = suite, config

    def __call__(self, seed: int) -> np.ndarray:
        from .tag_affinity import collect_affinity

        return np.asarray(collect_affinity(self.suite, int(seed), self.config).matrix,
                          dtype=np.float64)


def suite_problem(suite: object, config: object = None) -> StudyProblem:
    """The problem of training ``suite`` with the built-in trainer under ``config``
    (default ``TrainConfig()``); both enter the fingerprint."""
    from .suites.base import TaskSuite
    from .trainer import SuiteTrainFn, TrainConfig

    if not isinstance(suite, TaskSuite):
        raise InputTypeError(f"problem must be a TaskSuite, a StudyProblem or a callable "
                             f"train(tasks, seed) -> {{task: metric}}; got {type(suite).__name__}")
    cfg = TrainConfig() if config is None else config
    if not isinstance(cfg, TrainConfig):
        raise InputTypeError(f"config must be a TrainConfig, got {type(cfg).__name__}")
    fp = cfg.fingerprint()
    return StudyProblem(measure=SuiteTrainFn(suite, cfg), task_names=tuple(suite.task_names),
                        metrics=tuple(suite.metric_names),
                        higher_is_better=tuple(suite.higher_is_better),
                        fingerprint=f"{fp}-{suite.fingerprint()}",
                        name=f"{suite.name}-{cfg.weighting}-{cfg.arch}-{fp[:8]}",
                        config=cfg.to_dict(), affinity=SuiteAffinity(suite, cfg))
