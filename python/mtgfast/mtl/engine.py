"""The one training loop of the MTL layer: data on the device, seeding, batching, the epoch loop
with validation and early stopping, final metrics. Methods supply only their epoch step.

A method (hard sharing in ``trainer``, αVIL, AdaShare's policy search, TAG's lookahead through the
hard-sharing step) builds its model, opens an ``Engine`` on it (which seeds the run), and passes an
``EpochStep``: ``step(epoch) -> {history key: per-task values}`` that trains one epoch (``epoch``
counts from 1) and returns at least ``train_loss``. ``Engine.run`` then does what every method
shares: per epoch ``model.train()``, the step, ``model.eval()``, validation losses, early stopping
on a scalar of them (best weights restored), and validation/test metrics of the restored model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_int, check_real, describe, is_int
from ..devices import check_device
from ..errors import InputError, InputTypeError
from .architectures import ARCHITECTURES
from .models import MTLModel, torch_seed
from .suites.base import Targets, TaskSuite, task_target
from .weighting import WEIGHTINGS

__all__ = ["CODE_VERSION", "EarlyStopping", "Engine", "EpochStep", "LoopOutcome", "RunResult",
           "TrainConfig", "check_device", "check_run_inputs", "evaluate_outputs", "predict"]

#: Bumped whenever a change to the training procedure changes its numbers (part of fingerprints).
CODE_VERSION = "mtl-trainer-1"

#: one epoch of a method's training: ``step(epoch) -> {history key: this epoch's entry}``
#: (``train_loss`` at least: one value per task of the run); ``epoch`` counts from 1
EpochStep = Callable[[int], Mapping[str, Any]]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of the MTL procedure; fixed for a whole study.

    ``hidden``/``n_blocks``/``dropout`` left ``None`` take the suite's defaults. ``esa_fraction`` < 1
    is Standley et al.'s early-stopping approximation: train only that fraction of ``epochs`` and take
    gains from the shortened runs. ``max_train_batches`` caps the batches per epoch.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5
    hidden: int | None = None
    n_blocks: int | None = None
    dropout: float | None = None
    device: str = "cpu"
    weighting: str = "equal"
    arch: str = "hard"
    arch_options: tuple[tuple[str, Any], ...] = ()
    max_train_batches: int | None = None
    esa_fraction: float = 1.0

    def __post_init__(self) -> None:
        # numpy scalars are stored as Python numbers: the fingerprint (JSON) must not tell
        # np.int64(30) from 30
        for name in ("epochs", "batch_size", "patience"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), 1))
        for name in ("hidden", "n_blocks", "max_train_batches"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or int(v) < (0 if name == "n_blocks" else 1)):
                kind = "non-negative" if name == "n_blocks" else "positive"
                raise InputError(f"{name} must be None or a {kind} int, got {v!r}")
            if v is not None:
                object.__setattr__(self, name, int(v))
        reals = {"lr": check_real("lr", self.lr, 0, open_low=True),
                 "weight_decay": check_real("weight_decay", self.weight_decay, 0),
                 "esa_fraction": check_real("esa_fraction", self.esa_fraction, 0, 1, open_low=True)}
        if self.dropout is not None:
            reals["dropout"] = check_real("dropout", self.dropout, 0, 1, open_high=True)
        for name, v in reals.items():
            if isinstance(getattr(self, name), np.generic):
                object.__setattr__(self, name, v)
        for name in ("device", "weighting", "arch"):
            if not isinstance(getattr(self, name), str):
                raise InputTypeError(f"{name} must be a str, got {describe(getattr(self, name))}")
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"unknown weighting {self.weighting!r}; known: "
                             f"{', '.join(sorted(WEIGHTINGS))}")
        if self.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {self.arch!r}; known: "
                             f"{', '.join(sorted(ARCHITECTURES))} (architectures.register adds one)")
        try:  # the device's spelling here; whether it exists, when a run starts (check_device)
            torch.device(self.device)
        except RuntimeError:
            raise InputError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                             f"got {self.device!r}") from None
        opts = self.arch_options
        if isinstance(opts, Mapping):
            opts = tuple(sorted(opts.items()))
        if isinstance(opts, (str, bytes)) or not isinstance(opts, (tuple, list)) or not all(
                isinstance(kv, (tuple, list)) and len(kv) == 2 and isinstance(kv[0], str)
                for kv in opts):
            raise InputTypeError(f"arch_options must be a mapping or (name, value) pairs, got "
                                 f"{describe(self.arch_options)}")
        object.__setattr__(self, "arch_options", tuple((k, v) for k, v in opts))

    @property
    def epochs_to_run(self) -> int:
        """Epoch budget after the early-stopping approximation."""
        return max(1, math.ceil(self.epochs * self.esa_fraction))

    def fingerprint(self) -> str:
        """Hash of every field that changes results, plus ``CODE_VERSION``. ``device`` is left out on
        purpose: a study may resume on another device and keep its runs."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "device"}
        d["arch_options"] = [[k, repr(v)] for k, v in self.arch_options]
        blob = json.dumps({"code": CODE_VERSION, **d}, sort_keys=True, default=repr)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunResult:
    """Outcome of one MTL run. ``history``: ``train_loss`` (per epoch, per task), ``valid_loss``
    (per epoch, per task), ``weights`` (per epoch, per task, from the loss weighting)."""

    tasks: tuple[str, ...]
    metrics_valid: Mapping[str, float]
    metrics_test: Mapping[str, float]
    epochs_run: int
    best_epoch: int
    seconds: float
    history: Mapping[str, list[list[float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics_valid", MappingProxyType(dict(self.metrics_valid)))
        object.__setattr__(self, "metrics_test", MappingProxyType(dict(self.metrics_test)))
        object.__setattr__(self, "history", MappingProxyType(dict(self.history)))


class EarlyStopping:
    """Early stopping on a validation loss: keeps the best weights, stops after ``patience`` epochs
    without improvement or when the loss is not finite (diverged: the best weights seen are kept)."""

    def __init__(self, model: nn.Module, patience: int) -> None:
        self.patience = int(patience)
        self.best_val, self.best_epoch, self.bad = math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())

    def should_stop(self, model: nn.Module, epoch: int, val: float) -> bool:
        """Record epoch ``epoch``'s validation loss ``val``; True when training should stop."""
        if not math.isfinite(val):
            return True
        if val < self.best_val:
            self.best_val, self.best_epoch, self.bad = val, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into ``model`` and put it in eval mode."""
        model.load_state_dict(self.best_state)
        model.eval()


def check_run_inputs(suite: object, tasks: object, seed: object, config: object
                     ) -> tuple[int, ...]:
    """Validate the arguments every training entry point takes; the task indices as a tuple."""
    if not isinstance(suite, TaskSuite):
        raise InputTypeError(f"suite must be a TaskSuite, got {type(suite).__name__}")
    if not isinstance(config, TrainConfig):
        raise InputTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    # an InputError for any bad seed, a bool or a str included (this function's contract since 0.1)
    if not is_int(seed) or not 0 <= int(seed) < 2**63:
        raise InputError(f"seed must be an int in [0, 2**63), got {describe(seed)}")
    idx = suite.check_tasks(tasks)  # type: ignore[arg-type]
    check_device(config.device)
    return idx


def predict(model: nn.Module, X: torch.Tensor, chunk: int = 4096) -> list[torch.Tensor]:
    """Per-task outputs on a whole split, without gradients, in chunks to bound memory."""
    outs: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for lo in range(0, X.shape[0], chunk):
            outs.append(model(X[lo:lo + chunk]))
    return [torch.cat([o[i] for o in outs]) for i in range(len(outs[0]))]


def evaluate_outputs(suite: TaskSuite, tasks: Sequence[int], outputs: list[torch.Tensor],
                     Y: Targets) -> tuple[list[float], dict[str, float]]:
    """Per-task losses and metrics (by task name) of predicted ``outputs`` against targets ``Y``."""
    losses, metrics = [], {}
    for i, t in enumerate(tasks):
        y = task_target(Y, t)
        losses.append(float(suite.loss(t, outputs[i], y)))
        metrics[suite.task_names[t]] = suite.metric(t, outputs[i], y)
    return losses, metrics


def _to_device(Y: Targets, device: torch.device) -> Targets:
    return [y.to(device) for y in Y] if isinstance(Y, list) else Y.to(device)


@dataclass(frozen=True)
class LoopOutcome:
    """What ``Engine.loop`` ran: the per-epoch history, the epochs run and the best epoch (0
    without validation)."""

    history: dict[str, list[Any]]
    epochs_run: int
    best_epoch: int


class Engine:
    """One training run of ``model`` on ``tasks`` (already validated indices) of ``suite``.

    Opening it moves the model and the splits to ``config.device`` and seeds the run:
    ``generator`` (the mini-batch order, seeded with ``seed``) and torch's global generator
    (dropout, Gumbel samples) reset to ``seed``. ``X_train``/``Y_train`` (one target per task of
    the run), ``X_valid``/``Y_valid``, ``X_test``/``Y_test`` are the splits on the device.
    """

    def __init__(self, suite: TaskSuite, tasks: tuple[int, ...], seed: int, config: TrainConfig,
                 model: MTLModel, *, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.suite, self.tasks, self.seed, self.config = suite, tasks, int(seed), config
        self.device = torch.device(config.device)
        sp = suite.splits()
        self.X_train = sp.X_train.to(self.device)
        self.Y_train = [task_target(sp.Y_train, t).to(self.device) for t in tasks]
        self.X_valid = sp.X_valid.to(self.device)
        self.Y_valid = _to_device(sp.Y_valid, self.device)
        self.X_test = sp.X_test.to(self.device)
        self.Y_test = _to_device(sp.Y_test, self.device)
        self.model = model.to(self.device)
        # seeds >= 2**32 hashed: torch keeps 32 bits (models.torch_seed; smaller ones as they are)
        self.generator = torch.Generator().manual_seed(torch_seed(self.seed))
        torch.manual_seed(torch_seed(self.seed))  # dropout masks, Gumbel samples
        self._stopper: EarlyStopping | None = None

    # -- batching -------------------------------------------------------------------------------
    @property
    def n_train(self) -> int:
        """Training rows."""
        return int(self.X_train.shape[0])

    def permutation(self, n: int | None = None) -> torch.Tensor:
        """A fresh random order of ``n`` rows (default: all training rows) from ``generator``,
        on the device."""
        n = self.n_train if n is None else n
        return torch.randperm(n, generator=self.generator).to(self.device)

    def batches(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """``rows`` cut into mini-batches of ``config.batch_size``, at most
        ``config.max_train_batches`` of them."""
        bs = self.config.batch_size
        n_batches = math.ceil(rows.numel() / bs)
        if self.config.max_train_batches is not None:
            n_batches = min(n_batches, self.config.max_train_batches)
        return [rows[b * bs:(b + 1) * bs] for b in range(n_batches)]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Inputs and per-task targets of the training rows ``rows``."""
        return self.X_train[rows], [y[rows] for y in self.Y_train]

    def task_losses(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]
                    ) -> torch.Tensor:
        """Per-task losses (with graph) of a batch, shape ``[len(tasks)]``."""
        return torch.stack([self.suite.loss(t, outputs[i], targets[i])
                            for i, t in enumerate(self.tasks)])

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, split: str = "valid") -> tuple[list[float], dict[str, float]]:
        """Per-task losses and metrics of the model as it is on ``"valid"`` or ``"test"``."""
        if split == "valid":
            X, Y = self.X_valid, self.Y_valid
        elif split == "test":
            X, Y = self.X_test, self.Y_test
        else:
            raise InputError(f"split must be 'valid' or 'test', got {split!r}")
        return evaluate_outputs(self.suite, self.tasks, predict(self.model, X), Y)

    # -- the loop -------------------------------------------------------------------------------
    def loop(self, step: EpochStep, *, epochs: int | None = None, validate: bool = True,
             stop_on: Callable[[list[float]], float] | None = None) -> LoopOutcome:
        """Run ``step`` for ``epochs`` epochs (default ``config.epochs_to_run``). With
        ``validate``, after every epoch the validation losses join the history (``valid_loss``)
        and early stopping watches ``stop_on(losses)`` (default: their sum), keeping the best
        weights for ``finish``; without, every epoch runs and no weights are kept."""
        model = self.model
        n_epochs = self.config.epochs_to_run if epochs is None else int(epochs)
        history: dict[str, list[Any]] = {"train_loss": []}
        self._stopper = EarlyStopping(model, self.config.patience) if validate else None
        if validate:
            history["valid_loss"] = []
        epoch = 0
        for epoch in range(1, n_epochs + 1):
            model.train()
            for key, values in step(epoch).items():
                history.setdefault(key, []).append(values)
            if not validate:
                continue
            model.eval()
            val_losses, _ = self.evaluate("valid")
            history["valid_loss"].append(val_losses)
            val = float(sum(val_losses)) if stop_on is None else float(stop_on(val_losses))
            if self._stopper is not None and self._stopper.should_stop(model, epoch, val):
                break
        best = self._stopper.best_epoch if self._stopper is not None else 0
        return LoopOutcome(history=history, epochs_run=epoch, best_epoch=best)

    def finish(self, outcome: LoopOutcome) -> RunResult:
        """Restore the best weights (if the loop validated) and measure them on validation and
        test data."""
        if self._stopper is not None:
            self._stopper.restore(self.model)
        self.model.eval()
        _, m_valid = self.evaluate("valid")
        _, m_test = self.evaluate("test")
        return RunResult(tasks=tuple(self.suite.task_names[t] for t in self.tasks),
                         metrics_valid=m_valid, metrics_test=m_test,
                         epochs_run=outcome.epochs_run, best_epoch=outcome.best_epoch,
                         seconds=time.perf_counter() - self.start, history=outcome.history)

    def run(self, step: EpochStep, *, stop_on: Callable[[list[float]], float] | None = None
            ) -> RunResult:
        """``loop`` with validation and early stopping, then ``finish``: the whole protocol."""
        return self.finish(self.loop(step, stop_on=stop_on))
