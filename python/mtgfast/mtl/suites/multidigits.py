"""``multidigits``: two scikit-learn digits superimposed on one canvas, two 10-class tasks.

The MultiMNIST setting of αVIL (Kourdis et al.) and of Sener & Koltun (2018), built from the 8x8
digits that ship with scikit-learn: one digit sits in the upper-left corner, another in the
lower-right corner shifted by ``shift`` pixels, and the canvas keeps the brighter pixel where they
overlap. Task 0 reads the upper-left digit, task 1 the lower-right one. Source images are split
60/20/20 (stratified) before pairing, so no digit image is seen in two splits; construction is
deterministic given ``split_seed``.
"""

from __future__ import annotations

import numpy as np
import torch

from ...checks import check_int
from ...errors import InputError
from .base import Splits, TaskSuite

__all__ = ["MultiDigitsSuite", "superimpose"]


def superimpose(upper_left: np.ndarray, lower_right: np.ndarray, shift: int) -> np.ndarray:
    """Canvases ``(n, 8+shift, 8+shift)`` with image A at (0, 0) and image B at (shift, shift),
    overlapping pixels taking the maximum (as MultiMNIST does)."""
    n = upper_left.shape[0]
    size = 8 + shift
    canvas = np.zeros((n, size, size), dtype=np.float32)
    canvas[:, :8, :8] = upper_left
    canvas[:, shift:, shift:] = np.maximum(canvas[:, shift:, shift:], lower_right)
    return canvas


class MultiDigitsSuite(TaskSuite):
    """Two 10-class tasks ("upper_left", "lower_right") on superimposed 8x8 digits.

    ``n_train``/``n_valid``/``n_test`` pairs are drawn (seeded) from disjoint pools of source
    images; ``shift`` in [1, 7] sets the offset of the second digit (smaller = more overlap =
    harder); ``metric`` is "accuracy" (default, higher is better) or "ce" (cross-entropy, lower is
    better).
    """

    name = "multidigits"
    task_names = ("upper_left", "lower_right")
    loss_kinds = ("ce", "ce")
    metric_names = ("accuracy", "accuracy")
    encoder_config = {"hidden": 64, "n_blocks": 2, "dropout": 0.0}

    def __init__(self, n_train: int = 2000, n_valid: int = 500, n_test: int = 500,
                 shift: int = 3, split_seed: int = 0, metric: str = "accuracy") -> None:
        sizes = {what: check_int(what, v, 10, 200_000, expected="in [10, 200000] pairs")
                 for what, v in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test))}
        shift = check_int("shift", shift, 1, 7, expected="in [1, 7] pixels")
        split_seed = check_int("split_seed", split_seed)
        if metric not in ("accuracy", "ce"):
            raise InputError(f"metric must be 'accuracy' or 'ce', got {metric!r}")
        super().__init__(**sizes, shift=shift, split_seed=split_seed, metric=metric)
        # instance attribute shadows the class default so that the metric is per suite
        self.metric_names = (metric, metric)

    @property
    def in_dim(self) -> int:
        return (8 + self.params["shift"]) ** 2

    def head_out_dim(self, task: int) -> int:
        return 10

    def _build_splits(self) -> Splits:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        data = load_digits()
        images = (data.images / 16.0).astype(np.float32)
        labels = data.target.astype(np.int64)
        seed = self.params["split_seed"]
        idx = np.arange(len(labels))
        pool_tr, rest = train_test_split(idx, test_size=0.4, stratify=labels, random_state=seed)
        pool_va, pool_te = train_test_split(rest, test_size=0.5, stratify=labels[rest],
                                            random_state=seed)
        rng = np.random.default_rng(seed)

        def pairs(pool: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            a = rng.choice(pool, size=n)
            # second image drawn independently but never the same image as the first
            b = rng.choice(pool, size=n)
            same = a == b
            while same.any():
                b[same] = rng.choice(pool, size=int(same.sum()))
                same = a == b
            canvas = superimpose(images[a], images[b], self.params["shift"])
            y = np.stack([labels[a], labels[b]], axis=1)
            return canvas.reshape(n, -1), y

        X_tr, Y_tr = pairs(pool_tr, self.params["n_train"])
        X_va, Y_va = pairs(pool_va, self.params["n_valid"])
        X_te, Y_te = pairs(pool_te, self.params["n_test"])
        mean = X_tr.mean(0)
        std = X_tr.std(0) + 1e-3  # a corner pixel may be always 0: keep it 0, not NaN

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a))

        return Splits(t((X_tr - mean) / std), t(Y_tr), t((X_va - mean) / std), t(Y_va),
                      t((X_te - mean) / std), t(Y_te))
