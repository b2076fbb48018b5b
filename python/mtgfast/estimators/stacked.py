"""Training forward of a whole MTG-Net ensemble at once: members stacked, tokens packed.

The E members' weights are stacked along a leading axis (the layout of ``MTGNet.state_``) and
every op runs for all members together; the rows (combinations) are binned by size and each bin
holds only its member tokens, padded to the bin's largest size with masked keys. Same math as
``mtgfast.ops.reference.mtgnet_forward_dense`` per member (tested against it), but far fewer
tokens than the dense ``(M, N)`` form (a singleton row is one token, not N) and E times fewer ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PackedRows", "pack_rows", "stacked_forward"]

#: upper bounds of the size bins (rows of sizes in (prev, bound] share one padded block)
_BIN_BOUNDS = (1, 2, 3, 5, 8, 12, 17, 24, 33, 46, 64)


@dataclass(frozen=True)
class PackedRows:
    """Rows of a membership matrix binned by size: per bin the row ids ``(B,)``, the task ids
    of their tokens ``(B, k)`` (padded with 0) and which tokens are real ``(B, k)``; ``flat``
    maps the real tokens of a bin to ``row * N + task`` in the flattened ``(M, N)`` output."""

    n_rows: int
    n_tasks: int
    bins: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]


def pack_rows(member: np.ndarray, device: torch.device | str = "cpu") -> PackedRows:
    """Bin the rows of a boolean membership matrix ``(M, N)`` by size (see :class:`PackedRows`)."""
    member = np.asarray(member, dtype=bool)
    m, n = member.shape
    size = member.sum(axis=1)
    bins = []
    lo = 0
    for hi in _BIN_BOUNDS:
        rows = np.flatnonzero((size > lo) & (size <= hi))
        lo = hi
        if rows.size == 0:
            continue
        k = int(size[rows].max())
        idx = np.zeros((rows.size, k), dtype=np.int64)
        valid = np.zeros((rows.size, k), dtype=bool)
        for i, r in enumerate(rows):
            t = np.flatnonzero(member[r])
            idx[i, :t.size] = t
            valid[i, :t.size] = True
        flat = (rows[:, None] * n + idx)[valid]
        bins.append(tuple(torch.as_tensor(a, device=device) for a in (rows, idx, valid, flat)))
    return PackedRows(m, n, tuple(bins))  # type: ignore[arg-type]


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm over the last axis with per-member affine weights ``(E, D)``."""
    y = F.layer_norm(x, (x.shape[-1],), eps=eps)
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)
    return y * w.view(shape) + b.view(shape)


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ w + b`` per member: x ``(E, ..., din)``, w ``(E, din, dout)``, b ``(E, dout)``."""
    e = x.shape[0]
    y = torch.baddbmm(b.unsqueeze(1), x.reshape(e, -1, x.shape[-1]), w)
    return y.view(*x.shape[:-1], w.shape[-1])


def stacked_forward(state: Mapping[str, torch.Tensor], packed: PackedRows, n_layers: int,
                    n_heads: int = 1, temperature: float = 1.0, eps: float = 1e-5,
                    feature: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """Gains ``(E, M, N)`` of every member for the packed rows (0 for absent tasks).

    ``state`` maps the names of ``MTGNet.state_`` (``embedding``, ``layers.{i}.w_qkv``...,
    ``w_head``, ``b_head``) to stacked tensors ``(E, ...)``; differentiable. ``feature``: an
    ``(M, N)`` scalar per row and task; token j of a row then starts as
    ``embedding[j] + feature[row, j] * w_feat`` (``state["w_feat"]``, ``(E, D)``). ``bias``: an
    ``(N, N)`` matrix added to the attention scores of query j on key k in layer i, times
    ``state["w_bias"][:, i]`` (``(E, n_layers)``).
    """
    emb = state["embedding"]                                       # (E, N, D)
    e, _, d = emb.shape
    dh = d // n_heads
    out = emb.new_zeros(e, packed.n_rows * packed.n_tasks)
    for rows, idx, valid, flat in packed.bins:
        b, k = idx.shape
        x = emb[:, idx]                                            # (E, B, k, D)
        if feature is not None:
            f = feature[rows[:, None], idx]                        # (B, k)
            x = x + f[None, :, :, None] * state["w_feat"][:, None, None, :]
        keymask = ~valid[None, :, None, None, :]                   # (1, B, 1, 1, k)
        pair_bias = None if bias is None else bias[idx[:, :, None], idx[:, None, :]]  # (B, k, k)
        for i in range(n_layers):
            p = f"layers.{i}."
            qkv = _affine(x, state[p + "w_qkv"], state[p + "b_qkv"])
            q, kk, v = (t.reshape(e, b, k, n_heads, dh).transpose(2, 3)
                        for t in qkv.split(d, dim=-1))             # (E, B, H, k, dh)
            scores = (q @ kk.transpose(-1, -2)) * (1.0 / (dh ** 0.5 * temperature))
            if pair_bias is not None:
                scores = scores + state["w_bias"][:, i].view(e, 1, 1, 1, 1) * pair_bias[None, :,
                                                                                       None]
            attn = torch.softmax(scores.masked_fill(keymask, float("-inf")), dim=-1)
            a = (attn @ v).transpose(2, 3).reshape(e, b, k, d)
            x = _ln(x + _affine(a, state[p + "w_o"], state[p + "b_o"]),
                    state[p + "ln1_w"], state[p + "ln1_b"], eps)
            h = torch.relu(_affine(x, state[p + "w_1"], state[p + "b_1"]))
            x = _ln(x + _affine(h, state[p + "w_2"], state[p + "b_2"]),
                    state[p + "ln2_w"], state[p + "ln2_b"], eps)
        y = (x * state["w_head"][:, None, None, :]).sum(-1) + state["b_head"].view(e, 1, 1)
        out = out.index_add(1, flat, y[:, valid])
    return out.view(e, packed.n_rows, packed.n_tasks)
