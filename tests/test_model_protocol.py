"""The trainer's model protocol (``mtgfast.mtl.models.MTLModel``): TAG's affinity needs a model
that declares its shared parameters; one that does not is a named InputError, not a crash."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from mtgfast.errors import InputError
from mtgfast.mtl import architectures
from mtgfast.mtl.architectures import seeded_parts
from mtgfast.mtl.engine import TrainConfig
from mtgfast.mtl.models import HardSharing, MTLModel, declares_shared
from mtgfast.mtl.suites import get_suite
from mtgfast.mtl.tag_affinity import collect_affinity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NoShared(MTLModel):
    """A user's model that follows the protocol but names no shared parameters."""

    def __init__(self, encoder: torch.nn.Module, heads: torch.nn.ModuleList) -> None:
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.encoder(x)
        return [head(h) for head in self.heads]


def build_noshared(suite: Any, tasks: Any, *, seed: int = 0, **unused: Any) -> MTLModel:
    encoder, heads = seeded_parts(suite, tasks, hidden=None, n_blocks=None, dropout=None,
                                  seed=seed)
    return NoShared(encoder, heads)


@pytest.fixture
def noshared_arch() -> Iterator[str]:
    architectures.register("noshared-test", build_noshared)
    try:
        yield "noshared-test"
    finally:
        architectures.ARCHITECTURES.pop("noshared-test", None)


def test_declares_shared_tells_the_built_in_from_a_model_without() -> None:
    suite = get_suite("synthetic", n_train=32, n_eval=32)
    hard = architectures.build_model("hard", suite, (0, 1))
    assert isinstance(hard, HardSharing) and declares_shared(hard)
    plain = build_noshared(suite, (0, 1))
    assert not declares_shared(plain) and not declares_shared(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="NoShared declares no shared parameters"):
        plain.shared_parameters()


def test_tag_affinity_on_a_model_without_shared_parameters_names_it(noshared_arch) -> None:
    suite = get_suite("synthetic", n_train=32, n_eval=32)
    cfg = TrainConfig(epochs=1, batch_size=16, arch=noshared_arch)
    with pytest.raises(InputError, match="has no shared_parameters"):
        collect_affinity(suite, 0, cfg, tasks=(0, 1))
