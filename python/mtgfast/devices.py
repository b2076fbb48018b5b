"""Which torch device a model or a training run may use: one check, naming what is available."""

from __future__ import annotations

import torch

from .errors import InputError, InputTypeError

__all__ = ["check_device"]


def check_device(device: object) -> torch.device:
    """A usable torch device; an error names the device asked for and the ones available."""
    if device is None:
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise InputTypeError(f"device must be a str, a torch.device or None, got "
                             f"{type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise InputError(f"device {str(device)!r} is not a torch device name (expected e.g. "
                         f"'cpu', 'cuda' or 'cuda:0')") from exc
    if dev.type == "cpu":
        return dev
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    available = ["cpu", *(f"cuda:{i}" for i in range(n_cuda))]
    if dev.type == "cuda":
        if n_cuda == 0:
            raise InputError(f"device {str(device)!r} asked for, but CUDA is not available "
                             f"(torch {torch.__version__}); available: {', '.join(available)}")
        if dev.index is not None and dev.index >= n_cuda:
            raise InputError(f"device {str(device)!r} asked for, but only {n_cuda} CUDA "
                             f"device(s) exist; available: {', '.join(available)}")
        return dev
    if dev.type == "mps" and getattr(torch.backends, "mps", None) is not None \
            and torch.backends.mps.is_available():
        return dev
    raise InputError(f"device {str(device)!r} is not available; available: "
                     f"{', '.join(available)}")
