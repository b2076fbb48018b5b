"""The built-in MTL procedure: train one model on a combination of a suite's tasks and measure each.

Fixed data splits (the suite's), fixed seeds (encoder from ``seed``, each head from its own seed),
AdamW, mini-batches drawn from a seeded generator, early stopping on the unweighted sum of validation
losses with the best weights restored, then metrics on validation and test data. A singleton
combination is the task's STL baseline. The loop itself is ``mtgfast.mtl.engine``'s; this module
supplies the hard-sharing epoch step (``HardSharingStep``) and re-exports the engine's
``TrainConfig``, ``RunResult`` and ``EarlyStopping`` (their long-standing import path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..checks import check_int
from ..errors import InputError, InputTypeError
from . import architectures
from .engine import (CODE_VERSION, EarlyStopping, Engine, RunResult, TrainConfig,
                     check_run_inputs, evaluate_outputs)
from .models import MTLModel
from .suites.base import TaskSuite
from .weighting import LossWeighting, make_weighting

__all__ = ["CODE_VERSION", "EarlyStopping", "HardSharingStep", "RunResult", "StepHook",
           "SuiteTrainFn", "TrainConfig", "evaluate_outputs", "fit", "train_mtl"]

#: (model, x batch, per-task targets, per-task losses with graph) -> None; called before backward
StepHook = Callable[[MTLModel, torch.Tensor, list[torch.Tensor], torch.Tensor], None]


class HardSharingStep:
    """The trainer's epoch step: one pass over a fresh permutation of the training rows in
    mini-batches, AdamW on ``weighting.combine(losses) + model.regularizer()``; then the
    weighting's and the model's ``end_epoch`` (DWA's loss ratios, AdaShare's temperature).
    Learnable loss weights (uncertainty weighting) are optimised but not decayed. ``step_hook``
    sees every batch's losses before the backward pass (TAG's lookahead)."""

    def __init__(self, engine: Engine, weighting: LossWeighting,
                 step_hook: StepHook | None = None) -> None:
        self.engine, self.weighting, self.step_hook = engine, weighting, step_hook
        config = engine.config
        groups = [{"params": list(engine.model.parameters()), "weight_decay": config.weight_decay}]
        w_params = list(weighting.parameters())
        if w_params:
            groups.append({"params": w_params, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr)

    def __call__(self, epoch: int) -> Mapping[str, Sequence[float]]:
        eng, model, weighting = self.engine, self.engine.model, self.weighting
        batches = eng.batches(eng.permutation())
        sums = torch.zeros(len(eng.tasks), device=eng.device)
        for rows in batches:
            xb, yb = eng.batch(rows)
            losses = eng.task_losses(model(xb), yb)
            if self.step_hook is not None:
                self.step_hook(model, xb, yb, losses)
            total = weighting.combine(losses) + model.regularizer()
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            sums += losses.detach()
        epoch_mean = sums / len(batches)
        weighting.end_epoch(epoch_mean.detach())
        if callable(getattr(model, "end_epoch", None)):  # e.g. AdaShare anneals its temperature
            model.end_epoch()
        return {"train_loss": [float(v) for v in epoch_mean],
                "weights": [float(v) for v in weighting.weights()]}


def fit(suite: TaskSuite, tasks: Sequence[int], seed: int, config: TrainConfig, *,
        step_hook: StepHook | None = None) -> tuple[RunResult, nn.Module]:
    """``train_mtl`` that also returns the trained model (best weights, eval mode) and accepts a
    ``step_hook`` called on every batch before the backward pass."""
    idx = check_run_inputs(suite, tasks, seed, config)
    model = architectures.build_model(config.arch, suite, idx, hidden=config.hidden,
                                      n_blocks=config.n_blocks, dropout=config.dropout,
                                      seed=seed, **dict(config.arch_options))
    weighting = make_weighting(config.weighting, len(idx))
    engine = Engine(suite, idx, seed, config, model)
    step = HardSharingStep(engine, weighting.to(engine.device), step_hook)
    return engine.run(step), engine.model


def train_mtl(suite: TaskSuite, tasks: Sequence[int], seed: int, config: TrainConfig) -> RunResult:
    """Train one model on the tasks ``tasks`` (indices into ``suite.task_names``) and return their
    validation and test metrics at the best validation epoch. Deterministic for a given seed on CPU."""
    result, _ = fit(suite, tasks, seed, config)
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
        seed = check_int("seed", seed, 0, 2**63 - 1)
        r = train_mtl(self.suite, [index[t] for t in tasks], seed, self.config)
        return {t: (float(r.metrics_valid[t]), float(r.metrics_test[t])) for t in r.tasks}
