"""Fused Triton kernel for batched MTG-Net inference: masks in, per-task gains (or reductions) out.

Regime: millions of short masked sequences (<= 64 task tokens), forward only. One program owns a
block of ``BLOCK_M`` combinations and keeps all their tokens (``BLOCK_M * PP`` rows of width ``DP``)
in registers through every layer; nothing but the mask is read per combination and nothing but the
result is written. Tokens are compacted: slot t holds the t-th member task, and the host splits the
masks by popcount so each launch uses just PP = max(16, next_pow2(popcount)) slots.
Layout of this file (as Triton's fused-attention tutorial): capability probes,
host-side packing, jit helpers, the kernel ``_mtgnet_fwd_kernel``, the launcher, public functions.

Math is ``reference.mtgnet_forward``'s. Two exact rewrites move work to the host, once per params:
layer-1 tokens are the embeddings, so its scaled scores ``S_h = Q_h K_h^T / (sqrt(d_h) T)`` and its
value-output products ``V_h W_o,h`` are per-task constants; only the member-key softmax is per
combination. Later layers fold the score scale into ``W_q``/``b_q``.

Precision: matmul operands in the compute dtype (fp32, fp16 or bf16) with fp32 accumulation;
softmax, LayerNorm, residuals, head and reductions in fp32; layer-1 constants built in fp32.
This module imports triton at import time: import it lazily (``mtgfast.ops.dispatch`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

from ..errors import InputError, InputTypeError
from .dispatch import MarginalResult, _interpret_env
from .reference import LayerParams, MTGNetParams

__all__ = [
    "MarginalResult",
    "PackedMTGNet",
    "interpreter_active",
    "is_supported_dtype",
    "mtgnet_forward_triton",
    "mtgnet_marginal_triton",
    "mtgnet_topk_triton",
    "pack_params",
    "popcount64",
]

# Largest per-task top-k the kernel keeps in registers (per program, per task).
MAX_TOPK = 64

_CDT = {torch.float32: tl.float32, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


# ------------------------------------------------------------------------------------------------
# capability probes
# ------------------------------------------------------------------------------------------------
def interpreter_active() -> bool:
    """True when this module's kernel runs under ``TRITON_INTERPRET=1`` (CPU tensors, for tests).

    Triton decides at decoration time, so the variable must be set before this module is imported.
    """
    return type(_mtgnet_fwd_kernel).__name__ == "InterpretedFunction"


def is_supported_dtype(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether the kernel can compute in ``dtype`` on ``device`` (bf16 needs sm80+ on CUDA)."""
    if dtype not in _CDT:
        return False
    dev = torch.device(device)
    if dev.type == "cuda" and dtype == torch.bfloat16:
        return torch.cuda.is_bf16_supported()
    return True


def _check_device(device: torch.device) -> None:
    if device.type == "cuda":
        if interpreter_active():
            raise InputError("TRITON_INTERPRET=1 is set: the Triton kernel runs on CPU tensors "
                             "only; unset it to run on CUDA")
        return
    if device.type == "cpu" and interpreter_active() and _interpret_env():
        return
    raise InputError(f"the Triton MTG-Net kernel needs CUDA tensors, got device {device}; use "
                     "backend='torch', or set TRITON_INTERPRET=1 before importing it (tests only)")


def _next_pow2(n: int, floor: int = 16) -> int:
    # tl.dot needs every dimension >= 16; tl.arange needs powers of two.
    return max(floor, 1 << max(0, (int(n) - 1).bit_length()))


# ------------------------------------------------------------------------------------------------
# host-side packing (once per params)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PackedMTGNet:
    """MTG-Net weights laid out for the kernel: padded to powers of two, per-head blocks.

    Build with :func:`pack_params`; reuse it across calls (packing runs a few small matmuls).
    """

    n_tasks: int
    dim: int
    ffn_dim: int
    n_heads: int
    n_layers: int
    ln_eps: float
    dtype: torch.dtype         # compute dtype of matmul operands and of the gains output
    np_: int                   # padded task count (NP)
    dp: int                    # padded model width (DP)
    dhp: int                   # padded head width (DHP)
    fp: int                    # padded feed-forward width (FP)
    emb: torch.Tensor          # (NP, DP) fp32 embeddings: layer-1 residual input
    s1: torch.Tensor           # (H, NP, NP) fp32 scaled layer-1 scores
    vo1: torch.Tensor          # (H, NP, DP) dtype: layer-1 V_h @ W_o,h
    mat: torch.Tensor          # (L * MAT_L,) dtype: per-layer matrices (see _mat_layer_size)
    vec: torch.Tensor          # (L * VEC_L + 2 * DP,) fp32: per-layer vectors, then w_head, b_head

    @property
    def device(self) -> torch.device:
        return self.emb.device


def _mat_layer_size(h: int, dp: int, dhp: int, fp: int) -> int:
    # [W_qkv (3, H, DP, DHP) | W_o (H, DHP, DP) | W_1 (DP, FP) | W_2 (FP, DP)]
    return 4 * h * dp * dhp + 2 * dp * fp


def _vec_layer_size(h: int, dp: int, dhp: int, fp: int) -> int:
    # [b_qkv (3, H, DHP) | b_o | ln1_w | ln1_b (DP each) | b_1 (FP) | b_2 | ln2_w | ln2_b (DP each)]
    return 3 * h * dhp + 6 * dp + fp


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
    heads = params.n_heads
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
        raise InputError(f"n_heads must be a positive int, got {heads!r}")
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

    Builds the layer-1 constants (scores and V W_o per head) in fp32 and folds the score scale
    1/(sqrt(d_head) * temperature) into later layers' W_q, b_q.
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
    npad, dp, dhp, fp = _next_pow2(n), _next_pow2(d), _next_pow2(dh), _next_pow2(f)
    scale = 1.0 / (math.sqrt(dh) * params.temperature)
    mat_l, vec_l = _mat_layer_size(h, dp, dhp, fp), _vec_layer_size(h, dp, dhp, fp)
    f32 = dict(dtype=torch.float32, device=dev)

    emb = params.embedding.float()
    emb_p = torch.zeros(npad, dp, **f32)
    emb_p[:n, :d] = emb
    s1 = torch.zeros(h, npad, npad, **f32)
    vo1 = torch.zeros(h, npad, dp, **f32)
    mat = torch.zeros(max(1, n_layers), mat_l, **f32)
    vec = torch.zeros(n_layers * vec_l + 2 * dp, **f32)

    for li, lp in enumerate(params.layers):
        lp32 = lp.to(torch.float32)
        m = mat[li]
        wqkv = m[:3 * h * dp * dhp].view(3, h, dp, dhp)
        wo = m[3 * h * dp * dhp:4 * h * dp * dhp].view(h, dhp, dp)
        w1 = m[4 * h * dp * dhp:4 * h * dp * dhp + dp * fp].view(dp, fp)
        w2 = m[4 * h * dp * dhp + dp * fp:].view(fp, dp)
        v = vec[li * vec_l:(li + 1) * vec_l]
        bqkv = v[:3 * h * dhp].view(3, h, dhp)
        o = 3 * h * dhp
        v[o:o + d] = lp32.b_o
        v[o + dp:o + dp + d] = lp32.ln1_w
        v[o + 2 * dp:o + 2 * dp + d] = lp32.ln1_b
        v[o + 3 * dp:o + 3 * dp + f] = lp32.b_1
        o2 = o + 3 * dp + fp
        v[o2:o2 + d] = lp32.b_2
        v[o2 + dp:o2 + dp + d] = lp32.ln2_w
        v[o2 + 2 * dp:o2 + 2 * dp + d] = lp32.ln2_b
        w1[:d, :f] = lp32.w_1
        w2[:f, :d] = lp32.w_2
        for hh in range(h):
            cols = slice(hh * dh, (hh + 1) * dh)
            for t in range(3):
                sc = scale if t == 0 else 1.0
                wqkv[t, hh, :d, :dh] = lp32.w_qkv[:, t * d:(t + 1) * d][:, cols] * sc
                bqkv[t, hh, :dh] = lp32.b_qkv[t * d:(t + 1) * d][cols] * sc
            wo[hh, :dh, :d] = lp32.w_o[cols, :]
        if li == 0:
            qkv = emb @ lp32.w_qkv + lp32.b_qkv
            q, k, vv = qkv.split(d, dim=-1)
            for hh in range(h):
                cols = slice(hh * dh, (hh + 1) * dh)
                s1[hh, :n, :n] = (q[:, cols] @ k[:, cols].T) * scale
                vo1[hh, :n, :d] = vv[:, cols] @ lp32.w_o[cols, :]
    tail = n_layers * vec_l
    vec[tail:tail + d] = params.w_head.float()
    vec[tail + dp] = params.b_head.float().reshape(())
    return PackedMTGNet(n_tasks=n, dim=d, ffn_dim=f, n_heads=h, n_layers=n_layers,
                        ln_eps=float(params.ln_eps), dtype=dtype, np_=npad, dp=dp, dhp=dhp, fp=fp,
                        emb=emb_p.contiguous(), s1=s1.contiguous(),
                        vo1=vo1.to(dtype).contiguous(), mat=mat.reshape(-1).to(dtype).contiguous(),
                        vec=vec.contiguous())


# ------------------------------------------------------------------------------------------------
# jit helpers
# ------------------------------------------------------------------------------------------------
@triton.jit
def _mm(a, b, CDT: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """a @ b, operands rounded to the compute dtype, fp32 accumulation (2-D or batched 3-D)."""
    a = a.to(CDT)
    b = b.to(CDT)
    if UPCAST_DOT:
        # The interpreter's dot misreads bf16 (stored as uint16); products of bf16 values are exact
        # in fp32, so upcasting after rounding computes the same numbers.
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    # "ieee": fp32 stays exact fp32 (no TF32); fp16/bf16 operands ignore input_precision.
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _masked_softmax(s, key_ok):
    """Softmax over the last axis restricted to member keys; rows with no member key give 0."""
    s = tl.where(key_ok, s, float("-inf"))
    row_max = tl.max(s, axis=2)
    row_max = tl.where(row_max == float("-inf"), 0.0, row_max)
    p = tl.exp(s - row_max[:, :, None])
    denom = tl.sum(p, axis=2)
    denom = tl.where(denom == 0.0, 1.0, denom)
    return p / denom[:, :, None]


@triton.jit
def _layer_norm(x, vec_ptr, W_OFF: tl.constexpr, B_OFF: tl.constexpr, eps,
                D: tl.constexpr, DP: tl.constexpr):
    """LayerNorm over the first D of DP columns (padded columns are 0 in and out)."""
    dc = tl.arange(0, DP)
    col_ok = dc < D
    mean = tl.sum(x, axis=1) / D
    xc = tl.where(col_ok[None, :], x - mean[:, None], 0.0)
    var = tl.sum(xc * xc, axis=1) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(vec_ptr + W_OFF + dc)
    b = tl.load(vec_ptr + B_OFF + dc)
    return xc * rstd[:, None] * w[None, :] + b[None, :]


@triton.jit
def _post_attention(x, attn, mat_ptr, vec_ptr, eps,
                    H: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, DHP: tl.constexpr,
                    FP: tl.constexpr, BLOCK_F: tl.constexpr, CDT: tl.constexpr,
                    UPCAST_DOT: tl.constexpr):
    """x <- LN2(y + FFN(y)) with y = LN1(x + attn + b_o): the rest of one post-LN layer."""
    dc = tl.arange(0, DP)
    fc = tl.arange(0, BLOCK_F)
    BO: tl.constexpr = 3 * H * DHP
    B1: tl.constexpr = BO + 3 * DP
    B2: tl.constexpr = B1 + FP
    W1: tl.constexpr = 4 * H * DP * DHP
    W2: tl.constexpr = W1 + DP * FP
    x = x + attn + tl.load(vec_ptr + BO + dc)[None, :]
    x = _layer_norm(x, vec_ptr, BO + DP, BO + 2 * DP, eps, D, DP)
    # Feed-forward in BLOCK_F-wide slices so the hidden activation never exceeds (R, BLOCK_F).
    xc = x.to(CDT)
    ff = tl.zeros(x.shape, tl.float32)
    for f0 in tl.static_range(0, FP, BLOCK_F):
        w1 = tl.load(mat_ptr + W1 + dc[:, None] * FP + (f0 + fc)[None, :])
        b1 = tl.load(vec_ptr + B1 + f0 + fc)
        hid = tl.maximum(_mm(xc, w1, CDT, UPCAST_DOT) + b1[None, :], 0.0)
        w2 = tl.load(mat_ptr + W2 + (f0 + fc)[:, None] * DP + dc[None, :])
        ff += _mm(hid, w2, CDT, UPCAST_DOT)
    x = x + ff + tl.load(vec_ptr + B2 + dc)[None, :]
    return _layer_norm(x, vec_ptr, B2 + DP, B2 + 2 * DP, eps, D, DP)


# ------------------------------------------------------------------------------------------------
# the kernel
# ------------------------------------------------------------------------------------------------
@triton.jit
def _slots_to_tasks(y, task_of, slot_ok, NP: tl.constexpr):
    """(BLOCK_M, PP) slot values -> (BLOCK_M, NP) task layout (0 where a task has no slot)."""
    tn = tl.arange(0, NP)
    hit = (task_of[:, :, None] == tn[None, None, :]) & slot_ok[:, :, None]
    return tl.sum(tl.where(hit, y[:, :, None], 0.0), axis=1)


@triton.jit
def _mtgnet_fwd_kernel(
    masks_ptr, rows_ptr, n_masks, n_tiles,
    emb_ptr, s1_ptr, vo1_ptr, mat_ptr, vec_ptr, best_ptr,
    out_ptr, marg_ptr, part_val_ptr, part_idx_ptr,
    ln_eps,
    N: tl.constexpr, D: tl.constexpr, NP: tl.constexpr, PP: tl.constexpr, DP: tl.constexpr,
    DHP: tl.constexpr, FP: tl.constexpr, H: tl.constexpr, N_LAYERS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr, TOPK: tl.constexpr,
    MODE: tl.constexpr, HAS_ROWS: tl.constexpr, STORE_MARGINALS: tl.constexpr,
    CDT: tl.constexpr, UPCAST_DOT: tl.constexpr,
):
    """MODE 0: gains (M, N). MODE 1: per-program per-task top-TOPK. MODE 2: beam marginals + argmax.

    Tokens are compacted: slot t of a combination holds its t-th member task, so PP (>= popcount,
    chosen per launch by the host) rather than NP rows per combination flow through the matmuls.
    With HAS_ROWS, masks are a popcount bucket and rows_ptr gives each one's row in the output.
    Programs stride over tiles of BLOCK_M combinations (grid <= n_tiles) so reductions keep their
    running state in registers and write one small partial per program.
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
    R: tl.constexpr = BLOCK_M * PP
    MAT_L: tl.constexpr = 4 * H * DP * DHP + 2 * DP * FP
    VEC_L: tl.constexpr = 3 * H * DHP + 6 * DP + FP
    HEAD: tl.constexpr = N_LAYERS * VEC_L

    pid = tl.program_id(0)
    n_prog = tl.num_programs(0)
    lm = tl.arange(0, BLOCK_M)
    tn = tl.arange(0, NP)
    ts = tl.arange(0, PP)
    dc = tl.arange(0, DP)
    hc = tl.arange(0, DHP)
    task_ok = tn < N
    w_head = tl.load(vec_ptr + HEAD + dc)
    b_head = tl.load(vec_ptr + HEAD + DP)

    # Running reduction state; only the mode that updates it keeps it alive.
    kk = tl.arange(0, TOPK)
    top_val = tl.full((TOPK, NP), float("-inf"), tl.float32)
    top_mask = tl.zeros((TOPK, NP), tl.int64)
    run_val = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    run_idx = tl.full((BLOCK_M,), 9223372036854775807, tl.int64)
    best = tl.load(best_ptr + tn, mask=task_ok, other=0.0)

    for tile in range(pid, n_tiles, n_prog):
        # ---- step 1: masks -> membership and slot -> task map (no dense mask tensor in memory) --
        pos = tl.cast(tile, tl.int64) * BLOCK_M + lm
        row_ok = pos < n_masks
        masks = tl.load(masks_ptr + pos, mask=row_ok, other=0)
        if HAS_ROWS:
            rows = tl.load(rows_ptr + pos, mask=row_ok, other=0)
        else:
            rows = pos
        member = ((masks[:, None] >> tn[None, :].to(tl.int64)) & 1) != 0
        member = member & task_ok[None, :] & row_ok[:, None]          # (BLOCK_M, NP)
        task_of = tl.zeros((BLOCK_M, PP), tl.int32)
        count = tl.zeros((BLOCK_M,), tl.int32)
        for j in tl.static_range(N):
            bit = ((masks >> j) & 1) != 0
            task_of = tl.where(bit[:, None] & (ts[None, :] == count[:, None]), j, task_of)
            count += bit.to(tl.int32)
        slot_ok = (ts[None, :] < count[:, None]) & row_ok[:, None]    # (BLOCK_M, PP)

        # ---- step 2: layer 1 from per-task constants: gathered score rows, member-key softmax,
        #      P @ (V W_o) against all NP tasks (absent keys get probability 0) ------------------
        emb = tl.load(emb_ptr + task_of[:, :, None] * DP + dc[None, None, :])   # (BLOCK_M, PP, DP)
        x = tl.reshape(emb, (R, DP))
        if N_LAYERS > 0:
            attn = tl.zeros((R, DP), tl.float32)
            for h in tl.static_range(H):
                s = tl.load(s1_ptr + h * NP * NP + task_of[:, :, None] * NP + tn[None, None, :])
                p = _masked_softmax(s, member[:, None, :])           # (BLOCK_M, PP, NP)
                vo = tl.load(vo1_ptr + h * NP * DP + tn[:, None] * DP + dc[None, :])
                attn += _mm(tl.reshape(p, (R, NP)), vo, CDT, UPCAST_DOT)
            x = _post_attention(x, attn, mat_ptr, vec_ptr, ln_eps, H, D, DP, DHP, FP, BLOCK_F,
                                CDT, UPCAST_DOT)

        # ---- step 3: layers 2..L over slots: per-head QKV, masked attention, W_o, LN/FFN/LN ----
        key_ok = slot_ok[:, None, :]                                  # keys = occupied slots
        for layer in range(1, N_LAYERS):
            mat_l = mat_ptr + layer * MAT_L
            vec_l = vec_ptr + layer * VEC_L
            xc = x.to(CDT)
            attn = tl.zeros((R, DP), tl.float32)
            for h in tl.static_range(H):
                w_off = dc[:, None] * DHP + hc[None, :]
                wq = tl.load(mat_l + (0 * H + h) * DP * DHP + w_off)
                wk = tl.load(mat_l + (1 * H + h) * DP * DHP + w_off)
                wv = tl.load(mat_l + (2 * H + h) * DP * DHP + w_off)
                q = _mm(xc, wq, CDT, UPCAST_DOT) + tl.load(vec_l + (0 * H + h) * DHP + hc)[None, :]
                k = _mm(xc, wk, CDT, UPCAST_DOT) + tl.load(vec_l + (1 * H + h) * DHP + hc)[None, :]
                v = _mm(xc, wv, CDT, UPCAST_DOT) + tl.load(vec_l + (2 * H + h) * DHP + hc)[None, :]
                q3 = tl.reshape(q, (BLOCK_M, PP, DHP))
                k3 = tl.reshape(k, (BLOCK_M, PP, DHP))
                v3 = tl.reshape(v, (BLOCK_M, PP, DHP))
                s = _mm(q3, tl.trans(k3, (0, 2, 1)), CDT, UPCAST_DOT)   # scale folded into W_q
                p = _masked_softmax(s, key_ok)
                o = _mm(p, v3, CDT, UPCAST_DOT)                          # (BLOCK_M, PP, DHP)
                wo = tl.load(mat_l + 3 * H * DP * DHP + h * DHP * DP
                             + hc[:, None] * DP + dc[None, :])
                attn += _mm(tl.reshape(o, (R, DHP)), wo, CDT, UPCAST_DOT)
            x = _post_attention(x, attn, mat_l, vec_l, ln_eps, H, D, DP, DHP, FP, BLOCK_F,
                                CDT, UPCAST_DOT)

        # ---- step 4: head, back to task layout -------------------------------------------------
        y_slot = tl.reshape(tl.sum(x * w_head[None, :], axis=1), (BLOCK_M, PP)) + b_head
        y = _slots_to_tasks(y_slot, task_of, slot_ok, NP)            # (BLOCK_M, NP)

        # ---- step 5: epilogue: store gains, or fold the tile into the running reduction --------
        if MODE == 0:
            offs = rows[:, None] * N + tn[None, :]
            tl.store(out_ptr + offs, tl.where(member, y, 0.0).to(out_ptr.dtype.element_ty),
                     mask=row_ok[:, None] & task_ok[None, :])
        if MODE == 1:
            cand = tl.where(member, y, float("-inf"))
            for i in tl.static_range(BLOCK_M):
                # Replace each task's current k-th best when row i beats it (unsorted top-k).
                v_i = tl.max(tl.where(lm[:, None] == i, cand, float("-inf")), axis=0)
                m_i = tl.sum(tl.where(lm == i, masks, 0), axis=0)
                lo = tl.min(top_val, axis=0)
                at = tl.argmin(top_val, axis=0)
                repl = (kk[:, None] == at[None, :]) & (v_i > lo)[None, :]
                top_val = tl.where(repl, v_i[None, :], top_val)
                top_mask = tl.where(repl, m_i, top_mask)
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

    # ---- step 6: one partial per program; the host merges them ---------------------------------
    if MODE == 1:
        offs = pid * TOPK * NP + kk[:, None] * NP + tn[None, :]
        tl.store(part_val_ptr + offs, top_val)
        tl.store(part_idx_ptr + offs, top_mask)
    if MODE == 2:
        v_best = tl.max(run_val, axis=0)
        i_best = tl.min(tl.where(run_val == v_best, run_idx, 9223372036854775807), axis=0)
        tl.store(part_val_ptr + pid, v_best)
        tl.store(part_idx_ptr + pid, i_best)


# ------------------------------------------------------------------------------------------------
# launcher
# ------------------------------------------------------------------------------------------------
def _default_block_m(pp: int) -> int:
    # ~128 token rows per program: one tensor-core M tile, and X (128 x 64 fp32) fits registers.
    return max(1, 128 // pp)


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


def _buckets(packed: PackedMTGNet, masks: torch.Tensor,
             compact: bool) -> list[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Split masks by popcount into slot widths PP in {16, 32, 64} <= NP: (PP, masks, rows or None).

    A combination of p tasks only needs next_pow2(p) token rows; for N = 27 about 88% of all
    combinations fit 16 slots instead of 32, which halves their matmul work.
    """
    sizes = [pp for pp in (16, 32, 64) if pp < packed.np_] + [packed.np_]
    if not compact or len(sizes) == 1 or masks.numel() == 0:
        return [(packed.np_, masks, None)]
    which = torch.bucketize(popcount64(masks), torch.tensor(sizes, device=masks.device))
    lo, hi = int(which.min()), int(which.max())
    if lo == hi:
        return [(sizes[lo], masks, None)]
    out = []
    for b in range(lo, hi + 1):
        rows = (which == b).nonzero().squeeze(1)
        if rows.numel():
            out.append((sizes[b], masks[rows].contiguous(), rows))
    return out


def _mtgnet_fwd_launch(packed: PackedMTGNet, masks: torch.Tensor, *, mode: int,
                       best: torch.Tensor | None = None, topk: int = 1,
                       store_marginals: bool = False, block_m: int | None = None,
                       n_programs: int | None = None,
                       compact: bool = True) -> dict[str, torch.Tensor]:
    """Run the kernel over every popcount bucket; return outputs and concatenated partials."""
    dev = packed.device
    m = int(masks.shape[0])
    f32 = dict(dtype=torch.float32, device=dev)
    i64 = dict(dtype=torch.int64, device=dev)
    dummy_f, dummy_i = torch.empty(1, **f32), torch.empty(1, **i64)
    res: dict[str, torch.Tensor] = {}
    out = marg = dummy_f
    if mode == 0:
        out = res["gains"] = torch.empty(m, packed.n_tasks, dtype=packed.dtype, device=dev)
    if mode == 2 and store_marginals:
        marg = res["marginals"] = torch.empty(m, **f32)
    best_t = best if best is not None else torch.zeros(packed.n_tasks, **f32)
    upcast = interpreter_active() and packed.dtype == torch.bfloat16
    parts_v, parts_i = [], []
    for pp, bmasks, rows in _buckets(packed, masks, compact):
        if bmasks.shape[0] == 0:
            continue
        bm = block_m or _default_block_m(pp)
        n_tiles = triton.cdiv(int(bmasks.shape[0]), bm)
        grid = n_tiles if mode == 0 else max(1, min(n_programs or _default_programs(n_tiles, dev),
                                                      n_tiles))
        pv, pi = dummy_f, dummy_i
        if mode == 1:
            pv = torch.empty(grid, topk, packed.np_, **f32)
            pi = torch.empty(grid, topk, packed.np_, **i64)
        elif mode == 2:
            pv, pi = torch.empty(grid, **f32), torch.empty(grid, **i64)
        _mtgnet_fwd_kernel[(grid,)](
            bmasks, rows if rows is not None else dummy_i, bmasks.shape[0], n_tiles,
            packed.emb, packed.s1, packed.vo1, packed.mat, packed.vec, best_t,
            out, marg, pv, pi,
            packed.ln_eps,
            N=packed.n_tasks, D=packed.dim, NP=packed.np_, PP=pp, DP=packed.dp, DHP=packed.dhp,
            FP=packed.fp, H=packed.n_heads, N_LAYERS=packed.n_layers,
            BLOCK_M=bm, BLOCK_F=min(packed.fp, 64), TOPK=topk, MODE=mode,
            HAS_ROWS=rows is not None, STORE_MARGINALS=store_marginals,
            CDT=_CDT[packed.dtype], UPCAST_DOT=upcast,
            num_warps=4 if bm * pp < 128 else 8, num_stages=1,  # 8 warps: fewer regs per thread
        )
        parts_v.append(pv)
        parts_i.append(pi)
    if mode in (1, 2) and parts_v:
        res["part_val"], res["part_idx"] = torch.cat(parts_v), torch.cat(parts_i)
    return res


# ------------------------------------------------------------------------------------------------
# public functions
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


def _as_mask_tensor(masks: object, n_tasks: int, device: torch.device) -> torch.Tensor:
    if isinstance(masks, np.ndarray):
        if not np.issubdtype(masks.dtype, np.integer):
            raise InputTypeError(f"masks must hold integers, got dtype {masks.dtype}")
        masks = torch.from_numpy(np.ascontiguousarray(masks).astype(np.uint64).view(np.int64))
    if not isinstance(masks, torch.Tensor):
        raise InputTypeError("masks must be an int64 torch.Tensor or numpy array, got "
                             f"{type(masks).__name__}")
    if masks.dtype != torch.int64:
        raise InputTypeError(f"masks must have dtype int64 (uint64 bit patterns), "
                             f"got {masks.dtype}")
    if masks.ndim != 1:
        raise InputError(f"masks must be 1-D, got shape {tuple(masks.shape)}")
    masks = masks.to(device).contiguous()
    if masks.numel():
        bad = masks == 0
        if n_tasks < 64:
            bad |= (masks >> n_tasks) != 0
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InputError(f"masks[{i}] = {int(masks[i]) & ((1 << 64) - 1):#x} is empty or has "
                             f"bits >= n_tasks = {n_tasks}")
    return masks


def mtgnet_forward_triton(params: MTGNetParams | PackedMTGNet, masks: torch.Tensor, *,
                          dtype: torch.dtype | None = None, block_m: int | None = None,
                          compact: bool = True) -> torch.Tensor:
    """Predicted gains ``(M, N)`` of member tasks (0 for absent) for int64 masks ``(M,)``.

    Same math as ``reference.mtgnet_forward``; output in the compute dtype. ``compact`` runs
    each popcount bucket with just enough token slots (set False to pad every mask to NP).
    """
    packed = _as_packed(params, dtype)
    _check_block(block_m)
    masks = _as_mask_tensor(masks, packed.n_tasks, packed.device)
    return _mtgnet_fwd_launch(packed, masks, mode=0, block_m=block_m, compact=compact)["gains"]


def mtgnet_topk_triton(params: MTGNetParams | PackedMTGNet, masks: torch.Tensor, k: int, *,
                       dtype: torch.dtype | None = None, block_m: int | None = None,
                       n_programs: int | None = None,
                       compact: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """For each task j, the ``k`` masks containing j with the largest predicted y_j, without (M, N).

    Returns ``(values, masks)`` of shape ``(N, k)``, best first; missing slots are -inf and 0.
    Exact ties are broken arbitrarily.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_TOPK:
        raise InputError(f"k must be an int in [1, {MAX_TOPK}], got {k!r}")
    k = int(k)
    packed = _as_packed(params, dtype)
    _check_block(block_m)
    _check_programs(n_programs)
    masks = _as_mask_tensor(masks, packed.n_tasks, packed.device)
    kp = _next_pow2(k, floor=1)
    n = packed.n_tasks
    if masks.numel() == 0:
        return (torch.full((n, k), float("-inf"), device=packed.device),
                torch.zeros(n, k, dtype=torch.int64, device=packed.device))
    res = _mtgnet_fwd_launch(packed, masks, mode=1, topk=kp, block_m=block_m,
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
                           n_programs: int | None = None, compact: bool = True) -> MarginalResult:
    """Beam-search marginal gain sum_{j in C} max(0, y_j(C) - best_j) per candidate, and the argmax.

    ``best`` ``(N,)`` is the current per-task best gain. The (M, N) predictions are never stored.
    """
    packed = _as_packed(params, dtype)
    _check_block(block_m)
    _check_programs(n_programs)
    if not isinstance(best, torch.Tensor):
        raise InputTypeError(f"best must be a torch.Tensor, got {type(best).__name__}")
    if tuple(best.shape) != (packed.n_tasks,):
        raise InputError(f"best must have shape ({packed.n_tasks},), got {tuple(best.shape)}")
    best = best.to(device=packed.device, dtype=torch.float32).contiguous()
    if bool(torch.isnan(best).any()):
        raise InputError("best must not contain NaN")
    masks = _as_mask_tensor(masks, packed.n_tasks, packed.device)
    if masks.numel() == 0:
        raise InputError("masks must hold at least one candidate")
    res = _mtgnet_fwd_launch(packed, masks, mode=2, best=best, store_marginals=return_marginals,
                             block_m=block_m, n_programs=n_programs, compact=compact)
    pv, pi = res["part_val"], res["part_idx"]
    v = pv.max()
    idx = int(torch.where(pv == v, pi, torch.iinfo(torch.int64).max).min())
    mask = int(masks[idx]) & ((1 << 64) - 1)
    return MarginalResult(res.get("marginals"), float(v), mask)


def _check_block(block_m: int | None) -> None:
    if block_m is None:
        return
    if (isinstance(block_m, bool) or not isinstance(block_m, int) or block_m < 1
            or block_m & (block_m - 1)):
        raise InputError(f"block_m must be a power of two >= 1, got {block_m!r}")


def _check_programs(n_programs: int | None) -> None:
    if n_programs is None:
        return
    if isinstance(n_programs, bool) or not isinstance(n_programs, int) or n_programs < 1:
        raise InputError(f"n_programs must be a positive int, got {n_programs!r}")
