"""MTG-Net forward pass in plain PyTorch: the reference every other backend must match.

Architecture (Song et al., NeurIPS 2022, Fig. 2), for a combination C of tasks:
    tokens      x_j = E[j]                         for j in C (no positional encoding: a set)
    each layer  a   = softmax(Q K^T / (sqrt(d_head) * temperature), keys restricted to C) V  (H heads)
                x   = LN1(x + a W_o + b_o)
                x   = LN2(x + W_2 relu(W_1 x + b_1) + b_2)
    head        y_j = w_h . x_j + b_h              the predicted gain of task j in C
Absent tasks are never attended to and get output 0 (callers usually turn it into NaN).
Because layer-1 tokens are the embeddings themselves, its Q/K/V are per-task constants.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["LayerParams", "MTGNetParams", "member_from_masks", "mtgnet_forward_dense",
           "mtgnet_forward"]


@dataclass
class LayerParams:
    """One post-LN self-attention encoder layer. Weight matrices are stored (in, out)."""

    w_qkv: torch.Tensor   # (D, 3D): [Q | K | V]
    b_qkv: torch.Tensor   # (3D,)
    w_o: torch.Tensor     # (D, D)
    b_o: torch.Tensor     # (D,)
    ln1_w: torch.Tensor   # (D,)
    ln1_b: torch.Tensor   # (D,)
    w_1: torch.Tensor     # (D, F)
    b_1: torch.Tensor     # (F,)
    w_2: torch.Tensor     # (F, D)
    b_2: torch.Tensor     # (D,)
    ln2_w: torch.Tensor   # (D,)
    ln2_b: torch.Tensor   # (D,)

    def to(self, *args: object, **kwargs: object) -> LayerParams:
        return LayerParams(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})


@dataclass
class MTGNetParams:
    """All weights of one MTG-Net (detached tensors), plus the two hyper-parameters of the math."""

    embedding: torch.Tensor        # (N, D)
    layers: list[LayerParams]
    w_head: torch.Tensor           # (D,)
    b_head: torch.Tensor           # () scalar
    n_heads: int = 1
    temperature: float = 1.0
    ln_eps: float = 1e-5

    @property
    def n_tasks(self) -> int:
        return int(self.embedding.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def to(self, *args: Any, **kwargs: Any) -> MTGNetParams:
        return MTGNetParams(self.embedding.to(*args, **kwargs), [lp.to(*args, **kwargs) for lp in self.layers],
                            self.w_head.to(*args, **kwargs), self.b_head.to(*args, **kwargs),
                            self.n_heads, self.temperature, self.ln_eps)


def member_from_masks(masks: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Boolean membership ``(M, n_tasks)`` from int64 tensor of masks (uint64 bit patterns)."""
    bits = torch.arange(n_tasks, device=masks.device, dtype=torch.int64)
    return ((masks.to(torch.int64).unsqueeze(1) >> bits) & 1).bool()


def _layer(x: torch.Tensor, member: torch.Tensor, lp: LayerParams, n_heads: int,
           temperature: float, eps: float) -> torch.Tensor:
    b, n, d = x.shape
    dh = d // n_heads
    qkv = x @ lp.w_qkv + lp.b_qkv                                    # (B, N, 3D)
    q, k, v = qkv.split(d, dim=-1)
    q = q.view(b, n, n_heads, dh).transpose(1, 2)                    # (B, H, N, dh)
    k = k.view(b, n, n_heads, dh).transpose(1, 2)
    v = v.view(b, n, n_heads, dh).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / (dh ** 0.5 * temperature)   # (B, H, N, N)
    scores = scores.masked_fill(~member[:, None, None, :], float("-inf"))
    attn = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    # Rows of absent query tokens see no key and would be NaN: zero them, they are discarded anyway.
    attn = torch.nan_to_num(attn, nan=0.0)
    a = (attn @ v).transpose(1, 2).reshape(b, n, d)
    x = F.layer_norm(x + a @ lp.w_o + lp.b_o, (d,), lp.ln1_w, lp.ln1_b, eps)
    h = torch.relu(x @ lp.w_1 + lp.b_1)
    return F.layer_norm(x + h @ lp.w_2 + lp.b_2, (d,), lp.ln2_w, lp.ln2_b, eps)


def mtgnet_forward_dense(params: MTGNetParams, member: torch.Tensor) -> torch.Tensor:
    """Predicted gains ``(M, N)`` for a boolean membership matrix ``(M, N)``; 0 for absent tasks.

    Differentiable (used for training); every combination is handled in one batched pass.
    """
    m, n = member.shape
    x = params.embedding.unsqueeze(0).expand(m, n, params.dim)
    for lp in params.layers:
        x = _layer(x, member, lp, params.n_heads, params.temperature, params.ln_eps)
    y = x @ params.w_head + params.b_head
    return y.masked_fill(~member, 0.0)


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x @ w + b`` as one fused addmm over the flattened leading dimensions."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


def _layer_packed(x: torch.Tensor, lp: LayerParams, n_heads: int, temperature: float, eps: float,
                  qkv: torch.Tensor | None = None) -> torch.Tensor:
    """``_layer`` for a batch ``(B, k, D)`` whose k tokens are all present (no key mask needed)."""
    b, n, d = x.shape
    dh = d // n_heads
    if qkv is None:
        qkv = _affine(x, lp.w_qkv, lp.b_qkv)
    q, k, v = qkv.split(d, dim=-1)
    if n_heads == 1:
        scores = (q @ k.transpose(-1, -2)) * (1.0 / (dh ** 0.5 * temperature))
        a = torch.softmax(scores, dim=-1) @ v
    else:
        q = q.reshape(b, n, n_heads, dh).transpose(1, 2)
        k = k.reshape(b, n, n_heads, dh).transpose(1, 2)
        v = v.reshape(b, n, n_heads, dh).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) * (1.0 / (dh ** 0.5 * temperature))
        a = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
    x = F.layer_norm(x + _affine(a, lp.w_o, lp.b_o), (d,), lp.ln1_w, lp.ln1_b, eps)
    h = torch.relu_(_affine(x, lp.w_1, lp.b_1))
    return F.layer_norm(x + _affine(h, lp.w_2, lp.b_2), (d,), lp.ln2_w, lp.ln2_b, eps)


@torch.no_grad()
def mtgnet_forward(params: MTGNetParams, masks: torch.Tensor, *, chunk: int = 65536) -> torch.Tensor:
    """Inference from int64 masks ``(M,)``: same math as ``mtgnet_forward_dense``, 0 for absent tasks.

    Combinations are bucketed by size k and each bucket runs as dense ``(B, k, D)`` tensors of its
    member tokens only (absent tokens cost nothing: ~2x fewer tokens and ~4x less attention than
    the padded form for random masks); layer-1 Q/K/V are gathered from a per-task table. Work is
    split into pieces of about ``min(chunk, 2048) * N`` tokens: small pieces stay in cache, which on
    a CPU matters more than the size of the GEMMs. Memory stays O(chunk * N * D).
    """
    n = params.n_tasks
    dev = params.embedding.device
    masks = masks.to(dev)
    out = torch.zeros(masks.shape[0], n, dtype=params.embedding.dtype, device=dev)
    if masks.shape[0] == 0:
        return out
    member = member_from_masks(masks, n)
    sizes = member.sum(dim=1)
    lp0 = params.layers[0] if params.layers else None
    qkv0 = params.embedding @ lp0.w_qkv + lp0.b_qkv if lp0 is not None else None
    order = torch.argsort(sizes, stable=True)
    counts = torch.bincount(sizes, minlength=n + 1).tolist()
    tokens_per_piece = max(1, min(int(chunk), 2048 if dev.type == "cpu" else int(chunk)) * n)
    start = 0
    for k, count in enumerate(counts):
        if count == 0:
            continue
        rows_k = order[start:start + count]
        start += count
        step = max(1, tokens_per_piece // k)
        for s in range(0, count, step):
            rows = rows_k[s:s + step]
            idx = member[rows].nonzero()[:, 1].view(-1, k)            # member task ids, ascending
            x = params.embedding[idx]
            for li, lp in enumerate(params.layers):
                x = _layer_packed(x, lp, params.n_heads, params.temperature, params.ln_eps,
                                  qkv=qkv0[idx] if li == 0 and qkv0 is not None else None)
            out[rows.unsqueeze(1), idx] = x @ params.w_head + params.b_head
    return out
