"""The package's public surface: every name in ``__all__`` resolves, and the literal ``__all__``
stays in step with the lazy-export table."""

from __future__ import annotations

import mtgfast


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert set(mtgfast.__all__) == {"__version__", *mtgfast._LAZY}
    assert len(mtgfast.__all__) == len(set(mtgfast.__all__))


def test_every_public_name_resolves() -> None:
    for name in mtgfast.__all__:
        assert getattr(mtgfast, name) is not None, name
    assert sorted(dir(mtgfast)) == dir(mtgfast) and "group" in dir(mtgfast)
