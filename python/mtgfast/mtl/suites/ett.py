"""``ett``: the ETT electricity-transformer series as 7 forecasting tasks (one per series).

Input: the last ``window`` hourly steps of all 7 series (flattened); task j predicts the next
``horizon`` steps of series j. Chronological splits as in Informer (12/4/4 months of hours),
standardised with train statistics; training loss MSE, metric MAE on the standardised scale (the
metric of the MTG-Net paper's ETTm1-7 gains).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...checks import check_int, describe
from ...errors import InputError, InputTypeError
from .base import Splits, TaskSuite

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["ETTSuite"]

SERIES = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
# Informer's borders for the hourly data, in rows: 12 months train, 4 valid, 4 test
_MONTH_H = 30 * 24


class ETTSuite(TaskSuite):
    """7 tasks from an ETT CSV (``date`` + the 7 series). ``steps_per_month`` = 24*30 for ETTh,
    4*24*30 for ETTm; ``stride`` subsamples the training windows (every ``stride``-th start)."""

    name = "ett"
    task_names = SERIES
    loss_kinds = ("mse",) * 7
    metric_names = ("mae",) * 7
    encoder_config = {"hidden": 128, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, path: str | Path, window: int = 96, horizon: int = 24, stride: int = 1,
                 steps_per_month: int = _MONTH_H) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputTypeError(f"path must be a str or a path, got {describe(path)}")
        p = Path(path)
        if not p.is_file():
            raise InputError(f"ETT csv not found: {p}")
        w, h = check_int("window", window, 1), check_int("horizon", horizon, 1)
        m = check_int("steps_per_month", steps_per_month, 1)
        # 12 months of training rows must hold one window + horizon, and the 4 months of
        # validation and of test one horizon (their windows start in the months before)
        if w + h > 12 * m or h > 4 * m:
            raise InputError(f"window + horizon must be <= 12 * steps_per_month ({12 * m}) and "
                             f"horizon <= 4 * steps_per_month ({4 * m}); got window={w}, "
                             f"horizon={h}")
        super().__init__(path=str(p.resolve()), window=w, horizon=h,
                         stride=check_int("stride", stride, 1), steps_per_month=m)

    @property
    def in_dim(self) -> int:
        return self.params["window"] * len(SERIES)

    def head_out_dim(self, task: int) -> int:
        return self.params["horizon"]

    def _build_splits(self) -> Splits:
        import pandas as pd

        try:
            df = pd.read_csv(self.params["path"])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            why = " ".join(str(exc).split())[:200]   # pandas names the line of a ragged row
            raise InputError(f"ETT csv {self.params['path']!r} cannot be read as a table: "
                             f"{why}") from None
        missing = [c for c in SERIES if c not in df.columns]
        if missing:
            raise InputError(f"ETT csv lacks columns {missing}")
        w, h, m = self.params["window"], self.params["horizon"], self.params["steps_per_month"]
        borders = [(0, 12 * m), (12 * m - w, 16 * m), (16 * m - w, 20 * m)]
        if borders[2][1] > len(df):
            raise InputError(f"ETT csv has {len(df)} rows, needs {borders[2][1]}")
        values = _numeric(df, self.params["path"], borders[2][1])
        train = values[borders[0][0]:borders[0][1]]
        mean, std = train.mean(0), train.std(0)
        flat = np.flatnonzero(std == 0)
        if flat.size:   # standardising would divide by zero (inf/NaN windows, a numpy warning)
            raise InputError(f"ETT csv {self.params['path']!r}: column {SERIES[flat[0]]!r} is "
                             f"constant ({train[0, flat[0]]:g}) over the {12 * m} training rows; "
                             "a constant series cannot be standardised or forecast")
        z = ((values - mean) / std).astype(np.float32)

        def windows(lo: int, hi: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
            starts = np.arange(lo, hi - w - h + 1, stride)
            idx_in = starts[:, None] + np.arange(w)[None, :]
            idx_out = starts[:, None] + w + np.arange(h)[None, :]
            X = z[idx_in].reshape(len(starts), -1)  # (n, window*7), time-major
            Y = z[idx_out].transpose(0, 2, 1)  # (n, 7 tasks, horizon)
            return torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(
                np.ascontiguousarray(Y))

        Xtr, Ytr = windows(*borders[0], self.params["stride"])
        Xva, Yva = windows(*borders[1], 1)
        Xte, Yte = windows(*borders[2], 1)
        return Splits(Xtr, Ytr, Xva, Yva, Xte, Yte)


def _numeric(df: pd.DataFrame, path: str, rows: int) -> np.ndarray:
    """The 7 series as float64; a cell that is text, empty or not finite in the first ``rows``
    rows (those the splits use) is an ``InputError`` naming its column and line."""
    import pandas as pd

    out = np.empty((len(df), len(SERIES)))
    for j, col in enumerate(SERIES):
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(num[:rows]))
        if bad.size:
            i = int(bad[0])
            cell = raw.iloc[i]
            what = ("missing (empty, or a marker such as NA or n/a)" if pd.isna(cell) else
                    f"{str(cell)[:40]!r}, not a finite number")
            raise InputError(f"ETT csv {path!r} column {col!r} line {i + 2}: {what} (fill or "
                             "drop such rows first)")
        out[:, j] = num
    return out
