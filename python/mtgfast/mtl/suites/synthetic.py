"""``synthetic``: regression tasks in planted clusters, so the right grouping is known.

Cluster ``c`` owns a direction ``u_c`` of the inputs (directions of different clusters are
orthogonal); task ``t`` of cluster ``c`` predicts ``a_t * sin(freq * x @ u_c)`` plus noise, with its
own scale and sign ``a_t`` (tasks of one cluster pull the shared feature in opposite directions only
through their heads). The suite's encoder ends in a ``bottleneck`` of width 1 by default: tasks of
one cluster share their one hard feature, so pooling their few noisy labels helps; tasks of
different clusters fight over that single feature, so mixing clusters hurts. Metric: MSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ...checks import check_int, check_real, describe
from ...errors import InputError, InputTypeError
from .base import Splits, TaskSuite

__all__ = ["BottleneckMLP", "SyntheticSuite"]


class BottleneckMLP(nn.Module):
    """``in_dim -> hidden -> hidden -> bottleneck`` (ReLU between, linear bottleneck): a shared
    encoder whose output can hold only ``bottleneck`` features."""

    def __init__(self, in_dim: int, hidden: int, n_blocks: int, bottleneck: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU()]
        for _ in range(n_blocks):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers.append(nn.Linear(hidden, bottleneck))
        self.net = nn.Sequential(*layers)
        self.out_dim = bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SyntheticSuite(TaskSuite):
    """``clusters``: the number of tasks in each cluster (default ``(3, 3)``); tasks are numbered
    cluster by cluster. ``planted_groups`` gives the clusters as tuples of task indices."""

    name = "synthetic"
    loss_kinds: tuple[str, ...] = ()
    metric_names: tuple[str, ...] = ()
    encoder_config = {"hidden": 32, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, clusters: Sequence[int] = (3, 3), n_features: int = 8, n_train: int = 100,
                 n_eval: int = 2000, noise: float = 0.3, freq: float = 2.0, bottleneck: int = 1,
                 seed: int = 0) -> None:
        if isinstance(clusters, (str, bytes)) or not isinstance(clusters, (Sequence, np.ndarray)):
            raise InputTypeError(f"clusters must be a sequence of task counts, got "
                                 f"{describe(clusters)}")
        sizes = tuple(check_int(f"clusters[{i}]", c, 1) for i, c in enumerate(clusters))
        if not sizes or sum(sizes) > 64:
            raise InputError(f"clusters must be positive task counts summing to <= 64, got {sizes}")
        n_features = check_int("n_features", n_features, len(sizes),
                               expected=f">= the number of clusters ({len(sizes)}) so cluster "
                               "directions can be orthogonal")
        super().__init__(clusters=sizes, n_features=n_features,
                         n_train=check_int("n_train", n_train, 8),
                         n_eval=check_int("n_eval", n_eval, 8),
                         noise=check_real("noise", noise, 0), freq=check_real("freq", freq),
                         bottleneck=check_int("bottleneck", bottleneck, 1),
                         seed=check_int("seed", seed))
        self.task_names = tuple(f"c{c}t{k}" for c, size in enumerate(sizes) for k in range(size))
        self.loss_kinds = ("mse",) * len(self.task_names)
        self.metric_names = ("mse",) * len(self.task_names)

    @property
    def planted_groups(self) -> tuple[tuple[int, ...], ...]:
        """The planted clusters as tuples of task indices."""
        out, start = [], 0
        for size in self.params["clusters"]:
            out.append(tuple(range(start, start + size)))
            start += size
        return tuple(out)

    @property
    def in_dim(self) -> int:
        return self.params["n_features"]

    def head_out_dim(self, task: int) -> int:
        return 1

    def make_encoder(self, hidden: int, n_blocks: int, dropout: float) -> nn.Module:
        """A narrow shared encoder (see the module docstring); ``dropout`` is not used."""
        return BottleneckMLP(self.in_dim, hidden, n_blocks, self.params["bottleneck"])

    def _build_splits(self) -> Splits:
        p = self.params
        rng = np.random.default_rng(p["seed"])
        d, n_tasks = p["n_features"], len(self.task_names)
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        dirs = q[:, : len(p["clusters"])] * np.sqrt(d) / 2  # orthogonal cluster directions
        cluster_of = np.repeat(np.arange(len(p["clusters"])), p["clusters"])
        scales = rng.choice([-1.0, 1.0], size=n_tasks) * rng.uniform(0.7, 1.3, size=n_tasks)

        def draw(n: int, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
            X = rng.normal(size=(n, d))
            proj = X @ dirs[:, cluster_of]  # (n, T)
            Y = scales * np.sin(p["freq"] * proj / np.sqrt(d))
            if noisy:
                Y = Y + p["noise"] * rng.normal(size=Y.shape)
            return torch.from_numpy(X.astype(np.float32)), torch.from_numpy(Y.astype(np.float32))

        Xtr, Ytr = draw(p["n_train"], True)
        Xva, Yva = draw(p["n_eval"], True)
        Xte, Yte = draw(p["n_eval"], True)
        return Splits(Xtr, Ytr, Xva, Yva, Xte, Yte)
