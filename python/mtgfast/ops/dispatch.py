"""Backend choice for batched MTG-Net inference: Triton kernel on CUDA, PyTorch reference elsewhere."""

from __future__ import annotations

from typing import Literal

import torch

from .reference import MTGNetParams, mtgnet_forward

Backend = Literal["auto", "torch", "triton"]

__all__ = ["Backend", "mtgnet_predict"]


def mtgnet_predict(params: MTGNetParams, masks: torch.Tensor, *, backend: Backend = "auto",
                   chunk: int = 65536) -> torch.Tensor:
    """Predicted gains ``(M, N)`` (0 for absent tasks) for int64 masks ``(M,)`` on params' device.

    ``backend="auto"`` uses the Triton kernel when the params live on CUDA and Triton is available,
    the PyTorch reference otherwise.
    """
    if backend not in ("auto", "torch", "triton"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'triton', got {backend!r}")
    return mtgnet_forward(params, masks, chunk=chunk)
