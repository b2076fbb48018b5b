"""Backend choice for batched MTG-Net inference: Triton kernel on CUDA, PyTorch reference elsewhere.

Three entry points share the rule: gains ``(M, N)``, per-task top-k combinations, and the
beam-search marginal gain. The Triton module is imported only when the Triton path is taken.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..errors import InputError, InputTypeError
from .checks import as_mask_tensor, check_best, check_chunk, check_k
from .common import Backend, MarginalResult, interpret_env, kernel_supports
from .reference import MTGNetParams, member_from_masks, mtgnet_forward

if TYPE_CHECKING:
    from .triton_mtgnet import PackedMTGNet

__all__ = ["Backend", "MarginalResult", "merge_topk", "mtgnet_marginal", "mtgnet_predict",
           "mtgnet_topk", "packed_params", "resolve_backend"]


def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: Backend, params: MTGNetParams) -> Literal["torch", "triton"]:
    """The backend that will run: ``auto`` picks Triton for CUDA params when Triton is installed.

    ``triton`` on CPU params is an error unless ``TRITON_INTERPRET=1`` (interpreter, for tests).
    """
    if backend not in ("auto", "torch", "triton"):
        raise InputError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    if not isinstance(params, MTGNetParams):
        raise InputTypeError(f"params must be MTGNetParams, got {type(params).__name__}")
    dev = params.embedding.device
    if backend == "torch":
        return "torch"
    if backend == "auto":
        # The kernel needs a real CUDA build of triton (not the interpreter) and a dtype it has.
        use = (dev.type == "cuda" and kernel_supports(params.embedding.dtype, dev)
               and _triton_importable() and not interpret_env())
        return "triton" if use else "torch"
    if not _triton_importable():
        raise ImportError("backend='triton' needs the triton package "
                          "(pip install 'mtgfast[triton]')")
    if dev.type != "cuda" and not (dev.type == "cpu" and interpret_env()):
        raise InputError(f"backend='triton' needs params on CUDA, got {dev}; use backend='torch' "
                         "(or set TRITON_INTERPRET=1 to run the kernel in Triton's interpreter)")
    return "triton"


# A few packed weight sets, keyed by what the weights are: each tensor's storage address, layout
# and version counter (shared by .detach() views, bumped by in-place updates), plus the
# hyper-parameters. Entries hold the tensors, so no other tensor can reuse those addresses.
_PACK_CACHE: dict[tuple[Any, ...], tuple[tuple[torch.Tensor, ...], PackedMTGNet]] = {}
_PACK_CACHE_SIZE = 4


def _cache_key(params: MTGNetParams) -> tuple[tuple[Any, ...], tuple[torch.Tensor, ...]]:
    ts = [params.embedding, params.w_head, params.b_head]
    for lp in params.layers:
        ts.extend(getattr(lp, f.name) for f in fields(lp))
    key = tuple((t.data_ptr(), t.device, t.dtype, tuple(t.shape), t.stride(), t._version)
                for t in ts)
    return (key, params.n_heads, params.temperature, params.ln_eps), tuple(ts)


def packed_params(params: MTGNetParams) -> PackedMTGNet:
    """``triton_mtgnet.pack_params(params)``, cached while the weights are unchanged."""
    from .triton_mtgnet import pack_params

    key, tensors = _cache_key(params)
    hit = _PACK_CACHE.get(key)
    if hit is not None:
        return hit[1]
    packed = pack_params(params)
    while len(_PACK_CACHE) >= _PACK_CACHE_SIZE:
        _PACK_CACHE.pop(next(iter(_PACK_CACHE)))
    _PACK_CACHE[key] = (tensors, packed)
    return packed


def mtgnet_predict(params: MTGNetParams, masks: torch.Tensor, *, backend: Backend = "auto",
                   chunk: int = 65536) -> torch.Tensor:
    """Predicted gains ``(M, N)`` (0 for absent tasks) for int64 masks ``(M,)`` on params' device.

    ``backend="auto"`` uses the Triton kernel when the params live on CUDA and Triton is available,
    the PyTorch reference otherwise (``chunk`` bounds the reference's memory).
    """
    use = resolve_backend(backend, params)
    chunk = check_chunk(chunk)
    masks = as_mask_tensor(masks, params.n_tasks, params.embedding.device)
    if use == "triton":
        from .triton_mtgnet import mtgnet_forward_triton

        return mtgnet_forward_triton(packed_params(params), masks, validate=False)
    return mtgnet_forward(params, masks, chunk=chunk)


def _torch_chunks(params: MTGNetParams, masks: torch.Tensor,
                  chunk: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    n = params.n_tasks
    for s in range(0, masks.shape[0], chunk):
        part = masks[s:s + chunk]
        member = member_from_masks(part, n)
        yield s, part, member, mtgnet_forward(params, part, chunk=chunk).float()


def mtgnet_topk(params: MTGNetParams, masks: torch.Tensor, k: int, *, backend: Backend = "auto",
                chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """For each task j, the ``k`` masks containing j with the largest predicted gain y_j.

    Returns ``(values, masks)`` of shape ``(N, k)``, best first; missing slots are -inf and 0.
    ``k`` is at most ``MAX_TOPK`` on every backend. The full ``(M, N)`` table is never held
    (Triton: per-program top-k; torch: per chunk).
    """
    use = resolve_backend(backend, params)
    k = check_k(k)
    chunk = check_chunk(chunk)
    masks = as_mask_tensor(masks, params.n_tasks, params.embedding.device)
    if use == "triton":
        from .triton_mtgnet import mtgnet_topk_triton

        return mtgnet_topk_triton(packed_params(params), masks, k, validate=False)
    n = params.n_tasks
    dev = params.embedding.device
    vals = torch.full((n, k), float("-inf"), device=dev)
    idx = torch.zeros((n, k), dtype=torch.int64, device=dev)
    for _, part, member, y in _torch_chunks(params, masks, chunk):
        vals, idx = merge_topk(vals, idx, y.masked_fill(~member, float("-inf")).T, part)
    return vals, torch.where(torch.isinf(vals), 0, idx)


def merge_topk(vals: torch.Tensor, idx: torch.Tensor, cand: torch.Tensor,
               cand_masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold candidates ``cand`` ``(N, C)`` (masks ``(C,)``, or per task ``(N, C)``) into a
    running top-k ``(vals, idx)`` ``(N, k)``; returns new tensors."""
    n, k = vals.shape
    allv = torch.cat([vals, cand], dim=1)
    cm = cand_masks.unsqueeze(0).expand(n, -1) if cand_masks.ndim == 1 else cand_masks
    allm = torch.cat([idx, cm], dim=1)
    kk = min(k, allv.shape[1])
    top, at = torch.topk(allv, kk, dim=1)
    vals, idx = vals.clone(), idx.clone()
    vals[:, :kk], idx[:, :kk] = top, allm.gather(1, at)
    return vals, idx


def mtgnet_marginal(params: MTGNetParams, masks: torch.Tensor, best: torch.Tensor, *,
                    return_marginals: bool = True, backend: Backend = "auto",
                    chunk: int = 65536) -> MarginalResult:
    """Beam-search marginal gain sum_{j in C} max(0, y_j(C) - best_j) per candidate, and the argmax.

    ``best`` ``(N,)`` is the current per-task best gain; ties go to the first candidate.
    """
    use = resolve_backend(backend, params)
    dev = params.embedding.device
    chunk = check_chunk(chunk)
    best = check_best(best, params.n_tasks, dev)
    masks = as_mask_tensor(masks, params.n_tasks, dev)
    if masks.shape[0] == 0:
        raise InputError("masks must hold at least one candidate")
    if use == "triton":
        from .triton_mtgnet import mtgnet_marginal_triton

        return mtgnet_marginal_triton(packed_params(params), masks, best,
                                      return_marginals=return_marginals, validate=False)
    outs = []
    top_v, top_i = float("-inf"), 0
    for s, _, member, y in _torch_chunks(params, masks, chunk):
        marg = ((y - best).clamp(min=0.0) * member).sum(dim=1)
        i = int(torch.argmax(marg))          # first maximum, like the kernel's tie rule
        if float(marg[i]) > top_v:
            top_v, top_i = float(marg[i]), s + i
        if return_marginals:
            outs.append(marg)
    marginals = torch.cat(outs) if return_marginals else None
    return MarginalResult(marginals, top_v, int(masks[top_i]) & ((1 << 64) - 1))
