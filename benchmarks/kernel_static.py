"""Static figures of the MTG-Net Triton kernel compiled for sm_90 / sm_80 on a machine without a GPU.

    python benchmarks/kernel_static.py [--json] [--n 27 ...] [--dtype bf16 ...] [--mode predict ...]
                                       [--arch 90 ...] [--dim 64] [--ffn 64] [--heads 1] [--layers 2]

Per configuration the launcher can choose (one per popcount bucket / slot width PP): registers,
spill bytes, shared memory, warps, CTAs per SM, warp-instructions per combination counted in the
SASS of the tile loop, tensor-core instructions, and the issue-rate bound on an H100:
132 SMs x 4 schedulers x 1.83 GHz = 9.66e11 warp-instructions/s divided by instructions per
combination. Plus, per (N, dtype, mode, arch), a ``"popcounts": "all"`` row for the whole space's
popcount mix (worst registers / spills, binomially weighted instructions). Compiles are cached
(``mtgfast.ops.kernel_static.cache_dir()``); a cold run of everything compiles ~230 kernels.
Defaults: the MTGNet estimator's shape (D = 64, F = D, 1 head, 2 layers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.pop("TRITON_INTERPRET", None)   # compile for real, not for the interpreter

from mtgfast.ops import kernel_static as ks  # noqa: E402

ALL_N = [1, 5, 16, 17, 27, 33, 64]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON list of rows on stdout")
    ap.add_argument("--n", type=int, nargs="+", default=ALL_N)
    ap.add_argument("--dtype", nargs="+", default=["bf16", "fp16", "fp32"],
                    choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--mode", nargs="+", default=list(ks.MODES), choices=list(ks.MODES))
    ap.add_argument("--arch", type=int, nargs="+", default=[90, 80], choices=[90, 80])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=None, help="feed-forward width (default: dim)")
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--topk", type=int, default=16, help="k of the top-k mode")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--no-exp-scores", action="store_true",
                    help="compile the layer-1 softmax fallback (score spread > EXP_SPREAD_MAX)")
    ap.add_argument("--profile", action="store_true",
                    help="also print where the instructions go: per phase of the forward and "
                         "opcode class, per combination (whole-space rows)")
    a = ap.parse_args(argv)
    why = ks.tools_available()
    if why:
        print(f"cannot compile: {why}", file=sys.stderr)
        return 2
    cfgs = ks.configs(a.n, a.dtype, a.mode, a.arch, dim=a.dim, ffn_dim=a.ffn, n_heads=a.heads,
                      n_layers=a.layers, topk=a.topk, exp_scores=not a.no_exp_scores)
    rows = []
    for i, c in enumerate(cfgs, 1):
        r = ks.analyse(c, use_cache=not a.no_cache)
        rows.append(r)
        if not a.json:
            print(f"[{i}/{len(cfgs)}] {_line(r)}", file=sys.stderr, flush=True)
    rows += ks.popcount_mix(rows)
    if a.json:
        slim = [{k: v for k, v in r.items() if k != "opcodes"} for r in rows]
        json.dump(slim, sys.stdout, indent=1)
        print()
        return 0
    print(_table(rows))
    if a.profile:
        for r in rows:
            if r["popcounts"] == "all" and r.get("phases"):
                print(f"\n{_profile(r)}")
    print(f"\nbound = {ks.H100_WARP_INSTR_PER_S:.3g} warp-instr/s (H100: {ks.H100_SMS} SMs x "
          f"{ks.H100_SCHEDULERS} schedulers x {ks.H100_CLOCK_HZ / 1e9:.2f} GHz) / instr per "
          "combination; static counts from the SASS, no GPU.")
    return 0


def _line(r: dict) -> str:
    if not r["compiled"]:
        return f"N={r['n_tasks']} {r['dtype']} {r['mode']} rows={_rows(r)} sm_{r['arch']}: " \
               f"COMPILE ERROR {r.get('error', '')}"
    return (f"N={r['n_tasks']} {r['dtype']} {r['mode']} rows={_rows(r)} sm_{r['arch']}: "
            f"{r['registers']} regs, {r['spill_bytes']} B spill, "
            f"{r['instructions_per_combination']} instr/combo ({r.get('compile_s', '?')} s)")


def _profile(r: dict) -> str:
    """One whole-space row's instructions per combination by phase and opcode class."""
    classes = list(ks.OPCODE_CLASSES)
    lines = [f"N = {r['n_tasks']} {r['dtype']} {r['mode']} sm_{r['arch']}, whole-space mix: "
             "warp-instructions per combination by phase",
             "| phase | total | share | " + " | ".join(classes) + " |",
             "| --- " * (len(classes) + 3) + "|"]
    tot = sum(v["total"] for v in r["phases"].values())
    for ph, v in r["phases"].items():
        lines.append(f"| {ph} | {v['total']:.0f} | {100 * v['total'] / tot:.0f}% | "
                     + " | ".join(f"{v.get(c, 0):.0f}" for c in classes) + " |")
    return "\n".join(lines)


def _rows(r: dict) -> str:
    """Rows per combination / slot width of one bucket (the mix row: its buckets' slot widths)."""
    if r["popcounts"] == "all":
        return str(r["pp"])
    return f"{r.get('stride') or r['pp']}/{r['pp']}"


def _table(rows: list[dict]) -> str:
    head = ("N", "dtype", "mode", "sm", "popcounts", "rows/slots", "combos/tile", "regs",
            "spill B", "smem KB",
            "warps", "CTA/SM", "instr/combo", "TC/combo", "bound combos/s")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        pc = r["popcounts"] if r["popcounts"] == "all" else f"{r['popcounts'][0]}-{r['popcounts'][1]}"
        if not r["compiled"]:
            lines.append(" | ".join([str(r["n_tasks"]), r["dtype"], r["mode"], str(r["arch"]), pc,
                                     _rows(r), "", "compile error"] + [""] * 7))
            continue
        lines.append(" | ".join(str(x) for x in (
            r["n_tasks"], r["dtype"], r["mode"], r["arch"], pc, _rows(r),
            r.get("block_m", ""), r["registers"],
            r["spill_bytes"], round(r["shared_bytes"] / 1024, 1), r["num_warps"], r["ctas_per_sm"],
            r["instructions_per_combination"], r["tensor_core_per_combination"],
            f"{r['bound_combos_per_s']:.3g}")))
    return "\n".join("| " + ln + " |" for ln in lines)


if __name__ == "__main__":
    sys.exit(main())
