"""Ahead-of-time compile of the MTG-Net kernel for a GPU target, without a GPU, and its SASS figures.

For each configuration the launcher can choose (``common.slot_buckets`` x ``common.launch_config``)
this compiles ``triton_mtgnet.kernel`` for sm_90 / sm_80, reads registers, stack (spills) and
shared memory from ``cuobjdump --dump-resource-usage``, and counts warp-instructions per
combination in the SASS of the tile loop. Results are cached as JSON under
``~/.cache/mtgfast/kernel-static`` (``MTGFAST_KERNEL_STATIC_CACHE``), keyed by the kernel's source
hash, the triton version and the configuration. Import with ``TRITON_INTERPRET`` unset.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import triton
from triton.backends.compiler import GPUTarget

from ..errors import InputError
from . import triton_mtgnet as tm
from .common import KernelLayout, combos_in_bucket, launch_config, slot_buckets
from .sass_phases import OPCODE_CLASSES, PHASES, sass_phases

__all__ = ["H100_WARP_INSTR_PER_S", "MODES", "OPCODE_CLASSES", "PHASES", "StaticConfig", "analyse",
           "cache_dir", "clear_cache", "configs", "count_sass", "ctas_per_sm", "popcount_mix",
           "tools_available"]

# H100 SXM issue rate: 132 SMs x 4 schedulers x 1.83 GHz (boost), one warp-instruction each per cycle.
H100_SMS, H100_SCHEDULERS, H100_CLOCK_HZ = 132, 4, 1.83e9
H100_WARP_INSTR_PER_S = H100_SMS * H100_SCHEDULERS * H100_CLOCK_HZ
# Per-SM limits used for CTAs per SM: (registers, warps, CTAs, shared memory bytes usable by CTAs).
_SM_LIMITS = {90: (65536, 64, 32, 228 * 1024), 80: (65536, 64, 32, 164 * 1024)}
_TC_OPS = ("HMMA", "HGMMA", "IMMA", "IGMMA", "DMMA", "QGMMA", "BMMA")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class StaticConfig:
    """One kernel specialisation to compile: model shape, dtype, mode, slot width, target."""

    n_tasks: int
    dim: int
    ffn_dim: int
    n_heads: int
    n_layers: int
    dtype: str            # "fp32" | "fp16" | "bf16"
    mode: str             # "predict" | "topk" | "marginal"
    pp: int
    arch: int             # 90 (H100) or 80 (A100)
    topk: int = 16
    exp_scores: bool = True   # layer-1 softmax from an exp2 table (False: the packer's fallback)
    stride: int = 0           # rows per combination (0: pp), the bucket's (``slot_buckets``)

    @property
    def layout(self) -> KernelLayout:
        return KernelLayout(self.n_tasks, self.dim, self.ffn_dim, self.n_heads, self.n_layers)


MODES = {"predict": 0, "topk": 1, "marginal": 2}
_FORMAT = 3   # bump when a cached row's fields change (2: per-phase profile, 3: its LN names)


def configs(n_tasks: Iterable[int], dtypes: Iterable[str], modes: Iterable[str],
            archs: Iterable[int], *, dim: int = 64, ffn_dim: int | None = None, n_heads: int = 1,
            n_layers: int = 2, topk: int = 16, exp_scores: bool = True) -> list[StaticConfig]:
    """Every configuration the launcher can choose for these models (one per popcount bucket,
    ``common.slot_buckets``)."""
    out = []
    for arch in archs:
        for n in n_tasks:
            lay = KernelLayout(n, dim, ffn_dim or dim, n_heads, n_layers)
            for dt in dtypes:
                for mode in modes:
                    if dt not in _DTYPES or mode not in MODES:
                        raise InputError(f"dtype must be one of {list(_DTYPES)} and mode one of "
                                         f"{list(MODES)}, got {dt!r}, {mode!r}")
                    for b in slot_buckets(lay, dense=arch >= 90):
                        out.append(StaticConfig(n, dim, ffn_dim or dim, n_heads, n_layers, dt,
                                                mode, b.pp, arch, topk, exp_scores, b.stride))
    return out


def tools_available() -> str | None:
    """None when ptxas and cuobjdump are usable; otherwise why not (a skip reason)."""
    for tool in ("ptxas", "cuobjdump"):
        if not os.access(_tool(tool), os.X_OK):
            return f"{tool} not found at {_tool(tool)}"
    if tm.interpreter_active():
        return "TRITON_INTERPRET is set: the kernel is an interpreted function, not compilable"
    return None


def _tool(name: str) -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def cache_dir() -> Path:
    """Where compiled-kernel figures are cached (JSON per configuration)."""
    env = os.environ.get("MTGFAST_KERNEL_STATIC_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mtgfast" / "kernel-static"


def _key(cfg: StaticConfig) -> str:
    src = tm.kernel.cache_key   # hash of the kernel's source and of every jit function it calls
    lc = launch_config(cfg.layout, cfg.pp, MODES[cfg.mode], topk=cfg.topk,
                       dtype=_DTYPES[cfg.dtype], arch=cfg.arch, stride=cfg.stride or None)
    blob = json.dumps([src, triton.__version__, asdict(cfg), asdict(lc), _FORMAT], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def analyse(cfg: StaticConfig, *, use_cache: bool = True) -> dict[str, Any]:
    """Compile ``cfg`` (or read the cache) and return its figures as a JSON-ready dict."""
    path = cache_dir() / f"{_key(cfg)}.json"
    if use_cache and path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    row = _compile_and_measure(cfg)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        tmp.replace(path)
    return row


def _compile_and_measure(cfg: StaticConfig) -> dict[str, Any]:
    dtype = _DTYPES[cfg.dtype]
    lc = launch_config(cfg.layout, cfg.pp, MODES[cfg.mode], topk=cfg.topk,
                       dtype=_DTYPES[cfg.dtype], arch=cfg.arch, stride=cfg.stride or None)
    row: dict[str, Any] = dict(asdict(cfg), popcounts=_bucket_range(cfg), block_m=lc.block_m,
                               num_warps=lc.num_warps, compiled=False)
    sig = tm.kernel_signature(dtype)
    cx = tm.kernel_constexprs(cfg.layout, lc, dtype, has_rows=True, store_marginals=True,
                              exp_scores=cfg.exp_scores)
    for k in cx:
        sig[k] = "constexpr"
    args = tm.kernel.arg_names
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(args)
             if sig.get(a, "").startswith("*")}
    t0 = time.perf_counter()
    try:
        src = triton.compiler.ASTSource(fn=tm.kernel, signature=sig, constexprs=cx, attrs=attrs)
        ck = triton.compile(src, target=GPUTarget("cuda", cfg.arch, 32),
                            options=lc.options())
    except Exception as e:  # noqa: BLE001 - a compile failure is a result to report
        row.update(error=_first_cause(e)[:800],
                   compile_s=round(time.perf_counter() - t0, 1))
        return row
    row["compile_s"] = round(time.perf_counter() - t0, 1)
    row["compiled"] = True
    with tempfile.TemporaryDirectory() as d:
        cubin = os.path.join(d, "k.cubin")
        with open(cubin, "wb") as f:
            f.write(ck.asm["cubin"])
        res = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", cubin],
                             capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin],
                              capture_output=True, text=True, check=True).stdout
        lined = subprocess.run([_tool("nvdisasm"), "-gi", "-c", cubin], capture_output=True,
                               text=True, check=False).stdout \
            if os.access(_tool("nvdisasm"), os.X_OK) else ""
    usage = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", res)}
    shared = max(int(getattr(ck.metadata, "shared", 0)), usage.get("SHARED", 0))
    regs = usage.get("REG", 0)
    row.update(registers=regs, spill_bytes=usage.get("STACK", 0) + usage.get("LOCAL", 0),
               shared_bytes=shared, ctas_per_sm=ctas_per_sm(cfg.arch, regs, lc.num_warps, shared))
    row.update(count_sass(sass, n_layers=cfg.n_layers))
    per_tile = row["tile_instructions"] * lc.num_warps
    row["instructions_per_combination"] = round(per_tile / lc.block_m, 1)
    row["tensor_core_per_combination"] = round(row["tile_tensor_core"] * lc.num_warps
                                               / lc.block_m, 2)
    row["bound_combos_per_s"] = _bound(row["instructions_per_combination"])
    # where they go: per phase of the forward, per combination (``sass_phases``)
    scale = lc.num_warps / lc.block_m
    row["phases"] = {ph: {c: round(v * scale, 1) for c, v in cls.items()}
                     for ph, cls in sass_phases(lined, tm.__file__).items()} if lined else {}
    return row


def _first_cause(e: BaseException) -> str:
    """The innermost cause of a (chained) compile error: the line that says what went wrong."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def _bucket_range(cfg: StaticConfig) -> list[int]:
    for b in slot_buckets(cfg.layout, dense=cfg.arch >= 90):
        if b.stride == (cfg.stride or cfg.pp) and b.pp == cfg.pp:
            return [b.lo, b.hi]
    raise InputError(f"no launcher bucket has stride {cfg.stride} and {cfg.pp} slots")


def _bound(instr_per_combo: float) -> float:
    return float(f"{H100_WARP_INSTR_PER_S / instr_per_combo:.4g}") if instr_per_combo else 0.0


def ctas_per_sm(arch: int, regs: int, warps: int, shared: int) -> int:
    """Resident CTAs per SM: the tightest of registers, warps, CTA slots and shared memory."""
    reg_file, max_warps, max_ctas, smem = _SM_LIMITS.get(arch, _SM_LIMITS[90])
    regs_per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256     # allocation unit: 256 per warp
    by_regs = reg_file // (regs_per_warp * warps)
    by_smem = smem // (shared + 1024) if shared else max_ctas   # 1 KB reserved per CTA
    return int(min(by_regs, max_warps // warps, max_ctas, by_smem))


_INSTR = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRA = re.compile(r"\bBRA(?:\.\S+)?\s+(?:`\(\.L_x_\d+\)\s*)?(0x[0-9a-f]+)")


def count_sass(sass: str, *, n_layers: int = 2) -> dict[str, Any]:
    """Warp-instructions one warp issues per tile: the body of the tile loop (the outermost
    backward branch), inner runtime loops weighted by their trip count (the layer loop: L - 1).

    Straight-line count: predicated-off instructions count as issued (they are), forward
    branches are assumed taken through (every path counted), the per-program prologue and
    epilogue (amortised over many tiles) are left out.
    """
    ins = []
    for line in sass.splitlines():
        m = _INSTR.match(line)
        if m:
            ins.append((int(m.group(1), 16), m.group(2)))
    loops = []
    for addr, text in ins:
        m = _BRA.search(text)
        if m and int(m.group(1), 16) < addr:
            loops.append((int(m.group(1), 16), addr))
    opcode: Counter[str] = Counter()
    total_tc = sum(1 for _, t in ins if _opcode(t) in _TC_OPS)
    if not loops:
        return dict(tile_instructions=len(ins), tile_tensor_core=total_tc, loop_model="no loop",
                    total_instructions=len(ins), opcodes={})
    lo, hi = max(loops, key=lambda ab: ab[1] - ab[0])
    inner = [(a, b) for a, b in loops if lo <= a and b <= hi and (a, b) != (lo, hi)]
    weight = {}
    model = "tile loop"
    if len(inner) == 1:
        weight[inner[0]] = max(0, n_layers - 1)
        model = "tile loop, layer loop x (L - 1)"
    elif inner:
        model = f"tile loop, {len(inner)} inner loops counted once (unknown trip counts)"
    count = 0
    tc = 0
    for addr, text in ins:
        if not lo <= addr <= hi:
            continue
        w = 1
        for (a, b), trips in weight.items():
            if a <= addr <= b:
                w = trips
        op = _opcode(text)
        opcode[op] += w
        count += w
        tc += w if op in _TC_OPS else 0
    return dict(tile_instructions=count, tile_tensor_core=tc, loop_model=model,
                total_instructions=len(ins), opcodes=dict(opcode.most_common(12)))


def _opcode(text: str) -> str:
    text = re.sub(r"^@!?U?P\w+\s+", "", text)
    return text.split()[0].split(".")[0] if text else ""


def popcount_mix(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``"popcounts": "all"`` row per (N, dtype, mode, arch): the whole space's mix.

    Worst registers / spills / fewest CTAs over the buckets, instructions per combination
    averaged with the binomial counts of each bucket's popcounts, and the bound from that average.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["n_tasks"], r["dim"], r["dtype"], r["mode"], r["arch"]), []).append(r)
    out = []
    for (n, dim, dt, mode, arch), rs in groups.items():
        agg: dict[str, Any] = dict(n_tasks=n, dim=dim, dtype=dt, mode=mode, arch=arch,
                                   popcounts="all", pp=[r["pp"] for r in rs],
                                   compiled=all(r["compiled"] for r in rs))
        if agg["compiled"]:
            w = [combos_in_bucket(n, range(r["popcounts"][0], r["popcounts"][1] + 1)) for r in rs]
            ipc = sum(wi * r["instructions_per_combination"] for wi, r in zip(w, rs)) / sum(w)
            agg.update(registers=max(r["registers"] for r in rs),
                       spill_bytes=max(r["spill_bytes"] for r in rs),
                       shared_bytes=max(r["shared_bytes"] for r in rs),
                       num_warps=max(r["num_warps"] for r in rs),
                       ctas_per_sm=min(r["ctas_per_sm"] for r in rs),
                       tensor_core_per_combination=round(sum(
                           wi * r["tensor_core_per_combination"] for wi, r in zip(w, rs))
                           / sum(w), 2),
                       instructions_per_combination=round(ipc, 1), bound_combos_per_s=_bound(ipc),
                       phases=_mix_phases([r.get("phases") or {} for r in rs], w))
        else:
            agg.update(registers=None, spill_bytes=None, instructions_per_combination=None,
                       bound_combos_per_s=None)
        out.append(agg)
    return out


def _mix_phases(parts: list[dict[str, dict[str, float]]],
                weights: list[int]) -> dict[str, dict[str, float]]:
    """Per-phase figures of the buckets averaged with their combination counts."""
    total = sum(weights)
    out: dict[str, dict[str, float]] = {}
    for ph in PHASES:
        cls: dict[str, float] = {}
        for part, w in zip(parts, weights):
            for c, v in part.get(ph, {}).items():
                cls[c] = cls.get(c, 0.0) + v * w / total
        if cls:
            out[ph] = {c: round(v, 1) for c, v in cls.items()}
    return out


def clear_cache() -> None:
    """Remove every cached figure (next run compiles cold)."""
    shutil.rmtree(cache_dir(), ignore_errors=True)
