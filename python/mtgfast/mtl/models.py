"""Hard-parameter-sharing models: a residual MLP encoder shared by all tasks, one head per task.

Model protocol used by the trainer (every architecture follows it): ``forward(x)`` returns a list with
one output per task of the combination, ``regularizer()`` returns a scalar tensor added to the loss.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

__all__ = ["BlockEncoder", "HardSharing", "MLPEncoder", "MTLModel", "ResidualBlock",
           "declares_shared", "encoder_width", "torch_seed"]

_MASK64 = 2**64 - 1


def torch_seed(seed: int) -> int:
    """What a run passes to ``torch.manual_seed`` for its ``seed``: the seed itself below 2**32
    (every run of such a seed trains bit for bit as before), else its SplitMix64 hash. Torch's
    CPU generator keeps only the low 32 bits of a seed, so seeds 2**32 apart would otherwise
    train identical models; hashed, they draw unrelated streams."""
    s = int(seed)
    if 0 <= s < 2**32:
        return s
    z = (s + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


class MTLModel(nn.Module):
    """Base of the trainer's models: ``forward(x)`` -> one output per task, ``regularizer()`` a
    scalar added to the loss, ``shared_parameters()`` (TAG's lookahead), ``end_epoch()`` a hook."""

    def regularizer(self) -> torch.Tensor:
        """Extra loss term; none by default."""
        return torch.zeros((), device=next(self.parameters()).device)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task updates (TAG's lookahead acts on these). A model declares them
        by overriding this; one that does not cannot run TAG (``declares_shared``)."""
        raise InputError(f"{type(self).__name__} declares no shared parameters: override "
                         "shared_parameters() to run TAG's affinity on it (or use arch='hard')")

    def end_epoch(self) -> None:
        """Called after every training epoch (AdaShare anneals its temperature); nothing here."""


def declares_shared(model: nn.Module) -> bool:
    """Whether ``model`` names its shared parameters: an ``MTLModel`` overriding
    ``shared_parameters`` or any module with such a method."""
    method = getattr(type(model), "shared_parameters", None)
    return method is not None and method is not MTLModel.shared_parameters


class BlockEncoder(nn.Module):
    """What MTAN and AdaShare need of a shared encoder: a ``stem``, residual ``blocks`` and the
    width ``out_dim`` of their output."""

    stem: nn.Module
    blocks: nn.ModuleList
    out_dim: int


def encoder_width(encoder: nn.Module) -> int:
    """``encoder.out_dim``, the width every suite's encoder exposes (heads take it as input)."""
    width = getattr(encoder, "out_dim", None)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InputError(f"the suite's encoder {type(encoder).__name__} must expose out_dim, a "
                         f"positive int; got {width!r}")
    return width


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


class MLPEncoder(BlockEncoder):
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


class HardSharing(MTLModel):
    """One shared ``encoder`` and one head per task: ``forward(x) -> [head_t(encoder(x))]``."""

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = heads

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.encoder(x)
        return [head(h) for head in self.heads]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task updates (TAG's lookahead acts on these)."""
        return list(self.encoder.parameters())
