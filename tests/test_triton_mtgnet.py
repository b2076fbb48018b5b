"""The fused Triton MTG-Net kernel against the PyTorch reference.

Without CUDA the kernel runs in Triton's CPU interpreter (TRITON_INTERPRET=1, set here before
triton is imported when no GPU is present), so sizes stay small. Tolerances:
fp32: |kernel - reference| <= 1e-4 (abs). fp16/bf16 (flash-attention style): the kernel's max error
against the fp32 reference is at most 2x that of the same-precision PyTorch path (+1e-3 floor).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytest.importorskip("triton")

from mtgfast.errors import InputError, InputTypeError  # noqa: E402
from mtgfast.ops import dispatch  # noqa: E402
from mtgfast.ops.checks import check_chunk, check_k  # noqa: E402
from mtgfast.ops import triton_mtgnet as tm  # noqa: E402
from mtgfast.ops import common  # noqa: E402
from mtgfast.ops.common import KernelLayout, slot_buckets  # noqa: E402
from mtgfast.ops.reference import (  # noqa: E402
    LayerParams,
    MTGNetParams,
    member_from_masks,
    mtgnet_forward,
)

INTERPRETED = tm.interpreter_active()
DEVICE = "cpu" if INTERPRETED else "cuda"
needs_kernel = pytest.mark.skipif(not INTERPRETED and not torch.cuda.is_available(),
                                  reason="needs CUDA or TRITON_INTERPRET=1")
pytestmark = needs_kernel
FP32_ATOL = 1e-4
LOWP_RATIO, LOWP_FLOOR = 2.0, 1e-3


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def make_params(n: int, d: int = 32, f: int = 64, n_layers: int = 2, n_heads: int = 2, *,
                seed: int = 0, temperature: float = 0.8, dtype: torch.dtype = torch.float32,
                device: str = DEVICE) -> MTGNetParams:
    """Random MTG-Net weights at a scale where attention is neither uniform nor one-hot."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    layers = [LayerParams(r(d, 3 * d, scale=0.4), r(3 * d), r(d, d), r(d), 1 + r(d), r(d),
                          r(d, f), r(f), r(f, d), r(d), 1 + r(d), r(d)) for _ in range(n_layers)]
    p = MTGNetParams(r(n, d, scale=1.0), layers, r(d), r(()), n_heads, temperature, 1e-5)
    return p.to(device=device, dtype=dtype)


def masks_covering(n: int, n_random: int = 0, seed: int = 0) -> torch.Tensor:
    """All masks for small n; else each singleton, the full set, each popcount once, random ones."""
    if n <= 7:
        return torch.arange(1, 1 << n, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    ms = [1 << j for j in range(n)] + [(1 << k) - 1 for k in range(2, n + 1)]
    ms += torch.randint(1, 1 << n, (n_random,), generator=g).tolist()
    return torch.tensor(ms, dtype=torch.int64)


def assert_close_verbose(actual: torch.Tensor, expected: torch.Tensor, *, atol: float,
                         rtol: float = 0.0, name: str = "", max_report: int = 8) -> None:
    """allclose that reports shape, max error and the first mismatching indices with values."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    bad = ~torch.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
    if bool(bad.any()):
        idx = bad.nonzero()[:max_report]
        lines = [f"  {tuple(i.tolist())}: got {a[tuple(i)].item():.6g}, expected "
                 f"{e[tuple(i)].item():.6g}" for i in idx]
        err = (a - e).abs().nan_to_num(nan=float("inf")).max().item()
        raise AssertionError(f"{name}: {int(bad.sum())}/{bad.numel()} mismatches (atol={atol}, "
                             f"rtol={rtol}, max abs err {err:.3g}); first:\n" + "\n".join(lines))


def dense_topk(gains: torch.Tensor, masks: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force per-task top-k from the full table: the definition the kernel must meet."""
    member = member_from_masks(masks, gains.shape[1])
    cand = gains.float().masked_fill(~member, float("-inf")).T
    kk = min(k, cand.shape[1])
    vals = torch.full((gains.shape[1], k), float("-inf"))
    at = torch.zeros((gains.shape[1], k), dtype=torch.int64)
    v, i = torch.topk(cand.cpu(), kk, dim=1)
    vals[:, :kk], at[:, :kk] = v, i
    return vals, at


def check_topk(vals: torch.Tensor, got_masks: torch.Tensor, gains: torch.Tensor,
               masks: torch.Tensor, k: int, atol: float) -> None:
    """Values equal the brute-force top-k; each returned mask holds j and has that gain.

    Checking masks through their gains rather than by position makes the test immune to ties.
    """
    ref_vals, _ = dense_topk(gains, masks, k)
    assert_close_verbose(vals.cpu(), ref_vals, atol=atol, name="top-k values")
    lookup = {int(m): row for row, m in enumerate(masks.tolist())}
    for j in range(gains.shape[1]):
        for r in range(k):
            m = int(got_masks[j, r])
            if torch.isinf(ref_vals[j, r]):
                assert m == 0, f"task {j} slot {r}: empty slot must have mask 0, got {m:#x}"
                continue
            assert (m >> j) & 1, f"task {j} slot {r}: mask {m:#x} does not contain task {j}"
            assert abs(float(gains[lookup[m], j]) - float(vals[j, r])) <= atol, (j, r, m)
    assert len({(j, int(m)) for j in range(gains.shape[1]) for m in got_masks[j] if m}) == \
        int((got_masks != 0).sum()), "a mask appears twice in one task's top-k"


# ------------------------------------------------------------------------------------------------
# forward: every code path against the reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "d", "f", "n_layers", "n_heads", "block_m"),
    [
        (1, 16, 16, 2, 1, 1),     # single task: the only mask is popcount 1 = N
        (3, 32, 64, 2, 2, 2),     # tail tile (7 masks, block 2)
        (5, 32, 64, 2, 1, 8),
        (7, 32, 64, 1, 2, 32),    # one layer: layer-1 constants only
        (7, 24, 40, 3, 3, 32),    # D, F, d_head not powers of two (padding), 3 general layers
        (12, 64, 128, 2, 2, 8),   # model width of the GPU regime, FFN in two BLOCK_F slices
        (5, 16, 32, 0, 1, 16),    # no layer: head on embeddings
    ],
)
def test_forward_matches_reference_fp32(n: int, d: int, f: int, n_layers: int, n_heads: int,
                                        block_m: int) -> None:
    params = make_params(n, d, f, n_layers, n_heads, seed=n + 10 * n_layers)
    masks = masks_covering(n, n_random=30)
    got = tm.mtgnet_forward_triton(params, masks.to(DEVICE), block_m=block_m)
    ref = mtgnet_forward(params, masks.to(DEVICE))
    assert got.dtype == torch.float32 and got.shape == (masks.shape[0], n)
    assert_close_verbose(got, ref, atol=FP32_ATOL, name=f"gains n={n}")
    member = member_from_masks(masks, n)
    assert bool((got.cpu()[~member] == 0).all()), "absent tasks must be exactly 0"


@pytest.mark.parametrize("compact", [True, False])
def test_popcount_buckets_match_reference(compact: bool) -> None:
    # N = 20 pads to NP = 32: popcount <= 16 runs with 16 slots, the rest with 32 (two launches
    # whose rows interleave in the output); compact=False pads everything to 32.
    n = 20
    params = make_params(n, 16, 32, 2, 1, seed=20)
    g = torch.Generator().manual_seed(4)
    masks = [1, (1 << n) - 1, (1 << 16) - 1, (1 << 17) - 1, 0b1010 << 10]
    masks += torch.randint(1, 1 << n, (20,), generator=g).tolist()
    mt = torch.tensor(masks, dtype=torch.int64, device=DEVICE)
    pc = tm.popcount64(mt)
    assert pc.tolist() == [bin(m).count("1") for m in masks]
    assert bool((pc <= 16).any() and (pc > 16).any())
    got = tm.mtgnet_forward_triton(params, mt, block_m=8, compact=compact)
    assert_close_verbose(got, mtgnet_forward(params, mt), atol=FP32_ATOL, name=f"compact={compact}")
    best = torch.full((n,), 0.1, device=DEVICE)
    res = tm.mtgnet_marginal_triton(params, mt, best, block_m=8, compact=compact)
    ref = ((mtgnet_forward(params, mt) - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    assert_close_verbose(res.marginals, ref, atol=FP32_ATOL, name="bucketed marginals")


def test_wide_masks_flat_attention_match_reference() -> None:
    # N = 40 pads to NP = 64: layers 2..L run the block-diagonal 2-D attention (FLAT) with 4, 2
    # and 1 combinations per tile (slots 16, 32, 64); keys of the other combinations must not leak
    n = 40
    params = make_params(n, 16, 32, 2, 2, seed=40)
    g = torch.Generator().manual_seed(5)
    masks = [1, 1 << 39, (1 << n) - 1, (1 << 16) - 1, (1 << 17) - 1, (1 << 33) - 1, 0b1011 << 30]
    masks += torch.randint(1, 1 << n, (9,), generator=g).tolist()
    mt = torch.tensor(masks, dtype=torch.int64, device=DEVICE)
    assert {int(p) for p in tm.popcount64(mt)} & {1, 17, 40}
    got = tm.mtgnet_forward_triton(params, mt)
    assert_close_verbose(got, mtgnet_forward(params, mt), atol=FP32_ATOL, name="n=40")
    best = torch.full((n,), 0.05, device=DEVICE)
    res = tm.mtgnet_marginal_triton(params, mt, best)
    ref = ((mtgnet_forward(params, mt) - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    assert_close_verbose(res.marginals, ref, atol=FP32_ATOL, name="n=40 marginals")
    vals, top = tm.mtgnet_topk_triton(params, mt, 3, n_programs=2)
    check_topk(vals.cpu(), top.cpu(), mtgnet_forward(params, mt).cpu(), mt.cpu(), 3,
               atol=FP32_ATOL)


@pytest.mark.parametrize("n_heads", [1, 2])
def test_dense_buckets_every_mode(n_heads: int) -> None:
    # N = 27: the launcher packs combinations of <= 8 / 12 / 16 / 21 / 32 tasks 8 / 12 / 16 /
    # 21 / 32 rows apart (8 / 5 / 4 / 3 / 2 per 64-row tile; strides below 16 / 32 slots use the
    # block-diagonal 2-D attention); every popcount 1..27, partial tiles in every bucket
    n = 27
    params = make_params(n, 16, 32, 2, n_heads, seed=27 + n_heads)
    assert [b.stride for b in slot_buckets(tm.pack_params(params).layout)] == [8, 12, 16, 21, 32]
    # top-k: the 32-row bucket (2 per tile) re-reads the head vector per tile, the others hold
    # it; one head, predict and marginal (LN diag matrices in shared memory) re-read it in every
    # bucket
    lay = tm.pack_params(params).layout
    assert [common.launch_config(lay, b.pp, 1, stride=b.stride).head_pre
            for b in slot_buckets(lay)] == [True, True, True, True, False]
    assert [common.launch_config(lay, b.pp, m, stride=b.stride).head_pre
            for b in slot_buckets(lay) for m in (0, 2)] == [n_heads > 1] * 8 + [False] * 2
    g = torch.Generator().manual_seed(n_heads)
    masks = []
    for p in range(1, n + 1):
        for _ in range(3 if p in (1, 8, 9, 12, 13, 16, 17, 21, 22, 27) else 1):
            masks.append(sum(1 << int(j) for j in torch.randperm(n, generator=g)[:p]))
    mt = torch.tensor(sorted(set(masks)), dtype=torch.int64, device=DEVICE)   # distinct masks
    ref = mtgnet_forward(params, mt)
    assert_close_verbose(tm.mtgnet_forward_triton(params, mt), ref, atol=FP32_ATOL, name="dense")
    best = torch.linspace(-0.3, 0.3, n, device=DEVICE)
    res = tm.mtgnet_marginal_triton(params, mt, best, n_programs=3)
    marg = ((ref - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    assert_close_verbose(res.marginals, marg, atol=FP32_ATOL, name="dense marginals")
    assert abs(res.best_value - float(marg.max())) <= FP32_ATOL
    vals, top = tm.mtgnet_topk_triton(params, mt, 4, n_programs=2)
    check_topk(vals.cpu(), top.cpu(), ref.cpu(), mt.cpu(), 4, atol=FP32_ATOL)


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's launch choices are a test switch")
@pytest.mark.parametrize("n_layers", [2, 3])
def test_fp32_compiled_launch_choices(monkeypatch: pytest.MonkeyPatch, n_layers: int) -> None:
    # what a GPU runs for fp32: 32-row tiles (FP32_TILE_ROWS: 1..4 combinations per tile),
    # weights read per tile with their host-split tf32 parts (no persistence, no folded LN
    # products), every popcount of N = 27 in every mode; 3 layers: the runtime layer loop
    monkeypatch.setattr(tm, "INTERPRETER_DTYPE_RULE", True)
    n = 27
    lay = KernelLayout(n, 16, 32, 1, n_layers)
    cfgs = [common.launch_config(lay, b.pp, 0, dtype=torch.float32, stride=b.stride)
            for b in slot_buckets(lay)]
    assert [(c.rows or c.block_m * c.pp, c.block_m, c.stride) for c in cfgs] == [
        (32, 4, 8), (32, 2, 0), (32, 2, 0), (32, 1, 0), (32, 1, 0)]
    assert not any(c.persist or c.fold_ln for c in cfgs)
    params = make_params(n, 16, 32, n_layers, 1, seed=32 + n_layers)
    g = torch.Generator().manual_seed(n_layers)
    masks = sorted({sum(1 << int(j) for j in torch.randperm(n, generator=g)[:p])
                    for p in range(1, n + 1) for _ in range(2)})
    mt = torch.tensor(masks, dtype=torch.int64, device=DEVICE)
    ref = mtgnet_forward(params, mt)
    assert_close_verbose(tm.mtgnet_forward_triton(params, mt), ref, atol=FP32_ATOL,
                         name="fp32 compiled choices")
    best = torch.linspace(-0.2, 0.2, n, device=DEVICE)
    marg = ((ref - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    res = tm.mtgnet_marginal_triton(params, mt, best, n_programs=2)
    assert_close_verbose(res.marginals, marg, atol=FP32_ATOL, name="fp32 marginals")
    vals, top = tm.mtgnet_topk_triton(params, mt, 3, n_programs=2)
    check_topk(vals.cpu(), top.cpu(), ref.cpu(), mt.cpu(), 3, atol=FP32_ATOL)


def test_tf32_parts_split_exactly() -> None:
    # the host's tf32 split of the fp32 weights: hi has 10 mantissa bits (nearest), hi + lo is
    # the value, and it matches the kernel's in-register rounding bit for bit (interpreter)
    g = torch.Generator().manual_seed(5)
    t = torch.randn(4096, generator=g) * torch.logspace(-6, 6, 4096)
    t[:3] = torch.tensor([0.0, -0.0, 1.0 + 2.0 ** -11])        # exact, signed zero, a tie
    parts = tm.tf32_parts(t, 0)
    w, hi, lo = parts.view(3, -1)
    assert torch.equal(w, t)
    assert torch.equal((hi.view(torch.int32) & 0x1FFF), torch.zeros_like(hi, dtype=torch.int32))
    assert torch.equal(hi + lo, t)
    assert float(hi[2]) == 1.0 + 2.0 ** -10                       # ties away from zero
    assert bool(((t - hi).abs() <= t.abs() * 2.0 ** -11).all())   # round to nearest
    if INTERPRETED:
        import triton
        import triton.language as tl

        @triton.jit
        def _round(x_ptr, y_ptr, BLOCK: tl.constexpr):
            i = tl.arange(0, BLOCK)
            tl.store(y_ptr + i, tm.tf32_hi(tl.load(x_ptr + i)))

        y = torch.empty_like(t)
        _round[(1,)](t, y, BLOCK=t.numel())
        assert torch.equal(y, hi)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 12))
def test_two_gather_parts_carry_sixteen_bits(seed: int, n: int) -> None:
    # fp16/bf16 kernels read two of the three bf16 parts of the gather tables (GATHER_PARTS):
    # their sum is the fp32 table to ~2^-17 relative, far below the compute dtype's rounding
    packed = tm.pack_params(make_params(n, 32, 64, 2, 1, seed=seed), torch.bfloat16)
    assert int(tm.GATHER_PARTS) == 2
    for table in (packed.emb, packed.s1[0]):       # (3, NP, DP) and (3, NP, NP) parts
        parts = table.float()
        full, two = parts.sum(0), parts[0] + parts[1]
        assert bool(((two - full).abs() <= full.abs() * 2.0 ** -16 + 1e-30).all())
        assert bool(((parts[0] - full).abs() <= full.abs() * 2.0 ** -8 + 1e-30).all())


@pytest.mark.skipif(not INTERPRETED, reason="runs the jit helper in the interpreter")
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-2, 1e2),
       dtype=st.sampled_from([torch.bfloat16, torch.float16]))
def test_packed_layernorm_normalise_matches_reference(seed: int, scale: float,
                                                      dtype: torch.dtype) -> None:
    # _ln_normalise_to (PACKED): rows rounded to the compute dtype times 1/std rounded once, one
    # mul.rn per two values compiled; here its interpreter form against the same composition
    # built from the interpreter's own conversion (which truncates bf16: a full ulp, where the
    # compiled cvt.rn and mul.rn round to nearest) and against the fp32 normalise
    import triton
    import triton.language as tl

    cdt = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}[dtype]

    @triton.jit
    def _norm(x_ptr, y_ptr, eps, R: tl.constexpr, C: tl.constexpr, CDT: tl.constexpr):
        offs = tl.arange(0, R)[:, None] * C + tl.arange(0, C)[None, :]
        y = tm._ln_normalise_to(tl.load(x_ptr + offs), eps, C, True, True, CDT, True, True)
        tl.store(y_ptr + offs, y.to(tl.float32))

    @triton.jit
    def _round(x_ptr, y_ptr, N: tl.constexpr, CDT: tl.constexpr):
        i = tl.arange(0, N)
        tl.store(y_ptr + i, tl.load(x_ptr + i).to(CDT).to(tl.float32))

    def rnd(t: torch.Tensor) -> torch.Tensor:
        flat = t.contiguous().reshape(-1)
        out = torch.empty_like(flat)
        _round[(1,)](flat, out, N=flat.numel(), CDT=cdt)
        return out.view(t.shape)

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 64, generator=g) * scale
    x -= x.mean(1, keepdim=True)            # the kernel's LN inputs are row-centred
    eps = 1e-5
    y = torch.empty_like(x)
    _norm[(1,)](x, y, eps, R=16, C=64, CDT=cdt)
    rstd = torch.rsqrt((x * x).mean(1, keepdim=True) + eps)
    exact = x * rstd
    ulp = 2.0 ** (-7 if dtype == torch.bfloat16 else -10)          # one ulp, relative
    assert bool(((y - exact).abs() <= 3 * ulp * exact.abs() + 1e-6).all())
    # the same composition: 1/std rounded once per row, the exact product rounded once (1/std
    # may differ from torch's in its last fp32 bit, FMA chain order: rare rounding flips)
    packed_ref = rnd(rnd(x) * rnd(rstd.expand_as(x)))
    assert float((y == packed_ref).float().mean()) >= 0.98


@pytest.mark.skipif(not INTERPRETED, reason="the interpreter's launch target is a test switch")
def test_ampere_launch_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    # sm_80 keeps power-of-two slot widths and the (BLOCK_M, PP, NP) one-hot (no row keys)
    monkeypatch.setattr(tm, "INTERPRETER_ARCH", 80)
    n = 20
    params = make_params(n, 16, 32, 2, 1, seed=80)
    g = torch.Generator().manual_seed(80)
    masks = sorted({sum(1 << int(j) for j in torch.randperm(n, generator=g)[:p])
                    for p in range(1, n + 1) for _ in range(2)})
    mt = torch.tensor(masks, dtype=torch.int64, device=DEVICE)
    ref = mtgnet_forward(params, mt)
    assert_close_verbose(tm.mtgnet_forward_triton(params, mt), ref, atol=FP32_ATOL, name="sm_80")
    best = torch.full((n,), 0.1, device=DEVICE)
    marg = ((ref - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    res = tm.mtgnet_marginal_triton(params, mt, best)
    assert_close_verbose(res.marginals, marg, atol=FP32_ATOL, name="sm_80 marginals")
    vals, top = tm.mtgnet_topk_triton(params, mt, 3, n_programs=2)
    check_topk(vals.cpu(), top.cpu(), ref.cpu(), mt.cpu(), 3, atol=FP32_ATOL)


@pytest.mark.parametrize(("fold", "n_layers"), [(True, 2), (False, 2), (True, 3), (False, 3)])
def test_ln_affines_by_products_and_elementwise(monkeypatch: pytest.MonkeyPatch, fold: bool,
                                                n_layers: int) -> None:
    # LN1's and (layers 2..L) the layer before's LN2 scale/bias on the residual: tensor-core
    # products (fp16/bf16 predict and marginal on a GPU; every dtype in the interpreter) or an
    # fp32 multiply-add (fp32, top-k); both exact rewrites. 3 layers: the runtime layer loop.
    monkeypatch.setattr(common, "FOLD_LN", fold)
    assert common.launch_config(KernelLayout(9, 16, 32, 1, 2), 16, 0).fold_ln is fold
    assert common.launch_config(KernelLayout(9, 16, 32, 1, 2), 16, 1).fold_ln is False
    # the diag(ln_w) matrices kept in shared memory across tiles ride on the folded path
    assert common.launch_config(KernelLayout(9, 16, 32, 1, 2), 16, 0).persist_ln is fold
    assert common.launch_config(KernelLayout(9, 16, 32, 1, 2), 16, 1).persist_ln is False
    n = 9
    params = make_params(n, 16, 32, n_layers, 1, seed=19)
    for lp in params.layers:                 # affines that matter (folded into weights, blocks)
        lp.ln1_b.mul_(4.0)
        lp.ln2_b.mul_(4.0)
        lp.ln2_w.mul_(2.0)
    mt = masks_covering(n, n_random=30, seed=19).to(DEVICE)
    ref = mtgnet_forward(params, mt)
    assert_close_verbose(tm.mtgnet_forward_triton(params, mt), ref, atol=FP32_ATOL,
                         name=f"fold={fold}")
    best = torch.full((n,), 0.2, device=DEVICE)
    marg = ((ref - best).clamp(min=0) * member_from_masks(mt, n)).sum(1)
    res = tm.mtgnet_marginal_triton(params, mt, best)
    assert_close_verbose(res.marginals, marg, atol=FP32_ATOL, name=f"fold={fold} marginals")


@pytest.mark.parametrize("temperature", [0.8, 0.004])
def test_layer1_softmax_table_and_its_fallback(temperature: float) -> None:
    # ordinary scores: the packer stores exp2 weights (softmax = masked normalisation); near-one-hot
    # attention (spread > EXP_SPREAD_MAX, where far members would underflow): max-subtract path
    n = 9
    params = make_params(n, 16, 32, 2, 1, seed=11, temperature=temperature)
    packed = tm.pack_params(params)
    assert packed.exp_scores == (temperature > 0.1)
    assert temperature > 0.1 or not packed.bounded_scores   # later layers: max-subtract too
    masks = masks_covering(n, n_random=20).to(DEVICE)
    ref = mtgnet_forward(params, masks)
    assert_close_verbose(tm.mtgnet_forward_triton(packed, masks, block_m=4), ref,
                         atol=FP32_ATOL, name=f"T={temperature}")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), n_heads=st.sampled_from([1, 2]),
       temperature=st.floats(0.05, 3.0), n_layers=st.integers(2, 3))
def test_score_bound_bounds_every_later_layer_score(seed: int, n_heads: int, temperature: float,
                                                    n_layers: int) -> None:
    # layers 2..L read normalised rows u (|u| <= sqrt(d)): no input gets a score past the bound,
    # not even u along the top singular vectors of W_q W_k^T (where it is nearly tight)
    d = 16
    params = make_params(3, d, 32, n_layers, n_heads, seed=seed, temperature=temperature,
                         device="cpu")
    bound = tm.score_bound(params)
    g = torch.Generator().manual_seed(seed)
    dh = d // n_heads
    scale = np.log2(np.e) / (np.sqrt(dh) * temperature)
    worst = 0.0
    for li in range(1, n_layers):
        prev, lp = params.layers[li - 1], params.layers[li]
        u = torch.randn(64, d, generator=g)
        wq, wk = lp.w_qkv[:, :d] * prev.ln2_w[:, None], lp.w_qkv[:, d:2 * d] * prev.ln2_w[:, None]
        for hh in range(n_heads):
            c = slice(hh * dh, (hh + 1) * dh)
            uu, _, vv = torch.linalg.svd(wq[:, c] @ wk[:, c].T)
            u = torch.cat([u, uu[:, :1].T, vv[:1], -vv[:1]])
        u = u / u.norm(dim=1, keepdim=True) * np.sqrt(d)
        q = ((u * prev.ln2_w + prev.ln2_b) @ lp.w_qkv + lp.b_qkv)[:, :d]
        k = u @ wk   # (c W_k + b_k) . q: a per-query shift, which the kernel drops
        for hh in range(n_heads):
            c = slice(hh * dh, (hh + 1) * dh)
            worst = max(worst, float((q[:, c] @ k[:, c].T).abs().max()) * scale)
    assert worst <= bound * (1 + 1e-5) + 1e-5, (worst, bound)


@pytest.mark.parametrize("wide", [False, True])
def test_later_layer_softmax_bounded_and_max_subtract(wide: bool) -> None:
    # bounded scores (the usual case): layers 2..L's softmax is exp2(s) / sum, no row max;
    # W_q of layer 2 scaled up past SCORE_BOUND_MAX: the max-subtract path. 16 tasks: the
    # block-diagonal 2-D attention (8 / 12 rows per combination) and the batched one (16 / 16)
    n = 16
    params = make_params(n, 16, 32, 2, 1, seed=41, temperature=1.5)
    if wide:
        params.layers[1].w_qkv[:, :16].mul_(20.0)
    packed = tm.pack_params(params)
    assert packed.bounded_scores is (not wide), tm.score_bound(params)
    assert packed.exp_scores
    mt = masks_covering(n, n_random=40, seed=41).to(DEVICE)
    assert_close_verbose(tm.mtgnet_forward_triton(packed, mt), mtgnet_forward(params, mt),
                         atol=FP32_ATOL, name=f"wide={wide}")


@pytest.mark.parametrize(("n", "d", "f", "h", "layers"), [(27, 64, 64, 1, 2), (7, 24, 40, 3, 3)])
def test_kernel_layout_offsets_follow_the_field_tables(n: int, d: int, f: int, h: int,
                                                      layers: int) -> None:
    # one (name, shape) table per buffer: fields tile each layer in order, views have the
    # table's shapes, and the kernel's offset constants are the table's
    lay = KernelLayout(n, d, f, h, layers)
    for buf in ("mat", "vec", "bias"):
        at, offs = 0, lay.offsets(buf)
        for name, shape in lay.fields(buf):
            assert offs[name] == at, (buf, name)
            assert tuple(lay.view(torch.zeros(offs["end"]), buf, name).shape) == shape
            at += int(np.prod(shape))
        assert offs["end"] == at
    cx = lay.kernel_constexprs()
    assert (cx["MAT_L"], cx["VEC_L"], cx["BIAS_L"]) == (
        lay.offsets("mat")["end"], lay.offsets("vec")["end"], lay.offsets("bias")["end"])
    assert (cx["O_WO"], cx["O_G1"], cx["O_GI"]) == tuple(
        lay.offsets("mat")[k] for k in ("w_o", "g_1", "g_in"))
    assert (cx["O_BO"], cx["O_B1"], cx["O_B2"]) == tuple(
        lay.offsets("vec")[k] for k in ("b_o", "b_1", "b_2"))
    assert (cx["OB_Q"], cx["OB_1"], cx["OB_R"], cx["OB_OF"]) == tuple(
        lay.offsets("bias")[k] for k in ("bb_q", "bb_1", "bb_r", "bb_of"))
    assert lay.ln1_b == lay.b_o + 2 * lay.dp and lay.ln2_b == lay.b_2 + 2 * lay.dp
    with pytest.raises(ValueError, match="buffer"):
        lay.fields("nope")


def test_popcount64_edge_bits() -> None:
    masks = torch.tensor([1, -1, -(1 << 63), (1 << 62) | 5, 0x5555555555555555], dtype=torch.int64)
    assert tm.popcount64(masks).tolist() == [1, 64, 1, 3, 32]


def test_absent_tasks_are_invisible() -> None:
    # A member's gain depends only on the member set: tasks {1, 4, 6} of a 9-task model give the
    # same gains as the 3-task model made of those embeddings (padding 16 vs 16, different masks).
    params = make_params(9, seed=3)
    sub = MTGNetParams(params.embedding[[1, 4, 6]].clone(), params.layers, params.w_head,
                       params.b_head, params.n_heads, params.temperature, params.ln_eps)
    full = tm.mtgnet_forward_triton(params, torch.tensor([0b001010010], device=DEVICE))
    small = tm.mtgnet_forward_triton(sub, torch.tensor([0b111], device=DEVICE))
    assert_close_verbose(full[:, [1, 4, 6]], small, atol=1e-5, name="absent tasks")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("packed_dtype_only", "n_heads"), [(False, 2), (True, 2), (False, 1)])
def test_low_precision_flash_style(dtype: torch.dtype, packed_dtype_only: bool,
                                   n_heads: int) -> None:
    # one head: the launcher keeps the matrices in shared memory across tiles (persist)
    n = 6
    p32 = make_params(n, 32, 64, 2, n_heads, seed=7)
    masks = masks_covering(n).to(DEVICE)
    ref = mtgnet_forward(p32, masks).float()
    torch_lp = mtgnet_forward(p32.to(dtype), masks).float()
    if packed_dtype_only:   # fp32 weights, kernel computing in low precision
        got = tm.mtgnet_forward_triton(p32, masks, dtype=dtype, block_m=32)
    else:
        got = tm.mtgnet_forward_triton(p32.to(dtype), masks, block_m=32)
    assert got.dtype == dtype
    err_k = (got.float() - ref).abs().max().item()
    err_t = (torch_lp - ref).abs().max().item()
    assert err_k <= LOWP_RATIO * err_t + LOWP_FLOOR, (
        f"{dtype}: kernel error {err_k:.3g} > {LOWP_RATIO} x torch error {err_t:.3g} "
        f"+ {LOWP_FLOOR}")


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 8), n_heads=st.sampled_from([1, 2]), n_layers=st.integers(1, 2),
       seed=st.integers(0, 2**16), temperature=st.floats(0.3, 3.0),
       data=st.data())
def test_forward_property_random(n: int, n_heads: int, n_layers: int, seed: int,
                                 temperature: float, data: st.DataObject) -> None:
    params = make_params(n, 16, 32, n_layers, n_heads, seed=seed, temperature=temperature)
    masks = data.draw(st.lists(st.integers(1, (1 << n) - 1), min_size=1, max_size=12))
    mt = torch.tensor(masks, dtype=torch.int64, device=DEVICE)
    got = tm.mtgnet_forward_triton(params, mt, block_m=4)
    assert_close_verbose(got, mtgnet_forward(params, mt), atol=FP32_ATOL, name="property")


def test_permuting_masks_permutes_rows() -> None:
    params = make_params(5, seed=11)
    masks = masks_covering(5).to(DEVICE)
    perm = torch.randperm(masks.shape[0], generator=torch.Generator().manual_seed(0)).to(DEVICE)
    a = tm.mtgnet_forward_triton(params, masks, block_m=8)
    b = tm.mtgnet_forward_triton(params, masks[perm], block_m=4)
    assert_close_verbose(b, a[perm], atol=1e-5, name="permutation")


# ------------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k", "block_m", "n_programs"),
                         [(3, 6, 2, 2),     # k > masks per task: -inf / 0 slots
                          (6, 5, 8, 3),     # k not a power of two, several programs merge
                          (9, 16, 16, 2)])
def test_topk_matches_dense(n: int, k: int, block_m: int, n_programs: int) -> None:
    params = make_params(n, 16, 32, 2, 2, seed=n)
    masks = masks_covering(n, n_random=30, seed=1).unique().to(DEVICE)
    gains = mtgnet_forward(params, masks).cpu()
    vals, got = tm.mtgnet_topk_triton(params, masks, k, block_m=block_m, n_programs=n_programs)
    assert vals.shape == (n, k) and got.shape == (n, k)
    assert bool((vals[:, :-1] >= vals[:, 1:]).all()), "top-k values must be sorted, best first"
    check_topk(vals.cpu(), got.cpu(), gains, masks.cpu(), k, atol=FP32_ATOL)
    # the chunked torch path obeys the same contract
    tv, tmk = dispatch.mtgnet_topk(params, masks, k, backend="torch", chunk=7)
    check_topk(tv.cpu(), tmk.cpu(), gains, masks.cpu(), k, atol=1e-5)


@pytest.mark.parametrize(("n", "block_m", "n_programs"), [(4, 2, 3), (7, 32, 2), (10, 16, 2)])
def test_marginal_matches_dense(n: int, block_m: int, n_programs: int) -> None:
    params = make_params(n, 16, 32, 2, 1, seed=100 + n)
    masks = masks_covering(n, n_random=40, seed=2).to(DEVICE)
    gains = mtgnet_forward(params, masks).float()
    best = torch.linspace(-0.5, 0.5, n, device=DEVICE)
    member = member_from_masks(masks, n)
    ref = ((gains - best).clamp(min=0) * member).sum(1)
    res = tm.mtgnet_marginal_triton(params, masks, best, block_m=block_m, n_programs=n_programs)
    assert res.marginals is not None
    assert_close_verbose(res.marginals, ref, atol=FP32_ATOL, name="marginals")
    assert abs(res.best_value - float(ref.max())) <= FP32_ATOL
    row = masks.tolist().index(res.best_mask)          # test masks are < 2^63
    assert abs(float(ref[row]) - float(ref.max())) <= FP32_ATOL, "best_mask is not a maximiser"
    part = tm.mtgnet_marginal_triton(params, masks[:12], best, return_marginals=False)
    assert part.marginals is None
    assert abs(part.best_value - float(ref[:12].max())) <= FP32_ATOL
    tres = dispatch.mtgnet_marginal(params, masks, best, backend="torch", chunk=13)
    assert_close_verbose(tres.marginals, ref, atol=1e-5, rtol=1e-6, name="torch marginals")
    assert tres.best_mask == int(masks[int(torch.argmax(ref))])


def test_marginal_ties_pick_first_candidate() -> None:
    # best = +inf: every marginal is exactly 0, so the first candidate must win.
    params = make_params(5, 16, 32, 1, 1)
    masks = torch.tensor([7, 3, 1, 31, 12], dtype=torch.int64, device=DEVICE)
    best = torch.full((5,), float("inf"), device=DEVICE)
    res = tm.mtgnet_marginal_triton(params, masks, best, block_m=2, n_programs=3)
    assert res.best_value == 0.0 and res.best_mask == 7


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not INTERPRETED, reason="CPU dispatch to the kernel needs the interpreter")
def test_dispatch_triton_on_cpu_under_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    params = make_params(4, seed=5, device="cpu")
    masks = masks_covering(4)
    got = dispatch.mtgnet_predict(params, masks, backend="triton")
    ref = dispatch.mtgnet_predict(params, masks, backend="torch")
    assert_close_verbose(got, ref, atol=FP32_ATOL, name="dispatch")
    assert torch.equal(dispatch.mtgnet_predict(params, masks), mtgnet_forward(params, masks)), \
        "auto on CPU must be the torch reference"
    assert dispatch.resolve_backend("auto", params) == "torch"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(InputError, match="CUDA"):
        dispatch.mtgnet_predict(params, masks, backend="triton")


@pytest.mark.skipif(not INTERPRETED, reason="CPU dispatch to the kernel needs the interpreter")
def test_dispatch_repacks_after_in_place_update() -> None:
    params = make_params(4, seed=6, device="cpu")
    masks = masks_covering(4)
    first = dispatch.mtgnet_predict(params, masks, backend="triton")
    assert dispatch.packed_params(params) is dispatch.packed_params(params)
    detached = MTGNetParams(params.embedding.detach(), params.layers, params.w_head,
                            params.b_head, params.n_heads, params.temperature, params.ln_eps)
    assert dispatch.packed_params(detached) is dispatch.packed_params(params), "same weights"
    with torch.no_grad():
        params.embedding.mul_(-1.0)    # in place: same tensor object, new version
    second = dispatch.mtgnet_predict(params, masks, backend="triton")
    assert_close_verbose(second, mtgnet_forward(params, masks), atol=FP32_ATOL, name="repacked")
    assert not torch.allclose(first, second)


def test_dispatch_rejects_unknown_backend() -> None:
    params = make_params(3, device="cpu")
    with pytest.raises(ValueError, match="backend"):
        dispatch.mtgnet_predict(params, torch.tensor([1]), backend="cuda")  # type: ignore[arg-type]


def test_importing_mtgfast_and_dispatch_does_not_import_triton() -> None:
    code = ("import sys, mtgfast, mtgfast.ops.dispatch; "
            "sys.exit(1 if 'triton' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------------------------------------
# input validation at the public boundary
# ------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors() -> None:
    params = make_params(4)
    ok = torch.tensor([1, 3], dtype=torch.int64, device=DEVICE)
    with pytest.raises(InputError, match="empty or has bits"):
        tm.mtgnet_forward_triton(params, torch.tensor([0], device=DEVICE))
    with pytest.raises(InputError, match="empty or has bits"):
        tm.mtgnet_forward_triton(params, torch.tensor([1 << 4], device=DEVICE))
    with pytest.raises(InputError, match="empty or has bits"):
        tm.mtgnet_forward_triton(params, torch.tensor([-1], device=DEVICE))   # bit 63 set
    with pytest.raises(InputTypeError, match="int64"):
        tm.mtgnet_forward_triton(params, ok.to(torch.int32))
    with pytest.raises(InputError, match="1-D"):
        tm.mtgnet_forward_triton(params, ok.view(1, 2))
    with pytest.raises(InputTypeError):
        tm.mtgnet_forward_triton(params, [1, 3])   # type: ignore[arg-type]
    with pytest.raises(InputError, match="block_m"):
        tm.mtgnet_forward_triton(params, ok, block_m=3)
    with pytest.raises(InputError, match="k must be"):
        tm.mtgnet_topk_triton(params, ok, 0)
    # ints are mtgfast.checks' ints: numpy integers pass, bools and floats are type errors
    with pytest.raises(InputTypeError, match="k must be an int, got bool"):
        tm.mtgnet_topk_triton(params, ok, True)
    with pytest.raises(InputTypeError, match="block_m must be None or an int, got float"):
        tm.mtgnet_forward_triton(params, ok, block_m=2.0)
    with pytest.raises(InputError, match="n_programs must be a positive int, got 0"):
        tm.mtgnet_topk_triton(params, ok, 2, n_programs=0)
    with pytest.raises(InputError, match="n_heads must be a positive int"):
        tm.pack_params(dataclasses.replace(params, n_heads=0))
    assert check_k(np.int64(3)) == 3 and check_chunk(np.int32(5)) == 5
    with pytest.raises(InputError, match="best must have shape"):
        tm.mtgnet_marginal_triton(params, ok, torch.zeros(3, device=DEVICE))
    with pytest.raises(InputError, match="divisible"):
        tm.pack_params(make_params(4, d=30, n_heads=4))
    with pytest.raises(InputTypeError, match="compute dtype"):
        tm.pack_params(params, torch.float64)
    with pytest.raises(InputTypeError, match="MTGNetParams"):
        tm.pack_params("weights")   # type: ignore[arg-type]


def test_numpy_uint64_masks_and_empty_input() -> None:
    import numpy as np

    params = make_params(3)
    got = tm.mtgnet_forward_triton(params, np.array([1, 5, 7], dtype=np.uint64))
    ref = mtgnet_forward(params, torch.tensor([1, 5, 7], device=DEVICE))
    assert_close_verbose(got, ref, atol=FP32_ATOL, name="numpy masks")
    assert tm.mtgnet_forward_triton(params, torch.empty(0, dtype=torch.int64)).shape == (0, 3)


# ------------------------------------------------------------------------------------------------
# real GPU (skipped without CUDA; deselected by default, run with -m gpu)
# ------------------------------------------------------------------------------------------------
cuda_only = pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n_heads", [1, 2, 4])
def test_gpu_n27_matches_reference(dtype: torch.dtype, n_heads: int) -> None:
    n = 27
    p32 = make_params(n, 64, 128, 2, n_heads, seed=27, device="cuda")
    masks = torch.cat([masks_covering(n, n_random=20000)]).cuda()
    ref = mtgnet_forward(p32, masks).float()
    got = dispatch.mtgnet_predict(p32.to(dtype), masks)          # auto -> triton on CUDA
    if dtype == torch.float32:
        assert_close_verbose(got, ref, atol=FP32_ATOL, name="gpu fp32")
    else:
        err_k = (got.float() - ref).abs().max().item()
        err_t = (mtgnet_forward(p32.to(dtype), masks).float() - ref).abs().max().item()
        assert err_k <= LOWP_RATIO * err_t + LOWP_FLOOR, (err_k, err_t)


@pytest.mark.gpu
@cuda_only
def test_gpu_reductions_n20() -> None:
    n = 20
    params = make_params(n, 64, 128, 2, 2, seed=20, device="cuda")
    masks = torch.randint(1, 1 << n, (200_000,), generator=torch.Generator().manual_seed(0)).cuda()
    gains = mtgnet_forward(params, masks)
    vals, got = tm.mtgnet_topk_triton(params, masks.unique(), 16)
    u = masks.unique()
    check_topk(vals.cpu(), got.cpu(), mtgnet_forward(params, u).cpu(), u.cpu(), 16, atol=FP32_ATOL)
    best = torch.zeros(n, device="cuda")
    res = tm.mtgnet_marginal_triton(params, masks, best)
    ref = (gains.clamp(min=0) * member_from_masks(masks, n)).sum(1)
    assert_close_verbose(res.marginals, ref, atol=1e-3, name="gpu marginals")
    assert abs(res.best_value - float(ref.max())) <= 1e-3


def _launch_grid() -> list[tuple[KernelLayout, int, int, int, torch.dtype | None, int]]:
    """(layout, pp, stride, mode, dtype, arch) over every bucket of N = 1..64 (one shape)."""
    out = []
    for n in range(1, 65):
        lay = KernelLayout(n, 64, 64, 1, 2)
        for dense in (True, False):
            for b in common.slot_buckets(lay, dense=dense):
                for mode in (0, 1, 2):
                    for dt in (None, torch.float32, torch.bfloat16):
                        for arch in (80, 90):
                            out.append((lay, b.pp, b.stride, mode, dt, arch))
    return out


def test_every_launch_rule_decides_some_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """No dead exception in ``common.LAUNCH_RULES``: dropping any one of them changes the
    launcher's choice somewhere on the bucket grid (rows, tile or register cap)."""
    grid = _launch_grid()

    def choice(lay: KernelLayout, pp: int, stride: int, mode: int, dt: torch.dtype | None,
               arch: int) -> common.LaunchConfig | str:
        try:
            return common.launch_config(lay, pp, mode, dtype=dt, arch=arch, stride=stride)
        except ValueError as exc:   # dense strides on sm_80
            return str(exc)

    def choices() -> list[common.LaunchConfig | str]:
        return [choice(*g) for g in grid]

    base = choices()
    rules = common.LAUNCH_RULES
    for i, rule in enumerate(rules):
        monkeypatch.setattr(common, "LAUNCH_RULES", rules[:i] + rules[i + 1:])
        assert choices() != base, f"rule {i} ({rule.why[:40]}...) decides nothing"
    monkeypatch.setattr(common, "LAUNCH_RULES", rules)
    # where they apply: sm_80 32-task slots one combination per tile; persist_ln caps at 128
    lay = KernelLayout(27, 64, 64, 1, 2)
    assert common.launch_config(KernelLayout(32, 64, 64, 1, 2), 32, 0, dtype=torch.bfloat16,
                                arch=80).block_m == 1
    caps = {common.launch_config(lay, b.pp, m, dtype=torch.bfloat16, stride=b.stride).maxnreg
            for b in common.slot_buckets(lay) for m in (0, 2)}
    assert caps == {128, 136}


def test_maxnreg_override_wins_over_the_register_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """``common.MAXNREG`` (the static tools' override) is the cap of every configuration, and
    the register rules are then not consulted at all; rows and tiles still follow theirs."""
    lay = KernelLayout(27, 64, 64, 1, 2)
    configs = [(b.pp, b.stride, m) for b in common.slot_buckets(lay) for m in (0, 1, 2)]
    base = [common.launch_config(lay, pp, m, dtype=torch.bfloat16, stride=s)
            for pp, s, m in configs]
    consulted: list[str] = []
    real = common.launch_rule

    def spy(sets: str, **where: object) -> common.LaunchRule | None:
        consulted.append(sets)
        return real(sets, **where)   # type: ignore[arg-type]

    monkeypatch.setattr(common, "launch_rule", spy)
    monkeypatch.setattr(common, "MAXNREG", 96)
    over = [common.launch_config(lay, pp, m, dtype=torch.bfloat16, stride=s)
            for pp, s, m in configs]
    assert {c.maxnreg for c in over} == {96}
    assert "maxnreg" not in consulted and "rows" in consulted
    assert [dataclasses.replace(c, maxnreg=None) for c in over] == \
        [dataclasses.replace(c, maxnreg=None) for c in base]
