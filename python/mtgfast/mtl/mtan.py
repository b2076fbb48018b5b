"""MTAN for the residual MLP encoder (Liu, Johns & Davison, CVPR 2019, "End-to-End Multi-Task
Learning with Attention").

One shared network (``MLPEncoder``: stem + residual blocks) and, per task, a soft-attention module
at every block that selects features from the shared block output:

    a_t^b = sigmoid(g_t^b([p^b ; f^b(â_t^(b-1))])),   â_t^b = a_t^b ⊙ p^b,

with ``p^b`` the shared output of block b, ``g_t^b`` the task-specific attention (two linear layers,
the MLP analogue of MTAN's 1x1-conv pair) and ``f^b`` a layer shared by the tasks that carries the
task's attended feature to the next block (MTAN's shared 3x3 conv). The first block's mask sees
``p^1`` only. Task t's head reads ``â_t^B``. An MLP block has no intermediate feature map of another
size, so the mask is computed from the block's output itself (MTAN uses the block's middle feature
``u^b``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..errors import InputError
from .models import BlockEncoder, MLPEncoder, MTLModel, torch_seed

__all__ = ["MTAN", "build"]


class _Attention(nn.Sequential):
    """``g_t^b``: Linear -> ReLU -> Linear -> sigmoid, a mask in (0, 1) per hidden unit."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.Sigmoid())


class MTAN(MTLModel):
    """Shared ``encoder`` (stem + ``blocks``) with task-specific attention at every block.

    ``forward(x) -> [head_t(â_t^B)]``; ``attention_masks(x)`` returns the masks ``a_t^b``;
    ``regularizer()`` is 0 (MTAN adds no loss term; it is combined with any loss weighting).
    """

    def __init__(self, encoder: nn.Module, heads: nn.ModuleList) -> None:
        super().__init__()
        blocks = getattr(encoder, "blocks", None)
        if blocks is None or not hasattr(encoder, "stem") or len(blocks) < 1:
            raise InputError("MTAN needs an encoder with a stem and at least one residual block")
        self.encoder = cast(BlockEncoder, encoder)  # checked just above
        self.heads = heads
        hidden = int(self.encoder.out_dim)
        n_blocks = len(blocks)
        self.n_tasks = len(heads)
        self.attention = nn.ModuleList(
            nn.ModuleList(_Attention(hidden if b == 0 else 2 * hidden, hidden)
                          for b in range(n_blocks))
            for _ in range(self.n_tasks))
        # f^b: shared across tasks, as MTAN's encoder_block_att
        self.carry = nn.ModuleList(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
                                   for _ in range(n_blocks - 1))

    def _run(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        h = self.encoder.stem(x)
        shared = []
        for block in self.encoder.blocks:
            h = block(h)
            shared.append(h)
        attended: list[Tensor] = []
        masks: list[list[Tensor]] = []
        for t in range(self.n_tasks):
            task_masks = []
            a_hat: Tensor | None = None
            attention = cast(nn.ModuleList, self.attention[t])
            for b, p in enumerate(shared):
                inp = p if a_hat is None else torch.cat([p, self.carry[b - 1](a_hat)], dim=1)
                mask = attention[b](inp)
                a_hat = mask * p
                task_masks.append(mask)
            assert a_hat is not None  # the encoder has at least one block (checked in __init__)
            attended.append(a_hat)
            masks.append(task_masks)
        return attended, masks

    def forward(self, x: Tensor) -> list[Tensor]:
        attended, _ = self._run(x)
        return [head(a) for head, a in zip(self.heads, attended)]

    @torch.no_grad()
    def attention_masks(self, x: Tensor) -> Tensor:
        """Masks ``a_t^b(x)``: tensor ``(n_tasks, n_blocks, batch, hidden)``, values in (0, 1)."""
        _, masks = self._run(x)
        return torch.stack([torch.stack(m) for m in masks])

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task updates: the shared encoder and the shared carry layers ``f^b``."""
        return list(self.encoder.parameters()) + list(self.carry.parameters())


def build(suite: Any, tasks: Sequence[int], *, hidden: int | None = None,
          n_blocks: int | None = None, dropout: float | None = None, seed: int = 0,
          **unused: Any) -> MTAN:
    """MTAN model for the combination ``tasks`` of ``suite`` (encoder/heads seeded as "hard")."""
    from .architectures import seeded_parts

    if unused:
        raise InputError(f"arch 'mtan' takes no options {sorted(unused)}")
    encoder, heads = seeded_parts(suite, tasks, hidden=hidden, n_blocks=n_blocks, dropout=dropout,
                                  seed=seed, blocks_for="mtan")
    if not isinstance(encoder, MLPEncoder) and not hasattr(encoder, "blocks"):
        raise InputError("arch 'mtan' needs the suite's encoder to be an MLPEncoder "
                         "(stem + blocks)")
    # attention modules drawn after the heads from a seed of their own, so heads match "hard"
    torch.manual_seed((torch_seed(seed) + 1) % 2**64)
    model = MTAN(encoder, heads)
    torch.manual_seed(torch_seed(seed))
    return model
