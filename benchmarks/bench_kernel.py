"""Throughput of batched MTG-Net inference (combinations per second) on one CUDA GPU.

Backends in one run, N = 27 tasks, D = 64, F = 128, 2 layers, 2 heads: the fused Triton kernel
(fp32, bf16), PyTorch eager (fp32, bf16), eager with scaled_dot_product_attention (bf16), and
torch.compile of the reference (bf16); plus the full space (all 2^27 - 1 masks) and the
beam-search marginal reduction. Each benchmark checks its numbers against the fp32 reference and
records combos/s, FLOP/s (explicit counts below) and bytes moved in ``extra_info``.
Skipped without CUDA. ``python benchmarks/bench_kernel.py`` prints the same table without pytest.
Anchors measured on one H100 with torch 2.11: eager fp32 2.7M combos/s, torch.compile bf16
11.7M combos/s; target for the kernel >= 130M combos/s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from mtgfast.ops.reference import (
    LayerParams,
    MTGNetParams,
    member_from_masks,
    mtgnet_forward,
    mtgnet_forward_dense,
)

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

N_TASKS, DIM, FFN, N_LAYERS, N_HEADS = 27, 64, 128, 2, 2
N_MASKS = 1 << 21
CHUNK = 1 << 18


# ------------------------------------------------------------------------------------------------
# explicit work counts (per combination)
# ------------------------------------------------------------------------------------------------
def reference_flops(n: int = N_TASKS, d: int = DIM, f: int = FFN, layers: int = N_LAYERS) -> int:
    """Dense reference: every layer on all n tokens (QKV, QK^T, PV, W_o, FFN), then the head."""
    per_layer = 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * f
    return layers * per_layer + 2 * n * d


def kernel_flops(slots: int, n: int = N_TASKS, d: int = DIM, f: int = FFN,
                 layers: int = N_LAYERS, heads: int = N_HEADS) -> int:
    """Kernel, one combination run with ``slots`` (PP) token rows; padded widths as the kernel.

    Layer 1 is P (PP x NP per head) @ (V W_o) plus the FFN; later layers are full layers on PP rows.
    """
    npad = max(16, 1 << (n - 1).bit_length())
    dh = max(16, 1 << (d // heads - 1).bit_length())
    first = 2 * slots * heads * npad * d + 2 * 2 * slots * d * f
    general = (2 * slots * d * 3 * heads * dh + 2 * 2 * heads * slots * slots * dh
               + 2 * slots * heads * dh * d + 2 * 2 * slots * d * f)
    return (first + (layers - 1) * general if layers else 0) + 2 * slots * d


def kernel_flops_for(masks: torch.Tensor) -> float:
    """Mean kernel FLOPs per combination of ``masks``, given the popcount buckets that run them."""
    from mtgfast.ops.triton_mtgnet import popcount64

    pc = popcount64(masks)
    small = float((pc <= 16).float().mean())
    return small * kernel_flops(16) + (1 - small) * kernel_flops(32)


def kernel_bytes(n: int = N_TASKS, out_bytes: int = 2) -> int:
    """HBM traffic of the gains kernel per combination: one int64 mask in, n gains out."""
    return 8 + n * out_bytes


# ------------------------------------------------------------------------------------------------
# fixtures and competing implementations
# ------------------------------------------------------------------------------------------------
def make_params(seed: int = 0) -> MTGNetParams:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    d, f = DIM, FFN
    layers = [LayerParams(r(d, 3 * d, scale=0.15), r(3 * d), r(d, d, scale=0.15), r(d), 1 + r(d),
                          r(d), r(d, f, scale=0.15), r(f), r(f, d, scale=0.1), r(d), 1 + r(d), r(d))
              for _ in range(N_LAYERS)]
    params = MTGNetParams(r(N_TASKS, d, scale=1.0), layers, r(d), r(()), N_HEADS, 1.0, 1e-5)
    return params.to("cuda")


def _sdpa_dense(params: MTGNetParams, member: torch.Tensor) -> torch.Tensor:
    """The reference with attention through F.scaled_dot_product_attention (boolean key mask)."""
    m, n = member.shape
    d, h = params.dim, params.n_heads
    dh = d // h
    x = params.embedding.unsqueeze(0).expand(m, n, d)
    key_mask = member[:, None, None, :]
    for lp in params.layers:
        q, k, v = (x @ lp.w_qkv + lp.b_qkv).split(d, dim=-1)
        q, k, v = (t.reshape(m, n, h, dh).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                           scale=1.0 / (math.sqrt(dh) * params.temperature))
        a = a.transpose(1, 2).reshape(m, n, d)
        x = F.layer_norm(x + a @ lp.w_o + lp.b_o, (d,), lp.ln1_w, lp.ln1_b, params.ln_eps)
        hid = torch.relu(x @ lp.w_1 + lp.b_1)
        x = F.layer_norm(x + hid @ lp.w_2 + lp.b_2, (d,), lp.ln2_w, lp.ln2_b, params.ln_eps)
    return (x @ params.w_head + params.b_head).masked_fill(~member, 0.0)


def _chunked(dense: Callable[[MTGNetParams, torch.Tensor], torch.Tensor]):
    def run(params: MTGNetParams, masks: torch.Tensor) -> torch.Tensor:
        out = torch.empty(masks.shape[0], params.n_tasks, dtype=params.embedding.dtype,
                          device=masks.device)
        with torch.no_grad():
            for s in range(0, masks.shape[0], CHUNK):
                member = member_from_masks(masks[s:s + CHUNK], params.n_tasks)
                out[s:s + CHUNK] = dense(params, member)
        return out
    return run


Predict = Callable[[MTGNetParams, torch.Tensor], torch.Tensor]


def backends() -> dict[str, tuple[torch.dtype, Predict]]:
    from mtgfast.ops.triton_mtgnet import mtgnet_forward_triton

    compiled = torch.compile(mtgnet_forward_dense, dynamic=False)
    return {
        "triton-fp32": (torch.float32, mtgnet_forward_triton),
        "triton-bf16": (torch.bfloat16, mtgnet_forward_triton),
        "eager-fp32": (torch.float32, lambda p, m: mtgnet_forward(p, m, chunk=CHUNK)),
        "eager-bf16": (torch.bfloat16, lambda p, m: mtgnet_forward(p, m, chunk=CHUNK)),
        "sdpa-bf16": (torch.bfloat16, _chunked(_sdpa_dense)),
        "compile-bf16": (torch.bfloat16, _chunked(compiled)),
    }


def _masks(n_masks: int = N_MASKS, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(1, 1 << N_TASKS, (n_masks,), generator=g, device="cuda")


def _check(got: torch.Tensor, params32: MTGNetParams, masks: torch.Tensor,
           dtype: torch.dtype) -> None:
    """fp32: atol 1e-4 vs the reference. Low precision: error <= 2x eager same-precision + 1e-3."""
    rows = masks[:4096]
    ref = mtgnet_forward(params32, rows).float()
    err = (got[:4096].float() - ref).abs().max().item()
    if dtype == torch.float32:
        assert err <= 1e-4, err
    else:
        err_t = (mtgnet_forward(params32.to(dtype), rows).float() - ref).abs().max().item()
        assert err <= 2 * err_t + 1e-3, (err, err_t)


def _record(benchmark, name: str, n_masks: int, flops_per: int, bytes_per: int | None) -> None:
    """Attach combos/s, TFLOP/s and GB/s to the benchmark (nothing when timing is disabled)."""
    if benchmark.stats is None:          # --benchmark-disable: the run only checked correctness
        return
    rate = n_masks / benchmark.stats.stats.mean
    benchmark.extra_info.update({
        "backend": name, "combos_per_s": rate, "flops_per_combo": flops_per,
        "tflops": rate * flops_per / 1e12,
        "bytes_per_combo": bytes_per,
        "gb_per_s": None if bytes_per is None else rate * bytes_per / 1e9,
    })


def _time(fn: Callable[[], object], reps: int = 3) -> float:
    fn()                                   # warm-up: compilation, autotuning, caches
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


# ------------------------------------------------------------------------------------------------
# benchmarks
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def params32() -> MTGNetParams:
    return make_params()


@pytest.mark.benchmark(group="kernel: predict N=27 D=64, 2M masks")
@pytest.mark.parametrize("backend", ["triton-fp32", "triton-bf16", "eager-fp32", "eager-bf16",
                                     "sdpa-bf16", "compile-bf16"])
def test_bench_predict(benchmark, params32: MTGNetParams, backend: str) -> None:
    dtype, fn = backends()[backend]
    params = params32.to(dtype)
    if backend.startswith("triton"):
        from mtgfast.ops.triton_mtgnet import pack_params
        params = pack_params(params)               # packed once, as dispatch caches it
    masks = _masks()
    fn(params, masks)                              # warm-up / compile outside the timing
    torch.cuda.synchronize()

    def run() -> torch.Tensor:
        out = fn(params, masks)
        torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    _check(out, params32, masks, dtype)
    flops = kernel_flops_for(masks) if backend.startswith("triton") else reference_flops()
    _record(benchmark, backend, masks.shape[0], flops,
            kernel_bytes(out_bytes=dtype.itemsize) if backend.startswith("triton") else None)


@pytest.mark.benchmark(group="kernel: full space N=27 bf16")
def test_bench_full_space_bf16(benchmark, params32: MTGNetParams) -> None:
    """All 2^27 - 1 combinations through the bf16 kernel, 2^24 masks per launch."""
    from mtgfast.ops.triton_mtgnet import mtgnet_forward_triton, pack_params

    packed = pack_params(params32, torch.bfloat16)
    total = (1 << N_TASKS) - 1
    step = 1 << 24
    sample = []

    def run() -> None:
        sample.clear()
        for s in range(1, total + 1, step):
            masks = torch.arange(s, min(s + step, total + 1), device="cuda")
            out = mtgnet_forward_triton(packed, masks)
            sample.append((masks[:256], out[:256]))
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=1, warmup_rounds=1)
    masks = torch.cat([m for m, _ in sample])
    got = torch.cat([o for _, o in sample])
    _check(got, params32, masks, torch.bfloat16)
    full_flops = sum(math.comb(N_TASKS, k) * kernel_flops(16 if k <= 16 else 32)
                     for k in range(1, N_TASKS + 1)) / total
    _record(benchmark, "triton-bf16-full", total, full_flops, kernel_bytes(out_bytes=2))


@pytest.mark.benchmark(group="kernel: beam marginal N=27, 2M masks")
@pytest.mark.parametrize("backend", ["triton-bf16", "torch-bf16"])
def test_bench_beam_marginal(benchmark, params32: MTGNetParams, backend: str) -> None:
    """Marginal gain vs a per-task best vector, reduced to the argmax; no (M, N) table stored."""
    from mtgfast.ops import dispatch

    params = params32.to(torch.bfloat16)
    masks = _masks()
    best = torch.linspace(-0.2, 0.2, N_TASKS, device="cuda")
    be = "triton" if backend.startswith("triton") else "torch"

    def run():
        res = dispatch.mtgnet_marginal(params, masks, best, return_marginals=False, backend=be)
        torch.cuda.synchronize()
        return res

    res = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    ref = dispatch.mtgnet_marginal(params32, masks, best, backend="torch")
    assert abs(res.best_value - ref.best_value) <= 0.05 * max(1.0, abs(ref.best_value))
    _record(benchmark, backend + "-marginal", masks.shape[0],
            kernel_flops_for(masks) if be == "triton" else reference_flops(),
            8 if be == "triton" else None)


def fitted_net_n27(n_estimators: int = 1):
    """A real (briefly) fitted 27-task MTGNet on CUDA: pairs and the full set of a random table."""
    import itertools

    import numpy as np
    from mtgfast import MTGNet
    from mtgfast.gains import GainTable

    rng = np.random.default_rng(0)
    masks = [(1 << a) | (1 << b) for a, b in itertools.combinations(range(N_TASKS), 2)]
    masks.append((1 << N_TASKS) - 1)
    m = np.array(masks, dtype=np.uint64)
    member = ((m[:, None] >> np.arange(N_TASKS, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    gains = np.where(member, rng.normal(0.0, 1.0, member.shape), np.nan)
    table = GainTable(m, gains, tuple(f"t{i}" for i in range(N_TASKS)))
    return MTGNet(dim=DIM, n_layers=N_LAYERS, n_estimators=n_estimators, max_epochs=20,
                  device="cuda").fit(table)


@pytest.mark.benchmark(group="kernel: whole space N=27 top-k + beam B=1..27")
def test_bench_whole_space(benchmark) -> None:
    """``score_whole_space``: 2^27 - 1 combinations x (1 + 27) passes, top-k and greedy picks."""
    from mtgfast import score_whole_space

    net = fitted_net_n27()

    def run():
        res = score_whole_space(net, topk=8, chunk=1 << 24, progress=False, max_seconds=600)
        torch.cuda.synchronize()
        return res

    res = benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    assert len(res.groupings) > 0 and res.combinations_per_pass == (1 << N_TASKS) - 1
    if benchmark.stats is not None:
        benchmark.extra_info.update(passes=res.passes, seconds=res.seconds,
                                    combos_per_s=res.passes * res.combinations_per_pass
                                    / res.seconds)


def main() -> None:
    """Print combos/s of every backend, the full space and the beam reduction in one run."""
    if not CUDA:
        raise SystemExit("needs a CUDA device")
    from mtgfast.ops import dispatch
    from mtgfast.ops.triton_mtgnet import mtgnet_forward_triton, pack_params

    p32 = make_params()
    masks = _masks()
    print(f"N={N_TASKS} D={DIM} F={FFN} layers={N_LAYERS} heads={N_HEADS} M={masks.shape[0]:,}  "
          f"ref {reference_flops() / 1e6:.2f} MFLOP/combo, "
          f"kernel {kernel_flops_for(masks) / 1e6:.2f}")
    for name, (dtype, fn) in backends().items():
        params = pack_params(p32.to(dtype)) if name.startswith("triton") else p32.to(dtype)
        out = fn(params, masks)
        _check(out, p32, masks, dtype)
        secs = _time(lambda: fn(params, masks))
        flops = kernel_flops_for(masks) if name.startswith("triton") else reference_flops()
        print(f"{name:14s} {masks.shape[0] / secs / 1e6:9.1f} M combos/s  "
              f"{masks.shape[0] * flops / secs / 1e12:7.1f} TFLOP/s")
    packed = pack_params(p32, torch.bfloat16)
    total, step = (1 << N_TASKS) - 1, 1 << 24

    def full() -> None:
        for s in range(1, total + 1, step):
            mtgnet_forward_triton(packed, torch.arange(s, min(s + step, total + 1), device="cuda"))

    secs = _time(full, 1)
    print(f"full space     {total / secs / 1e6:9.1f} M combos/s  ({secs:.2f} s for 2^27-1)")
    best = torch.zeros(N_TASKS, device="cuda")
    pb = p32.to(torch.bfloat16)
    for be in ("triton", "torch"):
        secs = _time(lambda: dispatch.mtgnet_marginal(pb, masks, best, return_marginals=False,
                                                      backend=be))
        print(f"marginal-{be:6s}{masks.shape[0] / secs / 1e6:9.1f} M combos/s")
    from mtgfast import score_whole_space

    net = fitted_net_n27()
    res = score_whole_space(net, topk=8, chunk=1 << 24, progress=True, max_seconds=600)
    print(f"whole space    {res.passes} passes x 2^27-1 in {res.seconds:.2f} s "
          f"({res.passes * res.combinations_per_pass / res.seconds / 1e6:.1f} M combos/s), "
          f"B=1..27 best average gains {[round(g.average, 3) for g in res.groupings][:5]}...")


if __name__ == "__main__":
    main()
