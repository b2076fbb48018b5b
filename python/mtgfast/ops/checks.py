"""Argument checks shared by every MTG-Net inference backend (run once, before a backend is chosen)."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, InputTypeError
from .common import MAX_TOPK

__all__ = ["as_mask_tensor", "check_best", "check_block", "check_chunk", "check_k",
           "check_programs"]


def as_mask_tensor(masks: object, n_tasks: int, device: torch.device) -> torch.Tensor:
    """``masks`` as a contiguous 1-D int64 tensor on ``device``; each non-empty and < 2^n_tasks."""
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


def _is_int(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def check_k(k: object) -> int:
    """Per-task top-k size: an int in [1, MAX_TOPK] (the same limit on every backend)."""
    if not _is_int(k) or not 1 <= int(k) <= MAX_TOPK:  # type: ignore[call-overload]
        raise InputError(f"k must be an int in [1, {MAX_TOPK}], got {k!r}")
    return int(k)  # type: ignore[call-overload]


def check_best(best: object, n_tasks: int, device: torch.device) -> torch.Tensor:
    """Per-task current best gain ``(n_tasks,)`` as fp32 on ``device``, without NaN."""
    if not isinstance(best, torch.Tensor):
        raise InputTypeError(f"best must be a torch.Tensor, got {type(best).__name__}")
    if tuple(best.shape) != (n_tasks,):
        raise InputError(f"best must have shape ({n_tasks},), got {tuple(best.shape)}")
    best = best.to(device=device, dtype=torch.float32).contiguous()
    if bool(torch.isnan(best).any()):
        raise InputError("best must not contain NaN")
    return best


def check_block(block_m: object) -> None:
    """Combinations per kernel tile: None (launcher's choice) or a power of two >= 1."""
    if block_m is None:
        return
    if not _is_int(block_m) or int(block_m) < 1 or int(block_m) & (int(block_m) - 1):  # type: ignore[call-overload]
        raise InputError(f"block_m must be a power of two >= 1, got {block_m!r}")


def check_programs(n_programs: object) -> None:
    """Kernel programs of a reduction: None (launcher's choice) or a positive int."""
    if n_programs is None:
        return
    if not _is_int(n_programs) or int(n_programs) < 1:  # type: ignore[call-overload]
        raise InputError(f"n_programs must be a positive int, got {n_programs!r}")


def check_chunk(chunk: object) -> int:
    """Rows per piece of the chunked torch path: a positive int."""
    if not _is_int(chunk) or int(chunk) < 1:  # type: ignore[call-overload]
        raise InputError(f"chunk must be a positive int, got {chunk!r}")
    return int(chunk)  # type: ignore[call-overload]
