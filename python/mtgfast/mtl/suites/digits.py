"""``digits``: scikit-learn's bundled 8x8 digits as 10 one-vs-rest binary tasks ("is it a 3?").

Metric: validation binary cross-entropy (log loss, lower is better). AUROC and accuracy saturate near
1 on this data, so their relative changes are mostly noise; the log loss still moves when a shared
encoder helps or hurts, which makes gains meaningful. Splits: a fixed stratified 60/20/20 shuffle.
"""

from __future__ import annotations

import numpy as np
import torch

from ...checks import check_int
from .base import Splits, TaskSuite

__all__ = ["DigitsSuite"]


class DigitsSuite(TaskSuite):
    """10 binary tasks on 1,797 8x8 images; ``n_train`` caps the training rows (fewer rows, more
    transfer); ``split_seed`` fixes the shuffle."""

    name = "digits"
    task_names = tuple(f"digit{k}" for k in range(10))
    loss_kinds = ("bce",) * 10
    metric_names = ("bce",) * 10
    encoder_config = {"hidden": 64, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, n_train: int | None = None, split_seed: int = 0) -> None:
        if n_train is not None:
            n_train = check_int("n_train", n_train, 20, 1078,
                                expected="in [20, 1078] (60% of 1,797 rows)")
        super().__init__(n_train=n_train, split_seed=check_int("split_seed", split_seed))

    @property
    def in_dim(self) -> int:
        return 64

    def head_out_dim(self, task: int) -> int:
        return 1

    def _build_splits(self) -> Splits:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        X = (data.data / 16.0).astype(np.float32)
        labels = data.target
        idx = np.arange(len(labels))
        seed = self.params["split_seed"]
        tr, rest = train_test_split(idx, test_size=0.4, stratify=labels, random_state=seed)
        va, te = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
        if self.params["n_train"] is not None:
            tr = tr[: self.params["n_train"]]
        Y = (labels[:, None] == np.arange(10)[None, :]).astype(np.float32)
        mean = X[tr].mean(0)
        std = X[tr].std(0) + 1e-3  # border pixels are always 0: keep them 0, not NaN
        Xs = (X - mean) / std

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a))

        return Splits(t(Xs[tr]), t(Y[tr]), t(Xs[va]), t(Y[va]), t(Xs[te]), t(Y[te]))
