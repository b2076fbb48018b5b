"""Where the MTG-Net kernel's instructions go: the tile loop's SASS grouped by phase of the forward.

Reads ``nvdisasm -gi`` output (SASS with the line-info inline chain of every instruction) and
names each instruction of the tile loop by the source lines it came from: the kernel's step
(``# ---- step N`` comments) and, inside the layer helpers, the sub-phase (QKV, attention, W_o,
LayerNorms, FFN, head). Instructions whose location is Triton's own library with no caller (the
combine of a reduction) take the phase of the instruction before them. Imports no triton.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

__all__ = ["OPCODE_CLASSES", "PHASES", "opcode_class", "parse_sass_lines", "sass_phases"]

# Display order of the phases (anything unrecognised lands in "other").
PHASES = ("loop + masks -> slots (one-hot)", "layer 1: gather embeddings",
          "layer 1: gather scores", "layer 1: softmax", "layer 1: P @ VO", "layer 1: LN1",
          "layer 1: FFN", "layer 1: LN2", "layer 2..L: QKV", "layer 2..L: attention",
          "layer 2..L: W_o", "layer 2..L: LN1", "layer 2..L: FFN", "layer 2..L: LN2",
          "last LN + head", "epilogue (task layout, store / reduce)", "other")

# Opcode classes for the per-phase breakdown: memory traffic, tensor core, conversions, float math.
OPCODE_CLASSES = ("global ld/st", "shared ld/st + sync", "tensor core", "convert", "float",
                  "shuffle", "int / select / other")
_CLASS_OF = {**{op: "global ld/st" for op in ("LDG", "STG", "RED", "ATOM", "LDC")},
             **{op: "shared ld/st + sync" for op in ("STS", "LDS", "LDSM", "STSM", "BAR", "MEMBAR",
                                                     "FENCE", "DEPBAR", "SYNCS")},
             **{op: "tensor core" for op in ("HGMMA", "HMMA", "WARPGROUP", "WARPSYNC")},
             **{op: "convert" for op in ("F2FP", "F2F", "I2F", "F2I", "I2FP", "PRMT")},
             **{op: "float" for op in ("FADD", "FMUL", "FFMA", "FMNMX", "MUFU", "FSETP", "FSEL",
                                       "FCHK", "HADD2", "HMUL2", "HFMA2")},
             "SHFL": "shuffle"}


def opcode_class(instruction: str) -> str:
    """The class (``OPCODE_CLASSES``) of one SASS instruction (predicate and modifiers dropped)."""
    text = re.sub(r"^@!?U?P\w+\s+", "", instruction)
    op = text.split()[0].split(".")[0] if text else ""
    return _CLASS_OF.get(op, "int / select / other")


_LINE = re.compile(r'\s*//## File "([^"]*)", line (\d+)(?: inlined at "([^"]*)", line (\d+))?')
_INS = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_BRA = re.compile(r"\bBRA(?:\.\S+)?\s+`\((\.L_x_\d+)\)")


def parse_sass_lines(text: str) -> tuple[list[tuple[int, str, list[tuple[str, int]]]],
                                          dict[str, int]]:
    """(address, instruction, inline chain outer -> inner as (file, line)) per instruction,
    and the address of each branch label."""
    out: list[tuple[int, str, list[tuple[str, int]]]] = []
    pending: list[tuple[str, int, str | None, int | None]] = []
    chain: list[tuple[str, int]] = []
    labels: dict[str, int] = {}
    waiting: list[str] = []
    for ln in text.splitlines():
        m = _LINE.match(ln)
        if m:
            pending.append((m.group(1), int(m.group(2)), m.group(3),
                            int(m.group(4)) if m.group(4) else None))
            continue
        m = _LABEL.match(ln)
        if m:
            waiting.append(m.group(1))
            continue
        m = _INS.match(ln)
        if not m:
            continue
        if pending:
            inner = [(pending[0][0], pending[0][1])]
            inner += [(f, line) for _, _, f, line in pending if f is not None and line is not None]
            chain = inner[::-1]
            pending = []
        addr = int(m.group(1), 16)
        for lab in waiting:
            labels[lab] = addr
        waiting = []
        out.append((addr, m.group(2), chain))
    return out, labels


@lru_cache(maxsize=4)
def _functions(path: str) -> tuple[list[tuple[int, int, str]], list[str], list[tuple[int, int]]]:
    """Function line ranges, the source lines and the kernel's ``# ---- step N`` lines."""
    src = Path(path).read_text()
    lines = src.splitlines()
    funcs = [(n.lineno, n.end_lineno or n.lineno, n.name) for n in ast.walk(ast.parse(src))
             if isinstance(n, ast.FunctionDef)]
    steps = [(i + 1, int(m.group(1))) for i, ln in enumerate(lines)
             if (m := re.search(r"# ---- step (\d+)", ln))]
    return funcs, lines, steps


def _where(path: str, line: int) -> tuple[str, str, int]:
    """(function name, source text, step number within the kernel or 0) of one location."""
    funcs, lines, steps = _functions(path)
    name = next((f for a, b, f in sorted(funcs, key=lambda t: t[1] - t[0]) if a <= line <= b), "")
    step = max((s for ln, s in steps if ln <= line), default=0)
    return name, lines[line - 1] if 0 < line <= len(lines) else "", step


def _post(text: str, prefix: str) -> str:
    if any(w in text for w in ("_layer_norm(x_attn", "_ln_normalise(x_attn", "OB_R", "O_G1",
                               "_ln_normalise_to(x_attn",
                               "O_BO + DP", "O_BO + 2 * DP")):
        return prefix + "LN1"   # LN1 and its affine on the residual (elementwise or products)
    if "_ln_head" in text:
        return "last LN + head"
    if any(w in text for w in ("_layer_norm(acc", "_ln_normalise(acc", "_ln_normalise_to(acc")):
        return prefix + "LN2"
    return prefix + "FFN"


def _classify(chain: list[tuple[str, str, int]]) -> str | None:
    """Phase of one instruction from its chain of (function, text, step), kernel first."""
    if not chain or chain[0][0] != "_mtgnet_fwd_kernel":
        return None
    _, text, step = chain[0]
    if step <= 1:
        return PHASES[0]
    if step >= 4:
        return "epilogue (task layout, store / reduce)"
    sub = chain[1:]
    if step == 2 and "_post_attention" not in text:
        if "emb_ptr" in text or "_gather3(hot2, e" in text or "x = _gather3" in text:
            return "layer 1: gather embeddings"
        if "s1_ptr" in text or "_gather3(hot2, g" in text or "s = _gather3" in text:
            return "layer 1: gather scores"
        if any(w in text for w in ("_softmax2", "den", "e = tl.where", "p = e")):
            return "layer 1: softmax"
        if "vo" in text or "_mm(" in text:
            return "layer 1: P @ VO"
        return PHASES[0] if not sub else "other"
    if "_post_attention" in text and sub:
        return _post(sub[0][1], "layer 1: ")
    if "_general_layer" in text and sub:
        t2 = sub[0][1]
        if "_post_attention" in t2:
            return _post(sub[1][1], "layer 2..L: ") if len(sub) > 1 else "layer 2..L: FFN"
        if any(w in t2 for w in ("wq", "wk", "wv", "k = ", "v = ", "q = ", "xc = ", "acc = x +",
                                 "+ tl.load(vec_l + h", "OB_OF", "O_GI", "vin_l", "bo = ",
                                 "acc = _mm(ones, bo", "_residual_start(")):
            return "layer 2..L: QKV"   # with the residual's start (x + b_o, LN affine)
        if "wo" in t2 or "_mm(o2" in t2:
            return "layer 2..L: W_o"
        return "layer 2..L: attention"
    return "other"


def sass_phases(text: str, kernel_file: str) -> dict[str, dict[str, int]]:
    """Instructions one warp issues per tile, by phase and opcode class, over the tile loop.

    ``text`` is ``nvdisasm -gi`` output; ``kernel_file`` the kernel's source (for the chains).
    Returns ``{phase: {class: count, ..., "total": count}}``. Runtime inner loops are counted
    once (the 2-layer kernel has none).
    """
    ins, labels = parse_sass_lines(text)
    loops = []
    for addr, t, _ in ins:
        m = _BRA.search(t)
        if m and m.group(1) in labels and labels[m.group(1)] < addr:
            loops.append((labels[m.group(1)], addr))
    lo, hi = max(loops, key=lambda ab: ab[1] - ab[0]) if loops else (0, 1 << 62)
    kf = str(Path(kernel_file).resolve())
    counts: dict[str, Counter[str]] = {}
    last = "other"
    for addr, instr, chain in ins:
        if not lo <= addr <= hi:
            continue
        own = [_where(f, line) for f, line in chain if str(Path(f).resolve()) == kf]
        phase = _classify(own) if own and chain and str(Path(chain[0][0]).resolve()) == kf \
            else None
        last = phase or last
        c = counts.setdefault(last, Counter())
        c[opcode_class(instr)] += 1
        c["total"] += 1
    return {p: dict(counts[p]) for p in PHASES if p in counts}
