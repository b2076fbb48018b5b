"""A blend of MTG-Net and a low-capacity estimate, weighted by their out-of-fold errors.

At small budgets (N + 1 measured rows at TAG-equal cost) the network may predict worse than a
low-capacity estimate; :class:`BlendMTGNet` predicts ``alpha * MTGNet + (1 - alpha) * base``, with
``base`` the HOA-shaped pooled pair estimate of the measured rows (``prior.pooled_pair_matrix``,
as a competitor, not a residual target) and one ``alpha`` in [0, 1] fitted by least squares on the
out-of-fold predictions of both (the network's held-out rows; the base's leave-one-out), so the
measured data decides how much of each to trust. ``base="ridge"`` blends with the per-task ridge
surrogate instead (:class:`~mtgfast.estimators.ridge.RidgeSurrogate`, its exact leave-one-out as
the out-of-fold side; fourteenth pass of issue 13).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError
from ..gains import FloatArray, GainTable
from ..masks import MaskArray, as_masks, masks_to_dense
from .base import GainEstimator
from .hoa import aggregate_pairs
from .prior import checked_inner_network, pooled_pair_matrix, unfitted_copy

if TYPE_CHECKING:
    from .mtgnet import MTGNet

__all__ = ["BLEND_BASES", "BlendMTGNet", "blend_weight", "pooled_pair_loo", "ridge_blend"]

#: what the network is blended with: HOA's pooled pairs, or the per-task ridge surrogate
BLEND_BASES = ("pairs", "ridge")


def pooled_pair_loo(table: GainTable, max_size: int | None = None) -> FloatArray:
    """Leave-one-out pooled pair estimate of every row of ``table``: row r's gains predicted by
    ``aggregate_pairs`` on ``pooled_pair_matrix`` of the table without row r (NaN outside each
    combination, 0 for singletons). Vectorised: row r's terms are subtracted from the sums."""
    member = table.member()
    n = table.n_tasks
    size = member.sum(axis=1)
    top = size.max() if max_size is None else max_size
    pooled = (size >= 2) & (size <= top)
    d = member.astype(np.float64)
    known = (member & np.isfinite(table.gains)).astype(np.float64)
    g = np.nan_to_num(np.where(member, table.gains, 0.0))
    w = np.where(pooled, 1.0 / np.maximum(size - 1.0, 1.0), 0.0)[:, None]
    num = (g * known * w).T @ d                                     # (N, N) all pooled rows
    den = (known * w).T @ d
    # without row r: num - w_r (known_r g_r) d_r^T, likewise den; (R, N, N)
    num_r = num[None] - (g * known * w)[:, :, None] * d[:, None, :]
    den_r = den[None] - (known * w)[:, :, None] * d[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(den_r > 1e-12, num_r / np.maximum(den_r, 1e-300), 0.0)
    idx = np.arange(n)
    p[:, idx, idx] = 0.0
    # out[r, j] = mean_{k in C_r, k != j} P_r[j, k]
    sums = np.einsum("rjk,rk->rj", p, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(size[:, None] > 1, sums / np.maximum(size[:, None] - 1.0, 1.0), 0.0)
    out[~member] = np.nan
    return out


def blend_weight(y: FloatArray, net: FloatArray, base: FloatArray) -> float:
    """The ``alpha`` in [0, 1] minimising ``sum (y - alpha * net - (1 - alpha) * base)^2`` over
    the entries where all three are finite; 1 (the network alone) when no entry is or the two
    estimates agree everywhere."""
    ok = np.isfinite(y) & np.isfinite(net) & np.isfinite(base)
    if not ok.any():
        return 1.0
    dd = (net - base)[ok]
    rr = (y - base)[ok]
    sdd = float(dd @ dd)
    if not sdd > 0.0:
        return 1.0
    return float(np.clip(float(dd @ rr) / sdd, 0.0, 1.0))


class BlendMTGNet(GainEstimator):
    """``alpha * MTGNet + (1 - alpha) * pooled pair estimate``, ``alpha`` fitted per fit.

    ``model``: an unfitted :class:`~mtgfast.estimators.mtgnet.MTGNet` (its options as given;
    ``warm_start_from`` may be a previous ``BlendMTGNet`` or MTGNet). ``alpha``: None fits one
    shared weight on the out-of-fold entries of the measured rows of >= 2 tasks (the network's
    held-out rows, ``MTGNet.predict_held_out``, against the base's leave-one-out); a number in
    [0, 1] fixes it. ``max_size`` pools only measured combinations of at most that many tasks
    (``base="pairs"`` only). ``base``: :data:`BLEND_BASES`. ``task_shrink``: None, one weight
    for all tasks; a number c >= 0, one weight per task, ``(n_j alpha_j + c alpha) / (n_j + c)``
    with ``alpha_j`` fitted on task j's ``n_j`` out-of-fold entries alone and ``alpha`` the shared
    one (tasks differ in how well the network predicts them; c rows' worth of trust in the
    shared weight). Members: ``alpha`` times a network member plus ``1 - alpha`` times the
    base, for ``base="ridge"`` one draw of its posterior each (``RidgeSurrogate.predict_draws``,
    centred), so the spread keeps the base's uncertainty when ``alpha`` is small; the pooled
    pairs are one estimate for every member.
    """

    def __init__(self, model: Any = None, alpha: float | None = None,
                 max_size: int | None = None, base: str = "pairs",
                 task_shrink: float | None = None) -> None:
        self.model = model
        self.alpha = alpha
        self.max_size = max_size
        self.base_kind = base
        self.task_shrink = task_shrink

    def get_params(self) -> dict[str, Any]:
        return {"model": self.model, "alpha": self.alpha, "max_size": self.max_size,
                "base": self.base_kind, "task_shrink": self.task_shrink}

    def _check(self) -> Any:
        from .mtgnet import MTGNet

        model = unfitted_copy(MTGNet() if self.model is None else self.model, MTGNet)
        a = self.alpha
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or
                              not 0.0 <= float(a) <= 1.0):
            raise InputError(f"alpha must be None or a number in [0, 1], got {a!r}")
        if not isinstance(self.base_kind, str) or self.base_kind not in BLEND_BASES:
            raise InputError(f"base must be one of {', '.join(BLEND_BASES)}, got "
                             f"{self.base_kind!r}")
        c = self.task_shrink
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or
                              not 0.0 <= float(c) < float("inf")):
            raise InputError(f"task_shrink must be None or a finite number >= 0, got {c!r}")
        if c is not None and a is not None:
            raise InputError("task_shrink shrinks fitted per-task weights; alpha fixes the weight "
                             "(give one of them)")
        if self.base_kind == "ridge" and self.max_size is not None:
            raise InputError("max_size is an option of base='pairs' (the pooled pairs), not of "
                             "base='ridge'")
        return checked_inner_network(model, self.max_size, BlendMTGNet)

    def _check_params(self) -> None:
        """Bad options (the blend's and its network's) raise ``InputError`` before any training
        (what ``make_estimator`` and ``Study`` call)."""
        self._check()

    def _fit(self, table: GainTable) -> None:
        model = self._check()
        self.model_: MTGNet = model.fit(table)
        self.train_masks_ = table.masks.copy()
        if self.base_kind == "ridge":
            from .ridge import RidgeSurrogate

            self.ridge_ = RidgeSurrogate().fit(table)
            self.base_loo_ = self.ridge_.loo_
        else:
            self.pairs_ = pooled_pair_matrix(table, self.max_size)
            self.base_loo_ = pooled_pair_loo(table, self.max_size)
        if self.alpha is not None:
            #: the network's weight: one number, or one per task (``task_shrink``)
            self.alpha_: float | FloatArray = float(self.alpha)
            return
        multi = np.flatnonzero(table.member().sum(axis=1) >= 2)
        oof, count = self.model_.predict_held_out(table.masks[multi])
        held = np.asarray(count) > 0
        y, net, base = (table.gains[multi][held], np.asarray(oof)[held],
                        self.base_loo_[multi][held])
        shared = blend_weight(y, net, base)
        self.alpha_ = shared
        #: how many out-of-fold rows the weight was fitted on
        self.n_alpha_rows_ = int(held.sum())
        if self.task_shrink is not None:
            c = float(self.task_shrink)
            ok = np.isfinite(y) & np.isfinite(net) & np.isfinite(base)
            per = np.empty(table.n_tasks)
            for j in range(table.n_tasks):
                n_j = float(ok[:, j].sum())
                a_j = blend_weight(y[:, j], net[:, j], base[:, j])
                per[j] = shared if n_j + c == 0 else (n_j * a_j + c * shared) / (n_j + c)
            self.alpha_ = per

    def _fitted(self, masks: object) -> MaskArray:
        if not hasattr(self, "model_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(table) "
                             "first")
        return as_masks(masks, self.n_tasks_)

    def base(self, masks: object) -> FloatArray:
        """The low-capacity side of the blend on ``masks``: the pooled pair estimate, or the
        ridge surrogate's."""
        m = self._fitted(masks)
        if self.base_kind == "ridge":
            return self.ridge_.predict(m)
        return aggregate_pairs(m, self.pairs_, backend="auto")

    def predict(self, masks: object, **kwargs: Any) -> Any:
        """The blend; ``return_std=True`` also returns its spread: ``alpha`` times the network's
        for ``base="pairs"`` (one estimate, no spread of its own), ``sqrt((alpha s_net)^2 +
        ((1 - alpha) s_ridge)^2)`` for ``base="ridge"`` (the ridge's posterior spread; the two
        are independent; :meth:`predict_members`' sample spread estimates it)."""
        m = self._fitted(masks)
        out = self.model_.predict(m, **kwargs)
        if not isinstance(out, tuple):
            return self.alpha_ * out + (1.0 - self.alpha_) * self.base(m)
        if self.base_kind != "ridge":
            return self.alpha_ * out[0] + (1.0 - self.alpha_) * self.base(m), \
                self.alpha_ * out[1]
        base, base_std = self.ridge_.predict(m, return_std=True)
        return self.alpha_ * out[0] + (1.0 - self.alpha_) * base, \
            np.hypot(self.alpha_ * out[1], (1.0 - self.alpha_) * base_std)

    def predict_members(self, masks: object, **kwargs: Any) -> FloatArray:
        """Each member's blend ``(n_estimators, n_masks, n_tasks)``: a network member, and for
        ``base="ridge"`` one draw of the ridge posterior (centred: the members' mean is the
        blend), so the spread holds the base's uncertainty too, not only the network's share."""
        m = self._fitted(masks)
        net = self.model_.predict_members(m, **kwargs)
        if self.base_kind == "ridge" and net.shape[0] >= 2:
            base = self.ridge_.predict_draws(m, net.shape[0], int(self.model_.seed))
        else:
            base = self.base(m)[None]
        return self.alpha_ * net + (1.0 - self.alpha_) * base

    def predict_held_out(self, masks: object) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Out-of-fold blend of training rows: the network's held-out estimate (NaN where no
        member held the row out) blended with the base's leave-one-out; and the members' count."""
        m = self._fitted(masks)
        oof, count = self.model_.predict_held_out(m)
        pos = {int(x): r for r, x in enumerate(self.train_masks_.tolist())}
        rows = np.array([pos.get(int(x), -1) for x in m.tolist()], dtype=np.intp)
        base = np.where((rows >= 0)[:, None], self.base_loo_[np.maximum(rows, 0)], np.nan)
        base = np.where(masks_to_dense(m, self.n_tasks_), base, np.nan)
        return self.alpha_ * oof + (1.0 - self.alpha_) * base, count

    def _predict(self, masks: MaskArray) -> FloatArray:
        out = self.predict(masks)
        assert isinstance(out, np.ndarray)
        return out

    def embeddings(self, member: int | None = 0) -> FloatArray:
        """The network's learned task embeddings (:meth:`MTGNet.embeddings`; the base has none)."""
        if not hasattr(self, "model_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet: call fit(table) "
                             "first")
        return self.model_.embeddings(member)

    @property
    def n_epochs_(self) -> int:
        return int(getattr(getattr(self, "model_", None), "n_epochs_", 0))


def ridge_blend(**options: Any) -> BlendMTGNet:
    """The default estimator ``"mtgnet"`` of a study and of the command line:
    ``BlendMTGNet(MTGNet(**options), base="ridge")`` (the best configuration of issue 13's
    fifteenth pass; ``"mtgnet-plain"`` is the network alone). ``options``: MTGNet's."""
    from .mtgnet import MTGNet

    return BlendMTGNet(MTGNet(**options), base="ridge")
