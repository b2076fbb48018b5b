"""Loss weighting for multi-task training: equal, uncertainty (Kendall et al. 2018) and DWA
(Liu et al. 2019).

Each strategy is a small ``nn.Module`` that turns the vector of per-task losses into the scalar to
backpropagate (``combine``). Learnable weights (uncertainty) are ordinary parameters, so the
trainer's optimizer picks them up through ``.parameters()``; epoch-level strategies (DWA) are told
the epoch's mean losses through ``end_epoch``. Input is checked in ``combine``/``end_epoch``
(TorchJD habit).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import check_int, check_real
from ..errors import InputError, InputTypeError

__all__ = [
    "WEIGHTINGS",
    "DWAWeighting",
    "EqualWeighting",
    "LossWeighting",
    "UncertaintyWeighting",
    "dwa_weights",
    "make_weighting",
]


def _check_n_tasks(n_tasks: object) -> int:
    return check_int("n_tasks", n_tasks, 1)


class LossWeighting(nn.Module, ABC):
    """Base class: ``combine(losses[T]) -> scalar``, ``end_epoch(mean_losses[T])``, ``weights()``.

    Subclasses implement ``_combine`` on already validated input; ``combine`` (also ``__call__``)
    checks that ``losses`` is a finite 1-D tensor of length ``n_tasks``.
    """

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.n_tasks = _check_n_tasks(n_tasks)

    # -- public contract -------------------------------------------------------------------------
    def combine(self, losses: Tensor) -> Tensor:
        """Scalar loss to backpropagate from the per-task losses (shape ``[n_tasks]``)."""
        self._check_losses(losses, "losses")
        return self._combine(losses)

    def forward(self, losses: Tensor) -> Tensor:
        return self.combine(losses)

    def end_epoch(self, epoch_mean_losses: Tensor) -> None:
        """Record the epoch's mean per-task training losses (used by epoch-level strategies)."""
        self._check_losses(epoch_mean_losses, "epoch_mean_losses")

    @abstractmethod
    def weights(self) -> Tensor:
        """Current per-task weights (detached, shape ``[n_tasks]``), for reporting."""

    # -- helpers ---------------------------------------------------------------------------------
    @abstractmethod
    def _combine(self, losses: Tensor) -> Tensor:
        """The weighted scalar loss of already validated per-task ``losses``."""

    def _check_losses(self, losses: object, what: str) -> None:
        if not isinstance(losses, Tensor):
            raise InputTypeError(f"{what} must be a torch.Tensor, got {type(losses).__name__}")
        if losses.dim() != 1 or losses.shape[0] != self.n_tasks:
            raise InputError(
                f"{what} must have shape [{self.n_tasks}] (one loss per task), "
                f"got {tuple(losses.shape)}")
        if not losses.is_floating_point():
            raise InputTypeError(f"{what} must be a floating-point tensor, got {losses.dtype}")
        if not bool(torch.isfinite(losses.detach()).all()):
            bad = [i for i, ok in enumerate(torch.isfinite(losses.detach()).tolist()) if not ok]
            raise InputError(f"{what} must be finite; non-finite at task index {bad}")

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}"


class EqualWeighting(LossWeighting):
    """Plain sum ``L = Σ_t L_t`` (every weight 1), the hard-sharing baseline."""

    def _combine(self, losses: Tensor) -> Tensor:
        return losses.sum()

    def weights(self) -> Tensor:
        return torch.ones(self.n_tasks)


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    ``L = Σ_t exp(-s_t) L_t + s_t`` with learned ``s_t = log σ_t²`` (initialised at 0). This is
    Kendall's regression form (eq. 7, times 2) and we use it for every task kind, classification
    included (as LibMTL and most reimplementations do): Kendall's classification form (eq. 10)
    ``exp(-s)L + s/2`` only rescales the optimal weight by a constant 1/2, and one form keeps
    weights comparable across kinds. At the optimum ``σ_t² = L_t``, so the noisier task (larger
    irreducible loss) gets the larger variance.
    """

    def __init__(self, n_tasks: int, init_log_var: float = 0.0) -> None:
        super().__init__(n_tasks)
        init = check_real("init_log_var", init_log_var)
        self.log_vars = nn.Parameter(torch.full((self.n_tasks,), init))

    def _combine(self, losses: Tensor) -> Tensor:
        s = self.log_vars.to(losses.device, losses.dtype)
        return (torch.exp(-s) * losses + s).sum()

    def weights(self) -> Tensor:
        return torch.exp(-self.log_vars.detach()).cpu()

    def variances(self) -> Tensor:
        """Learned per-task variances ``σ_t² = exp(s_t)`` (detached)."""
        return torch.exp(self.log_vars.detach()).cpu()


def dwa_weights(history: Tensor, temperature: float = 2.0) -> Tensor:
    """DWA weights from recorded epoch losses ``history[e, t]`` (eq. 1 of Liu et al., CVPR 2019).

    ``w_t = T · softmax_t(r_t / temp)`` with ``r_t = L_t(e-1) / L_t(e-2)`` from the last two rows;
    all ones while fewer than two epochs are recorded.
    """
    n_tasks = history.shape[1]
    if history.shape[0] < 2:
        return torch.ones(n_tasks, dtype=torch.float64)
    last, prev = history[-1].double(), history[-2].double()
    # guards the division when a task's loss reached exactly 0
    ratio = last / prev.clamp_min(1e-12)
    return n_tasks * torch.softmax(ratio / temperature, dim=0)


class DWAWeighting(LossWeighting):
    """Dynamic Weight Averaging (Liu, Johns & Davison, CVPR 2019, eq. 1).

    ``L = Σ_t w_t(e) L_t`` with ``w_t(e) = T · softmax_t(r_t(e-1)/temp)``, ``r_t(e-1) =
    L_t(e-1)/L_t(e-2)`` on mean epoch losses; weights are 1 for the first two epochs, temperature 2
    by default. The task whose loss falls slower (larger ratio) gets the larger weight.
    """

    history: Tensor  # buffers: (epochs, n_tasks) mean losses and the current weights
    _w: Tensor

    def __init__(self, n_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(n_tasks)
        self.temperature = check_real("temperature", temperature, 0, open_low=True)
        self.register_buffer("history", torch.zeros(0, self.n_tasks, dtype=torch.float64))
        self.register_buffer("_w", torch.ones(self.n_tasks, dtype=torch.float64))

    def _combine(self, losses: Tensor) -> Tensor:
        return (self._w.to(losses.device, losses.dtype) * losses).sum()

    def end_epoch(self, epoch_mean_losses: Tensor) -> None:
        super().end_epoch(epoch_mean_losses)
        if bool((epoch_mean_losses.detach() < 0).any()):
            raise InputError("DWA needs non-negative epoch losses (it uses their ratios)")
        row = epoch_mean_losses.detach().to(self.history.device, torch.float64).reshape(1, -1)
        self.history = torch.cat([self.history, row])
        self._w = dwa_weights(self.history, self.temperature).to(self._w.device)

    def weights(self) -> Tensor:
        return self._w.detach().float().cpu()

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}, temperature={self.temperature}"


WEIGHTINGS: dict[str, type[LossWeighting]] = {
    "equal": EqualWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DWAWeighting,
}


def make_weighting(name: str, n_tasks: int, **kwargs: Any) -> LossWeighting:
    """Build the loss weighting called ``name`` ("equal", "uncertainty", "dwa") for ``n_tasks``
    tasks.

    Extra keyword arguments go to the class (``temperature`` for DWA, ``init_log_var`` for
    uncertainty).
    """
    if not isinstance(name, str):
        raise InputTypeError(f"weighting name must be a str, got {type(name).__name__}")
    # exact names only: the name is part of a study's fingerprint, so "DWA" must not alias "dwa"
    if name not in WEIGHTINGS:
        raise InputError(f"unknown weighting {name!r}; known: {', '.join(sorted(WEIGHTINGS))}")
    try:  # an unknown option names the weighting, not a bare TypeError from its constructor
        inspect.signature(WEIGHTINGS[name]).bind(n_tasks, **kwargs)
    except TypeError as exc:
        raise InputError(f"weighting {name!r}: {exc}") from None
    return WEIGHTINGS[name](n_tasks, **kwargs)
