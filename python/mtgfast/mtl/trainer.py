"""The built-in MTL procedure: train one model on a combination of a suite's tasks and measure each.

Fixed data splits (the suite's), fixed seeds (encoder from ``seed``, each head from its own seed),
AdamW, mini-batches drawn from a seeded generator, early stopping on the unweighted sum of validation
losses with the best weights restored, then metrics on validation and test data. A singleton
combination is the task's STL baseline.
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

import torch
from torch import nn

from ..errors import InputError, InputTypeError
from .suites.base import Targets, TaskSuite, select_rows, task_target

__all__ = ["CODE_VERSION", "RunResult", "TrainConfig", "evaluate_outputs", "train_mtl"]

#: Bumped whenever a change to the training procedure changes its numbers (part of fingerprints).
CODE_VERSION = "mtl-trainer-1"

# (model, x batch, per-task targets, per-task losses with graph) -> None; called before backward
StepHook = Callable[[nn.Module, torch.Tensor, list[torch.Tensor], torch.Tensor], None]


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
        for name in ("epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputTypeError(f"{name} must be an int, got {type(v).__name__}")
            if v < 1:
                raise InputError(f"{name} must be >= 1, got {v}")
        for name in ("hidden", "n_blocks", "max_train_batches"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (
                    0 if name == "n_blocks" else 1)):
                raise InputError(f"{name} must be None or a positive int, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.dropout is not None and not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (isinstance(self.esa_fraction, (int, float)) and 0 < self.esa_fraction <= 1):
            raise InputError(f"esa_fraction must be in (0, 1], got {self.esa_fraction!r}")
        for name in ("device", "weighting", "arch"):
            if not isinstance(getattr(self, name), str):
                raise InputTypeError(f"{name} must be a str")
        opts = self.arch_options
        if isinstance(opts, Mapping):
            opts = tuple(sorted(opts.items()))
        object.__setattr__(self, "arch_options", tuple((str(k), v) for k, v in opts))

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


class _EqualWeighting(nn.Module):
    """Sum of task losses; used only while ``mtgfast.mtl.weighting`` is not installed."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n_tasks = n_tasks

    def combine(self, losses: torch.Tensor) -> torch.Tensor:
        return losses.sum()

    def end_epoch(self, epoch_mean_losses: torch.Tensor) -> None:
        return None

    def weights(self) -> torch.Tensor:
        return torch.ones(self.n_tasks)


def _make_weighting(name: str, n_tasks: int) -> nn.Module:
    try:
        from .weighting import make_weighting
    except ModuleNotFoundError as exc:
        if exc.name != "mtgfast.mtl.weighting" or name != "equal":
            raise
        return _EqualWeighting(n_tasks)
    return make_weighting(name, n_tasks)


def _predict(model: nn.Module, X: torch.Tensor, chunk: int = 4096) -> list[torch.Tensor]:
    """Per-task outputs on a whole split, in chunks to bound memory."""
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


def _check_inputs(suite: object, tasks: object, seed: object, config: object) -> tuple[int, ...]:
    if not isinstance(suite, TaskSuite):
        raise InputTypeError(f"suite must be a TaskSuite, got {type(suite).__name__}")
    if not isinstance(config, TrainConfig):
        raise InputTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative int, got {seed!r}")
    return suite.check_tasks(tasks)  # type: ignore[arg-type]


def _fit(suite: TaskSuite, tasks: tuple[int, ...], seed: int, config: TrainConfig,
         step_hook: StepHook | None = None) -> tuple[RunResult, nn.Module]:
    from .architectures import build_model

    start = time.perf_counter()
    device = torch.device(config.device)
    sp = suite.splits()
    Xtr = sp.X_train.to(device)
    Ytr = [task_target(sp.Y_train, t).to(device) for t in tasks]
    Xva = sp.X_valid.to(device)
    Yva = select_rows(sp.Y_valid, torch.arange(sp.X_valid.shape[0]))

    model = build_model(config.arch, suite, tasks, hidden=config.hidden, n_blocks=config.n_blocks,
                        dropout=config.dropout, seed=seed, **dict(config.arch_options)).to(device)
    weighting = _make_weighting(config.weighting, len(tasks)).to(device)
    groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    w_params = list(weighting.parameters())
    if w_params:  # learnable loss weights (uncertainty weighting) are not decayed
        groups.append({"params": w_params, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=config.lr)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # dropout masks

    n = Xtr.shape[0]
    n_batches = math.ceil(n / config.batch_size)
    if config.max_train_batches is not None:
        n_batches = min(n_batches, config.max_train_batches)
    history: dict[str, list[list[float]]] = {"train_loss": [], "valid_loss": [], "weights": []}
    stopper = EarlyStopping(model, config.patience)
    epoch = 0
    for epoch in range(1, config.epochs_to_run + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        sums = torch.zeros(len(tasks), device=device)
        for b in range(n_batches):
            rows = perm[b * config.batch_size:(b + 1) * config.batch_size]
            xb = Xtr[rows]
            yb = [y[rows] for y in Ytr]
            outs = model(xb)
            losses = torch.stack([suite.loss(t, outs[i], yb[i]) for i, t in enumerate(tasks)])
            if step_hook is not None:
                step_hook(model, xb, yb, losses)
            total = weighting.combine(losses) + model.regularizer()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sums += losses.detach()
        epoch_mean = sums / n_batches
        weighting.end_epoch(epoch_mean.detach())
        if callable(getattr(model, "end_epoch", None)):  # e.g. AdaShare anneals its temperature
            model.end_epoch()
        history["train_loss"].append([float(v) for v in epoch_mean])
        history["weights"].append([float(v) for v in weighting.weights()])
        model.eval()
        val_losses, _ = evaluate_outputs(suite, tasks, _predict(model, Xva), _to(Yva, device))
        history["valid_loss"].append(val_losses)
        if stopper.should_stop(model, epoch, float(sum(val_losses))):
            break
    stopper.restore(model)
    _, m_valid = evaluate_outputs(suite, tasks, _predict(model, Xva), _to(Yva, device))
    _, m_test = evaluate_outputs(suite, tasks, _predict(model, sp.X_test.to(device)),
                                 _to(sp.Y_test, device))
    result = RunResult(tasks=tuple(suite.task_names[t] for t in tasks), metrics_valid=m_valid,
                       metrics_test=m_test, epochs_run=epoch, best_epoch=stopper.best_epoch,
                       seconds=time.perf_counter() - start, history=history)
    return result, model


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


def _to(Y: Targets, device: torch.device) -> Targets:
    return [y.to(device) for y in Y] if isinstance(Y, list) else Y.to(device)


def train_mtl(suite: TaskSuite, tasks: Sequence[int], seed: int, config: TrainConfig) -> RunResult:
    """Train one model on the tasks ``tasks`` (indices into ``suite.task_names``) and return their
    validation and test metrics at the best validation epoch. Deterministic for a given seed on CPU."""
    idx = _check_inputs(suite, tasks, seed, config)
    result, _ = _fit(suite, idx, seed, config)
    return result


class SuiteTrainFn:
    """A suite and a config as the plain training callable a study uses:
    ``fn(tasks: tuple[str, ...], seed) -> {task: (valid metric, test metric)}``. Picklable (the
    suite drops its cached data), so it runs in worker processes."""

    def __init__(self, suite: TaskSuite, config: TrainConfig) -> None:
        if not isinstance(suite, TaskSuite):
            raise InputTypeError(f"suite must be a TaskSuite, got {type(suite).__name__}")
        if not isinstance(config, TrainConfig):
            raise InputTypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.suite = suite
        self.config = config

    def __call__(self, tasks: Sequence[str], seed: int) -> dict[str, tuple[float, float]]:
        index = {name: i for i, name in enumerate(self.suite.task_names)}
        unknown = [t for t in tasks if t not in index]
        if unknown:
            raise InputError(f"unknown tasks {unknown}; suite {self.suite.name!r} has "
                             f"{list(self.suite.task_names)}")
        r = train_mtl(self.suite, [index[t] for t in tasks], int(seed), self.config)
        return {t: (float(r.metrics_valid[t]), float(r.metrics_test[t])) for t in r.tasks}
