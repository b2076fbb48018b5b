"""Transfer gains from measured metrics, for the MTL layer: a re-export of :mod:`mtgfast.transfer`,
the one place gains are defined (relative improvement over STL; a zero STL metric raises)."""

from __future__ import annotations

from ..transfer import gain_matrix, gain_row, relative_gain

__all__ = ["gain_matrix", "gain_row", "relative_gain"]
