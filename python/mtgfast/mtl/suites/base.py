"""``TaskSuite``: the data, encoder and heads factory of a multi-task problem for the built-in trainer.

A suite owns fixed train/valid/test splits (built once, lazily, and never pickled: worker processes
rebuild them from the constructor arguments), one loss and one metric per task with its direction.
Targets ``Y`` are a tensor whose axis 1 is the task (``Y[:, j]`` is task j's target) or a list of
per-task tensors (tasks with different target shapes).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn

from ...checks import describe, is_int
from ...errors import InputError, InputTypeError
from .. import metrics as _metrics

__all__ = ["LOSS_KINDS", "Splits", "TaskSuite", "Targets", "select_rows", "task_target"]

LOSS_KINDS = ("bce", "mse", "l1", "ce")
Targets = Union[torch.Tensor, list[torch.Tensor]]


@dataclass(frozen=True)
class Splits:
    """Fixed data splits of a suite (float inputs; targets as described in the module docstring)."""

    X_train: torch.Tensor
    Y_train: Targets
    X_valid: torch.Tensor
    Y_valid: Targets
    X_test: torch.Tensor
    Y_test: Targets


def task_target(Y: Targets, task: int) -> torch.Tensor:
    """Target of one task from a task-axis tensor or a per-task list."""
    return Y[task] if isinstance(Y, list) else Y[:, task]


def select_rows(Y: Targets, rows: torch.Tensor) -> Targets:
    """Rows ``rows`` of the targets (a mini-batch)."""
    return [y[rows] for y in Y] if isinstance(Y, list) else Y[rows]


class TaskSuite(ABC):
    """A multi-task problem: subclasses set ``name``, ``task_names``, ``loss_kinds``, ``metric_names``
    and implement ``_build_splits``, ``in_dim`` and ``head_out_dim``."""

    name: str = "suite"
    task_names: tuple[str, ...] = ()
    loss_kinds: tuple[str, ...] = ()
    metric_names: tuple[str, ...] = ()
    #: default encoder hyper-parameters (``TrainConfig`` fields left ``None`` take these)
    encoder_config: dict[str, Any] = {"hidden": 64, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, **params: Any) -> None:
        # constructor arguments: the suite's identity (fingerprint) and how workers rebuild it
        self.params: dict[str, Any] = dict(params)
        self._splits: Splits | None = None

    # -- data ---------------------------------------------------------------------------------
    @abstractmethod
    def _build_splits(self) -> Splits:
        """Load and split the data (called once per process)."""

    def splits(self) -> Splits:
        """The fixed train/valid/test splits (built on first use, then cached)."""
        if self._splits is None:
            self._splits = self._build_splits()
        return self._splits

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_splits"] = None  # rebuilt in the worker: cheaper than pickling tensors per run
        return state

    @property
    @abstractmethod
    def in_dim(self) -> int:
        """Width of one input row."""

    @abstractmethod
    def head_out_dim(self, task: int) -> int:
        """Output width of task ``task``'s head."""

    # -- per-task definitions -----------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return len(self.task_names)

    def metric_name(self, task: int) -> str:
        return self.metric_names[task]

    def loss_kind(self, task: int) -> str:
        return self.loss_kinds[task]

    @property
    def higher_is_better(self) -> tuple[bool, ...]:
        """Direction of each task's metric."""
        return tuple(_metrics.HIGHER_IS_BETTER[m] for m in self.metric_names)

    def loss(self, task: int, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        """Training loss of one task (mean over the batch), by its ``loss_kind``."""
        kind = self.loss_kinds[task]
        if kind == "bce":
            return F.binary_cross_entropy_with_logits(y_pred.reshape(y_true.shape), y_true.float())
        if kind == "mse":
            return F.mse_loss(y_pred.reshape(y_true.shape), y_true)
        if kind == "l1":
            return F.l1_loss(y_pred.reshape(y_true.shape), y_true)
        return F.cross_entropy(y_pred, y_true.long().reshape(-1))

    def metric(self, task: int, y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
        """Evaluation metric of one task on raw outputs."""
        return _metrics.compute(self.metric_names[task], y_pred, y_true)

    # -- model factory ------------------------------------------------------------------------
    def make_encoder(self, hidden: int, n_blocks: int, dropout: float) -> nn.Module:
        """Shared encoder; must expose ``out_dim``."""
        from ..models import MLPEncoder
        return MLPEncoder(self.in_dim, hidden, n_blocks, dropout)

    def make_head(self, task: int, in_dim: int) -> nn.Module:
        """Task-specific head on top of the encoder."""
        return nn.Linear(in_dim, self.head_out_dim(task))

    # -- identity -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of the suite's class, tasks and constructor arguments (part of a study fingerprint)."""
        blob = json.dumps({"cls": type(self).__name__, "name": self.name, "tasks": self.task_names,
                           "params": {k: str(v) for k, v in sorted(self.params.items())}},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def check_tasks(self, tasks: Sequence[int]) -> tuple[int, ...]:
        """Validate a combination given as task indices: distinct, in range, non-empty."""
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
            raise InputError(f"tasks must be a sequence of task indices, got {type(tasks).__name__}")
        for t in tasks:
            if not is_int(t):
                raise InputTypeError(f"tasks must be task indices (ints), got {describe(t)}")
        out = tuple(int(t) for t in tasks)
        if not out:
            raise InputError("tasks must not be empty")
        if len(set(out)) != len(out):
            raise InputError(f"tasks must be distinct, got {list(out)}")
        bad = [t for t in out if not 0 <= t < self.n_tasks]
        if bad:
            raise InputError(f"task indices {bad} out of range for {self.n_tasks} tasks "
                             f"of suite {self.name!r}")
        return tuple(sorted(out))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"
