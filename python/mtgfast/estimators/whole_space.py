"""Score every combination of a fitted MTG-Net in chunks and group over the whole space.

For N tasks the space has 2^N - 1 combinations (134M at N = 27): they are generated chunk by chunk
on the device (an ``arange`` of mask values), scored (Triton kernel on CUDA, PyTorch reference on
the CPU) and reduced at once, so no ``[2^N, N]`` array ever exists. Two reductions: the per-task
top-k combinations, and the greedy marginal-gain search of the MTG-Net paper's appendix (each step
picks the combination with the largest ``sum_j max(0, y_j(C) - best_j)`` over the current
per-task best, one pass over the space per step). The best grouping for each budget is then
searched (``mtgfast.group``) on the pool of those candidates plus the singletons.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_int, check_real, is_int
from ..errors import InputError, InputTypeError
from ..grouping import Grouping, Uncovered, group
from ..ops.common import MAX_TOPK
from ..ops.dispatch import merge_topk, mtgnet_marginal, mtgnet_predict, mtgnet_topk, resolve_backend
from ..ops.reference import member_from_masks
from .mtgnet import MTGNet

__all__ = ["WholeSpaceResult", "score_whole_space"]

#: Default longest run :func:`score_whole_space` accepts before refusing (seconds, estimated).
DEFAULT_MAX_SECONDS = 3600.0


@dataclass(frozen=True, eq=False)
class WholeSpaceResult:
    """What one call over the whole space found (gains in the fitted table's unit).

    ``topk_values``/``topk_masks`` ``(N, k)``: per task the k combinations containing it with the
    largest predicted gain (best first; singletons count with gain 0). ``greedy_masks`` are the
    marginal-gain picks in order, ``greedy_marginals`` their marginal gains; ``groupings`` the
    best grouping per budget over the candidate pool (``pool_masks``).
    """

    n_tasks: int
    topk_values: np.ndarray
    topk_masks: np.ndarray
    greedy_masks: np.ndarray
    greedy_marginals: np.ndarray
    pool_masks: np.ndarray
    groupings: list[Grouping]
    backend: str
    passes: int
    seconds: float
    combinations_per_pass: int = field(default=0)


def _check_net(net: object) -> MTGNet:
    if not isinstance(net, MTGNet):
        raise InputTypeError(f"net must be a fitted MTGNet, got {type(net).__name__}")
    net._check_fitted()  # noqa: SLF001 - the estimator's own fitted check, same package
    # the chunked passes read the members' plain parameters: a prior would be dropped
    if net.token_prior is not None:
        raise InputError("score_whole_space cannot score an MTGNet with token_prior= (its "
                         "prior table covers only its own combinations); fit one without it")
    if net.attention_prior is not None:
        raise InputError("score_whole_space cannot score an MTGNet with attention_prior= (the "
                         "chunked passes have no attention bias); fit one without it")
    return net


def _check_budgets(budgets: object, n: int) -> list[int]:
    if budgets is None:
        return list(range(1, n + 1))
    if is_int(budgets):
        budgets = [int(budgets)]
    if not isinstance(budgets, (range, Sequence)) or isinstance(budgets, str):
        raise InputTypeError(f"budgets must be an int, a range or a sequence of ints, got "
                             f"{type(budgets).__name__}")
    out = [check_int("budget", b, 1, n, expected=f"in [1, {n}]") for b in budgets]
    if not out:
        raise InputError("budgets must not be empty")
    return out


def _free_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def chunk_bytes(n_tasks: int, chunk: int, n_members: int, dim: int, dev: torch.device) -> int:
    """Peak bytes one chunk needs: masks, member-mean gains (fp32), membership, and the scorer's
    working set (CPU reference: pieces of <= 2048 combinations x N tokens x D, ~8 live copies)."""
    per_combo = 8 + 4 * n_tasks * (2 + min(n_members, 2)) + n_tasks
    work = (min(chunk, 2048) if dev.type == "cpu" else chunk) * n_tasks * dim * 4 * 8
    return chunk * per_combo + work


def score_whole_space(net: MTGNet, *, topk: int = 8, budgets: int | Sequence[int] | range | None = None,
                      uncovered: Uncovered = "singleton", chunk: int = 1 << 18,
                      device: str | torch.device | None = None, progress: bool = True,
                      max_seconds: float = DEFAULT_MAX_SECONDS) -> WholeSpaceResult:
    """Scores all ``2^N - 1`` combinations of a fitted ``net`` (ensemble mean, as ``predict``)
    and returns per-task top-``topk``, the greedy marginal-gain picks and the best grouping per
    budget in ``budgets`` (default 1..N) over that candidate pool.

    Memory: O(``chunk`` * N) on the device, bounded by :func:`chunk_bytes` (~``chunk`` * N * 16 B
    plus the scorer's working set), never O(2^N). Time: ``1 + max(budgets)`` passes over the
    space (the first also feeds the top-k); before starting, one chunk is timed and the run is
    refused with an ``InputError`` naming the estimated seconds (and bytes) when it would exceed
    ``max_seconds`` (or the free memory). ``device`` defaults to the net's; CUDA uses the Triton
    kernel (its reduction modes for single-member nets), the CPU the chunked torch reference.
    """
    net = _check_net(net)
    if not isinstance(progress, (bool, np.bool_)):
        raise InputTypeError(f"progress must be a bool, got {progress!r}")
    n = int(net.n_tasks_)
    k = check_int("topk", topk, 1, MAX_TOPK, expected=f"in [1, {MAX_TOPK}]")
    bud = _check_budgets(budgets, n)
    chunk = check_int("chunk", chunk, 1, 1 << 30, expected="in [1, 2^30]")
    if uncovered not in ("singleton", "alone"):
        raise InputError(f"uncovered must be 'singleton' or 'alone', got {uncovered!r}")
    max_seconds = check_real("max_seconds", max_seconds, 0.0, finite=False,
                             expected="a positive number")
    if max_seconds <= 0:
        raise InputError(f"max_seconds must be a positive number, got {max_seconds!r}")
    if n > 62:
        raise InputError(f"the whole space of {n} tasks has 2^{n} - 1 combinations: too many to "
                         "score (at most 62 tasks, and in practice about 32)")
    params = net.member_params(device)
    dev = params[0].embedding.device
    total = (1 << n) - 1
    chunk = min(chunk, total)
    need = chunk_bytes(n, chunk, len(params), params[0].dim, dev)
    free = _free_bytes(dev)
    if need > free:
        raise InputError(f"chunk={chunk} needs about {need / 2**30:.2f} GiB on {dev}, "
                         f"{free / 2**30:.2f} GiB are free: lower chunk")
    backend = resolve_backend("auto", params[0])
    scale = float(net.scale_)
    # single-member nets on the kernel use its own reduction modes (no (chunk, N) gains)
    fast = backend == "triton" and len(params) == 1 and scale > 0
    passes = 1 + max(bud)

    # -- estimate the run from one timed chunk, refuse what cannot finish ----------------------
    probe = min(chunk, 4096, total)
    probe_masks = _masks(1, 1 + probe, dev, n)
    _chunk_gains(params, probe_masks, scale)            # warm-up (the kernel compiles once)
    t0 = time.perf_counter()
    _chunk_gains(params, probe_masks, scale)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    rate = probe / max(time.perf_counter() - t0, 1e-9)
    est = passes * total / rate
    if est > max_seconds:
        raise InputError(
            f"scoring the whole space of {n} tasks ({total:.3g} combinations) x {passes} passes "
            f"at ~{rate:.3g} combinations/s on {dev} ({backend}) would take ~{est:.3g} s, more "
            f"than max_seconds={max_seconds:g}; memory is fine (~{need / 2**20:.0f} MiB per "
            "chunk). Use a GPU, fewer budgets or a smaller N")

    from tqdm.auto import tqdm

    n_chunks = math.ceil(total / chunk)
    bar = tqdm(total=passes * n_chunks, desc=f"whole space N={n}", disable=not progress,
               unit="chunk")
    t_start = time.perf_counter()
    eye = torch.eye(n, dtype=torch.bool, device=dev)
    singles = torch.tensor([1 << j for j in range(n)], dtype=torch.int64, device=dev)
    vals = torch.full((n, k), float("-inf"), device=dev)
    idx = torch.zeros(n, k, dtype=torch.int64, device=dev)
    vals, idx = merge_topk(vals, idx, torch.where(eye, 0.0, float("-inf")), singles)
    cur = torch.zeros(n, dtype=torch.float32, device=dev)   # per-task best (singletons: 0)
    picks: list[int] = []
    margs: list[float] = []
    try:
        for step in range(passes):
            best_v, best_m = 0.0, 0
            for lo in range(1, total + 1, chunk):
                masks = _masks(lo, min(total + 1, lo + chunk), dev, n)
                if masks.numel() == 0:
                    bar.update(1)
                    continue
                if fast:
                    p = params[0]
                    if step == 0:
                        tv, tm_ = mtgnet_topk(p, masks, k)
                        vals, idx = merge_topk(vals, idx, tv * scale, tm_)
                    if step < max(bud):
                        r = mtgnet_marginal(p, masks, cur / scale, return_marginals=False)
                        v, m = r.best_value * scale, r.best_mask
                    else:
                        v, m = 0.0, 0
                else:
                    y = _chunk_gains(params, masks, scale)                 # (chunk, N)
                    member = member_from_masks(masks, n)
                    if step == 0:
                        vals, idx = merge_topk(vals, idx,
                                               y.masked_fill(~member, float("-inf")).T, masks)
                    if step < max(bud):
                        marg = ((y - cur).clamp(min=0.0) * member).sum(dim=1)
                        i = int(torch.argmax(marg))          # first maximum
                        v, m = float(marg[i]), int(masks[i])
                    else:
                        v, m = 0.0, 0
                if v > best_v:                               # strict: earlier chunks win ties
                    best_v, best_m = v, m
                bar.update(1)
            if step >= max(bud) or best_v <= 0.0:
                bar.update((passes - step - 1) * n_chunks)
                break
            picks.append(best_m)
            margs.append(best_v)
            y_best = _chunk_gains(params, torch.tensor([best_m], device=dev), scale)[0]
            in_c = member_from_masks(torch.tensor([best_m], device=dev), n)[0]
            cur = torch.where(in_c, torch.maximum(cur, y_best), cur)
    finally:
        bar.close()
    seconds = time.perf_counter() - t_start

    top_masks = torch.where(torch.isinf(vals), 0, idx).cpu().numpy().view(np.uint64)
    pool = {int(1 << j) for j in range(n)} | set(picks)
    pool |= {int(m) for m in top_masks.ravel() if int(m)}
    pool_arr = np.array(sorted(pool), dtype=np.uint64)
    gains = net.predict(pool_arr, device=device)
    groupings = group(pool_arr, gains, bud, uncovered=uncovered)
    return WholeSpaceResult(
        n_tasks=n, topk_values=vals.cpu().double().numpy(), topk_masks=top_masks,
        greedy_masks=np.array(picks, dtype=np.uint64), greedy_marginals=np.array(margs),
        pool_masks=pool_arr, groupings=list(groupings), backend=backend, passes=passes,
        seconds=seconds, combinations_per_pass=total)


def _masks(lo: int, hi: int, dev: torch.device, n: int) -> torch.Tensor:
    """Mask values lo..hi-1 made on the device, singletons dropped (their gain is 0 by rule)."""
    m = torch.arange(lo, hi, dtype=torch.int64, device=dev)
    return m[(m & (m - 1)) != 0]


def _chunk_gains(params: list, masks: torch.Tensor, scale: float) -> torch.Tensor:
    """Ensemble-mean predicted gains ``(len(masks), N)`` in the table's unit (0 outside)."""
    y = None
    for p in params:
        g = mtgnet_predict(p, masks).float()
        y = g if y is None else y + g
    assert y is not None
    return y * (scale / len(params))
