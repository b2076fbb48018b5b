"""Registry of MTL architectures: ``build_model(arch, suite, tasks, **kw)`` returns a model that
follows the trainer's protocol (``forward(x) -> list`` of per-task outputs, ``regularizer()``).

"hard" (shared encoder + heads) lives here; "mtan" and "adashare" are imported on first use from
``mtgfast.mtl.mtan`` / ``mtgfast.mtl.adashare`` (each exposes ``build(suite, tasks, **kw)``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InputError, InputTypeError
from .models import HardSharing, MTLModel, encoder_width, torch_seed
from .suites.base import TaskSuite

__all__ = ["ARCHITECTURES", "build_hard", "build_model", "head_seed", "register",
           "seeded_parts"]

Builder = Callable[..., MTLModel]


def head_seed(seed: int, task: int) -> int:
    """Seed of task ``task``'s head: the same in every combination, so that a task starts from the
    same head weights alone and in any group (gains then reflect sharing, not initialisation luck)."""
    return (int(seed) * 1_000_003 + 7_919 * (int(task) + 1)) % (2**63 - 1)


def build_hard(suite: TaskSuite, tasks: Sequence[int], *, hidden: int | None = None,
               n_blocks: int | None = None, dropout: float | None = None, seed: int = 0,
               **unused: Any) -> MTLModel:
    """Hard parameter sharing: ``suite.make_encoder`` shared by one ``suite.make_head`` per task.
    Encoder weights are drawn from ``seed``, each head from ``head_seed(seed, task)``."""
    if unused:
        raise InputError(f"arch 'hard' takes no options {sorted(unused)}")
    encoder, heads = seeded_parts(suite, tasks, hidden=hidden, n_blocks=n_blocks, dropout=dropout,
                                  seed=seed)
    torch.manual_seed(torch_seed(seed))
    return HardSharing(encoder, heads)


def seeded_parts(suite: TaskSuite, tasks: Sequence[int], *, hidden: int | None, n_blocks: int | None,
                 dropout: float | None, seed: int, blocks_for: str | None = None
                 ) -> tuple[nn.Module, nn.ModuleList]:
    """The suite's encoder (weights drawn from ``seed``; ``None`` options from
    ``suite.encoder_config``) and one head per task (from ``head_seed(seed, task)``): the shared
    starting point of every architecture, so that they differ only in what they add.
    ``blocks_for``: the name of an architecture that acts on the encoder's blocks (it needs one)."""
    cfg = suite.encoder_config
    n_b = int(n_blocks if n_blocks is not None else cfg["n_blocks"])
    if blocks_for is not None and n_b < 1:
        raise InputError(f"arch {blocks_for!r} needs n_blocks >= 1 (it acts on the encoder's "
                         f"blocks), got {n_b}")
    torch.manual_seed(torch_seed(seed))
    encoder = suite.make_encoder(int(hidden if hidden is not None else cfg["hidden"]), n_b,
                                 float(dropout if dropout is not None else cfg.get("dropout", 0.0)))
    heads = []
    for t in tasks:
        torch.manual_seed(head_seed(torch_seed(seed), t))
        heads.append(suite.make_head(int(t), encoder_width(encoder)))
    return encoder, nn.ModuleList(heads)


# name -> builder, or "module:function" imported on first use (its module may need extra code)
ARCHITECTURES: dict[str, Builder | str] = {
    "hard": build_hard,
    "mtan": "mtgfast.mtl.mtan:build",
    "adashare": "mtgfast.mtl.adashare:build",
}


def register(name: str, builder: Builder | str) -> None:
    """Add an architecture: a callable ``(suite, tasks, **kw) -> MTLModel`` (the trainer's model
    protocol, ``mtgfast.mtl.models``) or ``"module:attr"``."""
    if not isinstance(name, str) or not name:
        raise InputTypeError("architecture name must be a non-empty str")
    if not (callable(builder) or (isinstance(builder, str) and ":" in builder)):
        raise InputTypeError("builder must be callable or a 'module:function' string")
    ARCHITECTURES[name] = builder


def build_model(arch: str, suite: TaskSuite, tasks: Sequence[int], **kw: Any) -> MTLModel:
    """Model of architecture ``arch`` for the combination ``tasks`` of ``suite``."""
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    builder = ARCHITECTURES[arch]
    if isinstance(builder, str):
        module, attr = builder.split(":")
        try:
            builder = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            raise InputError(f"architecture {arch!r} needs module {module}, which is not "
                             f"available ({exc})") from exc
    idx = tuple(int(t) for t in tasks)
    try:  # an option the architecture does not take names it, not a bare TypeError from its call
        inspect.signature(builder).bind(suite, idx, **kw)
    except TypeError as exc:
        raise InputError(f"architecture {arch!r}: {exc} (arch_options of the TrainConfig)"
                         ) from None
    return builder(suite, idx, **kw)
