"""What the launcher (``dispatch``), the Triton kernel and its static check share; imports no triton.

Backend names, result types, the compute-dtype rule, the kernel's buffer layout (one object gives
every offset: the packer writes by it, the kernel reads by it) and the launch configuration rule.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from ..errors import InputError

__all__ = ["Backend", "KERNEL_DTYPES", "KernelLayout", "LAUNCH_RULES", "LaunchConfig",
           "LaunchRule", "MAX_TOPK", "launch_rule",
           "MarginalResult", "interpret_env", "kernel_supports", "launch_config", "next_pow2",
           "persistent_weight_bytes", "slot_buckets", "slot_widths", "SlotBucket",
           "DENSE_STRIDES"]

Backend = Literal["auto", "torch", "triton"]

# Largest per-task top-k any backend returns (the kernel keeps it in registers per program).
MAX_TOPK = 64

# Compute dtypes of the kernel's matmul operands (accumulation is always fp32).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def kernel_supports(dtype: torch.dtype, device: torch.device | str) -> bool:
    """The dtype rule: whether the kernel computes in ``dtype`` on ``device`` (bf16: sm80+ CUDA)."""
    if dtype not in KERNEL_DTYPES:
        return False
    dev = torch.device(device)
    if dev.type == "cuda" and dtype == torch.bfloat16:
        return bool(torch.cuda.is_bf16_supported())
    return True


class MarginalResult(NamedTuple):
    """Beam-step marginal gains: per candidate (or None), and the best candidate."""

    marginals: torch.Tensor | None   # (M,) fp32: sum_{j in C} max(0, y_j(C) - best_j)
    best_value: float                 # max over candidates
    best_mask: int                    # its mask (uint64 value)


def interpret_env() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for Triton's CPU interpreter (tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def next_pow2(n: int, floor: int = 16) -> int:
    """Smallest power of two >= ``n`` and >= ``floor`` (tl.dot needs dims >= 16, arange powers of 2)."""
    return max(floor, 1 << max(0, (int(n) - 1).bit_length()))


class _At:
    """A field's offset within one layer of a ``KernelLayout`` buffer, read from its table."""

    def __init__(self, buffer: str) -> None:
        self.buffer = buffer

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: KernelLayout | None, owner: type | None = None) -> int:
        if obj is None:
            return self   # type: ignore[return-value]
        return obj.offsets(self.buffer)[self.name]


@dataclass(frozen=True)
class KernelLayout:
    """Shapes of one MTG-Net and the kernel's padded buffers, with every offset into them.

    Each buffer's per-layer fields are one table of (name, shape) (``fields``); offsets follow
    from it, in order. ``mat`` holds per layer ``[W_q,k,v (3, H, DP, DHP) | W_o (H, DHP, DP) |
    W_1 (DP, FP) | W_2 (FP, DP) | diag(ln1_w) (DP, DP) | diag(ln2_w of the layer before) (DP,
    DP)]`` (LN1's scale folded into W_1 and the layer before's LN2 scale into W_q,k,v; one head:
    W_q W_k^T and W_v W_o merged); ``vec`` holds per layer ``[b_q,k,v (3, H, DHP) | b_o | ln1_w |
    ln1_b | b_1 (FP) | b_2 | ln2_w | ln2_b]`` (DP each unless noted), then the head with the
    last LayerNorm folded in: ``w' (DP) | c | sum(w')``; ``bias`` holds per layer ``[b_o (16,
    DP) | b_q (H, 16, DHP) | b_1 (16, FP) | ln1_b + b_2 (16, DP) | b_o + ln2_b of the layer
    before (16, DP)]`` as bf16 blocks whose rows 0..2 sum to the bias (added by a ones(R, 16)
    product, no elementwise pass) (``triton_mtgnet.pack_params``).
    """

    n_tasks: int
    dim: int
    ffn_dim: int
    n_heads: int
    n_layers: int

    @property
    def np_(self) -> int:
        """Padded task axis (NP)."""
        return next_pow2(self.n_tasks)

    @property
    def dp(self) -> int:
        return next_pow2(self.dim)

    @property
    def dhp(self) -> int:
        return next_pow2(self.dim // self.n_heads)

    @property
    def fp(self) -> int:
        return next_pow2(self.ffn_dim)

    def fields(self, buffer: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The (name, shape) table of one layer of ``buffer`` ("mat", "vec" or "bias")."""
        h, d, dh, f = self.n_heads, self.dp, self.dhp, self.fp
        if buffer == "mat":
            return (("w_qkv", (3, h, d, dh)), ("w_o", (h, dh, d)), ("w_1", (d, f)),
                    ("w_2", (f, d)), ("g_1", (d, d)), ("g_in", (d, d)))
        if buffer == "vec":
            return (("b_qkv", (3, h, dh)), ("b_o", (d,)), ("ln1_w", (d,)), ("ln1_b", (d,)),
                    ("b_1", (f,)), ("b_2", (d,)), ("ln2_w", (d,)), ("ln2_b", (d,)))
        if buffer == "bias":
            return (("bb_o", (16, d)), ("bb_q", (h, 16, dh)), ("bb_1", (16, f)),
                    ("bb_r", (16, d)), ("bb_of", (16, d)))
        raise InputError(f"buffer must be 'mat', 'vec' or 'bias', got {buffer!r}")

    def offsets(self, buffer: str) -> dict[str, int]:
        """Offset of each field of ``buffer``'s table within one layer, and "end" (its size)."""
        out, at = {}, 0
        for name, shape in self.fields(buffer):
            out[name] = at
            at += math.prod(shape)
        out["end"] = at
        return out

    def view(self, layer: torch.Tensor, buffer: str, name: str) -> torch.Tensor:
        """Field ``name`` of one layer's slice of ``buffer`` as a view of its table shape."""
        shape = dict(self.fields(buffer))[name]
        at = self.offsets(buffer)[name]
        return layer[at:at + math.prod(shape)].view(shape)

    # -- offsets within one layer of ``mat`` (its table: ``fields("mat")``) --
    w_qkv = _At("mat")
    w_o = _At("mat")
    w_1 = _At("mat")
    w_2 = _At("mat")
    g_1 = _At("mat")     # diag(ln1_w) (DP, DP): LN1's scale on the residual as a product
    g_in = _At("mat")    # diag(ln2_w) of the layer before: its scale on this layer's residual

    @property
    def mat_layer(self) -> int:
        return self.offsets("mat")["end"]

    # -- offsets within one layer of ``vec`` --
    b_o = _At("vec")
    ln1_w = _At("vec")
    ln1_b = _At("vec")
    b_1 = _At("vec")
    b_2 = _At("vec")
    ln2_w = _At("vec")
    ln2_b = _At("vec")

    @property
    def vec_layer(self) -> int:
        return self.offsets("vec")["end"]

    @property
    def head(self) -> int:
        """Offset of the folded head ``w'`` in ``vec``; ``c`` and ``sum(w')`` follow at ``head + DP``."""
        return self.n_layers * self.vec_layer

    # -- offsets within one layer of ``bias``: (16, width) bf16 blocks, rows 0..2 a bias's exact
    #    three-part split, the rest 0, so ones(R, 16) @ block adds the bias on tensor cores --
    bb_o = _At("bias")
    bb_q = _At("bias")
    bb_1 = _At("bias")
    bb_r = _At("bias")    # LN1's bias (+ b_2): the residual's start when LN1's scale is a product
    bb_of = _At("bias")   # b_o + the layer before's ln2_b: b_o's block when that scale is one

    @property
    def bias_layer(self) -> int:
        return self.offsets("bias")["end"]

    @property
    def bias_size(self) -> int:
        return max(1, self.n_layers) * self.bias_layer

    @property
    def mat_size(self) -> int:
        return max(1, self.n_layers) * self.mat_layer

    @property
    def vec_size(self) -> int:
        return self.head + 2 * self.dp

    def kernel_constexprs(self) -> dict[str, int]:
        """The kernel's shape and offset compile-time constants."""
        return dict(N=self.n_tasks, D=self.dim, NP=self.np_, DP=self.dp, DHP=self.dhp,
                    FP=self.fp, H=self.n_heads, N_LAYERS=self.n_layers,
                    MAT_L=self.mat_layer, VEC_L=self.vec_layer, O_WO=self.w_o, O_W1=self.w_1,
                    O_W2=self.w_2, O_BO=self.b_o, O_B1=self.b_1, O_B2=self.b_2,
                    BIAS_L=self.bias_layer, OB_Q=self.bb_q, OB_1=self.bb_1, O_G1=self.g_1,
                    OB_R=self.bb_r, O_GI=self.g_in, OB_OF=self.bb_of)


def slot_widths(layout: KernelLayout) -> list[int]:
    """Token-slot widths PP the launcher may choose for ``layout`` (popcount buckets), ascending."""
    return [pp for pp in (16, 32, 64) if pp < layout.np_] + [layout.np_]


# Rows per combination the launcher packs by default: a combination of at most s tasks takes
# s token rows, so a 64-row tile holds 64 // s of them (s below the slot width: packed densely,
# block-diagonal 2-D attention). Static figures, N = 27 bf16: 895 / 1,516 / 1,647 / 2,461
# instructions per combination at s = 8 / 12 / 16 / 21 against 1,647 (16 slots) and 3,732 (32).
DENSE_STRIDES = (8, 12, 16, 21, 32, 64)
# At most 16 combinations per tile (tiny N): top-k unrolls its insertion over them.
MIN_STRIDE = 4


@dataclass(frozen=True)
class SlotBucket:
    """Combinations with lo..hi member tasks: ``stride`` rows each, tensors ``pp`` slots wide."""

    lo: int
    hi: int
    stride: int
    pp: int


def slot_buckets(layout: KernelLayout, *, dense: bool = True) -> list[SlotBucket]:
    """The launcher's popcount buckets for ``layout``, ascending. ``dense=False``: one per slot
    width (``slot_widths``), each combination padded to it. A stride that fits no more
    combinations in a tile than the next power of two takes that (the batched attention)."""
    n = layout.n_tasks
    if dense:
        strides = []
        for s0 in DENSE_STRIDES:
            s = max(min(s0, n), MIN_STRIDE)
            p2 = next_pow2(s)
            if p2 <= layout.np_ and TILE_ROWS // s == TILE_ROWS // p2:
                s = p2
            if s not in strides:
                strides.append(s)
            if s0 >= n:
                break
    else:
        strides = slot_widths(layout)
    out, lo = [], 1
    for s in sorted(strides):
        if lo > n:
            break
        out.append(SlotBucket(lo, min(s, n), s, next_pow2(s)))
        lo = s + 1
    return out


def slot_width(layout: KernelLayout, popcount: int) -> int:
    """The slot width the launcher uses for combinations of ``popcount`` tasks."""
    return next(pp for pp in slot_widths(layout) if pp >= popcount)


# Token rows per tile (combinations x slots): one warpgroup's MMA M tile.
TILE_ROWS = 64
# fp32 (tf32x3: three tf32 products per product, the activations split in registers) takes
# half tiles: half the per-thread accumulators. Static figures, N = 27 sm_90 predict: 0 B
# spilled in every bucket (64 rows: 64-240 B per bucket, 8 warps: 744-960 B).
FP32_TILE_ROWS = 32
MAXNREG: int | None = None
BLOCK_F = 64
# Keep the matrices of layer 1 and the last layer in shared memory across a program's tiles
# (one head and one FFN slice only); the launcher's default.
PERSIST_WEIGHTS = True
# Every LayerNorm but the last hands on normalised rows; its scale is folded into the next
# products' weights (LN1: W_1; LN2: the next layer's W_q,k,v) and its affine reaches the
# residual stream either elementwise (an fp32 multiply-add) or, with ``fold_ln`` (fp16/bf16
# predict and marginal on sm_90+: wgmma reads the matrices from shared memory), by tensor-core
# products (rows @ diag(scale) + ones @ bias block, the two staged per tile). Static figures,
# N = 27 bf16 sm_90: predict 1,687 -> 1,597, marginal 1,729 -> 1,626 instructions per
# combination. Top-k takes the elementwise path (with products: more registers, N = 33 spills
# 24 B), fp32's tf32x3 products would cost more than they save, on sm_80 the products cost more
# (N = 27 bf16 predict 2,849 against 2,768) and N = 64 marginal spilled 8 B; kept in shared
# memory across tiles (``PERSIST_LN``) they fit two CTAs per SM only beside the per-task tables'
# room: see below. Tests switch it off (other path).
FOLD_LN = True
# With ``persist`` and ``fold_ln``, the diag(ln_w) matrices of layer 1 and the last layer (three,
# 8 KB each at D = 64) and LN1's bias blocks (2 KB each) stay in shared memory across tiles
# instead of being staged per tile through 16 + 4 registers (the peak of the live set). Static
# figures, N = 27 bf16 sm_90 predict, seventh pass: 16-row bucket 975 -> 964 instructions per
# combination; 96-112 KB of shared memory per CTA, two CTAs per SM; the 32-slot bucket (whose
# batched attention's scratch was ~20 KB) re-reads the gather tables per tile.
PERSIST_LN = True


@dataclass(frozen=True)
class LaunchConfig:
    """One kernel specialisation: slot width, tile, reduction mode and Triton launch options."""

    pp: int
    block_m: int
    block_f: int
    mode: int           # 0 gains, 1 per-task top-k, 2 marginal gain
    topk: int           # padded k (power of two) in mode 1, else 1
    num_warps: int
    num_stages: int
    maxnreg: int | None = None   # register cap per thread (None: ptxas decides, up to 255)
    persist: bool = False        # matrices loaded once per program, kept in shared memory
    persist_tables: bool = False  # the per-task gather tables too
    stride: int = 0              # rows per combination (0: pp); < pp packs combinations densely
    row_keys: bool = True        # one-hot / layer-1 keys per token row by a product (sm_90)
    rows: int = 0                # token rows per tile (0: block_m * pp)
    fold_ln: bool = False       # LN1's affine on the residual by products (``FOLD_LN``)
    head_pre: bool = True       # the folded head vector held in registers across tiles
    persist_ln: bool = False    # the LN affines' diag matrices kept in shared memory too
    flat: bool = False          # 2-D block-diagonal attention in layers 2..L at any stride

    def options(self) -> dict[str, int]:
        """Triton launch / compile options."""
        opt = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        if self.maxnreg is not None:
            opt["maxnreg"] = self.maxnreg
        return opt

    def constexprs(self) -> dict[str, int]:
        return dict(PP=self.pp, S=self.stride or self.pp, ROWS=self.rows or self.block_m * self.pp,
                    BLOCK_M=self.block_m, BLOCK_F=self.block_f, TOPK=self.topk,
                    MODE=self.mode, PERSIST=self.persist, PERSIST_TABLES=self.persist_tables,
                    ROW_KEYS=self.row_keys, FOLD_LN=self.fold_ln, HEAD_PRE=self.head_pre,
                    PERSIST_LN=self.persist_ln, FLAT_ATTN=self.flat)


def persistent_weight_bytes(layout: KernelLayout, dtype: torch.dtype, *,
                            tables: bool = True) -> int:
    """Shared memory the matrices kept across tiles take (``LaunchConfig.persist``); ``tables``:
    with the per-task gather tables (bf16 parts of embeddings and layer-1 scores, V W_o). The
    three parts are counted; fp16/bf16 kernels read two (``GATHER_PARTS``): an upper bound."""
    n, d, dh, f = layout.np_, layout.dp, layout.dhp, layout.fp
    size = 0
    if tables:
        size += 2 * 3 * n * d + (2 * 3 * n * n + dtype.itemsize * n * d if layout.n_layers else 0)
    if layout.n_layers:
        size += dtype.itemsize * 2 * d * f + 2 * 16 * f   # layer-1 FFN and b_1 block
    if layout.n_layers > 1:   # the last layer: matrices and bias blocks (one head: the merged
        # W_q W_k^T and W_v W_o only, ``triton_mtgnet.pack_params``)
        qkvo = 2 if layout.n_heads == 1 else 4
        size += dtype.itemsize * (qkvo * d * dh + 2 * d * f) + 2 * 16 * (d + dh + f)
    return size


# The folded head vector (16 fp32 per thread) is held in registers across a program's tiles
# when a tile holds at least this many combinations; fewer (strides >= 32: 0.08% of the N = 27
# space) re-read it per tile. Static figures, N = 27 bf16 sm_90, 32-row bucket: predict 198 ->
# 166 registers for +24 instr/combo, marginal 190 -> 166 for +36, top-k 207 -> 185 for -2.
# Not with ``persist_ln`` (fp16/bf16 predict and marginal on sm_90), whose buckets then fit 128
# registers (seventh pass, N = 27 bf16 predict, 16-row bucket: held, 136 registers and 960
# instructions per combination; re-read, 128 and 967).
HEAD_PRE_MIN_COMBOS = 3


@dataclass(frozen=True)
class LaunchRule:
    """One exception to the launcher's default tile or register cap: where the default spilled
    or ran out of registers in the static check (``kernel_static.py``; the slow matrix
    ``tests/test_kernel_static.py -m slow`` covers every case), what the launcher takes there
    instead, and the figures that showed it (``why``). The first rule that applies sets its field.
    """

    sets: Literal["rows", "maxnreg"]   # token rows per tile, or ptxas's registers per thread
    value: int
    why: str
    arch: tuple[int, int] = (0, 1 << 30)   # sm_<arch> with lo <= arch <= hi
    modes: tuple[int, ...] = (0, 1, 2)
    pp: tuple[int, ...] = ()               # slot widths (empty: any)
    tasks: tuple[int, int] = (1, 64)       # the padded task axis (``KernelLayout.np_``)
    combos: tuple[int, int] = (1, 1 << 30)  # combinations per tile ("maxnreg" rules only)
    padded: bool = False                   # only power-of-two slots (no dense stride)
    persist_ln: bool = False               # only configurations with ``persist_ln``

    def applies(self, *, arch: int, mode: int, pp: int, np_: int, padded: bool,
                combos: int = 1, persist_ln: bool = False) -> bool:
        return (self.arch[0] <= arch <= self.arch[1] and mode in self.modes
                and (not self.pp or pp in self.pp) and self.tasks[0] <= np_ <= self.tasks[1]
                and self.combos[0] <= combos <= self.combos[1]
                and (padded or not self.padded) and (persist_ln or not self.persist_ln))


# Marginal's partial argmax state needs 136 registers in its buckets of <= 2 and >= 9
# combinations per tile under ``persist_ln`` (3..8 hold at 128: N = 27, 122-128 registers).
_MARGINAL_136 = ("persist_ln marginal, {}: 16 B spilled at 128 registers, none at 136 "
                 "(uncapped, ptxas takes 176 and 2,182 instructions per combination; at 136, "
                 "2,114)")
#: the launcher's exceptions, in the order they are tried (see LaunchRule)
LAUNCH_RULES: tuple[LaunchRule, ...] = (
    LaunchRule("rows", 32, arch=(0, 89), pp=(32,), tasks=(32, 32), padded=True,
               why="sm_80, 32-task masks: one combination per tile (two per tile spilled "
                   "32-120 B in fp16/bf16)"),
    LaunchRule("rows", 32, arch=(0, 89), modes=(2,), pp=(16,), tasks=(33, 64), padded=True,
               why="sm_80 marginal, 64-task masks: 2 combinations per tile (4 spilled 8 B at "
                   "255 registers; 232-234 registers, 0 B; 2,158 -> 3,372 instructions per "
                   "combination in that bucket)"),
    LaunchRule("maxnreg", 136, modes=(2,), tasks=(1, 32), combos=(1, 2), persist_ln=True,
               why=_MARGINAL_136.format("2 combinations per tile")),
    LaunchRule("maxnreg", 136, modes=(2,), tasks=(1, 32), combos=(9, 1 << 30), persist_ln=True,
               why=_MARGINAL_136.format("16 per tile (N <= 4, 4 rows apart; found by the slow "
                                        "matrix)")),
    # Those buckets of at most 2 combinations per tile attend in 2-D block-diagonal products
    # (``LaunchConfig.flat``): N = 27, 32-row bucket, batched 156 registers (80 B spilled at
    # 128), 2-D 127 registers, 2,046 -> 2,068 instructions per combination (0.08% of the space).
    LaunchRule("maxnreg", 128, tasks=(1, 32), persist_ln=True,
               why="fp16/bf16 predict and marginal with the LN matrices in shared memory "
                   "(persist_ln), <= 32 tasks: none of those buckets spills at 128 (N = 27 bf16 "
                   "sm_90, seventh pass: 116-128 registers, the 2-per-tile bucket capped from "
                   "134); two CTAs per SM"),
)


def launch_rule(sets: Literal["rows", "maxnreg"], **where: Any) -> LaunchRule | None:
    """The first rule of :data:`LAUNCH_RULES` setting ``sets`` that applies ``where`` (the
    keywords of :meth:`LaunchRule.applies`), or None: the default stands."""
    return next((r for r in LAUNCH_RULES if r.sets == sets and r.applies(**where)), None)


# Largest persistent weight footprint that keeps two 4-warp CTAs per SM on sm_90 (228 KB).
PERSIST_MAX_BYTES = 96 * 1024


def launch_config(layout: KernelLayout, pp: int, mode: int, *, topk: int = 1,
                  block_m: int | None = None, dtype: torch.dtype | None = None,
                  arch: int = 90, stride: int | None = None) -> LaunchConfig:
    """The launcher's choice for slot width ``pp``: TILE_ROWS token rows per tile (fp32:
    FP32_TILE_ROWS), 4 warps (one warpgroup: 64 rows are one Hopper wgmma M tile; <= 255
    registers, 2 CTAs per SM, no spills).

    ``persist`` (matrices in shared memory across tiles) needs fp16/bf16 on sm_90+ (Hopper's
    wgmma reads them there), one head, one FFN slice and at most ``PERSIST_MAX_BYTES``;
    ``dtype=None`` (the interpreter) skips the dtype rule so fp32 tests cover that path too.
    The gather tables join them up to 32 slots (N = 27 bf16: 90-104 KB, 2 CTAs per SM; the
    21- and 32-row buckets 1,484 -> 1,467 and 2,308 -> 2,256 instructions per combination).

    ``stride`` (a ``SlotBucket``'s, below ``pp``): combinations packed that many rows apart in a
    tile of TILE_ROWS rows (``block_m`` is then ignored); sm_90+ only (``row_keys``: on sm_80 the
    per-row products' operands make N = 64 spill, so it keeps power-of-two slot widths)."""
    # (top-k at N > 48 took half tiles until the fourth pass: they spilled)
    rows = FP32_TILE_ROWS if dtype == torch.float32 else TILE_ROWS
    padded = stride in (None, pp)
    rule = launch_rule("rows", arch=arch, mode=mode, pp=pp, np_=layout.np_, padded=padded)
    rows = rule.value if rule is not None else rows
    # (a stride that fits no more combinations in the tile than the slot width takes that: fp32's
    # 32-row tiles pack 12 / 21 rows apart as 16 / 32; the 12-row bucket spilled 16-72 B in top-k)
    dense_stride = stride if stride is not None and stride != pp and rows // stride != rows // pp \
        else 0
    dense = dense_stride > 0
    if dense and arch < 90:
        raise ValueError(f"dense strides need sm_90+ (row keys), got sm_{arch}")
    if dense:
        bm = rows // dense_stride
    else:
        bm = block_m or max(1, rows // pp)
        rows = bm * pp
    block_f = min(layout.fp, BLOCK_F)
    wdt = dtype or torch.bfloat16
    persist = (PERSIST_WEIGHTS and layout.n_heads == 1 and layout.fp == block_f and arch >= 90
               and dtype in (None, torch.float16, torch.bfloat16)
               and persistent_weight_bytes(layout, wdt, tables=False) <= PERSIST_MAX_BYTES)
    persist_ln = (PERSIST_LN and persist and FOLD_LN and mode != 1
                  and dtype in (None, torch.float16, torch.bfloat16))
    tables = (persist and pp <= 32 and persistent_weight_bytes(layout, wdt) <= PERSIST_MAX_BYTES
              and not (persist_ln and pp >= 32 and not dense))
    cap = MAXNREG
    if cap is None:   # (an override set by the static-check tools wins over every rule)
        rule = launch_rule("maxnreg", arch=arch, mode=mode, pp=pp, np_=layout.np_, padded=padded,
                           combos=bm, persist_ln=persist_ln)
        cap = rule.value if rule is not None else None
    return LaunchConfig(pp=pp, block_m=bm, block_f=block_f, mode=mode,
                        topk=next_pow2(topk, floor=1) if mode == 1 else 1,
                        num_warps=4 if rows <= 64 else 8, num_stages=1,
                        maxnreg=cap,
                        persist=persist, persist_tables=tables,
                        stride=dense_stride, rows=rows if dense else 0,
                        row_keys=arch >= 90,
                        fold_ln=FOLD_LN and mode != 1 and arch >= 90
                        and dtype in (None, torch.float16, torch.bfloat16),
                        head_pre=bm >= HEAD_PRE_MIN_COMBOS and not persist_ln,
                        persist_ln=persist_ln, flat=persist_ln and bm <= 2)


def combos_in_bucket(n_tasks: int, popcounts: range) -> int:
    """Number of combinations of ``n_tasks`` tasks whose size lies in ``popcounts``."""
    return sum(math.comb(n_tasks, k) for k in popcounts)
