"""Argument checks shared by every MTG-Net inference backend (run once, before a backend is chosen)."""

from __future__ import annotations

import numpy as np
import torch

from ..checks import check_int, describe, is_int
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


def check_k(k: object) -> int:
    """Per-task top-k size: an int in [1, MAX_TOPK] (the same limit on every backend)."""
    return check_int("k", k, 1, MAX_TOPK, expected=f"in [1, {MAX_TOPK}]")


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
    if not is_int(block_m):
        raise InputTypeError(f"block_m must be None or an int, got {describe(block_m)}")
    v = int(block_m)
    if v < 1 or v & (v - 1):
        raise InputError(f"block_m must be a power of two >= 1, got {v}")


def check_programs(n_programs: object) -> None:
    """Kernel programs of a reduction: None (launcher's choice) or a positive int."""
    if n_programs is not None:
        check_int("n_programs", n_programs, 1, expected="a positive int")


def check_chunk(chunk: object) -> int:
    """Rows per piece of the chunked torch path: a positive int."""
    return check_int("chunk", chunk, 1, expected="a positive int")
