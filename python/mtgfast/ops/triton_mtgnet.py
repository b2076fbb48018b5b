"""Fused Triton kernel for batched MTG-Net inference: masks in, per-task gains (or reductions) out.

Regime: millions of short masked sequences (<= 64 task tokens), forward only. One program owns a
tile of ``BLOCK_M`` combinations x ``PP`` token slots (64 rows, one warpgroup) and keeps all its
tokens in registers through every layer; nothing but the mask is read per combination and
nothing but the result is written. Tokens are compacted: slot t holds the t-th member task (its
rank = prefix count of the mask bits), and the host splits the masks by popcount so each launch
uses just PP = max(16, next_pow2(popcount)) slots. Gathers by task (embeddings, layer-1 score
rows) are one-hot matmuls on tensor cores against tables split into three exact bf16 parts.
Layout of this file (as Triton's fused-attention tutorial): capability probes, host-side packing,
jit helpers, the kernel ``_mtgnet_fwd_kernel``, the launcher, public functions. Buffer offsets
come from ``common.KernelLayout``; launch choices from ``common.launch_config``.

Math is ``reference.mtgnet_forward``'s. Exact rewrites move work to the host, once per params:
layer-1 tokens are the embeddings, so its scaled scores ``S_h = Q_h K_h^T / (sqrt(d_h) T)`` and its
value-output products ``V_h W_o,h`` are per-task constants; only the member-key softmax is per
combination. The score scale (times log2 e: softmax by exp2) goes into W_q/b_q, b_k is dropped,
b_v W_o joins b_o, b_2 joins LN1's bias, and the last LayerNorm's affine joins the head. Every
other LayerNorm hands on normalised rows: its scale is folded into the next products' weights
(LN1: W_1; LN2: the next layer's W_q,k,v) and its bias into theirs, and its affine reaches the
residual stream elementwise or (fp16/bf16 on sm_90, ``LaunchConfig.fold_ln``) by tensor-core
products with diag(scale) and a bias block. Every product feeding a LayerNorm has row-centred
weights (W C, C = I - 11^T/d: the sum is x - mean(x), which the LayerNorm cannot tell from x),
so a LayerNorm whose input terms are all products skips the mean. One head: layers 2..L use
W_q W_k^T and W_v W_o merged on the host (keys and values are the rows themselves); when the
host proves their scores bounded (``score_bound``) their softmax needs no row max.

Precision: matmul operands in the compute dtype (fp16 or bf16; fp32 as tf32x3) with fp32
accumulation; softmax, LayerNorm, residuals, head and reductions in fp32.
This module imports triton at import time: import it lazily (``mtgfast.ops.dispatch`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl

from ..checks import check_int
from ..errors import InputError, InputTypeError
from .checks import as_mask_tensor, check_best, check_block, check_k, check_programs
from .common import (
    KERNEL_DTYPES,
    MAX_TOPK,
    KernelLayout,
    LaunchConfig,
    MarginalResult,
    interpret_env,
    kernel_supports,
    SlotBucket,
    launch_config,
    slot_buckets,
)
from .reference import LayerParams, MTGNetParams

__all__ = [
    "MAX_TOPK",
    "MarginalResult",
    "PackedMTGNet",
    "kernel",
    "kernel_constexprs",
    "kernel_signature",
    "interpreter_active",
    "is_supported_dtype",
    "mtgnet_forward_triton",
    "mtgnet_marginal_triton",
    "mtgnet_topk_triton",
    "pack_params",
    "popcount64",
    "score_bound",
    "SCORE_BOUND_MAX",
    "tf32_hi",
    "tf32_parts",
    "tf32_round",
]

_CDT = dict(zip(KERNEL_DTYPES, (tl.float32, tl.float16, tl.bfloat16)))
# Target whose launch choices the interpreter takes (tests set 80 to cover the Ampere ones).
INTERPRETER_ARCH = 90
# The interpreter's launch choices skip the dtype rule (every path in every dtype); tests set
# True to take the packed dtype's compiled ones (fp32: half tiles, weights per tile).
INTERPRETER_DTYPE_RULE = False


# ------------------------------------------------------------------------------------------------
# capability probes
# ------------------------------------------------------------------------------------------------
def interpreter_active() -> bool:
    """True when this module's kernel runs under ``TRITON_INTERPRET=1`` (CPU tensors, for tests).

    Triton decides at decoration time, so the variable must be set before this module is imported.
    """
    return type(_mtgnet_fwd_kernel).__name__ == "InterpretedFunction"


def is_supported_dtype(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether the kernel can compute in ``dtype`` on ``device`` (``common.kernel_supports``)."""
    return kernel_supports(dtype, device)


def _check_device(device: torch.device) -> None:
    if device.type == "cuda":
        if interpreter_active():
            raise InputError("TRITON_INTERPRET=1 is set: the Triton kernel runs on CPU tensors "
                             "only; unset it to run on CUDA")
        return
    if device.type == "cpu" and interpreter_active() and interpret_env():
        return
    raise InputError(f"the Triton MTG-Net kernel needs CUDA tensors, got device {device}; use "
                     "backend='torch', or set TRITON_INTERPRET=1 before importing it (tests only)")


# ------------------------------------------------------------------------------------------------
# host-side packing (once per params)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackedMTGNet:
    """MTG-Net weights laid out for the kernel (by ``layout``): padded to powers of two, per head.

    Build with :func:`pack_params`; reuse it across calls (packing runs a few small matmuls).
    """

    layout: KernelLayout
    ln_eps: float
    dtype: torch.dtype         # compute dtype of matmul operands and of the gains output
    emb: torch.Tensor          # (3, NP, DP) bf16: embeddings (layer-1 residual input) as a sum
    s1: torch.Tensor           # (H, 3, NP, NP) bf16: scaled layer-1 scores (or their exp2,
                               # see exp_scores), same split
    vo1: torch.Tensor          # (H, NP, DP) dtype: layer-1 V_h @ W_o,h (fp32: (3 H, ...), and
                               # its tf32 parts, ``tf32_parts``)
    mat: torch.Tensor          # (layout.mat_size,) dtype: per-layer matrices (fp32: x 3, the
                               # same with its tf32 parts hi, lo at MAT_HI, MAT_LO)
    vec: torch.Tensor          # (layout.vec_size,) fp32: per-layer vectors, then w_head, b_head
    bias: torch.Tensor         # (layout.bias_size,) bf16: b_o, b_q, b_1 as split (16, width) blocks
    exp_scores: bool = False   # s1 holds exp2(S - row max over all tasks): softmax is a masked
                               # normalisation (no max, no exp per combination)
    bounded_scores: bool = False   # layers 2..L: every score |s| <= SCORE_BOUND_MAX (log2 units)
                                   # for any input, so softmax is exp2(s) / sum, no row max

    @property
    def device(self) -> torch.device:
        return self.emb.device

    @property
    def n_tasks(self) -> int:
        return self.layout.n_tasks

    @property
    def np_(self) -> int:
        return self.layout.np_


def _check_params(params: MTGNetParams) -> None:
    if not isinstance(params, MTGNetParams):
        raise InputTypeError("params must be MTGNetParams or PackedMTGNet, got "
                             f"{type(params).__name__}")
    emb = params.embedding
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2:
        raise InputError("params.embedding must be a 2-D tensor (n_tasks, dim)")
    n, d = emb.shape
    if not 1 <= n <= 64:
        raise InputError(f"MTG-Net kernel supports 1 <= n_tasks <= 64, got {n}")
    check_int("n_heads", params.n_heads, 1, expected="a positive int")
    if d % params.n_heads:
        raise InputError(f"dim {d} is not divisible by n_heads {params.n_heads}")
    if not (math.isfinite(params.temperature) and params.temperature > 0):
        raise InputError(f"temperature must be finite and > 0, got {params.temperature}")
    if not (math.isfinite(params.ln_eps) and params.ln_eps >= 0):
        raise InputError(f"ln_eps must be finite and >= 0, got {params.ln_eps}")
    tensors = [emb, params.w_head, params.b_head]
    for i, lp in enumerate(params.layers):
        if not isinstance(lp, LayerParams):
            raise InputTypeError(f"params.layers[{i}] must be LayerParams, got {type(lp).__name__}")
        f = lp.w_1.shape[-1]
        shapes = {"w_qkv": (d, 3 * d), "b_qkv": (3 * d,), "w_o": (d, d), "b_o": (d,),
                  "ln1_w": (d,), "ln1_b": (d,), "w_1": (d, f), "b_1": (f,), "w_2": (f, d),
                  "b_2": (d,), "ln2_w": (d,), "ln2_b": (d,)}
        for name, shape in shapes.items():
            t = getattr(lp, name)
            if tuple(t.shape) != shape:
                raise InputError(f"params.layers[{i}].{name} has shape {tuple(t.shape)}, "
                                 f"expected {shape}")
            tensors.append(t)
    if tuple(params.w_head.shape) != (d,) or params.b_head.numel() != 1:
        raise InputError(f"w_head must have shape ({d},) and b_head one element")
    for t in tensors:
        if t.device != emb.device:
            raise InputError(f"all params must be on one device, found {t.device} and {emb.device}")
        if not t.is_floating_point():
            raise InputTypeError(f"params must be floating point, found {t.dtype}")


@torch.no_grad()
def pack_params(params: MTGNetParams, dtype: torch.dtype | None = None) -> PackedMTGNet:
    """Pack ``params`` for the kernel in compute ``dtype`` (default: the embedding's dtype).

    Builds the layer-1 constants (scores and V W_o per head) in fp32, folds the score scale
    log2(e)/(sqrt(d_head) * temperature) into the scores and later layers' W_q, b_q, drops b_k,
    folds b_v W_o into b_o, b_2 into LN1's bias, LN1's scale into W_1 (ln1_b W_1 into b_1),
    layer 1's b_o into the embeddings, and the last LayerNorm's affine into the head, row-centres
    every product that feeds a LayerNorm and (one head) merges W_q W_k^T and W_v W_o of layers
    2..L (exact rewrites; ``bounded_scores`` from ``score_bound``).
    """
    _check_params(params)
    dtype = params.embedding.dtype if dtype is None else dtype
    if dtype not in _CDT:
        raise InputTypeError(f"compute dtype must be float32, float16 or bfloat16, got {dtype}")
    dev = params.embedding.device
    n, d = params.n_tasks, params.dim
    h = params.n_heads
    dh = d // h
    n_layers = len(params.layers)
    f = int(params.layers[0].w_1.shape[1]) if n_layers else 16
    lay = KernelLayout(n_tasks=n, dim=d, ffn_dim=f, n_heads=h, n_layers=n_layers)
    npad, dp = lay.np_, lay.dp
    # score scale, times log2(e): the kernel's softmax uses exp2
    qscale = math.log2(math.e) / (math.sqrt(dh) * params.temperature)
    f32: dict[str, Any] = dict(dtype=torch.float32, device=dev)

    emb = params.embedding.float()
    emb_p = torch.zeros(npad, dp, **f32)
    emb_p[:n, :d] = emb
    if n_layers:
        # layer 1 starts from emb + attention + b_o: b_o rides in the gathered embeddings
        emb_p[:n, :d] += params.layers[0].b_o.float()
        _center(emb_p, d)   # LN1 of layer 1 reads emb + P @ VO: both row-centred, mean 0
    s1 = torch.zeros(h, npad, npad, **f32)
    vo1 = torch.zeros(h, npad, dp, **f32)
    mat = torch.zeros(max(1, n_layers), lay.mat_layer, **f32)
    vec = torch.zeros(lay.vec_size, **f32)

    for li, lp in enumerate(params.layers):
        lp32 = lp.to(torch.float32)
        m = mat[li]
        wqkv, wo, w1, w2, g1, gin = (lay.view(m, "mat", name) for name, _ in lay.fields("mat"))
        v = vec[li * lay.vec_layer:(li + 1) * lay.vec_layer]
        bqkv = lay.view(v, "vec", "b_qkv")
        # Layers 2..L read the layer before's LN2 output as normalised rows u (its affine
        # x = g u + c folded here): W_q,k,v get g on their rows, b_q gets c W_q, c W_k only
        # shifts each query's scores (dropped with b_k), c W_v joins b_v; the residual x is
        # u g + c elementwise or u @ diag(g) + ones @ (b_o + c) (``LaunchConfig.fold_ln``).
        g_in = params.layers[li - 1].ln2_w.float() if li > 0 else torch.ones(d, **f32)
        c_in = params.layers[li - 1].ln2_b.float() if li > 0 else torch.zeros(d, **f32)
        w_qkv = g_in[:, None] * lp32.w_qkv
        b_qkv = lp32.b_qkv + c_in @ lp32.w_qkv
        b_v = b_qkv[2 * d:]
        # Layers 2..L: b_k only shifts each query's scores (softmax ignores it) and attention
        # rows sum to 1, so b_v W_o joins b_o; layer 1's V W_o already holds b_v.
        b_o = lp32.b_o + (b_v @ lp32.w_o if li > 0 else 0.0)
        gin[:d, :d] = torch.diag(g_in)
        # The FFN reads LN1's normalised rows u: LN1's scale is folded into W_1 and its bias
        # into b_1. The residual y + b_2 = ln1_w u + (ln1_b + b_2) starts the FFN accumulator
        # (LN1's bias slot takes b_2; the b_2 slot stays 0), elementwise or as
        # u @ diag(ln1_w) + ones @ (ln1_b + b_2) (``LaunchConfig.fold_ln``).
        for name, t in (("b_o", b_o), ("ln1_w", lp32.ln1_w), ("ln1_b", lp32.ln1_b + lp32.b_2),
                        ("b_1", lp32.b_1 + lp32.ln1_b @ lp32.w_1), ("ln2_w", lp32.ln2_w),
                        ("ln2_b", lp32.ln2_b)):
            lay.view(v, "vec", name)[:t.numel()] = t
        w1[:d, :f] = lp32.ln1_w[:, None] * lp32.w_1
        g1[:d, :d] = torch.diag(lp32.ln1_w)
        w2[:f, :d] = lp32.w_2
        # Products feeding a LayerNorm get row-centred weights (right-multiplied by
        # C = I - 11^T / d): their sum is then x - mean(x), which the LayerNorm cannot tell
        # from x, and with every term centred (``fold_ln``) the kernel skips the mean.
        for t in (w2, g1, gin):
            _center(t, d)
        for hh in range(h):
            cols = slice(hh * dh, (hh + 1) * dh)
            for j in range(3):
                wqkv[j, hh, :d, :dh] = w_qkv[:, j * d:(j + 1) * d][:, cols] * (
                    qscale if j == 0 else 1.0)
            bqkv[0, hh, :dh] = b_qkv[:d][cols] * qscale
            wo[hh, :dh, :d] = lp32.w_o[cols, :]
        if li > 0 and h == 1:
            # One head (d_head = d): the products merge on the host, s = (u W_q W_k^T + b_q W_k^T)
            # u^T and o W_o = P u (W_v W_o), so keys and values are the rows u themselves (no
            # K and V products): the q slot holds W_q W_k^T, b_q's holds b_q W_k^T, W_o's
            # W_v W_o, and the k and v slots stay 0.
            wq_, wk_, wv_ = (wqkv[t, 0, :d, :d].clone() for t in range(3))
            bqkv[0, 0, :d] = bqkv[0, 0, :d] @ wk_.T
            wqkv[0, 0, :d, :d] = wq_ @ wk_.T
            wqkv[1:] = 0.0
            wo[0, :d, :d] = wv_ @ lp32.w_o
        for hh in range(h):
            _center(wo[hh], d)
        if li == 0:
            qkv = emb @ lp32.w_qkv + lp32.b_qkv
            q, k, vv = qkv.split(d, dim=-1)
            for hh in range(h):
                cols = slice(hh * dh, (hh + 1) * dh)
                s1[hh, :n, :n] = (q[:, cols] @ k[:, cols].T) * qscale
                vo1[hh, :n, :d] = vv[:, cols] @ lp32.w_o[cols, :]
                _center(vo1[hh], d)
    # Head, with the last LayerNorm's affine folded in: [w' = ln2_w * w_head | c | sum(w')].
    w_head, b_head = params.w_head.float(), params.b_head.float().reshape(())
    if n_layers:
        last = params.layers[-1].to(torch.float32)
        w_fold, c = last.ln2_w * w_head, last.ln2_b @ w_head + b_head
    else:
        w_fold, c = w_head, b_head
    vec[lay.head:lay.head + d] = w_fold
    vec[lay.head + dp] = c
    vec[lay.head + dp + 1] = w_fold.sum()
    bias = torch.zeros(max(1, n_layers), lay.bias_layer, dtype=torch.bfloat16, device=dev)
    for li in range(n_layers):
        v = vec[li * lay.vec_layer:(li + 1) * lay.vec_layer]
        b = bias[li]
        field = lambda name: lay.view(v, "vec", name)   # noqa: E731 - this layer's vectors
        lay.view(b, "bias", "bb_o")[:] = _bias_block(field("b_o"))
        for hh in range(h):
            lay.view(b, "bias", "bb_q")[hh] = _bias_block(field("b_qkv")[0, hh])
        lay.view(b, "bias", "bb_1")[:] = _bias_block(field("b_1"))
        lay.view(b, "bias", "bb_r")[:] = _bias_block(_center(field("ln1_b").clone(), d))
        c_in = torch.zeros(dp, **f32)
        if li > 0:
            c_in[:d] = params.layers[li - 1].ln2_b.float()
        lay.view(b, "bias", "bb_of")[:] = _bias_block(_center(field("b_o") + c_in, d))
    # Layer-1 softmax weights as a table: exp2(S_ij - max_j S_ij) is shift-invariant, so member
    # weights need no per-combination max or exp2 - when no weight can underflow fp32: the
    # spread of every score row (over real tasks) must stay <= EXP_SPREAD_MAX (log2 units).
    exp_scores = bool(n_layers) and bool(
        (s1[:, :n, :n].amax(-1) - s1[:, :n, :n].amin(-1)).max() <= EXP_SPREAD_MAX)
    if exp_scores:
        e = torch.zeros_like(s1)
        e[:, :n, :n] = torch.exp2(s1[:, :n, :n] - s1[:, :n, :n].amax(-1, keepdim=True))
        s1 = e
    mat = mat.reshape(-1)
    if dtype == torch.float32:
        # tf32x3 products read their weights pre-split (``tf32_parts``): [W | hi | lo], hi + lo
        # = W, hi exact in tf32, so only the activations are split per tile
        mat, vo1 = tf32_parts(mat, 0), tf32_parts(vo1, 0)
    return PackedMTGNet(layout=lay, ln_eps=float(params.ln_eps), dtype=dtype,
                        emb=_bf16_split(emb_p), s1=torch.stack([_bf16_split(t) for t in s1]),
                        vo1=vo1.to(dtype).contiguous(), mat=mat.to(dtype).contiguous(),
                        vec=vec.contiguous(), bias=bias.reshape(-1).contiguous(),
                        exp_scores=exp_scores,
                        bounded_scores=n_layers > 1 and score_bound(params) <= SCORE_BOUND_MAX)


# Largest spread of a layer-1 score row (log2 units) for which the kernel's softmax reads
# exp2 weights from a table (2^-64 >> fp32's smallest normal: no member weight underflows).
EXP_SPREAD_MAX = 64.0


# Largest bound on a layers-2..L score (log2 units) for which their softmax skips the row max:
# exp2(s) then lies in [2^-64, 2^64], no overflow or underflow in fp32.
SCORE_BOUND_MAX = 64.0


def score_bound(params: MTGNetParams) -> float:
    """Bound on every layers-2..L attention score |q . k| (log2 units, as the kernel scales them)
    for any input: those layers read normalised rows u (|u| <= sqrt(d)) through the layer
    before's LN2 affine g u + c, so per head |s| <= |W_q W_k^T|_2 d + |W_k^T b_q| sqrt(d) with
    W_q,k = diag(g) W_q,k, b_q = b_q + c W_q (times the score scale). 0 for fewer than 2 layers."""
    d, h = params.dim, params.n_heads
    dh = d // h
    qscale = math.log2(math.e) / (math.sqrt(dh) * params.temperature)
    out = 0.0
    for li in range(1, len(params.layers)):
        prev, lp = params.layers[li - 1].to(torch.float32), params.layers[li].to(torch.float32)
        w = prev.ln2_w[:, None] * lp.w_qkv
        b = lp.b_qkv + prev.ln2_b @ lp.w_qkv
        for hh in range(h):
            cols = slice(hh * dh, (hh + 1) * dh)
            wq, wk = w[:, :d][:, cols] * qscale, w[:, d:2 * d][:, cols]
            bq = b[:d][cols] * qscale
            bound = (torch.linalg.matrix_norm((wq @ wk.T).cpu(), 2) * d
                     + (wk @ bq).norm().cpu() * math.sqrt(d))
            out = max(out, float(bound))
    return out


def _center(t: torch.Tensor, d: int) -> torch.Tensor:
    """Subtract from each row of ``t`` (in place) its mean over the first ``d`` (real) columns."""
    t[..., :d] -= t[..., :d].mean(-1, keepdim=True)
    return t


def tf32_round(t: torch.Tensor) -> torch.Tensor:
    """fp32 ``t`` rounded to tf32 (10 mantissa bits; nearest, ties away from zero) as fp32: the
    kernel's ``tf32_hi`` on the host."""
    bits = t.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & -0x2000).view(torch.float32)


def tf32_parts(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[t | hi | lo]`` along ``dim``: fp32 ``t``, its tf32 part and the rest (hi + lo = t), the
    operands of the kernel's tf32x3 weight products (``_mm_w``)."""
    hi = tf32_round(t)
    return torch.cat([t, hi, t.float() - hi], dim)


def _bias_block(b: torch.Tensor) -> torch.Tensor:
    """fp32 bias ``(W,)`` as a (16, W) bf16 block: rows 0..2 its split, the rest 0.

    ``ones(R, 16) @ block`` then adds the bias exactly (fp32 accumulation) on tensor cores.
    """
    block = torch.zeros(16, b.numel(), dtype=torch.bfloat16, device=b.device)
    block[:3] = _bf16_split(b)
    return block


def _bf16_split(t: torch.Tensor) -> torch.Tensor:
    """fp32 ``t`` as three bf16 parts whose fp32 sum is ``t`` to ~24 bits (fp32's precision).

    Gathers by one-hot matmul then run as three exact bf16 tensor-core products.
    """
    parts = []
    rest = t.float()
    for _ in range(3):
        part = rest.to(torch.bfloat16)
        parts.append(part)
        rest = rest - part.float()
    return torch.stack(parts).contiguous()


# ------------------------------------------------------------------------------------------------
# jit helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _mm(a, b, acc, CDT: tl.constexpr, UPCAST_DOT: tl.constexpr, TF32X3: tl.constexpr):
    """acc + a @ b, operands rounded to the compute dtype, fp32 accumulation (2-D or batched 3-D).

    fp32 operands run on tensor cores as tf32x3 (three tf32 products: ~fp32 accuracy); fp16/bf16
    operands ignore input_precision. ``acc`` starts the accumulator, so residuals and biases
    added to a product cost no extra instruction.
    """
    a = a.to(CDT)
    b = b.to(CDT)
    if UPCAST_DOT:
        # The interpreter's dot misreads bf16 (stored as uint16); products of bf16 values are exact
        # in fp32, so upcasting after rounding computes the same numbers.
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if TF32X3:
        # fp32 as three tf32 products, a_lo b_hi + a_hi b_lo + a_hi b_hi (hi exact in tf32,
        # ``tf32_hi``; the dropped a_lo b_lo is ~2^-22 of a b), accumulated onto ``acc``
        # (no NaN select, no separate add); b's low part made after the first (registers)
        a_hi = tf32_hi(a)
        b_hi = tf32_hi(b)
        acc = tl.dot(a - a_hi, b_hi, acc, input_precision="tf32")
        acc = tl.dot(a_hi, b - b_hi, acc, input_precision="tf32")
        return tl.dot(a_hi, b_hi, acc, input_precision="tf32")
    return tl.dot(a, b, acc, input_precision="ieee")


@triton.jit
def tf32_hi(x):
    """fp32 ``x`` rounded to tf32 (10 mantissa bits, nearest, ties away from zero), as fp32: an
    integer add and mask, the same on the host (``tf32_round``) and in the interpreter."""
    bits = x.to(tl.uint32, bitcast=True)
    return ((bits + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _mm_w(a, w_ptrs, acc, HI: tl.constexpr, LO: tl.constexpr, CDT: tl.constexpr,
          UPCAST_DOT: tl.constexpr, TF32X3: tl.constexpr):
    """acc + a @ W for a weight matrix read per tile at ``w_ptrs``: fp32 (TF32X3) reads its tf32
    parts, ``HI`` and ``LO`` further on (``tf32_parts``: no per-tile split of the weights)."""
    if TF32X3:   # as ``_mm``'s three products; lo is read after the first (registers)
        a = a.to(tl.float32)
        a_hi = tf32_hi(a)
        b_hi = tl.load(w_ptrs + HI)
        b_lo = tl.load(w_ptrs + LO)
        acc = tl.dot(a - a_hi, b_hi, acc, input_precision="tf32")
        acc = tl.dot(a_hi, b_lo, acc, input_precision="tf32")
        return tl.dot(a_hi, b_hi, acc, input_precision="tf32")
    return _mm(a, tl.load(w_ptrs), acc, CDT, UPCAST_DOT, False)


# bf16 parts of the gather tables (embeddings, layer-1 scores) that fp16/bf16 kernels read:
# two carry ~16 bits, far below their own 8-11-bit rounding (fp32: all three, ~24 bits).
GATHER_PARTS: tl.constexpr = tl.constexpr(2)


# fp16/bf16 LayerNorm outputs that only feed products are normalised by a packed multiply of
# the rounded rows (``_ln_normalise_to``); False: the fp32 multiply per value, then the convert.
PACKED_LN: tl.constexpr = tl.constexpr(True)


# fp16/bf16: a bias, residual or mask product joins an accumulator after the product it is
# added to (the FFN's W_1 and W_2, W_o, layer 2's scores, layer 1's P @ VO: the embeddings),
# not before it, so no accumulator is started before that product's operand is ready
# (registers: ptxas otherwise issues the operand-free product early, and two fp32
# accumulators are live together).
RESIDUAL_LAST: tl.constexpr = tl.constexpr(True)


# The per-row combination one-hot's last column holds -(slot + 1) (``_mtgnet_fwd_kernel``), and
# the rank table NOT_MEMBER for absent tasks: exact in bf16, far below -(2 x 64).
SLOT_IN_HOT: tl.constexpr = tl.constexpr(True)
NOT_MEMBER: tl.constexpr = tl.constexpr(-1024.0)


# The prologue loads the matrices kept in shared memory one at a time (``_load_pre``).
SERIAL_PROLOGUE: tl.constexpr = tl.constexpr(True)


# Score offset of masked keys in the 2-D attention (finite: it reaches the accumulator through
# a product with 0/1 entries; exp2 of anything near it is 0, and no valid score comes close).
MASKED: tl.constexpr = tl.constexpr(1.0e30)


@triton.jit
def _relu_to(h, CDT: tl.constexpr, INTERPRETED: tl.constexpr):
    """max(h, 0) rounded to the compute dtype: fp16/bf16 compiled, one packed convert with ReLU
    per two elements (``cvt.rn.relu.{b,}f16x2.f32``) instead of a max per element and a convert."""
    if INTERPRETED or CDT == tl.float32:
        return tl.maximum(h, 0.0).to(CDT)
    elif CDT == tl.bfloat16:
        return tl.inline_asm_elementwise("cvt.rn.relu.bf16x2.f32 $0, $2, $1;", "=r,r,r", [h],
                                         dtype=tl.bfloat16, is_pure=True, pack=2)
    else:
        return tl.inline_asm_elementwise("cvt.rn.relu.f16x2.f32 $0, $2, $1;", "=r,r,r", [h],
                                         dtype=tl.float16, is_pure=True, pack=2)


@triton.jit
def _popc(x, WIDE: tl.constexpr, INTERPRETED: tl.constexpr):
    """Set bits of each uint32 (WIDE: uint64) element, as int32: one ``popc`` compiled (inline
    asm, as the packed ReLU convert), the same count by SWAR integer steps in the interpreter."""
    if INTERPRETED:
        if WIDE:
            x = x - ((x >> 1) & 0x5555555555555555)
            x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
            x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
            return ((x * 0x0101010101010101) >> 56).to(tl.int32)
        x = x - ((x >> 1) & 0x55555555)
        x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
        x = (x + (x >> 4)) & 0x0F0F0F0F
        return ((x * 0x01010101) >> 24).to(tl.int32)
    elif WIDE:
        return tl.inline_asm_elementwise("popc.b64 $0, $1;", "=r,l", [x], dtype=tl.int32,
                                         is_pure=True, pack=1)
    else:
        return tl.inline_asm_elementwise("popc.b32 $0, $1;", "=r,r", [x], dtype=tl.int32,
                                         is_pure=True, pack=1)


@triton.jit
def _mask_bits(m, WIDE: tl.constexpr):
    """int64 masks as the unsigned word the bit counts read: the low 32 bits unless WIDE."""
    if WIDE:
        w = m.to(tl.uint64, bitcast=True)
    else:
        w = m.to(tl.uint32)
    return w


@triton.jit
def _count_below(mw, j, WIDE: tl.constexpr, INTERPRETED: tl.constexpr):
    """Members of mask word ``mw`` (``_mask_bits``) below task ``j`` (broadcast): the rank of
    task j among them, popc(m & (2^j - 1)), with no scan over the task axis."""
    if WIDE:
        below = (tl.full(j.shape, 1, tl.uint64) << j.to(tl.uint64)) - 1
    else:
        below = (tl.full(j.shape, 1, tl.uint32) << j.to(tl.uint32)) - 1
    return _popc(mw & below, WIDE, INTERPRETED)


@triton.jit
def _rcp(x, INTERPRETED: tl.constexpr):
    """1 / x for a positive normal fp32 ``x`` (a softmax denominator): compiled, one
    ``rcp.approx.ftz.f32`` (MUFU.RCP, max error 1 ulp) instead of the IEEE divide's range
    checks and scalings (~10 instructions per value); interpreted, the plain divide."""
    if INTERPRETED:
        return 1.0 / x
    return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [x],
                                     dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _softmax2(s, BOUNDED: tl.constexpr, INTERPRETED: tl.constexpr):
    """Softmax in base 2 over the last axis (scores carry log2(e)); masked keys are -inf already.

    Rows with no key give 0 (the divide is one reciprocal per row, then a multiply). BOUNDED:
    the host proved |s| <= SCORE_BOUND_MAX, so exp2(s) needs no row max subtracted.
    """
    if BOUNDED:
        p = tl.exp2(s)
    else:
        row_max = tl.max(s, axis=2)
        row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
        p = tl.exp2(s - row_max[:, :, None])
    denom = tl.sum(p, axis=2)
    inv = _rcp(tl.where(denom == 0.0, 1.0, denom), INTERPRETED)
    return p * inv[:, :, None]


@triton.jit
def _halves(x):
    """(R, C) as its even and odd column halves by the column's bits in the accumulator layout:
    first bit 0, then bits 3.. (the ones a thread holds in registers), so no data moves."""
    R: tl.constexpr = x.shape[0]
    C: tl.constexpr = x.shape[1]
    return tl.split(tl.reshape(x, (R, C // 2, 2)))


@triton.jit
def _fma4(acc, u, v):
    """acc + the four products of (R, 4, 4) ``u`` and ``v`` along their last (register) axis, as
    a multiply-add chain (``_row_dot``)."""
    R: tl.constexpr = u.shape[0]
    w0, w1 = tl.split(tl.reshape(u, (R, 4, 2, 2)))
    z0, z1 = tl.split(tl.reshape(v, (R, 4, 2, 2)))
    a0, a1 = tl.split(w0)
    b0, b1 = tl.split(z0)
    acc = acc + a0 * b0
    acc = acc + a1 * b1
    a0, a1 = tl.split(w1)
    b0, b1 = tl.split(z1)
    acc = acc + a0 * b0
    return acc + a1 * b1


@triton.jit
def _row_dot(x, y, CHAIN: tl.constexpr = True):
    """sum_j x_ij y_ij per row as one fused multiply-add chain over the columns a thread holds
    (64 columns: 16 per thread in the MMA layout), then the cross-lane sum: the tree reduce of
    ``tl.sum(x * y)`` multiplies and adds apart (about twice the instructions). CHAIN=False
    (fp32: the chain's operands made fp32 top-k spill 72 B): that tree reduce."""
    R: tl.constexpr = x.shape[0]
    C: tl.constexpr = x.shape[1]
    if C != 64 or not CHAIN:
        return tl.sum(x * y, axis=1)
    # column = 8 k + 2 c + e: e (bit 0) and k (bits 3..5) in registers, c in the lane
    x4 = tl.reshape(x, (R, 8, 4, 2))
    y4 = tl.reshape(y, (R, 8, 4, 2))
    xa, xb = tl.split(x4)
    ya, yb = tl.split(y4)
    xa = tl.permute(xa, (0, 2, 1))
    xb = tl.permute(xb, (0, 2, 1))
    ya = tl.permute(ya, (0, 2, 1))
    yb = tl.permute(yb, (0, 2, 1))     # (R, 4 (c), 8 (k))
    acc = tl.zeros((R, 4), tl.float32)
    for t in tl.static_range(2):   # the even, then the odd column halves
        u0, u1 = tl.split(tl.reshape((xa, xb)[t], (R, 4, 4, 2)))
        v0, v1 = tl.split(tl.reshape((ya, yb)[t], (R, 4, 4, 2)))
        acc = _fma4(_fma4(acc, u0, v0), u1, v1)
    return tl.sum(acc, axis=1)


@triton.jit
def _ln_stats(x, eps, D: tl.constexpr, CENTERED: tl.constexpr, CHAIN: tl.constexpr = True):
    """Row mean and 1/std over the first D columns (padded columns hold 0): one pass, two sums.

    CENTERED: the rows have mean 0 by construction (every product feeding them has
    row-centred weights, ``pack_params``), so the mean is 0 and one sum (of squares) is left.
    """
    if CENTERED:
        mean = tl.zeros((x.shape[0],), tl.float32)
        var = _row_dot(x, x, CHAIN) * (1.0 / D)
    else:
        mean = tl.sum(x, axis=1) * (1.0 / D)
        var = tl.maximum(_row_dot(x, x, CHAIN) * (1.0 / D) - mean * mean, 0.0)
    return mean, tl.math.rsqrt(var + eps)


@triton.jit
def _ln_head(x, head_ptr, eps, D: tl.constexpr, DP: tl.constexpr, CENTERED: tl.constexpr,
             PRE: tl.constexpr = False, wh_pre=None, CHAIN: tl.constexpr = True):
    """Last LayerNorm and the head in one: y = rstd (x . w') - mean rstd sum(w') + c per row.

    The host folds the LN affine into the head: w' = ln_w * w_head, c = ln_b . w_head + b_head.
    CENTERED rows (mean 0) drop the mean term.
    """
    dc = tl.arange(0, DP)
    mean, rstd = _ln_stats(x, eps, D, CENTERED, CHAIN)
    if PRE:   # loaded once per program (a load in the tile loop is not hoisted past its stores)
        wh = wh_pre
    else:
        wh = tl.load(head_ptr + dc)
    c = tl.load(head_ptr + DP)
    xw = _row_dot(x, tl.broadcast_to(wh[None, :], x.shape), CHAIN)
    if CENTERED:
        return rstd * xw + c
    sw = tl.load(head_ptr + DP + 1)
    return rstd * xw - mean * rstd * sw + c


@triton.jit
def _ln_normalise(x, eps, D: tl.constexpr, CENTERED: tl.constexpr, CHAIN: tl.constexpr = True):
    """LayerNorm without its affine: (x - mean) / std per row (padded columns stay 0 only if the
    caller's weights ignore them: the folded W_1 and diag(ln1_w) have zero padded rows)."""
    mean, rstd = _ln_stats(x, eps, D, CENTERED, CHAIN)
    if CENTERED:
        return x * rstd[:, None]
    return x * rstd[:, None] - (mean * rstd)[:, None]


@triton.jit
def _ln_normalise_to(x, eps, D: tl.constexpr, CENTERED: tl.constexpr, CHAIN: tl.constexpr,
                     CDT: tl.constexpr, PACKED: tl.constexpr, INTERPRETED: tl.constexpr):
    """``_ln_normalise`` rounded to the compute dtype (the next products' operand). PACKED
    (CENTERED fp16/bf16 rows): x rounded first, then one packed multiply by 1/std per two
    values (``mul.rn.{b,}f16x2``: HMUL2) instead of an fp32 multiply per value and the convert;
    the product of two fp16/bf16 values rounded once, the same in the interpreter."""
    if PACKED and CENTERED and CDT != tl.float32:
        _, rstd = _ln_stats(x, eps, D, CENTERED, CHAIN)
        xb = x.to(CDT)
        rb = tl.broadcast_to(rstd.to(CDT)[:, None], x.shape)
        if INTERPRETED:
            # exact in fp32 (two 8- or 11-bit mantissas), then one rounding: as mul.rn
            return (xb.to(tl.float32) * rb.to(tl.float32)).to(CDT)
        elif CDT == tl.bfloat16:
            return tl.inline_asm_elementwise("mul.rn.bf16x2 $0, $1, $2;", "=r,r,r", [xb, rb],
                                             dtype=tl.bfloat16, is_pure=True, pack=2)
        else:
            return tl.inline_asm_elementwise("mul.rn.f16x2 $0, $1, $2;", "=r,r,r", [xb, rb],
                                             dtype=tl.float16, is_pure=True, pack=2)
    return _ln_normalise(x, eps, D, CENTERED, CHAIN).to(CDT)


@triton.jit
def _post_attention(x_attn, ones, w1_pre, w2_pre, b1_pre, mat_l, vec_l, bias_l, head_ptr, eps,
                    LAST: tl.constexpr, PRE: tl.constexpr,
                    D: tl.constexpr, DP: tl.constexpr, FP: tl.constexpr, BLOCK_F: tl.constexpr,
                    O_W1: tl.constexpr, O_W2: tl.constexpr, O_BO: tl.constexpr,
                    O_B1: tl.constexpr, O_B2: tl.constexpr, OB_1: tl.constexpr,
                    O_G1: tl.constexpr, OB_R: tl.constexpr, FOLD_LN: tl.constexpr,
                    CENTER_IN: tl.constexpr,
                    CDT: tl.constexpr, UPCAST_DOT: tl.constexpr, TF32X3: tl.constexpr,
                    W_HI: tl.constexpr = 0, W_LO: tl.constexpr = 0, wh_pre=None,
                    HEAD_PRE: tl.constexpr = True, g1_pre=None, PRE_LN: tl.constexpr = False,
                    br_pre=None, REORDER: tl.constexpr = False):
    """From x + attn + b_o: y = LN1(.), then LN2(y + FFN(y)); LAST: the head's output per row.

    The FFN reads LN1's normalised rows u (the host folded LN1's scale into W_1 and its bias
    into b_1); the residual y + b_2 = ln1_w u + (ln1_b + b_2) starts the FFN accumulator, by
    an fp32 multiply-add per element or (FOLD_LN) by two tensor-core products,
    u @ diag(ln1_w) + ones @ (ln1_b + b_2) block.

    CENTER_IN: ``x_attn`` rows have mean 0 by construction (LN1 skips the mean); LN2's input
    and the head's are centred when FOLD_LN (every term of the residual is a product).

    Offsets are the host layout's (``KernelLayout``): LN1 follows b_o, LN2 follows b_2. b_1
    starts the hidden accumulator as ``ones @ block`` (``pack_params``' bias blocks). PRE:
    ``w1_pre``/``w2_pre``/``b1_pre`` are the whole FFN's, loaded once per program (FP == BLOCK_F);
    with HEAD_PRE also the folded head vector ``wh_pre`` (else re-read per tile: registers);
    with PRE_LN also LN1's diag(ln1_w) ``g1_pre`` and bias block ``br_pre`` (else staged per
    tile through registers).
    """
    dc = tl.arange(0, DP)
    fc = tl.arange(0, BLOCK_F)
    r16 = tl.arange(0, 16)
    CHAIN: tl.constexpr = not TF32X3   # fp32: the tree reduce (registers, ``_row_dot``)
    if FOLD_LN:   # the residual's start is a product too: only the rounded rows are read
        xc = _ln_normalise_to(x_attn, eps, D, CENTER_IN, CHAIN, CDT, PACKED_LN, UPCAST_DOT)
        u = xc
    else:
        u = _ln_normalise(x_attn, eps, D, CENTER_IN, CHAIN)
        xc = u.to(CDT)
    # Feed-forward in BLOCK_F-wide slices; the residual (with b_2) starts the accumulator, made
    # after the first hidden slice (fp32: u, the hidden slice and the residual are not all live)
    for f0 in tl.static_range(0, FP, BLOCK_F):
        if PRE:
            w1 = w1_pre
            w2 = w2_pre
            b1 = b1_pre
        else:
            b1 = tl.load(bias_l + OB_1 + r16[:, None] * FP + (f0 + fc)[None, :])
        # RESIDUAL_LAST (fp16/bf16): b_1 after the product, so the hidden accumulator cannot
        # start before the LayerNorm's rows are ready (registers)
        B1_LATE: tl.constexpr = REORDER and not TF32X3
        hid = tl.zeros((u.shape[0], BLOCK_F), tl.float32)
        if not B1_LATE:
            hid = _mm(ones, b1, hid, tl.bfloat16, UPCAST_DOT, False)
        if PRE:
            hid = _mm(xc, w1, hid, CDT, UPCAST_DOT, TF32X3)
        else:
            hid = _mm_w(xc, mat_l + O_W1 + dc[:, None] * FP + (f0 + fc)[None, :], hid, W_HI,
                        W_LO, CDT, UPCAST_DOT, TF32X3)
        if B1_LATE:
            hid = _mm(ones, b1, hid, tl.bfloat16, UPCAST_DOT, False)
        hid = _relu_to(hid, CDT, UPCAST_DOT)
        # FOLD_LN, RESIDUAL_LAST: the hidden slice's product starts the accumulator and the
        # residual's products follow on it, so none of them can be issued before the ReLU'd
        # hidden is ready (else the fp32 hidden and the fp32 residual are live together)
        LATE: tl.constexpr = FOLD_LN and REORDER
        if f0 == 0:
            if LATE:
                acc = tl.zeros((x_attn.shape[0], DP), tl.float32)
            elif FOLD_LN:
                acc = _ln_residual(xc, ones, g1_pre, mat_l, bias_l,
                                   tl.zeros((x_attn.shape[0], DP), tl.float32), PRE and PRE_LN,
                                   DP, O_G1, OB_R, CDT, UPCAST_DOT, br_pre)
            else:
                acc = (u * tl.load(vec_l + O_BO + DP + dc)[None, :]
                       + tl.load(vec_l + O_BO + 2 * DP + dc)[None, :])
        if PRE:
            acc = _mm(hid, w2, acc, CDT, UPCAST_DOT, TF32X3)
        else:
            acc = _mm_w(hid, mat_l + O_W2 + (f0 + fc)[:, None] * DP + dc[None, :], acc, W_HI,
                        W_LO, CDT, UPCAST_DOT, TF32X3)
        if f0 == 0 and LATE:
            acc = _ln_residual(xc, ones, g1_pre, mat_l, bias_l, acc, PRE and PRE_LN, DP, O_G1,
                               OB_R, CDT, UPCAST_DOT, br_pre)
    if LAST:
        HPRE: tl.constexpr = PRE and HEAD_PRE
        out = _ln_head(acc, head_ptr, eps, D, DP, FOLD_LN, HPRE, wh_pre, CHAIN)
    else:
        # normalised rows: the next layer applies this LayerNorm's affine (``pack_params``)
        if FOLD_LN:   # layers 2..L read them only as product operands (``_residual_start``)
            out = _ln_normalise_to(acc, eps, D, FOLD_LN, CHAIN, CDT, PACKED_LN, UPCAST_DOT)
        else:
            out = _ln_normalise(acc, eps, D, FOLD_LN, CHAIN)
    return out


@triton.jit
def _ln_residual(xc, ones, g1_pre, mat_l, bias_l, acc, PRE_LN: tl.constexpr, DP: tl.constexpr,
                 O_G1: tl.constexpr, OB_R: tl.constexpr, CDT: tl.constexpr,
                 UPCAST_DOT: tl.constexpr, br_pre=None):
    """acc + LN1's output on the residual, ln1_w u + (ln1_b + b_2), by two tensor-core products
    (``FOLD_LN``): ones @ bias block and u @ diag(ln1_w) (``g1_pre`` kept in shared memory when
    PRE_LN, with its bias block ``br_pre``; else read here)."""
    if PRE_LN:
        br = br_pre
    else:
        br = _load_mat(bias_l + OB_R, 16, DP)
    acc = _mm(ones, br, acc, tl.bfloat16, UPCAST_DOT, False)
    if PRE_LN:
        g1 = g1_pre
    else:
        g1 = _load_mat(mat_l + O_G1, DP, DP)
    return _mm(xc, g1, acc, CDT, UPCAST_DOT, False)


@triton.jit
def _residual_start(x, xc, ones, bo_pre, mat_l, bias_l, vin_l, R: tl.constexpr, PRE: tl.constexpr,
                    DP: tl.constexpr, O_GI: tl.constexpr, OB_OF: tl.constexpr,
                    FOLD_LN: tl.constexpr, CDT: tl.constexpr, UPCAST_DOT: tl.constexpr,
                    gin_pre=None, PRE_LN: tl.constexpr = False, acc0=None):
    """Layers 2..L: the residual x + b_o from the layer before's normalised LN2 rows (fp32);
    FOLD_LN: added onto ``acc0`` (None: zeros)."""
    dc = tl.arange(0, DP)
    # x: the layer before's normalised LN2 rows u; its affine g u + c (folded into
    # W_q,k,v and their biases) rides on the residual: x = u g + c + b_o elementwise
    # or, FOLD_LN, by tensor-core products u @ diag(g) + ones @ (b_o + c) block
    if FOLD_LN:
        if PRE:
            bo = bo_pre
        else:
            bo = _load_mat(bias_l + OB_OF, 16, DP)
        if acc0 is None:
            acc = _mm(ones, bo, tl.zeros((R, DP), tl.float32), tl.bfloat16, UPCAST_DOT, False)
        else:
            acc = _mm(ones, bo, acc0, tl.bfloat16, UPCAST_DOT, False)
        if PRE and PRE_LN:   # diag(g) kept in shared memory across tiles
            gin = gin_pre
        else:
            gin = _load_mat(mat_l + O_GI, DP, DP)
        acc = _mm(xc, gin, acc, CDT, UPCAST_DOT, False)
    else:
        if PRE:
            bo = bo_pre
        else:
            bo = _load_mat(bias_l, 16, DP)
        acc = _mm(ones, bo, x * tl.load(vin_l + dc)[None, :]
                  + tl.load(vin_l + DP + dc)[None, :], tl.bfloat16, UPCAST_DOT, False)
    return acc


@triton.jit
def _general_layer(x, key_ok, comb_hot, ones, wq_pre, wk_pre, wv_pre, wo_pre, w1_pre, w2_pre,
                   bo_pre, bq_pre,
                   b1_pre, mat_l, vec_l, bias_l, vin_l, head_ptr, eps, LAST: tl.constexpr,
                   PRE: tl.constexpr,
                   BLOCK_M: tl.constexpr, PP: tl.constexpr,
                   H: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, DHP: tl.constexpr,
                   FP: tl.constexpr, BLOCK_F: tl.constexpr, O_WO: tl.constexpr,
                   O_W1: tl.constexpr, O_W2: tl.constexpr, O_BO: tl.constexpr,
                   O_B1: tl.constexpr, O_B2: tl.constexpr, OB_Q: tl.constexpr, OB_1: tl.constexpr,
                   O_G1: tl.constexpr, OB_R: tl.constexpr, O_GI: tl.constexpr,
                   OB_OF: tl.constexpr, FOLD_LN: tl.constexpr,
                   CDT: tl.constexpr, UPCAST_DOT: tl.constexpr, TF32X3: tl.constexpr,
                   FLAT: tl.constexpr, S: tl.constexpr, BOUNDED: tl.constexpr,
                   W_HI: tl.constexpr = 0, W_LO: tl.constexpr = 0, wh_pre=None,
                   HEAD_PRE: tl.constexpr = True, g1_pre=None, gin_pre=None,
                   PRE_LN: tl.constexpr = False, br_pre=None, REORDER: tl.constexpr = False,
                   SLOT_COL: tl.constexpr = False):
    """One encoder layer over (R, DP) slot tokens: per-head QKV, attention, LN/FFN/LN. FLAT:
    2-D block-diagonal attention, combination c on rows [c S, c S + S) (its mask a product on
    the score accumulator); else batched (BLOCK_M, PP, PP) (R = BLOCK_M PP, S = PP). One head
    (MERGED): the q slot holds W_q W_k^T and W_o's W_v W_o, keys and values are the rows.

    The host packs b_k = 0 (a per-query shift: softmax ignores it) and folds b_v W_o into b_o
    (attention rows sum to 1), so only q gets a bias; b_o and b_q are added on tensor cores
    (``ones @ bias block``). A helper rather than inline code: its
    names are not loop-carried in the kernel's runtime layer loop, so they may differ in shape
    from step 2's (e.g. (BLOCK_M, PP, NP) scores). PRE: the ``*_pre`` matrices (one head, one
    FFN slice) were loaded once per program; else they are read here.
    """
    R: tl.constexpr = x.shape[0]
    MERGED: tl.constexpr = H == 1   # one head: W_q W_k^T and W_v W_o merged on the host
    dc = tl.arange(0, DP)
    hc = tl.arange(0, DHP)
    r16 = tl.arange(0, 16)
    xc = x.to(CDT)
    if TF32X3:   # fp32: before the attention (fewer spills there)
        acc = _residual_start(x, xc, ones, bo_pre, mat_l, bias_l, vin_l, R, PRE, DP, O_GI, OB_OF,
                              FOLD_LN, CDT, UPCAST_DOT, gin_pre, PRE_LN)
    z = tl.zeros((R, DHP), tl.float32)
    for h in tl.static_range(H):
        if PRE:
            wq = wq_pre
            wk = wk_pre
            wv = wv_pre
            bq = bq_pre
        else:
            bq = tl.load(bias_l + OB_Q + h * 16 * DHP + r16[:, None] * DHP + hc[None, :])
        w_off = dc[:, None] * DHP + hc[None, :]
        # rounded to the compute dtype at once (the next matmul would): half the registers
        if MERGED:   # keys and values are the rows themselves (``pack_params``)
            k = xc
            v = xc
        elif PRE:
            k = _mm(xc, wk, z, CDT, UPCAST_DOT, TF32X3).to(CDT)
            v = _mm(xc, wv, z, CDT, UPCAST_DOT, TF32X3).to(CDT)
        else:
            k = _mm_w(xc, mat_l + (1 * H + h) * DP * DHP + w_off, z, W_HI, W_LO, CDT,
                      UPCAST_DOT, TF32X3).to(CDT)
            v = _mm_w(xc, mat_l + (2 * H + h) * DP * DHP + w_off, z, W_HI, W_LO, CDT,
                      UPCAST_DOT, TF32X3).to(CDT)
        BQ_LATE: tl.constexpr = REORDER and not TF32X3   # b_q after the product
        if BQ_LATE:
            q = z
        else:
            q = _mm(ones, bq, z, tl.bfloat16, UPCAST_DOT, False)
        if PRE:
            q = _mm(xc, wq, q, CDT, UPCAST_DOT, TF32X3)
        else:
            q = _mm_w(xc, mat_l + (0 * H + h) * DP * DHP + w_off, q, W_HI, W_LO, CDT,
                      UPCAST_DOT, TF32X3)
        if BQ_LATE:
            q = _mm(ones, bq, q, tl.bfloat16, UPCAST_DOT, False)
        q = q.to(CDT)
        if FLAT:
            # all R rows against all R keys in plain 2-D products (Hopper: wgmma, operands in
            # shared memory; the batched 3-D form holds both in registers), keys of other
            # combinations masked off (block-diagonal: combination r // S); key_ok (R,) marks
            # the occupied slots. The mask rides on the score accumulator as one more product,
            # comb_hot (R, KC) @ B with B[c, j] = 0 for the occupied keys j of combination c
            # and -MASKED otherwise: (KC, R) selects instead of (R, R) (masked weights: 0).
            rr = tl.arange(0, R)
            kc = tl.arange(0, comb_hot.shape[1])
            okb = (kc[:, None] == (rr // S)[None, :]) & key_ok[None, :]
            if SLOT_COL:   # comb_hot's slot column (``_mtgnet_fwd_kernel``) adds nothing
                okb = okb | (kc == comb_hot.shape[1] - 1)[:, None]
            if REORDER and not TF32X3:   # the mask after the scores (q rounded first)
                s = _mm(q, tl.trans(k), tl.zeros((R, R), tl.float32), CDT, UPCAST_DOT, TF32X3)
                s = _mm(comb_hot, tl.where(okb, 0.0, -MASKED), s, tl.bfloat16, UPCAST_DOT,
                        False)
            else:
                s = _mm(comb_hot, tl.where(okb, 0.0, -MASKED), tl.zeros((R, R), tl.float32),
                        tl.bfloat16, UPCAST_DOT, False)
                s = _mm(q, tl.trans(k), s, CDT, UPCAST_DOT, TF32X3)
            p = tl.reshape(_softmax2(tl.reshape(s, (1, R, R)), BOUNDED, UPCAST_DOT), (R, R))
            o2 = _mm(p, v, tl.zeros((R, DHP), tl.float32), CDT, UPCAST_DOT, TF32X3)
        else:
            q3 = tl.reshape(q, (BLOCK_M, PP, DHP))
            k3 = tl.reshape(k, (BLOCK_M, PP, DHP))
            v3 = tl.reshape(v, (BLOCK_M, PP, DHP))
            s = _mm(q3, tl.trans(k3, (0, 2, 1)), tl.zeros((BLOCK_M, PP, PP), tl.float32), CDT,
                    UPCAST_DOT, TF32X3)                          # scale * log2(e) folded in W_q
            p = _softmax2(tl.where(key_ok, s, float("-inf")), BOUNDED, UPCAST_DOT)
            o = _mm(p, v3, tl.zeros((BLOCK_M, PP, DHP), tl.float32), CDT, UPCAST_DOT, TF32X3)
            o2 = tl.reshape(o, (R, DHP))
        # fp16/bf16: the residual starts after the attention (shorter live range); LATE: after
        # W_o's product, onto its accumulator (``RESIDUAL_LAST``: o2 is rounded before it starts)
        LATE: tl.constexpr = FOLD_LN and REORDER and not TF32X3
        if h == 0 and LATE:
            acc = tl.zeros((R, DP), tl.float32)
        elif h == 0 and not TF32X3:
            acc = _residual_start(x, xc, ones, bo_pre, mat_l, bias_l, vin_l, R, PRE, DP, O_GI,
                                  OB_OF, FOLD_LN, CDT, UPCAST_DOT, gin_pre, PRE_LN)
        if PRE:
            acc = _mm(o2, wo_pre, acc, CDT, UPCAST_DOT, TF32X3)
        else:
            acc = _mm_w(o2, mat_l + O_WO + h * DHP * DP + hc[:, None] * DP + dc[None, :], acc,
                        W_HI, W_LO, CDT, UPCAST_DOT, TF32X3)
        if h == 0 and LATE:
            acc = _residual_start(x, xc, ones, bo_pre, mat_l, bias_l, vin_l, R, PRE, DP, O_GI,
                                  OB_OF, FOLD_LN, CDT, UPCAST_DOT, gin_pre, PRE_LN, acc)
    return _post_attention(acc, ones, w1_pre, w2_pre, b1_pre, mat_l, vec_l, bias_l, head_ptr, eps,
                           LAST, PRE, D, DP, FP, BLOCK_F, O_W1, O_W2, O_BO, O_B1, O_B2, OB_1,
                           O_G1, OB_R, FOLD_LN, FOLD_LN, CDT, UPCAST_DOT, TF32X3, W_HI, W_LO,
                           wh_pre, HEAD_PRE, g1_pre, PRE_LN, br_pre, REORDER)


@triton.jit
def _load_mat(ptr, ROWS: tl.constexpr, COLS: tl.constexpr):
    """A row-major (ROWS, COLS) matrix at ``ptr``."""
    return tl.load(ptr + tl.arange(0, ROWS)[:, None] * COLS + tl.arange(0, COLS)[None, :])


@triton.jit
def _load_pre(ptr, ROWS: tl.constexpr, COLS: tl.constexpr):
    """``_load_mat`` for a matrix kept in shared memory across tiles: with SERIAL_PROLOGUE a
    barrier first, so ptxas cannot issue every prologue load at once (registers: the loads of
    all the kept matrices in flight together were the live set's peak)."""
    if SERIAL_PROLOGUE:
        tl.debug_barrier()
    return _load_mat(ptr, ROWS, COLS)


@triton.jit
def _gather3(hot2, p0, p1, p2, UPCAST_DOT: tl.constexpr, PARTS: tl.constexpr = 3, acc0=None):
    """Rows of an fp32 table picked by a 0/1 (R, ROWS) bf16 matrix: ``PARTS`` bf16 tensor-core
    products with the table's parts ``p0..p2`` (``_bf16_split``), fp32 accumulation: exact to
    ~24 bits with three parts, ~16 bits with two (``GATHER_PARTS``: fp16/bf16, whose own
    rounding is 8-11 bits; ``p2`` is then not read). Added onto ``acc0`` (None: zeros)."""
    if acc0 is None:
        acc = _mm(hot2, p0, tl.zeros((hot2.shape[0], p0.shape[1]), tl.float32), tl.bfloat16,
                  UPCAST_DOT, False)
    else:
        acc = _mm(hot2, p0, acc0, tl.bfloat16, UPCAST_DOT, False)
    acc = _mm(hot2, p1, acc, tl.bfloat16, UPCAST_DOT, False)
    if PARTS == 3:
        acc = _mm(hot2, p2, acc, tl.bfloat16, UPCAST_DOT, False)
    return acc


# ------------------------------------------------------------------------------------------------
# the kernel
# ------------------------------------------------------------------------------------------------
@triton.jit
def _mtgnet_fwd_kernel(
    masks_ptr, rows_ptr, n_masks, n_tiles,
    emb_ptr, s1_ptr, vo1_ptr, mat_ptr, vec_ptr, bias_ptr, best_ptr,
    out_ptr, marg_ptr, part_val_ptr, part_idx_ptr,
    ln_eps,
    N: tl.constexpr, D: tl.constexpr, NP: tl.constexpr, DP: tl.constexpr, DHP: tl.constexpr,
    FP: tl.constexpr, H: tl.constexpr, N_LAYERS: tl.constexpr,
    MAT_L: tl.constexpr, VEC_L: tl.constexpr, O_WO: tl.constexpr, O_W1: tl.constexpr,
    O_W2: tl.constexpr, O_BO: tl.constexpr, O_B1: tl.constexpr, O_B2: tl.constexpr,
    BIAS_L: tl.constexpr, OB_Q: tl.constexpr, OB_1: tl.constexpr, O_G1: tl.constexpr,
    OB_R: tl.constexpr, O_GI: tl.constexpr, OB_OF: tl.constexpr, PP: tl.constexpr,
    S: tl.constexpr, ROWS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr,
    TOPK: tl.constexpr,
    MODE: tl.constexpr, HAS_ROWS: tl.constexpr, STORE_MARGINALS: tl.constexpr,
    CDT: tl.constexpr, UPCAST_DOT: tl.constexpr, TF32X3: tl.constexpr, PERSIST: tl.constexpr,
    PERSIST_TABLES: tl.constexpr, EXP_SCORES: tl.constexpr, BOUNDED: tl.constexpr,
    ROW_KEYS: tl.constexpr,
    FOLD_LN: tl.constexpr, HEAD_PRE: tl.constexpr, PERSIST_LN: tl.constexpr,
    FLAT_ATTN: tl.constexpr,
):
    """MODE 0: gains (M, N). MODE 1: per-program per-task top-TOPK. MODE 2: beam marginals + argmax.

    Tokens are compacted: slot t of a combination holds its t-th member task, so PP (>= popcount,
    chosen per launch by the host) rather than NP rows per combination flow through the matmuls.
    With HAS_ROWS, masks are a popcount bucket and rows_ptr gives each one's row in the output.
    Programs stride over tiles of BLOCK_M combinations (grid <= n_tiles) so reductions keep their
    running state in registers and write one small partial per program. Buffer offsets (MAT_L,
    VEC_L, O_*) come from the host's ``KernelLayout``. PERSIST (one head, one FFN slice): every
    matrix of layer 1 and of the last layer is loaded once per program, before the tile loop,
    and stays in shared memory across tiles (middle layers of deeper models still load per tile);
    PERSIST_TABLES: the per-task gather tables (embeddings, layer-1 scores, V W_o) too.
    EXP_SCORES: the layer-1 score table holds exp2 weights (``PackedMTGNet.exp_scores``).
    BOUNDED: layers 2..L's scores are bounded, softmax without row max (``bounded_scores``).
    HEAD_PRE: the folded head vector is held in registers across tiles (``LaunchConfig.head_pre``).
    PERSIST_LN (PERSIST and FOLD_LN): the LN affines' diag matrices of layer 1 and of the last
    layer stay in shared memory too, not staged per tile through registers (``persist_ln``).
    FLAT_ATTN: layers 2..L attend in 2-D block-diagonal products even where the stride is the
    slot width (``LaunchConfig.flat``).
    ROW_KEYS: token rows get their one-hot and layer-1 keys from a product with the per-row
    combination one-hot (any stride S); else from a (BLOCK_M, PP, NP) one-hot (S == PP; sm_80,
    where the hoisted operands would spill).
    """
    tl.static_assert(N <= NP, "tasks must fit the padded task axis")
    tl.static_assert(PP <= NP, "slots cannot outnumber padded tasks")
    tl.static_assert(NP <= 64, "combinations are uint64 masks")
    tl.static_assert(PP >= 16, "tl.dot needs every dimension >= 16")
    tl.static_assert(DP >= 16, "tl.dot needs every dimension >= 16")
    tl.static_assert(DHP >= 16, "tl.dot needs every dimension >= 16")
    tl.static_assert(D <= DP, "padding must cover the model width")
    tl.static_assert(FP % BLOCK_F == 0, "BLOCK_F must divide the padded feed-forward width")
    tl.static_assert(MODE <= 2, "MODE is 0 (gains), 1 (top-k) or 2 (marginal)")
    tl.static_assert(not PERSIST or (H == 1 and FP == BLOCK_F), "PERSIST: one head, one slice")
    tl.static_assert(PERSIST or not PERSIST_TABLES, "PERSIST_TABLES needs PERSIST")
    tl.static_assert((PERSIST and FOLD_LN) or not PERSIST_LN, "PERSIST_LN needs PERSIST, FOLD_LN")
    R: tl.constexpr = ROWS
    tl.static_assert(S <= PP and BLOCK_M * S <= R, "BLOCK_M combinations of S rows in a tile")
    tl.static_assert(ROW_KEYS or S == PP, "dense strides need ROW_KEYS")
    HEAD: tl.constexpr = N_LAYERS * VEC_L
    # the products' reordering (``RESIDUAL_LAST``) on sm_90 (row keys) only: sm_80 as before
    REORDER: tl.constexpr = RESIDUAL_LAST and ROW_KEYS
    # fp32 (TF32X3): the tf32 parts of ``mat`` / ``vo1`` follow them (``tf32_parts``)
    W_HI: tl.constexpr = max(N_LAYERS, 1) * MAT_L
    VO_HI: tl.constexpr = H * NP * DP
    # attention of layers 2..L as 2-D products over the tile (block-diagonal) rather than
    # batched per combination: one combination per tile, or a 64-task mask (register pressure)
    # (and always for a stride S below the slot width: combinations packed S rows apart)
    FLAT: tl.constexpr = FLAT_ATTN or BLOCK_M == 1 or NP > 32 or S != PP or TF32X3
    # bf16 parts of the gather tables read (``_gather3``): fp32 all three, fp16/bf16 two
    GPARTS: tl.constexpr = 3 if TF32X3 else GATHER_PARTS

    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    BM2: tl.constexpr = triton.next_power_of_2(BLOCK_M)    # vector shape over the combinations
    lm = tl.arange(0, BM2)
    tn = tl.arange(0, NP)
    ts = tl.arange(0, PP)
    dc = tl.arange(0, DP)
    # per token row r: its combination r // S as a one-hot over KC (>= 16: a dot dimension)
    # and its slot + 1 (the rank + 1 its task must have); SLOT_IN_HOT: the one-hot's last
    # column holds -(slot + 1), so the rank product hands on rank - slot (no per-row slot
    # vector is held across the tile loop: registers)
    SLOT_COL: tl.constexpr = SLOT_IN_HOT and ROW_KEYS
    KC: tl.constexpr = max(16, triton.next_power_of_2(BLOCK_M + 1) if SLOT_COL else BM2)
    kc = tl.arange(0, KC)
    rr = tl.arange(0, R)
    comb_hot = tl.where((rr // S)[:, None] == kc[None, :], 1.0, 0.0)    # (R, KC)
    if SLOT_COL:
        comb_hot = tl.where(kc[None, :] == KC - 1, -(rr % S + 1).to(tl.float32)[:, None],
                            comb_hot)
    if SLOT_COL and not UPCAST_DOT:   # the products' operand: rounded once (exact)
        comb_hot = comb_hot.to(tl.bfloat16)
    slot1 = (rr % S + 1).to(tl.float32)
    task_ok = tn < N
    # the masks' task bits, and whether they need the 64-bit word (bit counts: ``_popc``)
    WIDE: tl.constexpr = NP > 32
    TASK_BITS: tl.constexpr = (1 << N) - 1 if N < 64 else -1

    # Running reduction state; only the mode that updates it keeps it alive.
    kk = tl.arange(0, TOPK)
    top_offs = pid * TOPK * NP + kk[:, None] * NP + tn[None, :]
    if MODE == 1:
        # The running top-k lives in this program's partial (global memory, cached): only the
        # per-task k-th best stays in registers, and tiles that beat none skip the update.
        tl.store(part_val_ptr + top_offs, tl.full((TOPK, NP), float("-inf"), tl.float32))
        tl.store(part_idx_ptr + top_offs, tl.zeros((TOPK, NP), tl.int64))
    kth = tl.full((NP,), float("-inf"), tl.float32)
    run_val = tl.full((BM2,), float("-inf"), tl.float32)
    run_idx = tl.full((BM2,), 9223372036854775807, tl.int64)
    best = tl.load(best_ptr + tn, mask=task_ok, other=0.0)

    # Weights that stay in shared memory across tiles (PERSIST), else dummies never read.
    LAST_L: tl.constexpr = max(N_LAYERS - 1, 0)
    if PERSIST_TABLES:
        e0 = _load_pre(emb_ptr, NP, DP)
        e1 = _load_pre(emb_ptr + NP * DP, NP, DP)
        g0 = _load_pre(s1_ptr, NP, NP)
        g1 = _load_pre(s1_ptr + NP * NP, NP, NP)
        if GPARTS == 3:
            e2 = _load_pre(emb_ptr + 2 * NP * DP, NP, DP)
            g2 = _load_pre(s1_ptr + 2 * NP * NP, NP, NP)
        else:   # not read (two-part gathers)
            e2 = e0
            g2 = g0
        vo_pre = _load_pre(vo1_ptr, NP, DP)
    else:
        e0 = tl.zeros((16, 16), tl.float32)
        e1, e2, g0, g1, g2, vo_pre = e0, e0, e0, e0, e0, e0
    if PERSIST:
        f1_pre = _load_pre(mat_ptr + O_W1, DP, FP)
        f2_pre = _load_pre(mat_ptr + O_W2, FP, DP)
        wq_pre = _load_pre(mat_ptr + LAST_L * MAT_L, DP, DHP)
        wk_pre = wq_pre   # one head: keys and values are the rows (merged products)
        wv_pre = wq_pre
        wo_pre = _load_pre(mat_ptr + LAST_L * MAT_L + O_WO, DHP, DP)
        w1_pre = _load_pre(mat_ptr + LAST_L * MAT_L + O_W1, DP, FP)
        w2_pre = _load_pre(mat_ptr + LAST_L * MAT_L + O_W2, FP, DP)
        fb_pre = _load_pre(bias_ptr + OB_1, 16, FP)
        bo_pre = _load_pre(bias_ptr + LAST_L * BIAS_L + (OB_OF if FOLD_LN else 0), 16, DP)
        bq_pre = _load_pre(bias_ptr + LAST_L * BIAS_L + OB_Q, 16, DHP)
        b1_pre = _load_pre(bias_ptr + LAST_L * BIAS_L + OB_1, 16, FP)
    else:
        f1_pre = tl.zeros((16, 16), tl.float32)
        f2_pre, wq_pre, wk_pre, wv_pre, wo_pre, w1_pre, w2_pre = (f1_pre, f1_pre, f1_pre, f1_pre,
                                                                  f1_pre, f1_pre, f1_pre)
        fb_pre, bo_pre, bq_pre, b1_pre = f1_pre, f1_pre, f1_pre, f1_pre
    if PERSIST_LN:   # diag(ln1_w) of layer 1 and the last layer, diag(ln2_w) before the last
        g1f_pre = _load_pre(mat_ptr + O_G1, DP, DP)
        g1l_pre = _load_pre(mat_ptr + LAST_L * MAT_L + O_G1, DP, DP)
        gin_pre = _load_pre(mat_ptr + LAST_L * MAT_L + O_GI, DP, DP)
        brf_pre = _load_pre(bias_ptr + OB_R, 16, DP)     # LN1's bias blocks (+ b_2)
        brl_pre = _load_pre(bias_ptr + LAST_L * BIAS_L + OB_R, 16, DP)
    else:
        g1f_pre = tl.zeros((16, 16), tl.float32)
        g1l_pre, gin_pre, brf_pre, brl_pre = g1f_pre, g1f_pre, g1f_pre, g1f_pre
    ones = tl.full((R, 16), 1.0, tl.float32)      # A operand of the bias products
    # the folded head (PERSIST and HEAD_PRE; else re-read per tile)
    wh_pre = tl.load(vec_ptr + HEAD + dc) if PERSIST and HEAD_PRE else dc

    for tile in range(pid, n_tiles, n_prog):
        # ---- step 1: masks -> membership and slot -> task map (no dense mask tensor in memory) --
        pos = tl.cast(tile, tl.int64) * BLOCK_M + lm
        row_ok = (pos < n_masks) & (lm < BLOCK_M)
        masks = tl.load(masks_ptr + pos, mask=row_ok, other=0)
        if HAS_ROWS:
            rows = tl.load(rows_ptr + pos, mask=row_ok, other=0)
        else:
            rows = pos
        mw = _mask_bits(masks & TASK_BITS, WIDE)     # (rows past the end: 0)
        member = ((mw[:, None] >> tn[None, :].to(mw.dtype)) & 1) != 0   # (BLOCK_M, NP)
        # task j's slot: its rank among the members, and each combination's size, by popc
        rank = _count_below(mw[:, None], tn[None, :], WIDE, UPCAST_DOT)
        count = _popc(mw, WIDE, UPCAST_DOT)                           # (BLOCK_M,)
        if FLAT:   # per token row (R,): slot r % S of combination r // S is occupied
            slot_ok = ((rr % S) < tl.gather(count, tl.minimum(rr // S, BLOCK_M - 1), 0)) & (
                rr < BLOCK_M * S)
        else:
            slot_ok = ts[None, :] < count[:, None]                    # (BLOCK_M, PP)
        # Token rows get their combination's (rank + 1 | 0 if absent) row by a tensor-core
        # product with the per-row combination one-hot: G[r, j] = rank_j + 1 of the member tasks
        # of row r's combination, already in the MMA layout the gathers' operand comes from.
        if ROW_KEYS:
            mk = tl.load(masks_ptr + tl.cast(tile, tl.int64) * BLOCK_M + kc,
                         mask=(kc < BLOCK_M) & (tl.cast(tile, tl.int64) * BLOCK_M + kc < n_masks),
                         other=0)
            mkw = _mask_bits(mk & TASK_BITS, WIDE)
            mk = ((mkw[:, None] >> tn[None, :].to(mkw.dtype)) & 1) != 0
            if SLOT_IN_HOT:
                # rank + 1 of members, NOT_MEMBER of the others, ones on the slot column's row:
                # g = rank + 1 - (slot + 1) for members, <= NOT_MEMBER / 2 for the others
                rk = tl.where(kc[:, None] == KC - 1, 1.0, tl.where(
                    mk, (_count_below(mkw[:, None], tn[None, :], WIDE, UPCAST_DOT) + 1).to(
                        tl.float32), NOT_MEMBER))                       # (KC, NP)
            else:
                rk = tl.where(mk, _count_below(mkw[:, None], tn[None, :], WIDE, UPCAST_DOT) + 1,
                              0).to(tl.float32)                # rank + 1 of members (KC, NP)
            g = _mm(comb_hot, rk, tl.zeros((R, NP), tl.float32), tl.bfloat16, UPCAST_DOT, False)
            # via fp32: the interpreter turns bool into bf16 as 0
            if SLOT_IN_HOT:
                hot2 = tl.where(g == 0.0, 1.0, 0.0).to(tl.bfloat16)     # (R, NP) one-hot
            else:
                hot2 = tl.where(g == slot1[:, None], 1.0, 0.0).to(tl.bfloat16)
            if NP <= 32:
                if SLOT_IN_HOT:
                    key1 = g > 0.5 * NOT_MEMBER                         # layer-1 keys (R, NP)
                else:
                    key1 = g > 0.0
            else:   # by another product where they are needed: g dies early (registers)
                key1 = tl.zeros((R, NP), tl.int1)
        else:
            # (BLOCK_M, PP, NP) one-hot from the ranks (S == PP), reshaped to token rows
            hot3 = (rank[:, None, :] == ts[None, :, None]) & member[:, None, :]
            hot2 = tl.reshape(tl.where(hot3, 1.0, 0.0).to(tl.bfloat16), (R, NP))
            key1 = tl.reshape(tl.broadcast_to(member[:, None, :], (BLOCK_M, PP, NP)), (R, NP))

        # ---- step 2: layer 1 from per-task constants: one-hot-gathered embeddings and score
        #      rows, member-key base-2 softmax, P @ (V W_o) against all NP tasks on emb + b_o ----
        # (names differ from the persistent ones: those are loop-carried, of one type)
        # LATE_EMB (fp16/bf16, RESIDUAL_LAST): the embeddings are gathered after the attention,
        # onto its accumulator (registers: the fp32 rows are not live through the softmax)
        LATE_EMB: tl.constexpr = REORDER and N_LAYERS > 0 and not TF32X3
        if LATE_EMB:
            x = tl.zeros((R, DP), tl.float32)
        elif PERSIST_TABLES:
            x = _gather3(hot2, e0, e1, e2, UPCAST_DOT, GPARTS)         # (R, DP) embeddings
        else:
            x = _gather3(hot2, _load_mat(emb_ptr, NP, DP), _load_mat(emb_ptr + NP * DP, NP, DP),
                         _load_mat(emb_ptr + 2 * NP * DP, NP, DP), UPCAST_DOT, GPARTS)
        if N_LAYERS > 0:
            acc = x                   # gathered embeddings carry layer 1's b_o
            for h in tl.static_range(H):
                if PERSIST_TABLES:
                    s = _gather3(hot2, g0, g1, g2, UPCAST_DOT, GPARTS)
                else:
                    s = _gather3(hot2, _load_mat(s1_ptr + h * 3 * NP * NP, NP, NP),
                                 _load_mat(s1_ptr + (h * 3 + 1) * NP * NP, NP, NP),
                                 _load_mat(s1_ptr + (h * 3 + 2) * NP * NP, NP, NP), UPCAST_DOT,
                                 GPARTS)
                if ROW_KEYS and NP > 32:
                    key1 = _mm(comb_hot, tl.where(mk, 1.0, 0.0), tl.zeros((R, NP), tl.float32),
                               tl.bfloat16, UPCAST_DOT, False) > 0.0
                if EXP_SCORES:
                    # gathered exp2 weights: mask, normalise (empty slots: all 0, stay 0)
                    e = tl.where(key1, s, 0.0)
                    den = tl.sum(e, axis=1)
                    p = e * _rcp(tl.where(den == 0.0, 1.0, den), UPCAST_DOT)[:, None]
                else:
                    p = tl.reshape(_softmax2(tl.reshape(tl.where(key1, s, float("-inf")),
                                                        (1, R, NP)), False, UPCAST_DOT), (R, NP))
                if PERSIST_TABLES:
                    acc = _mm(p, vo_pre, acc, CDT, UPCAST_DOT, TF32X3)
                else:
                    acc = _mm_w(p, vo1_ptr + h * NP * DP + tn[:, None] * DP + dc[None, :], acc,
                                VO_HI, 2 * VO_HI, CDT, UPCAST_DOT, TF32X3)
            if LATE_EMB and PERSIST_TABLES:
                acc = _gather3(hot2, e0, e1, e2, UPCAST_DOT, GPARTS, acc)
            elif LATE_EMB:
                acc = _gather3(hot2, _load_mat(emb_ptr, NP, DP),
                               _load_mat(emb_ptr + NP * DP, NP, DP),
                               _load_mat(emb_ptr + 2 * NP * DP, NP, DP), UPCAST_DOT, GPARTS, acc)
            if N_LAYERS == 1:
                y_slot = _post_attention(acc, ones, f1_pre, f2_pre, fb_pre, mat_ptr, vec_ptr,
                                         bias_ptr, vec_ptr + HEAD, ln_eps, True, PERSIST, D, DP,
                                         FP, BLOCK_F, O_W1, O_W2, O_BO, O_B1, O_B2, OB_1, O_G1,
                                         OB_R, FOLD_LN, True, CDT,
                                         UPCAST_DOT, TF32X3, W_HI, 2 * W_HI, wh_pre, HEAD_PRE,
                                         g1f_pre, PERSIST_LN, brf_pre, REORDER)
            else:
                x = _post_attention(acc, ones, f1_pre, f2_pre, fb_pre, mat_ptr, vec_ptr, bias_ptr,
                                    vec_ptr + HEAD, ln_eps, False, PERSIST, D, DP, FP, BLOCK_F,
                                    O_W1, O_W2, O_BO, O_B1, O_B2, OB_1, O_G1, OB_R, FOLD_LN,
                                    True, CDT, UPCAST_DOT, TF32X3, W_HI, 2 * W_HI, None, True,
                                    g1f_pre, PERSIST_LN, brf_pre, REORDER)
                # ---- step 3: layers 2..L over slots (the last one ends in the head) ------------
                if FLAT:
                    key_ok = slot_ok                                  # keys = occupied slots
                else:
                    key_ok = slot_ok[:, None, :]
                for layer in range(1, N_LAYERS - 1):
                    x = _general_layer(x, key_ok, comb_hot, ones, wq_pre, wk_pre, wv_pre,
                                       wo_pre, w1_pre,
                                       w2_pre, bo_pre, bq_pre, b1_pre, mat_ptr + layer * MAT_L,
                                       vec_ptr + layer * VEC_L, bias_ptr + layer * BIAS_L,
                                       vec_ptr + (layer - 1) * VEC_L + O_B2 + DP,
                                       vec_ptr + HEAD, ln_eps, False, False, BLOCK_M, PP, H, D,
                                       DP, DHP, FP, BLOCK_F, O_WO, O_W1, O_W2, O_BO, O_B1, O_B2,
                                       OB_Q, OB_1, O_G1, OB_R, O_GI, OB_OF, FOLD_LN, CDT,
                                       UPCAST_DOT, TF32X3, FLAT, S, BOUNDED, W_HI, 2 * W_HI,
                                       None, True, None, None, False, None, REORDER, SLOT_COL)
                y_slot = _general_layer(x, key_ok, comb_hot, ones, wq_pre, wk_pre, wv_pre,
                                        wo_pre, w1_pre,
                                        w2_pre, bo_pre, bq_pre, b1_pre,
                                        mat_ptr + (N_LAYERS - 1) * MAT_L,
                                        vec_ptr + (N_LAYERS - 1) * VEC_L,
                                        bias_ptr + (N_LAYERS - 1) * BIAS_L,
                                        vec_ptr + (N_LAYERS - 2) * VEC_L + O_B2 + DP,
                                        vec_ptr + HEAD, ln_eps,
                                        True, PERSIST, BLOCK_M, PP, H, D, DP, DHP, FP, BLOCK_F,
                                        O_WO, O_W1, O_W2, O_BO, O_B1, O_B2, OB_Q, OB_1, O_G1, OB_R,
                                        O_GI, OB_OF, FOLD_LN, CDT,
                                        UPCAST_DOT, TF32X3, FLAT, S, BOUNDED, W_HI,
                                        2 * W_HI, wh_pre, HEAD_PRE, g1l_pre, gin_pre,
                                        PERSIST_LN, brl_pre, REORDER, SLOT_COL)
        else:
            wh = tl.load(vec_ptr + HEAD + dc)
            y_slot = tl.sum(x * wh[None, :], axis=1) + tl.load(vec_ptr + HEAD + DP)

        # ---- step 4: back to task layout (task j reads its slot, rank j), epilogue ------------
        if S == PP:
            y3 = tl.reshape(y_slot, (BLOCK_M, PP))
            y = tl.gather(y3, tl.minimum(rank, PP - 1), axis=1)      # (BLOCK_M, NP)
        else:
            y_at = tl.minimum(lm[:, None] * S + tl.minimum(rank, S - 1), R - 1)
            y = tl.reshape(tl.gather(y_slot, tl.reshape(y_at, (BM2 * NP,)), 0), (BM2, NP))
        if MODE == 0:
            offs = rows[:, None] * N + tn[None, :]
            tl.store(out_ptr + offs, tl.where(member, y, 0.0).to(out_ptr.dtype.element_ty),
                     mask=row_ok[:, None] & task_ok[None, :])
        if MODE == 1:
            cand = tl.where(member, y, float("-inf"))
            # Filter first: only when some row beats some task's running k-th best does the
            # tile go through the per-row insertion (rare once the top-k has filled up).
            if tl.max(tl.max(tl.where(cand > kth[None, :], 1, 0), axis=1), axis=0) > 0:
                tl.debug_barrier()
                if NP > 32:
                    # offsets again, made loop-variant (tile // n_tiles is 0) so that they are
                    # not hoisted and kept live through the layers (they spill at NP = 64)
                    top_offs = ((pid + tile // n_tiles) * TOPK * NP + kk[:, None] * NP
                                + tn[None, :])
                top_val = tl.load(part_val_ptr + top_offs)
                top_mask = tl.load(part_idx_ptr + top_offs)
                for i in tl.static_range(BLOCK_M):
                    # Replace each task's current k-th best when row i beats it (unsorted top-k).
                    v_i = tl.max(tl.where(lm[:, None] == i, cand, float("-inf")), axis=0)
                    m_i = tl.sum(tl.where(lm == i, masks, 0), axis=0)
                    lo = tl.min(top_val, axis=0)
                    at = tl.argmin(top_val, axis=0)
                    repl = (kk[:, None] == at[None, :]) & (v_i > lo)[None, :]
                    top_val = tl.where(repl, v_i[None, :], top_val)
                    top_mask = tl.where(repl, m_i, top_mask)
                tl.store(part_val_ptr + top_offs, top_val)
                tl.store(part_idx_ptr + top_offs, top_mask)
                tl.debug_barrier()
                kth = tl.min(top_val, axis=0)
        if MODE == 2:
            gain = tl.where(member, tl.maximum(y - best[None, :], 0.0), 0.0)
            marg = tl.sum(gain, axis=1)                                   # (BLOCK_M,)
            if STORE_MARGINALS:
                tl.store(marg_ptr + rows, marg, mask=row_ok)
            marg = tl.where(row_ok, marg, float("-inf"))
            # Ties go to the smallest output row (host merges partials with the same rule).
            better = (marg > run_val) | ((marg == run_val) & (rows < run_idx))
            run_val = tl.where(better, marg, run_val)
            run_idx = tl.where(better, rows, run_idx)

    # ---- step 5: one partial per program (top-k: already there); the host merges them ----------
    if MODE == 2:
        v_best = tl.max(run_val, axis=0)
        i_best = tl.min(tl.where(run_val == v_best, run_idx, 9223372036854775807), axis=0)
        tl.store(part_val_ptr + pid, v_best)
        tl.store(part_idx_ptr + pid, i_best)


kernel = _mtgnet_fwd_kernel   # public handle for ahead-of-time compiles (``ops.kernel_static``)

_TL_NAME = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def kernel_signature(dtype: torch.dtype) -> dict[str, str]:
    """Triton type of each runtime argument of :data:`kernel` for compute ``dtype``."""
    c = "*" + _TL_NAME[dtype]
    return dict(masks_ptr="*i64", rows_ptr="*i64", n_masks="i32", n_tiles="i32",
                emb_ptr="*bf16", s1_ptr="*bf16", vo1_ptr=c, mat_ptr=c, vec_ptr="*fp32",
                bias_ptr="*bf16",
                best_ptr="*fp32", out_ptr=c, marg_ptr="*fp32", part_val_ptr="*fp32",
                part_idx_ptr="*i64", ln_eps="fp32")


def kernel_constexprs(layout: KernelLayout, cfg: LaunchConfig, dtype: torch.dtype, *,
                      has_rows: bool = True, store_marginals: bool = True,
                      upcast_dot: bool = False, exp_scores: bool = True,
                      bounded_scores: bool | None = None) -> dict[str, object]:
    """Every compile-time constant of :data:`kernel` for one launch (layout + launch config).

    ``bounded_scores`` defaults to ``exp_scores`` (the static check compiles both fallbacks).
    """
    return dict(**layout.kernel_constexprs(), **cfg.constexprs(), HAS_ROWS=has_rows,
                STORE_MARGINALS=store_marginals, CDT=_CDT[dtype], UPCAST_DOT=upcast_dot,
                TF32X3=dtype == torch.float32, EXP_SCORES=exp_scores,
                BOUNDED=exp_scores if bounded_scores is None else bounded_scores)


# ------------------------------------------------------------------------------------------------
# launcher
# ------------------------------------------------------------------------------------------------
def _default_programs(n_tiles: int, device: torch.device) -> int:
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(n_tiles, 8 * sms))
    return max(1, min(n_tiles, 4))   # interpreter: few programs, each looping over tiles


def popcount64(masks: torch.Tensor) -> torch.Tensor:
    """Set bits of each int64 mask (uint64 bit pattern), as int64 (SWAR: no dense bit matrix)."""
    x = masks - ((masks >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return ((x * 0x0101010101010101) >> 56) & 0x7F


def _buckets(packed: PackedMTGNet, masks: torch.Tensor, compact: bool,
             dense: bool) -> list[tuple[SlotBucket, torch.Tensor, torch.Tensor | None]]:
    """Split masks by popcount into the launcher's buckets (``common.slot_buckets``):
    (bucket, masks, rows or None). ``compact=False``: one bucket, every mask padded to NP.

    A combination of p tasks only needs about p token rows: for N = 27 the buckets of at most
    8 / 12 / 16 / 21 / 32 tasks pack 8 / 5 / 4 / 3 / 2 combinations in a 64-row tile.
    """
    np_ = packed.np_
    buckets = slot_buckets(packed.layout, dense=dense)
    if not compact or len(buckets) == 1 or masks.numel() == 0:
        b = buckets[-1] if compact else SlotBucket(1, packed.n_tasks, np_, np_)
        return [(b, masks, None)]
    which = torch.bucketize(popcount64(masks),
                            torch.tensor([b.hi for b in buckets], device=masks.device))
    lo, hi = int(which.min()), int(which.max())
    if lo == hi:
        return [(buckets[lo], masks, None)]
    out: list[tuple[SlotBucket, torch.Tensor, torch.Tensor | None]] = []
    for i in range(lo, hi + 1):
        rows = (which == i).nonzero().squeeze(1)
        if rows.numel():
            out.append((buckets[i], masks[rows].contiguous(), rows))
    return out


def _mtgnet_fwd_launch(packed: PackedMTGNet, masks: torch.Tensor, *, mode: int,
                       best: torch.Tensor | None = None, topk: int = 1,
                       store_marginals: bool = False, block_m: int | None = None,
                       n_programs: int | None = None,
                       compact: bool = True) -> dict[str, torch.Tensor]:
    """Run the kernel over every popcount bucket; return outputs and concatenated partials."""
    dev = packed.device
    m = int(masks.shape[0])
    f32: dict[str, Any] = dict(dtype=torch.float32, device=dev)
    i64: dict[str, Any] = dict(dtype=torch.int64, device=dev)
    dummy_f, dummy_i = torch.empty(1, **f32), torch.empty(1, **i64)
    res: dict[str, torch.Tensor] = {}
    out = marg = dummy_f
    if mode == 0:
        out = res["gains"] = torch.empty(m, packed.n_tasks, dtype=packed.dtype, device=dev)
    if mode == 2 and store_marginals:
        marg = res["marginals"] = torch.empty(m, **f32)
    best_t = best if best is not None else torch.zeros(packed.n_tasks, **f32)
    upcast = interpreter_active()   # bf16 gathers run in every dtype
    # the interpreter takes the Hopper choices (every code path is tested there)
    arch = INTERPRETER_ARCH if dev.type != "cuda" else 10 * torch.cuda.get_device_capability(dev)[0]
    parts_v, parts_i = [], []
    # an explicit block_m keeps power-of-two slot widths (one combination per PP rows)
    for bucket, bmasks, rows in _buckets(packed, masks, compact,
                                         dense=block_m is None and arch >= 90):
        if bmasks.shape[0] == 0:
            continue
        cfg = launch_config(packed.layout, bucket.pp, mode, topk=topk, block_m=block_m,
                            dtype=None if upcast and not INTERPRETER_DTYPE_RULE
                            else packed.dtype, arch=arch,
                            stride=bucket.stride)
        n_tiles = triton.cdiv(int(bmasks.shape[0]), cfg.block_m)
        grid = n_tiles if mode == 0 else max(1, min(n_programs or _default_programs(n_tiles, dev),
                                                      n_tiles))
        pv, pi = dummy_f, dummy_i
        if mode == 1:
            pv = torch.empty(grid, cfg.topk, packed.np_, **f32)
            pi = torch.empty(grid, cfg.topk, packed.np_, **i64)
        elif mode == 2:
            pv, pi = torch.empty(grid, **f32), torch.empty(grid, **i64)
        _mtgnet_fwd_kernel[(grid,)](
            bmasks, rows if rows is not None else dummy_i, bmasks.shape[0], n_tiles,
            packed.emb, packed.s1, packed.vo1, packed.mat, packed.vec, packed.bias, best_t,
            out, marg, pv, pi,
            packed.ln_eps,
            **kernel_constexprs(packed.layout, cfg, packed.dtype, has_rows=rows is not None,
                                store_marginals=store_marginals, upcast_dot=upcast,
                                exp_scores=packed.exp_scores,
                                bounded_scores=packed.bounded_scores),
            **cfg.options(),
        )
        parts_v.append(pv)
        parts_i.append(pi)
    if mode in (1, 2) and parts_v:
        res["part_val"], res["part_idx"] = torch.cat(parts_v), torch.cat(parts_i)
    return res


# ------------------------------------------------------------------------------------------------
# public functions (``validate=False``: the caller, e.g. ``dispatch``, has checked the arguments)
# ------------------------------------------------------------------------------------------------
def _as_packed(params: MTGNetParams | PackedMTGNet, dtype: torch.dtype | None) -> PackedMTGNet:
    if isinstance(params, PackedMTGNet):
        if dtype is not None and dtype != params.dtype:
            raise InputError(f"params are packed for {params.dtype}; "
                             "repack with pack_params(params, dtype)")
        packed = params
    else:
        packed = pack_params(params, dtype)
    _check_device(packed.device)
    if not is_supported_dtype(packed.dtype, packed.device):
        raise InputTypeError(f"{packed.dtype} is not supported by the kernel on {packed.device}")
    return packed


def mtgnet_forward_triton(params: MTGNetParams | PackedMTGNet, masks: torch.Tensor, *,
                          dtype: torch.dtype | None = None, block_m: int | None = None,
                          compact: bool = True, validate: bool = True) -> torch.Tensor:
    """Predicted gains ``(M, N)`` of member tasks (0 for absent) for int64 masks ``(M,)``.

    Same math as ``reference.mtgnet_forward``; output in the compute dtype. ``compact`` runs
    each popcount bucket with just enough token slots (set False to pad every mask to NP).
    """
    packed = _as_packed(params, dtype)
    if validate:
        check_block(block_m)
        masks = as_mask_tensor(masks, packed.n_tasks, packed.device)
    return _mtgnet_fwd_launch(packed, masks, mode=0, block_m=block_m, compact=compact)["gains"]


def mtgnet_topk_triton(params: MTGNetParams | PackedMTGNet, masks: torch.Tensor, k: int, *,
                       dtype: torch.dtype | None = None, block_m: int | None = None,
                       n_programs: int | None = None, compact: bool = True,
                       validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """For each task j, the ``k`` masks containing j with the largest predicted y_j, without (M, N).

    Returns ``(values, masks)`` of shape ``(N, k)``, best first; missing slots are -inf and 0.
    Exact ties are broken arbitrarily.
    """
    if validate:
        k = check_k(k)
    packed = _as_packed(params, dtype)
    if validate:
        check_block(block_m)
        check_programs(n_programs)
        masks = as_mask_tensor(masks, packed.n_tasks, packed.device)
    n = packed.n_tasks
    if masks.numel() == 0:
        return (torch.full((n, k), float("-inf"), device=packed.device),
                torch.zeros(n, k, dtype=torch.int64, device=packed.device))
    res = _mtgnet_fwd_launch(packed, masks, mode=1, topk=k, block_m=block_m,
                             n_programs=n_programs, compact=compact)
    vals = res["part_val"][:, :, :n].permute(2, 0, 1).reshape(n, -1)      # (N, programs * kp)
    cand = res["part_idx"][:, :, :n].permute(2, 0, 1).reshape(n, -1)
    if vals.shape[1] < k:
        pad = k - vals.shape[1]
        vals = torch.cat([vals, vals.new_full((n, pad), float("-inf"))], dim=1)
        cand = torch.cat([cand, cand.new_zeros((n, pad))], dim=1)
    top, at = torch.topk(vals, k, dim=1)
    return top, torch.where(torch.isinf(top), 0, cand.gather(1, at))


def mtgnet_marginal_triton(params: MTGNetParams | PackedMTGNet, masks: torch.Tensor,
                           best: torch.Tensor, *, return_marginals: bool = True,
                           dtype: torch.dtype | None = None, block_m: int | None = None,
                           n_programs: int | None = None, compact: bool = True,
                           validate: bool = True) -> MarginalResult:
    """Beam-search marginal gain sum_{j in C} max(0, y_j(C) - best_j) per candidate, and the argmax.

    ``best`` ``(N,)`` is the current per-task best gain. The (M, N) predictions are never stored.
    """
    packed = _as_packed(params, dtype)
    if validate:
        check_block(block_m)
        check_programs(n_programs)
        best = check_best(best, packed.n_tasks, packed.device)
        masks = as_mask_tensor(masks, packed.n_tasks, packed.device)
        if masks.numel() == 0:
            raise InputError("masks must hold at least one candidate")
    res = _mtgnet_fwd_launch(packed, masks, mode=2, best=best, store_marginals=return_marginals,
                             block_m=block_m, n_programs=n_programs, compact=compact)
    pv, pi = res["part_val"], res["part_idx"]
    v = pv.max()
    idx = int(torch.where(pv == v, pi, torch.iinfo(torch.int64).max).min())
    mask = int(masks[idx]) & ((1 << 64) - 1)
    return MarginalResult(res.get("marginals"), float(v), mask)
