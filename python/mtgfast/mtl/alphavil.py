"""αVIL: α-Variable Importance Learning (Kourdis, Gordon-Hall & Gorinski, "αVIL: Learning to
Leverage Auxiliary Tasks for Multitask Learning", Algorithm 1).

One target task t* and auxiliary tasks share a hard-sharing model θ. Each epoch:

1. task-specific updates from the same start: θ_t = train(θ, w_t · L_t on a ρ-fraction of task t's
   training rows), δ_t = θ_t − θ, for every task t (target included);
2. α-variables (initialised to 1) mixing the deltas are fitted to the target's dev loss:
   α ← argmin_α L_t*(D_dev; θ + Σ_t α_t δ_t)  (a few gradient steps);
3. the model moves by the mixed deltas, θ ← θ + Σ_t α_t δ_t, and the task weights follow α:
   w_t ← w_t + (α_t − 1) (clipped at 0: a negative weight would train a task by gradient ascent).

By default the target's own weight stays 1 (``learn_target_weight=False``; α_t* still scales its
delta every epoch): under the clipped update a weight of 0 is absorbing, and a target at 0 would
never train its head again (seen on digits one-vs-rest in 6 of 30 runs).

The task-specific updates use plain SGD with momentum, fresh per task and epoch: with Adam the loss
weight ``w_t`` would be normalised away and could not change the update.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from ..errors import InputError, InputTypeError

__all__ = ["AlphaVILResult", "train_alphavil"]


@dataclass(frozen=True)
class AlphaVILResult:
    """Outcome of ``train_alphavil``: the run (a ``RunResult``; ``history`` adds ``weights`` and
    ``alpha`` per epoch, in the order of ``tasks``), the target's name and the final task
    weights."""

    run: Any  # mtgfast.mtl.trainer.RunResult
    target: str
    weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))


def _check_positive(name: str, v: object, integer: bool = False) -> None:
    if integer:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be an int >= 1, got {v!r}")
    elif isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a finite number > 0, got {v!r}")


def train_alphavil(suite: Any, tasks: Sequence[int], target: int, seed: int, config: Any, *,
                   sample_fraction: float = 0.5, inner_lr: float = 0.05,
                   inner_momentum: float = 0.9,
                   alpha_steps: int = 10, alpha_lr: float = 1.0, alpha_max_step: float = 0.1,
                   learn_target_weight: bool = False,
                   dev_rows: int | None = None) -> AlphaVILResult:
    """Train ``tasks`` of ``suite`` with αVIL for target task ``target`` (a task index in
    ``tasks``).

    ``sample_fraction`` is the paper's ρ (share of each task's training rows used for its update per
    epoch), ``alpha_steps``/``alpha_lr``/``alpha_max_step`` the α optimisation (gradient descent on
    the target's dev loss over the first ``dev_rows`` validation rows, all by default; each step's
    norm capped at ``alpha_max_step``). Model (``config.arch``), seeding, early
    stopping (on the target's validation loss, best weights restored) and metrics follow
    ``train_mtl``'s protocol; ``config.lr`` is not used (the inner updates use ``inner_lr``).
    """
    from .architectures import build_model
    from .suites.base import task_target
    from .trainer import EarlyStopping, RunResult, _check_inputs, _predict, _to, evaluate_outputs

    idx = _check_inputs(suite, tasks, seed, config)
    if isinstance(target, bool) or not isinstance(target, int):
        raise InputTypeError(f"target must be a task index (int), got {type(target).__name__}")
    if target not in idx:
        raise InputError(f"target {target} is not one of the tasks {list(idx)}")
    if not 0 < sample_fraction <= 1:
        raise InputError(f"sample_fraction must be in (0, 1], got {sample_fraction!r}")
    _check_positive("inner_lr", inner_lr)
    _check_positive("alpha_lr", alpha_lr)
    _check_positive("alpha_steps", alpha_steps, integer=True)
    if not 0 <= inner_momentum < 1:
        raise InputError(f"inner_momentum must be in [0, 1), got {inner_momentum!r}")
    if dev_rows is not None:
        _check_positive("dev_rows", dev_rows, integer=True)
    _check_positive("alpha_max_step", alpha_max_step)
    if config.weighting != "equal":
        raise InputError(f"αVIL sets the task weights itself; use weighting='equal', "
                         f"got {config.weighting!r}")

    start = time.perf_counter()
    device = torch.device(config.device)
    ti = idx.index(target)
    sp = suite.splits()
    X = sp.X_train.to(device)
    Y = [task_target(sp.Y_train, t).to(device) for t in idx]
    Xva = sp.X_valid.to(device)
    Yva = _to(sp.Y_valid, device)
    n_dev = Xva.shape[0] if dev_rows is None else min(dev_rows, Xva.shape[0])
    X_dev, y_dev = Xva[:n_dev], task_target(Yva, target)[:n_dev]

    model = build_model(config.arch, suite, idx, hidden=config.hidden, n_blocks=config.n_blocks,
                        dropout=config.dropout, seed=seed, **dict(config.arch_options)).to(device)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    n_tasks = len(idx)
    w = torch.ones(n_tasks, dtype=torch.float64)
    n = X.shape[0]
    n_rows = max(1, round(sample_fraction * n))
    bs = config.batch_size

    history: dict[str, list[list[float]]] = {"train_loss": [], "valid_loss": [], "weights": [],
                                             "alpha": []}
    stopper = EarlyStopping(model, config.patience)
    epoch = 0
    for epoch in range(1, config.epochs_to_run + 1):
        theta = {k: v.detach().clone() for k, v in model.named_parameters() if k in names}
        deltas: list[dict[str, Tensor]] = []
        train_loss = []
        # 1. task-specific updates from the same starting point θ
        for i, t in enumerate(idx):
            model.load_state_dict(theta, strict=False)
            model.train()
            opt = torch.optim.SGD([p for k, p in model.named_parameters() if k in names],
                                  lr=inner_lr, momentum=inner_momentum)
            rows = torch.randperm(n, generator=gen)[:n_rows].to(device)
            n_batches = math.ceil(n_rows / bs)
            if config.max_train_batches is not None:
                n_batches = min(n_batches, config.max_train_batches)
            tot = 0.0
            for b in range(n_batches):
                rb = rows[b * bs:(b + 1) * bs]
                loss = suite.loss(t, model(X[rb])[i], Y[i][rb])
                opt.zero_grad(set_to_none=True)
                (float(w[i]) * loss + model.regularizer()).backward()
                opt.step()
                tot += float(loss.detach())
            train_loss.append(tot / n_batches)
            deltas.append({k: p.detach() - theta[k] for k, p in model.named_parameters()
                           if k in names})
        # 2. α mixing the deltas, fitted to the target's dev loss
        model.eval()
        alpha = torch.ones(n_tasks, device=device)
        for _ in range(alpha_steps):
            alpha.requires_grad_(True)
            params = {k: theta[k] + sum(alpha[i] * deltas[i][k] for i in range(n_tasks))
                      for k in names}
            out = functional_call(model, params, (X_dev,))[ti]
            dev_loss = suite.loss(target, out, y_dev)
            if not bool(torch.isfinite(dev_loss)):
                break  # keep the last α whose mixed model had a finite dev loss
            (grad,) = torch.autograd.grad(dev_loss, alpha)
            # gradient descent with each step's norm capped: far from 1 the mixed model leaves
            # the region where the dev loss is smooth and plain steps can blow α up
            step = alpha_lr * grad
            norm = float(step.norm())
            if norm > alpha_max_step:
                step = step * (alpha_max_step / norm)
            alpha = (alpha.detach() - step).detach()
        a = alpha.detach()
        # 3. move by the α-weighted deltas; weights follow α
        with torch.no_grad():
            mixed = {k: theta[k] + sum(a[i] * deltas[i][k] for i in range(n_tasks)) for k in names}
        model.load_state_dict(mixed, strict=False)
        w_new = (w + (a.double().cpu() - 1.0)).clamp_min(0.0)
        if not learn_target_weight:
            w_new[ti] = w[ti]
        w = w_new

        history["train_loss"].append(train_loss)
        history["alpha"].append([float(v) for v in a])
        history["weights"].append([float(v) for v in w])
        model.eval()
        val_losses, _ = evaluate_outputs(suite, idx, _predict(model, Xva), Yva)
        history["valid_loss"].append(val_losses)
        if stopper.should_stop(model, epoch, val_losses[ti]):
            break
    stopper.restore(model)

    _, m_valid = evaluate_outputs(suite, idx, _predict(model, Xva), Yva)
    _, m_test = evaluate_outputs(suite, idx, _predict(model, sp.X_test.to(device)),
                                 _to(sp.Y_test, device))
    run = RunResult(tasks=tuple(suite.task_names[t] for t in idx), metrics_valid=m_valid,
                    metrics_test=m_test, epochs_run=epoch, best_epoch=stopper.best_epoch,
                    seconds=time.perf_counter() - start, history=history)
    weights = {suite.task_names[t]: float(w[i]) for i, t in enumerate(idx)}
    return AlphaVILResult(run=run, target=suite.task_names[target], weights=weights)
