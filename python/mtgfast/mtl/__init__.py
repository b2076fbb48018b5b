"""MTL trainers (PyTorch): hard-sharing models, the one training loop (``engine``), metrics, gains
from metrics, TAG's lookahead affinity and the built-in task suites. Importing this package imports
nothing heavy; its submodules import torch."""

from __future__ import annotations

__all__ = ["architectures", "engine", "gains_from_metrics", "metrics", "models", "suites",
           "tag_affinity", "trainer"]
