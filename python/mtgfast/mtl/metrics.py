"""Per-task metrics on raw model outputs (logits or real values), each with its direction.

All functions take ``y_pred`` and ``y_true`` tensors of the same leading size and return a float.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = ["HIGHER_IS_BETTER", "METRICS", "accuracy", "auroc", "bce", "ce", "compute", "mae", "mse"]


def mae(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean absolute error."""
    return float((y_pred.reshape(y_true.shape) - y_true).abs().mean())


def mse(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Mean squared error."""
    return float(((y_pred.reshape(y_true.shape) - y_true) ** 2).mean())


def bce(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Binary cross-entropy of logits ``y_pred`` against 0/1 labels (the log loss)."""
    return float(F.binary_cross_entropy_with_logits(y_pred.reshape(y_true.shape), y_true.float()))


def ce(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Cross-entropy of class logits ``(n, C)`` against integer labels ``(n,)``."""
    return float(F.cross_entropy(y_pred, y_true.long().reshape(-1)))


def accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Accuracy: argmax of class logits ``(n, C)``, or logit > 0 for one binary output."""
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return float((y_pred.argmax(1) == y_true.long().reshape(-1)).float().mean())
    return float(((y_pred.reshape(y_true.shape) > 0).long() == y_true.long()).float().mean())


def auroc(y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """Area under the ROC curve of binary scores (Mann-Whitney U with mid-ranks for ties)."""
    s = y_pred.reshape(-1).double()
    y = y_true.reshape(-1).bool()
    n_pos = int(y.sum())
    n_neg = int(y.numel() - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise InputError("AUROC needs both positive and negative labels")
    order = torch.argsort(s)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, s.numel() + 1, dtype=torch.float64)
    # mid-ranks so that tied scores count one half
    uniq, inverse, counts = torch.unique(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid = ends - (counts.double() - 1) / 2
    ranks[order] = mid[inverse]
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


METRICS = {"mae": mae, "mse": mse, "bce": bce, "ce": ce, "accuracy": accuracy, "auroc": auroc}
#: Direction of each metric: True where a larger value is better.
HIGHER_IS_BETTER = {"mae": False, "mse": False, "bce": False, "ce": False, "accuracy": True,
                    "auroc": True}


def compute(name: str, y_pred: torch.Tensor, y_true: torch.Tensor) -> float:
    """The metric ``name`` (one of ``METRICS``)."""
    if name not in METRICS:
        raise InputError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name](y_pred, y_true)
