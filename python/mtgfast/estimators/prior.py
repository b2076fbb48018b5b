"""Prior residual estimators (ETAP-style): MTG-Net learns the residual over a baseline.

:class:`TablePriorMTGNet` takes the baseline from a given table (TAG's affinity estimate, free in
measured combinations) scaled per task; :class:`PairPriorMTGNet` pools it from the measured rows:
the baseline is HOA-shaped, ``prior_j(C) = mean_{k in C, k != j} P[j, k]``, with ``P[j, k]`` pooled
from every measured combination that holds both tasks: the weighted mean of ``gain_j(C')`` over
measured ``C' ∋ j, k`` (weight ``1 / (|C'| - 1)``, so a measured pair counts most; the full set,
always measured by the active loop, makes every entry defined). With all pairs measured and nothing
else it is HOA. The network then fits ``gain - prior`` and predicts ``prior + residual``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from ..checks import check_int
from ..errors import InputError, InputTypeError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks, masks_to_dense
from .base import GainEstimator
from .hoa import aggregate_pairs

if TYPE_CHECKING:
    from .mtgnet import MTGNet

__all__ = ["PairPriorMTGNet", "TablePriorMTGNet", "checked_inner_network", "pooled_pair_matrix",
           "prior_slopes", "unfitted_copy"]


def pooled_pair_matrix(table: GainTable, max_size: int | None = None) -> FloatArray:
    """``P[j, k]``: weighted mean of task ``j``'s measured gain over measured combinations of
    2..``max_size`` tasks holding ``j`` and ``k`` (weight ``1/(|C| - 1)``); 0 where none does."""
    member = table.member()
    size = member.sum(axis=1)
    g = np.where(member, table.gains, np.nan)
    rows = (size >= 2) & (size <= (max_size if max_size is not None else size.max()))
    d = member[rows].astype(np.float64)
    gj = g[rows]
    known = np.isfinite(gj)
    w = (1.0 / (size[rows] - 1.0))[:, None]
    # num[j, k] = sum_r w_r d[r, k] known[r, j] g[r, j]; den likewise without g
    num = (np.nan_to_num(gj) * known * w).T @ d
    den = (known * w).T @ d
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    np.fill_diagonal(p, 0.0)
    return p


def unfitted_copy(model: Any, kind: type[GainEstimator]) -> Any:
    """A fresh ``kind`` with ``model``'s options (scikit-learn's clone): a wrapper never refits
    the caller's network object, which a user, or a study's successive refits, may share."""
    if not isinstance(model, kind):
        raise InputTypeError(f"model must be an {kind.__name__} or None, got {type(model).__name__}")
    return type(model)(**model.get_params())


def checked_inner_network(model: Any, max_size: int | None, wrapper: type) -> Any:
    """The checks shared by estimators that wrap an MTGNet and pool pairs: ``max_size`` (None or
    >= 2), a warm start from a ``wrapper`` unwrapped to its fitted network, the network's own
    options; returns ``model``."""
    if max_size is not None:
        check_int("max_size", max_size, 2)
    if isinstance(model.warm_start_from, wrapper):
        model.warm_start_from = getattr(model.warm_start_from, "model_", None)
    model._check_params()
    return model


class _ResidualOverPrior(GainEstimator):
    """An MTG-Net (``model_``) that learned the residual over a prior (``_prior(masks)``): its
    predictions, each member's, and the epochs trained, with the prior added back."""

    model_: MTGNet   #: the fitted network (set by ``fit``)

    @abstractmethod
    def _prior(self, m: MaskArray) -> FloatArray:
        """The prior gains of ``m`` (rows of masks), which the network's residual is added to."""

    def _network(self) -> Any:
        """An unfitted copy of ``model`` (the MTGNet to fit on the residuals), or a default MTGNet."""
        from .mtgnet import MTGNet

        model = MTGNet() if self.model is None else self.model  # type: ignore[attr-defined]
        return unfitted_copy(model, MTGNet)

    def _fitted_masks(self, masks: object) -> MaskArray:
        if not hasattr(self, "model_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(table) "
                             "first")
        return as_masks(masks, self.n_tasks_)

    def predict(self, masks: object, **kwargs: Any) -> Any:
        """Prior + the network's residual; ``return_std=True`` also returns the ensemble spread
        (the prior is the same for every member)."""
        m = self._fitted_masks(masks)
        out = self.model_.predict(m, **kwargs)
        prior = self._prior(m)
        if isinstance(out, tuple):
            return out[0] + prior, out[1]
        return out + prior

    def predict_members(self, masks: object, **kwargs: Any) -> FloatArray:
        """Each member's gains ``(n_estimators, n_masks, n_tasks)`` (prior + its residual)."""
        m = self._fitted_masks(masks)
        return self.model_.predict_members(m, **kwargs) + self._prior(m)[None]

    def predict_held_out(self, masks: object) -> Any:
        """Out-of-fold gains of training rows (see :meth:`MTGNet.predict_held_out`), prior added."""
        m = self._fitted_masks(masks)
        out, count = self.model_.predict_held_out(m)
        return out + self._prior(m), count

    def _predict(self, masks: MaskArray) -> FloatArray:
        return self.predict(masks)

    @property
    def n_epochs_(self) -> int:
        return int(getattr(getattr(self, "model_", None), "n_epochs_", 0))


class PairPriorMTGNet(_ResidualOverPrior):
    """An :class:`~mtgfast.estimators.mtgnet.MTGNet` on the residual over the pooled pair prior.

    ``model``: an unfitted MTGNet (its options are used as given; ``warm_start_from`` may be a
    previous ``PairPriorMTGNet`` or MTGNet). ``shrink`` in [0, 1] scales the prior (1 = full prior,
    0 = plain MTG-Net). ``max_size``: pool only measured combinations of at most this many tasks
    (2 = measured pairs only, the other pairs' prior is 0); None = all.
    """

    def __init__(self, model: Any = None, shrink: float = 1.0,
                 max_size: int | None = None) -> None:
        self.model = model
        self.shrink = shrink
        self.max_size = max_size

    def _check(self) -> Any:
        model = self._network()
        if isinstance(self.shrink, bool) or not isinstance(self.shrink, (int, float)) \
                or not 0.0 <= float(self.shrink) <= 1.0:
            raise InputError(f"shrink must be a number in [0, 1], got {self.shrink!r}")
        return checked_inner_network(model, self.max_size, PairPriorMTGNet)

    def _fit(self, table: GainTable) -> None:
        model = self._check()
        self.pairs_ = pooled_pair_matrix(table, self.max_size) * float(self.shrink)
        prior = aggregate_pairs(table.masks, self.pairs_, backend="numpy")
        resid = GainTable(table.masks, table.gains - prior, table.task_names, dict(table.meta))
        self.model_ = model.fit(resid)

    def _prior(self, m: MaskArray) -> FloatArray:
        return aggregate_pairs(m, self.pairs_, backend="auto")


def _prior_values(prior: GainTable, masks: MaskArray) -> FloatArray:
    """Prior rows of ``masks``: 0 for a combination the prior lacks and for NaN entries."""
    idx = prior.index_of(masks)
    x = np.where((idx >= 0)[:, None], prior.gains[np.maximum(idx, 0)], 0.0)
    return np.where(np.isfinite(x), x, 0.0)


def prior_slopes(table: GainTable, prior: GainTable, shrink_rows: float = 3.0) -> FloatArray:
    """Per-task slope ``a_j = sum x y / (sum x^2 + shrink_rows * mean x^2)`` of the measured gains
    ``y`` on the prior ``x`` over ``table``'s combinations of >= 2 tasks holding j (a prior the
    table lacks counts as 0; 0 where no such row has a nonzero prior)."""
    member = table.member()
    multi = member & (member.sum(axis=1) >= 2)[:, None] & np.isfinite(table.gains)
    x = np.where(multi, _prior_values(prior, table.masks), 0.0)
    y = np.where(multi, table.gains, 0.0)
    sxx = (x * x).sum(axis=0)
    cnt = multi.sum(axis=0)
    den = sxx + shrink_rows * np.where(cnt > 0, sxx / np.maximum(cnt, 1), 0.0)
    return np.where(den > 0, (x * y).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


class TablePriorMTGNet(_ResidualOverPrior):
    """An :class:`~mtgfast.estimators.mtgnet.MTGNet` on the residual over a given prior table
    (e.g. TAG's estimate of every combination, which costs no measured combination), scaled per
    task by a learned, shrunk slope so a useless prior is ignored.

    ``prior``: a :class:`GainTable` of prior gains; combinations it lacks get prior 0. Per task j,
    ``a_j = sum x y / (sum x^2 + shrink_rows * mean x^2)`` over the measured combinations of >= 2
    tasks holding j (``x`` the prior, ``y`` the measured gain): least squares through 0 shrunk
    towards 0 as if ``shrink_rows`` more rows had ``y = 0``. The network fits ``y - a_j x``.
    """

    def __init__(self, model: Any = None, prior: GainTable | None = None,
                 shrink_rows: float = 3.0) -> None:
        self.model = model
        self.prior = prior
        self.shrink_rows = shrink_rows

    def _check(self) -> Any:
        model = self._network()
        if not isinstance(self.prior, GainTable):
            raise InputTypeError(f"prior must be a GainTable of prior gains, got "
                                 f"{type(self.prior).__name__}")
        s = self.shrink_rows
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0.0 <= float(s) < 1e9:
            raise InputError(f"shrink_rows must be a number >= 0, got {s!r}")
        if isinstance(model.warm_start_from, TablePriorMTGNet):
            model.warm_start_from = getattr(model.warm_start_from, "model_", None)
        model._check_params()
        return model

    def _raw_prior(self, m: MaskArray) -> FloatArray:
        assert isinstance(self.prior, GainTable)
        return _prior_values(self.prior, m)

    def _fit(self, table: GainTable) -> None:
        model = self._check()
        assert isinstance(self.prior, GainTable)
        if self.prior.n_tasks != table.n_tasks:
            raise InputError(f"prior has {self.prior.n_tasks} tasks, the table {table.n_tasks}")
        self.slope_ = prior_slopes(table, self.prior, float(self.shrink_rows))
        resid = GainTable(table.masks, table.gains - self._prior(table.masks), table.task_names,
                          dict(table.meta))
        self.model_ = model.fit(resid)

    def _prior(self, m: MaskArray) -> FloatArray:
        member = np.asarray(masks_to_dense(m, self.slope_.shape[0]))
        single = member.sum(axis=1) == 1
        out = self._raw_prior(m) * self.slope_[None, :]
        out[single] = 0.0   # a singleton's gain is 0 by definition
        return np.where(member, out, np.nan)
