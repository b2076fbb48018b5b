"""Oracle: the measured table itself (the upper reference of every estimator)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, mask_to_indices, popcount
from .base import GainEstimator

__all__ = ["Oracle"]


class Oracle(GainEstimator):
    """Predicts exactly the measured gains (singletons: 0 even when not in the table); an
    unmeasured combination raises ``InputError``."""

    def __init__(self) -> None:
        pass

    def _fit(self, table: GainTable) -> None:
        self.table_ = table

    def _predict(self, masks: MaskArray) -> FloatArray:
        idx = self.table_.index_of(masks)
        out = np.full((masks.shape[0], self.table_.n_tasks), np.nan)
        found = idx >= 0
        out[found] = self.table_.gains[idx[found]]
        single = ~found & (popcount(masks) == 1)
        for i in np.flatnonzero(single):
            out[i, mask_to_indices(int(masks[i]))[0]] = 0.0
        absent = ~found & ~single
        if absent.any():
            m = int(masks[np.flatnonzero(absent)[0]])
            names = [self.table_.task_names[k] for k in mask_to_indices(m)]
            raise InputError(f"the oracle has no measurement of combination {m} "
                             f"({'+'.join(names)}); "
                             f"{int(absent.sum())} requested combination(s) were not measured")
        return out
