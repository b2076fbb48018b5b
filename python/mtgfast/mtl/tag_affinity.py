"""TAG's lookahead inter-task affinity (Fifty et al., NeurIPS 2021), collected during one all-task run.

At a training step with shared parameters theta, the affinity of task i onto task j is
``Z[i, j] = 1 - L_j(theta - eta * grad_theta L_i) / L_j(theta)`` on the same batch: positive when a
step on task i's loss also lowers task j's loss. Only the shared (encoder) parameters take the
lookahead step; heads stay as they are. ``Z`` is averaged over the steps at which it is measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.func import functional_call

from ..checks import check_int, check_real
from ..errors import InputError
from .models import MTLModel, declares_shared
from .suites.base import TaskSuite
from .engine import RunResult, TrainConfig, check_run_inputs
from .trainer import fit

__all__ = ["AffinityResult", "collect_affinity"]


@dataclass(frozen=True)
class AffinityResult:
    """``matrix[i, j]``: mean lookahead affinity of task i onto task j (diagonal: self-affinity);
    ``run``: the all-task training run during which it was measured."""

    matrix: npt.NDArray[np.float64]
    task_names: tuple[str, ...]
    n_steps: int
    run: RunResult


class _Lookahead:
    """Step hook of the trainer that accumulates ``Z`` every ``every`` steps."""

    def __init__(self, suite: TaskSuite, tasks: tuple[int, ...], lr: float, every: int) -> None:
        self.suite, self.tasks, self.lr, self.every = suite, tasks, lr, every
        self.sum = np.zeros((len(tasks), len(tasks)))
        self.count = 0
        self.step = 0

    def __call__(self, model: MTLModel, xb: torch.Tensor, yb: list[torch.Tensor],
                 losses: torch.Tensor) -> None:
        self.step += 1
        if (self.step - 1) % self.every:
            return
        shared_names = {id(p) for p in model.shared_parameters()}
        named = dict(model.named_parameters())
        shared = {k: p for k, p in named.items() if id(p) in shared_names}
        keys = list(shared)
        base = losses.detach()
        z = np.zeros((len(self.tasks), len(self.tasks)))
        for i in range(len(self.tasks)):
            grads = torch.autograd.grad(losses[i], [shared[k] for k in keys], retain_graph=True,
                                        allow_unused=True)
            params = {k: (shared[k] - self.lr * g if g is not None else shared[k]).detach()
                      for k, g in zip(keys, grads)}
            with torch.no_grad():
                outs = functional_call(model, params, (xb,), strict=False)
                after = torch.stack([self.suite.loss(t, outs[j], yb[j])
                                     for j, t in enumerate(self.tasks)])
            z[i] = (1.0 - after / base.clamp_min(1e-12)).cpu().numpy()
        self.sum += z
        self.count += 1


def collect_affinity(suite: TaskSuite, seed: int, config: TrainConfig, *,
                     tasks: Sequence[int] | None = None, every: int = 1,
                     lookahead_lr: float | None = None) -> AffinityResult:
    """Train all ``tasks`` (default: every task of the suite) together once, measuring TAG's
    affinity every ``every`` steps with an SGD lookahead of step ``lookahead_lr`` (default
    ``config.lr``). Needs an architecture whose model has ``shared_parameters()`` ("hard")."""
    idx = check_run_inputs(suite, tuple(range(suite.n_tasks)) if tasks is None else tasks, seed,
                           config)
    if len(idx) < 2:
        raise InputError("affinity needs at least 2 tasks")
    every = check_int("every", every, 1)
    lr = config.lr if lookahead_lr is None else \
        check_real("lookahead_lr", lookahead_lr, 0, open_low=True)
    hook = _Lookahead(suite, idx, lr, every)

    def guarded(model: MTLModel, xb: torch.Tensor, yb: list[torch.Tensor],
                losses: torch.Tensor) -> None:
        if not declares_shared(model):
            raise InputError(f"architecture {config.arch!r} has no shared_parameters(); TAG "
                             "affinity needs one (use arch='hard')")
        hook(model, xb, yb, losses)

    run, _ = fit(suite, idx, int(seed), config, step_hook=guarded)
    matrix = hook.sum / max(hook.count, 1)
    return AffinityResult(matrix=matrix, task_names=tuple(suite.task_names[t] for t in idx),
                          n_steps=hook.count, run=run)
