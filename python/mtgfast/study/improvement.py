"""A selector that measures the groups expected to improve the final grouping the most.

The final grouping of ``mtgnet`` is built from measured groups only, so a measurement is worth
what it adds to that grouping. :class:`ImprovementSelector` scores each unmeasured candidate by its
expected improvement, over the budgets searched, of the best grouping of measured groups: its gains
are drawn from the estimate (``mean + std * z``, ``z`` standard normal, the same draws for every
candidate), and each draw is placed in the present best grouping of each budget, either added (when
the grouping has a free unit of budget) or replacing one of its groups; the improvement of a draw
is the best such move's gain over the present value, or 0. The one-move value is a lower bound of
what a new search with the candidate would find, and costs ``O(groups * tasks)`` per draw. A batch
of several is chosen one at a time, each chosen group entering the groupings at its mean (the
"believer" heuristic of batch Bayesian optimisation). This is expected improvement (Jones et al.
1998) with the grouping value as the objective, in place of the search sampler's vote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InputError, InputTypeError
from ..gains import GainTable
from ..grouping import group
from ..masks import MaskArray, masks_to_dense
from .active import RandomSelector, SelectionContext, Selector
from .sampling import checked_budgets, search_method

__all__ = ["ImprovementSelector", "improvement_scores"]

#: candidates scored at once (memory: chunk * samples * groups * tasks floats)
_CHUNK_ELEMENTS = 4_000_000

FloatArray = npt.NDArray[np.float64]


def _serving(gains: FloatArray) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Per task, over the groups of one grouping (``gains`` (m, N), -inf outside each group): the
    best gain, the second best and the group giving the best."""
    order = np.argsort(-gains, axis=0, kind="stable")
    best_at = order[0]
    cols = np.arange(gains.shape[1])
    best = gains[best_at, cols]
    second = gains[order[1], cols] if gains.shape[0] > 1 else np.full(gains.shape[1], -np.inf)
    return best, second, best_at


def improvement_scores(member: npt.NDArray[np.bool_], draws: FloatArray,
                       groupings: Sequence[tuple[FloatArray, int]]) -> FloatArray:
    """Expected one-move improvement of each candidate, summed over the groupings.

    ``member`` (C, N): the candidates' tasks; ``draws`` (S, C, N): sampled gains; ``groupings``:
    for each budget, the gains (m, N) of its groups (-inf outside a group) and the budget. A
    candidate enters a grouping by being added (if m < budget) or by replacing one of its groups;
    tasks left without a group make a replacement infeasible. Returns (C,) mean over the draws.
    """
    n_c = member.shape[0]
    total = np.zeros(n_c)
    if n_c == 0:
        return total
    for gains, budget in groupings:
        best, second, best_at = _serving(gains)
        value = float(best.sum())
        m = gains.shape[0]
        # serving gain of each task once group r is removed (m, N): -inf where nothing else serves
        without = np.where(best_at[None, :] == np.arange(m)[:, None], second[None, :], best[None, :])
        per = max(1, int(_CHUNK_ELEMENTS // max(1, draws.shape[0] * (m + 1) * member.shape[1])))
        for lo in range(0, n_c, per):
            mem = member[lo:lo + per]                                       # (c, N)
            x = draws[:, lo:lo + per, :]                                    # (S, c, N)
            # replace group r: tasks of the candidate take max(theirs without r, the draw)
            rep = np.where(mem[None, :, None, :], np.maximum(without[None, None], x[:, :, None, :]),
                           without[None, None])                             # (S, c, m, N)
            with np.errstate(invalid="ignore"):
                moves = rep.sum(axis=3)                                     # (S, c, m)
            moves = np.where(np.isnan(moves), -np.inf, moves)
            out = moves.max(axis=2)
            if m < budget:   # a free unit of budget: add the candidate
                add = np.where(mem[None], np.maximum(best[None, None], x), best[None, None])
                out = np.maximum(out, add.sum(axis=2))
            total[lo:lo + per] += np.maximum(out - value, 0.0).mean(axis=0)
    return total


class ImprovementSelector(Selector):
    """Propose the candidates with the largest expected improvement of the measured grouping.

    ``samples``: draws of each candidate's gains per ask. ``budgets``: the budgets whose
    groupings are improved (default 2..N). Must be bound to the loop (:meth:`bind`) to read the
    measured gains; before any fit (no estimate) slots are filled uniformly at random. Each pick
    costs ``samples * candidates * sum over budgets of (groups * tasks)`` operations: about 4e6
    at N = 8 (all 247 candidates), 1.3e10 at N = 27 with 20,000 — a small-N variant (eighth pass).
    """

    name = "improvement"
    needs_std = True

    def __init__(self, samples: int = 64, budgets: Sequence[int] | None = None) -> None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)):
            raise InputTypeError(f"samples must be an int, got {samples!r}")
        if not 1 <= int(samples) <= 4096:
            raise InputError(f"samples must be in [1, 4096], got {samples}")
        self.samples = int(samples)
        self.budgets = checked_budgets(budgets)
        self._loop: Any = None

    def bind(self, loop: Any) -> ImprovementSelector:
        """Read the measured gains from ``loop.table()`` (an :class:`ActiveLoop`) at each ask."""
        if not callable(getattr(loop, "table", None)):
            raise InputTypeError("bind() needs an object with a table() method (an ActiveLoop)")
        self._loop = loop
        return self

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        return RandomSelector().choose(task, rows, ctx)   # (unfitted: uniform, as documented)

    def ask(self, ctx: SelectionContext) -> MaskArray:
        if ctx.mean is None or not ctx.tasks or self._loop is None:
            return super().ask(ctx)
        known: GainTable = self._loop.table()
        n = ctx.member.shape[1]
        budgets = [b for b in (self.budgets or range(2, n + 1)) if b <= n]
        method = search_method(n)
        mean = np.where(ctx.member, ctx.mean, np.nan)
        std = np.where(ctx.member, np.nan_to_num(ctx.std if ctx.std is not None else 0.0), 0.0)
        rng = ctx.rng_for(ctx.tasks[0])
        z = rng.standard_normal((self.samples, 1, n))
        draws = np.nan_to_num(mean)[None] + std[None] * z                   # (S, C, N)
        masks = known.masks
        rows = np.nan_to_num(known.gains, nan=0.0)
        free = np.ones(ctx.candidates.shape[0], dtype=bool)
        out: list[int] = []
        for _ in range(len(ctx.tasks)):
            if not free.any():
                break
            found = group(masks, rows, budgets, method=method)
            dense = masks_to_dense(np.concatenate([g.groups for g in found]), n)
            row_of = {int(m): i for i, m in enumerate(masks.tolist())}
            groupings = []
            at = 0
            for g in found:
                k = g.groups.shape[0]
                gg = np.array([rows[row_of[int(m)]] for m in g.groups.tolist()])
                groupings.append((np.where(dense[at:at + k], gg, -np.inf), g.budget))
                at += k
            idx = np.flatnonzero(free)
            score = improvement_scores(ctx.member[idx], draws[:, idx, :], groupings)
            # ties (no draw improves anything): the larger predicted total gain, then the mask
            total = np.nansum(mean[idx], axis=1)
            pick = int(idx[np.lexsort((ctx.candidates[idx], -total, -score))[0]])
            free[pick] = False
            out.append(int(ctx.candidates[pick]))
            # believer: the chosen group joins the groupings at its mean for the rest of the batch
            masks = np.append(masks, ctx.candidates[pick])
            rows = np.vstack([rows, np.nan_to_num(mean[pick])])
        return np.array(out, dtype=np.uint64)
