"""Hard-parameter-sharing models: a residual MLP encoder shared by all tasks, one head per task.

Model protocol used by the trainer (every architecture follows it): ``forward(x)`` returns a list with
one output per task of the combination, ``regularizer()`` returns a scalar tensor added to the loss.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HardSharing", "MLPEncoder", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """Pre-norm residual block ``x + W2 ReLU(W1 LN(x))`` of width ``hidden``."""

    def __init__(self, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(torch.relu(self.fc1(self.norm(x)))))


class MLPEncoder(nn.Module):
    """Shared encoder: ``stem`` (Linear in_dim->hidden + ReLU), then ``blocks`` residual blocks."""

    def __init__(self, in_dim: int, hidden: int, n_blocks: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.blocks = nn.ModuleList(ResidualBlock(hidden, dropout) for _ in range(n_blocks))
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return h


class HardSharing(nn.Module):
    """One shared ``encoder`` and one head per task: ``forward(x) -> [head_t(encoder(x))]``."""

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.encoder(x)
        return [head(h) for head in self.heads]

    def regularizer(self) -> torch.Tensor:
        """No extra loss term for plain hard sharing."""
        return torch.zeros((), device=next(self.parameters()).device)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task updates (TAG's lookahead acts on these)."""
        return list(self.encoder.parameters())
