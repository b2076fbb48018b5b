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

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from ..checks import check_bool, check_int, check_real, describe, is_int
from ..errors import InputError, InputTypeError
from . import architectures
from .engine import Engine, check_run_inputs
from .suites.base import task_target

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


class _AlphaVILStep:
    """One αVIL epoch (Algorithm 1, steps 1-3 of the module docstring) on the engine's model; the
    task weights ``w`` persist across epochs."""

    def __init__(self, engine: Engine, ti: int, *, sample_fraction: float, inner_lr: float,
                 inner_momentum: float, alpha_steps: int, alpha_lr: float,
                 alpha_max_step: float, learn_target_weight: bool, dev_rows: int | None) -> None:
        self.engine, self.ti = engine, ti
        self.inner_lr, self.inner_momentum = inner_lr, inner_momentum
        self.alpha_steps, self.alpha_lr, self.alpha_max_step = alpha_steps, alpha_lr, alpha_max_step
        self.learn_target_weight = learn_target_weight
        n_dev = engine.X_valid.shape[0] if dev_rows is None else min(dev_rows,
                                                                       engine.X_valid.shape[0])
        self.X_dev = engine.X_valid[:n_dev]
        self.y_dev = task_target(engine.Y_valid, engine.tasks[ti])[:n_dev]
        self.names = [n for n, p in engine.model.named_parameters() if p.requires_grad]
        self.w = torch.ones(len(engine.tasks), dtype=torch.float64)
        self.n_rows = max(1, round(sample_fraction * engine.n_train))

    def __call__(self, epoch: int) -> dict[str, list[float]]:
        eng, model, names, w = self.engine, self.engine.model, self.names, self.w
        idx, ti, device = eng.tasks, self.ti, eng.device
        n_tasks = len(idx)
        theta = {k: v.detach().clone() for k, v in model.named_parameters() if k in names}
        deltas: list[dict[str, Tensor]] = []
        train_loss = []
        # 1. task-specific updates from the same starting point θ
        for i, t in enumerate(idx):
            model.load_state_dict(theta, strict=False)
            model.train()
            opt = torch.optim.SGD([p for k, p in model.named_parameters() if k in names],
                                  lr=self.inner_lr, momentum=self.inner_momentum)
            batches = eng.batches(eng.permutation()[:self.n_rows])
            tot = 0.0
            for rb in batches:
                loss = eng.suite.loss(t, model(eng.X_train[rb])[i], eng.Y_train[i][rb])
                opt.zero_grad(set_to_none=True)
                (float(w[i]) * loss + model.regularizer()).backward()
                opt.step()
                tot += float(loss.detach())
            train_loss.append(tot / len(batches))
            deltas.append({k: p.detach() - theta[k] for k, p in model.named_parameters()
                           if k in names})
        # 2. α mixing the deltas, fitted to the target's dev loss
        model.eval()
        alpha = torch.ones(n_tasks, device=device)
        for _ in range(self.alpha_steps):
            alpha.requires_grad_(True)
            params = {k: theta[k] + sum(alpha[i] * deltas[i][k] for i in range(n_tasks))
                      for k in names}
            out = functional_call(model, params, (self.X_dev,))[ti]
            dev_loss = eng.suite.loss(idx[ti], out, self.y_dev)
            if not bool(torch.isfinite(dev_loss)):
                break  # keep the last α whose mixed model had a finite dev loss
            (grad,) = torch.autograd.grad(dev_loss, alpha)
            # gradient descent with each step's norm capped: far from 1 the mixed model leaves
            # the region where the dev loss is smooth and plain steps can blow α up
            step = self.alpha_lr * grad
            norm = float(step.norm())
            if norm > self.alpha_max_step:
                step = step * (self.alpha_max_step / norm)
            alpha = (alpha.detach() - step).detach()
        a = alpha.detach()
        # 3. move by the α-weighted deltas; weights follow α
        with torch.no_grad():
            mixed = {k: theta[k] + sum(a[i] * deltas[i][k] for i in range(n_tasks)) for k in names}
        model.load_state_dict(mixed, strict=False)
        w_new = (w + (a.double().cpu() - 1.0)).clamp_min(0.0)
        if not self.learn_target_weight:
            w_new[ti] = w[ti]
        self.w = w_new
        return {"train_loss": train_loss, "weights": [float(v) for v in self.w],
                "alpha": [float(v) for v in a]}


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
    idx = check_run_inputs(suite, tasks, seed, config)
    if not is_int(target):
        raise InputTypeError(f"target must be a task index (int), got {describe(target)}")
    target = int(target)
    if target not in idx:
        raise InputError(f"target {target} is not one of the tasks {list(idx)}")
    sample_fraction = check_real("sample_fraction", sample_fraction, 0, 1, open_low=True)
    inner_lr = check_real("inner_lr", inner_lr, 0, open_low=True)
    alpha_lr = check_real("alpha_lr", alpha_lr, 0, open_low=True)
    alpha_steps = check_int("alpha_steps", alpha_steps, 1)
    inner_momentum = check_real("inner_momentum", inner_momentum, 0, 1, open_high=True)
    if dev_rows is not None:
        dev_rows = check_int("dev_rows", dev_rows, 1)
    alpha_max_step = check_real("alpha_max_step", alpha_max_step, 0, open_low=True)
    learn_target_weight = check_bool("learn_target_weight", learn_target_weight)
    if config.weighting != "equal":
        raise InputError(f"αVIL sets the task weights itself; use weighting='equal', "
                         f"got {config.weighting!r}")

    start = time.perf_counter()
    model = architectures.build_model(config.arch, suite, idx, hidden=config.hidden,
                                      n_blocks=config.n_blocks, dropout=config.dropout, seed=seed,
                                      **dict(config.arch_options))
    engine = Engine(suite, idx, seed, config, model, start=start)
    step = _AlphaVILStep(engine, idx.index(target), sample_fraction=sample_fraction,
                         inner_lr=inner_lr, inner_momentum=inner_momentum,
                         alpha_steps=alpha_steps, alpha_lr=alpha_lr,
                         alpha_max_step=alpha_max_step, learn_target_weight=learn_target_weight,
                         dev_rows=dev_rows)
    run = engine.run(step, stop_on=lambda val_losses: val_losses[step.ti])
    w = step.w
    weights = {suite.task_names[t]: float(w[i]) for i, t in enumerate(idx)}
    return AlphaVILResult(run=run, target=suite.task_names[target], weights=weights)
