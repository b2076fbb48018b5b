"""Selectors that sample what the grouping search needs, not what has a large |gain|.

:class:`SearchSelector` runs the grouping search on what is known (measured gains of the measured
combinations, an optimistic estimate ``mean + kappa * std`` of the others) for every budget and
proposes the unmeasured groups the search would choose, most often chosen first: the loop verifies
the groups a grouping would be built from, and each verified group stays in the final search with
its measured gains. Slots the searches leave free go, per task, to the candidate with the largest
optimistic gain for that task. With ``committee=True`` the same searches also run on each
ensemble member's estimates (a draw from the posterior over gains), so a group is ranked by how
many of those searches choose it (``mean_votes``: the weight of the mean's searches against one
member's). ``complete=True`` first spends the slots on finishing the mean's groupings (fewest
unmeasured groups first), so the final search among measured groups can pick them; ``free=
"thompson"`` fills each free slot from one posterior draw (a member drawn per task) instead of
the mean. ``shrink_known=True`` has the searches read the measured gains shrunk towards the
estimate by their noise (:func:`~mtgfast.study.final.shrunk_measured_gains`, the replicate
variances given to :meth:`SearchSelector.bind`), as ``final="shrunk"`` does for the final
choice: a noisy measurement does not pin a group in or out of every search. ``calibrate=True``
scales each task's ensemble spread in the optimism by how far it understates the model's error
on that task: the out-of-fold residuals of the measured rows
(``predict_held_out``) against the spread on the candidates. :class:`PairsFirstSelector`
measures every pair first (a covering design; it pays N(N-1)/2 measured combinations, HOA's
cost), or a balanced ``fraction`` of them, then delegates to another selector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import InputError, InputTypeError
from ..gains import GainTable
from ..grouping import group
from ..masks import MaskArray, popcount
from .active import RandomSelector, SelectionContext, Selector, make_selector
from .final import out_of_fold_residuals, shrunk_measured_gains, spread_calibration

__all__ = ["FREE_CHOICES", "PairsFirstSelector", "SearchSelector", "checked_budgets", "search_method"]

#: how a slot the searches leave free is filled (see SearchSelector)
FREE_CHOICES = ("mean", "thompson")
#: complete=True: up to this many distinct groupings, the best set of them is found exactly
_EXACT_COMPLETE = 12
#: above this many tasks the per-batch searches use the beam search (exact stays cheap below)
_EXACT_MAX_TASKS = 12


def _check_number(name: str, value: object, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise InputTypeError(f"{name} must be a finite number, got {value!r}")
    if float(value) < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    return float(value)


def search_method(n_tasks: int) -> Literal["exact", "beam"]:
    """The grouping search a selector runs at each ask: exact up to ``_EXACT_MAX_TASKS`` tasks,
    the beam above."""
    return "exact" if n_tasks <= _EXACT_MAX_TASKS else "beam"


def _restricted(ctx: SelectionContext, tasks: tuple[int, ...],
                keep: npt.NDArray[np.bool_] | None = None) -> SelectionContext:
    """``ctx`` serving only ``tasks`` (each keeps its round, hence its streams), among the
    candidates ``keep`` (default all)."""
    rounds = tuple(ctx.rounds[ctx.tasks.index(j)] for j in tasks) if ctx.rounds else ()
    if keep is None:
        return replace(ctx, tasks=tasks, rounds=rounds)
    return replace(ctx, tasks=tasks, rounds=rounds, candidates=ctx.candidates[keep],
                   member=ctx.member[keep],
                   mean=None if ctx.mean is None else ctx.mean[keep],
                   std=None if ctx.std is None else ctx.std[keep])


def checked_budgets(budgets: Sequence[int] | None) -> list[int] | None:
    """A selector's ``budgets`` option: None (every budget 2..N) or a non-empty list of positive
    ints; ``InputError`` naming the value otherwise."""
    if budgets is None:
        return None
    b = [int(x) for x in budgets]
    if not b or min(b) < 1:
        raise InputError(f"budgets must be positive ints, got {budgets!r}")
    return b


class SearchSelector(Selector):
    """Propose the unmeasured groups that the grouping search picks on optimistic estimates.

    ``kappa``: optimism, in ensemble standard deviations (0 = the mean alone). ``budgets``: the
    budgets searched (default 2..N). ``committee``: also search on each member's estimates (the
    bound loop's estimator must have ``predict_members``; otherwise the mean alone), the mean's
    searches weighted ``mean_votes`` times one member's, in the first ``committee_rounds`` rounds
    (None: all). ``calibrate``: the spread of task j is multiplied by
    ``sqrt(residual_j / spread_j)`` (:meth:`calibration`); needs ``kappa > 0`` to matter.
    ``explore``: the probability that a slot is filled uniformly at random among the candidates
    containing its task instead (decided and drawn from the slot's own streams, seeded by (seed,
    round, task)); the other slots go to the searches as usual (epsilon-greedy; 0: never).
    ``explore_after``: the slots of the first this many rounds are all searched (exploration only
    once the estimate has rows of its own choosing; 0: from the first round). ``shrink_known``:
    the searches read the measured gains shrunk towards the fit's out-of-fold estimate by their
    noise (the ``noise`` table given to :meth:`bind`: replicate variances; without it the noise is
    estimated from the residuals), not the raw measurements. The
    measured gains come from :meth:`bind` (the loop whose table is read at each batch); unbound,
    measured combinations are left out of the search, which then only ranks unmeasured groups.
    """

    name = "search"
    needs_std = True

    def __init__(self, kappa: float = 1.0, budgets: Sequence[int] | None = None,
                 committee: bool = False, mean_votes: float = 1.0,
                 committee_rounds: int | None = None, complete: bool = False,
                 free: str = "mean", calibrate: bool = False, explore: float = 0.0,
                 explore_after: int = 0, shrink_known: bool = False) -> None:
        self.kappa = _check_number("kappa", kappa)
        self.explore = _check_number("explore", explore)
        if self.explore > 1.0:
            raise InputError(f"explore must be a probability in [0, 1], got {explore}")
        if isinstance(explore_after, bool) or not isinstance(explore_after, (int, np.integer)):
            raise InputTypeError(f"explore_after must be an int (a count of rounds), got "
                                 f"{explore_after!r}")
        if explore_after < 0:
            raise InputError(f"explore_after must be >= 0, got {explore_after}")
        self.explore_after = int(explore_after)
        if not isinstance(calibrate, (bool, np.bool_)):
            raise InputTypeError(f"calibrate must be a bool, got {calibrate!r}")
        self.calibrate = bool(calibrate)
        if not isinstance(shrink_known, (bool, np.bool_)):
            raise InputTypeError(f"shrink_known must be a bool, got {shrink_known!r}")
        self.shrink_known = bool(shrink_known)
        self.mean_votes = _check_number("mean_votes", mean_votes)
        if committee_rounds is not None and (isinstance(committee_rounds, bool) or not isinstance(
                committee_rounds, (int, np.integer)) or committee_rounds < 1):
            raise InputError(f"committee_rounds must be a positive int or None, got "
                             f"{committee_rounds!r}")
        self.committee_rounds = None if committee_rounds is None else int(committee_rounds)
        if not isinstance(committee, (bool, np.bool_)):
            raise InputTypeError(f"committee must be a bool, got {committee!r}")
        self.committee = bool(committee)
        if not isinstance(complete, (bool, np.bool_)):
            raise InputTypeError(f"complete must be a bool, got {complete!r}")
        self.complete = bool(complete)
        if free not in FREE_CHOICES:
            raise InputError(f"free must be one of {', '.join(FREE_CHOICES)}, got {free!r}")
        self.free = str(free)
        self.budgets = checked_budgets(budgets)
        self._known: Callable[[], GainTable] | None = None
        self._loop: Any = None
        self._noise: GainTable | None = None

    def bind(self, loop: Any, noise: GainTable | None = None) -> SearchSelector:
        """Read measured gains from ``loop.table()`` (an :class:`ActiveLoop`) at each batch;
        ``noise``: the per-entry noise variances of the measurements (replicates), read by
        ``shrink_known``."""
        if not callable(getattr(loop, "table", None)):
            raise InputTypeError("bind() needs an object with a table() method (an ActiveLoop)")
        if noise is not None and not isinstance(noise, GainTable):
            raise InputTypeError(f"noise must be a GainTable of noise variances or None, got "
                                 f"{type(noise).__name__}")
        self._known = loop.table
        self._loop = loop
        self._noise = noise
        return self

    def _known_gains(self, known: GainTable, unmeasured: MaskArray) -> Any:
        """The measured gains the searches read: as measured, or (``shrink_known``) shrunk
        towards the fit's out-of-fold estimate; raw where the fit cannot tell (no held-out
        record)."""
        est = getattr(self._loop, "estimator_", None)
        if not self.shrink_known or not callable(getattr(est, "predict_held_out", None)):
            return known.gains
        try:
            return shrunk_measured_gains(known, est, unmeasured, self._noise)
        except InputError:    # an estimator without a record of its held-out rows
            return known.gains

    def _member_gains(self, ctx: SelectionContext) -> list[Any]:
        """Each ensemble member's gains on the candidates (committee), [] when unavailable."""
        if not self.committee or self._loop is None:
            return []
        if self.committee_rounds is not None and ctx.rounds and \
                min(ctx.rounds) >= self.committee_rounds:
            return []   # later rounds: the mean's searches alone
        return self._members(ctx)

    def _members(self, ctx: SelectionContext) -> list[Any]:
        """Each ensemble member's gains on the candidates, [] when the fit has no members."""
        if self._loop is None:
            return []
        members = getattr(getattr(self._loop, "estimator_", None), "predict_members", None)
        if not callable(members):
            return []
        return list(np.asarray(members(ctx.candidates), dtype=np.float64))

    def ask(self, ctx: SelectionContext) -> MaskArray:
        if ctx.mean is None or not ctx.tasks:
            return super().ask(ctx)
        if self.explore > 0.0:
            return self._explore(ctx)
        return self._search(ctx)

    def _explore(self, ctx: SelectionContext) -> MaskArray:
        """Slots drawn to explore are served as :class:`RandomSelector` serves them; the other
        slots are searched among the candidates left."""
        rounds = ctx.rounds or (0,) * len(ctx.tasks)
        draw = {j: r >= self.explore_after and ctx.rng_for(j, stream=1).random() < self.explore
                for j, r in zip(ctx.tasks, rounds)}
        if not any(draw.values()):   # (every round before explore_after, or no slot drawn)
            return self._search(ctx)
        picked = RandomSelector().ask(_restricted(ctx, tuple(j for j in ctx.tasks if draw[j])))
        left = tuple(j for j in ctx.tasks if not draw[j])
        keep = ~np.isin(ctx.candidates, picked)
        if not left or not keep.any():
            return picked
        return np.concatenate([picked, self._search(_restricted(ctx, left, keep))])

    def _search(self, ctx: SelectionContext) -> MaskArray:
        assert ctx.mean is not None   # (ask() hands an unfitted context to Selector.ask)
        n = ctx.member.shape[1]
        std = ctx.std if ctx.std is not None else np.zeros_like(ctx.mean)
        known = self._known() if self._known is not None else None
        if self.calibrate and self.kappa > 0 and known is not None:
            std = std * self.calibration(ctx, known)[None, :]
        opt = np.where(ctx.member, ctx.mean + self.kappa * np.nan_to_num(std), np.nan)
        masks, gains = ctx.candidates, opt
        fresh: slice | npt.NDArray[np.bool_] = slice(None)
        if known is not None:
            # a candidate measured meanwhile (another driver) is searched once, at its measurement
            fresh = ~np.isin(ctx.candidates, known.masks)
            masks = np.concatenate([known.masks, ctx.candidates[fresh]])
            known_gains = self._known_gains(known, ctx.candidates[fresh])
            gains = np.vstack([known_gains, opt[fresh]])
        budgets = self.budgets or list(range(2, n + 1))
        method = search_method(n)
        votes: dict[int, float] = {}
        views = [gains]
        if known is not None:   # (bound: known is the loop's table)
            # committee: the same searches on each member's estimates (a draw of the posterior);
            # a group's votes ~ how likely it is to be in the best grouping
            views += [np.vstack([known_gains, g[fresh]]) for g in self._member_gains(ctx)]
        mean_groupings: list[list[int]] = []
        for v, view in enumerate(views):
            weight = self.mean_votes if v == 0 and len(views) > 1 else 1.0
            for g in group(masks, np.nan_to_num(view, nan=0.0), budgets, method=method):
                if v == 0:
                    mean_groupings.append([int(m) for m in g.groups.tolist()])
                for m in g.groups.tolist():
                    votes[int(m)] = votes.get(int(m), 0.0) + weight
        row_of = {int(m): r for r, m in enumerate(ctx.candidates.tolist())}
        # the predicted total gain of a group breaks ties between equally voted groups
        total = np.nansum(opt, axis=1)
        count = len(ctx.tasks)
        out = self._completing(mean_groupings, row_of, count) if self.complete else []
        chosen = set(out)
        wanted = sorted((m for m in votes if m in row_of and m not in chosen),
                        key=lambda m: (-votes[m], -total[row_of[m]], m))
        out += wanted[:count - len(out)]
        taken = np.zeros(ctx.candidates.shape[0], dtype=bool)
        for m in out:
            taken[row_of[m]] = True
        served = {j for m in out for j in range(n) if (m >> j) & 1}
        rest = [j for j in ctx.tasks if j not in served] + [j for j in ctx.tasks if j in served]
        draws: list[Any] | None = None
        for j in rest:
            if len(out) >= count:
                break
            rows = np.flatnonzero(ctx.member[:, j] & ~taken)
            if rows.size == 0:
                continue
            score = opt[rows, j]
            if self.free == "thompson":
                # one posterior draw per free slot: a member drawn from the task's own stream
                draws = self._members(ctx) if draws is None else draws
                if draws:
                    k = int(ctx.rng_for(j).integers(len(draws)))
                    score = draws[k][rows, j]
            r = int(rows[int(np.argmax(score))])
            taken[r] = True
            out.append(int(ctx.candidates[r]))
        return np.array(out, dtype=np.uint64)

    def calibration(self, ctx: SelectionContext, known: GainTable) -> npt.NDArray[np.float64]:
        """Per task, how many times its error on unseen rows exceeds the ensemble spread
        (:func:`~mtgfast.study.final.spread_calibration` of the bound loop's fit on the
        candidates); 1 where either is unknown (no out-of-fold rows yet, no spread)."""
        n = ctx.member.shape[1]
        ones = np.ones(n)
        est = getattr(self._loop, "estimator_", None)
        if not callable(getattr(est, "predict_held_out", None)) or ctx.std is None:
            return ones
        try:
            oof = out_of_fold_residuals(known, est)
        except InputError:    # an estimator without a record of its held-out rows
            return ones
        return spread_calibration(oof, ctx.member, ctx.std)

    @staticmethod
    def _completing(groupings: list[list[int]], row_of: dict[int, int], count: int) -> list[int]:
        """Unmeasured groups (at most ``count``) that finish the most of ``groupings`` (one per
        budget; finished = all its unmeasured groups asked), then the fewest groups: exact over
        the subsets of distinct groupings when there are at most :data:`_EXACT_COMPLETE` of
        them, else greedily (the most groupings finished per slot first)."""
        need = [[m for m in dict.fromkeys(g) if m in row_of] for g in groupings]
        need = [g for g in need if g]
        distinct = list(dict.fromkeys(tuple(g) for g in need))
        bit = {m: b for b, m in enumerate(dict.fromkeys(m for g in distinct for m in g))}
        masks = [sum(1 << bit[m] for m in g) for g in distinct]
        weight = [sum(tuple(g) == d for g in need) for d in distinct]

        def score(union: int) -> int:
            return sum(w for gm, w in zip(masks, weight) if gm & ~union == 0)

        if len(distinct) <= _EXACT_COMPLETE:
            unions = [0] * (1 << len(distinct))
            best = (0, 0, 0)   # (finished, -groups, -subset): the first best subset wins ties
            for sub in range(1, 1 << len(distinct)):
                low = (sub & -sub).bit_length() - 1
                unions[sub] = unions[sub & (sub - 1)] | masks[low]
                size = unions[sub].bit_count()
                if size <= count:
                    key = (score(unions[sub]), -size, -sub)
                    best = key if key > best else best
            union = unions[-best[2]] if best[0] else 0
        else:
            union = 0
            while True:
                have, size = score(union), union.bit_count()
                picks = [(-(score(union | gm) - have) / ((union | gm).bit_count() - size), i)
                         for i, gm in enumerate(masks) if gm & ~union and
                         (union | gm).bit_count() <= count]
                if not picks:
                    break
                union |= masks[min(picks)[1]]
        return [m for m, b in bit.items() if union >> b & 1]

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        # used only before the first fit (no predictions): uniform, from the task's own stream
        return int(ctx.rng_for(task).integers(rows.size))


class PairsFirstSelector(Selector):
    """Measure every pair of tasks first (task j's unmeasured pairs while serving j), then hand
    the slots to ``then`` (a selector name or instance; default ``"search"``).

    ``fraction`` < 1: only until that fraction of the N(N-1)/2 pairs is measured, chosen as a
    balanced design (task j's partner is the task with the fewest pairs measured or asked so far,
    ties by cyclic distance j+1, j+2, ...), so every task has about as many pairs."""

    name = "pairs-first"

    def __init__(self, then: str | Selector = "search", fraction: float = 1.0,
                 **options: Any) -> None:
        self.fraction = _check_number("fraction", fraction)
        if not 0.0 < self.fraction <= 1.0:
            raise InputError(f"fraction must be in (0, 1], got {fraction}")
        self.then = make_selector(then, **options) if isinstance(then, str) else then
        if not isinstance(self.then, Selector):
            raise InputTypeError(f"then must be a selector name or a Selector, got {then!r}")
        self.needs_std = self.then.needs_std  # type: ignore[misc]

    def bind(self, loop: Any, noise: GainTable | None = None) -> PairsFirstSelector:
        """Bind the delegate (see :meth:`SearchSelector.bind`)."""
        if hasattr(self.then, "bind") and noise is not None:
            self.then.bind(loop, noise=noise)
        elif hasattr(self.then, "bind"):
            self.then.bind(loop)
        return self

    def ask(self, ctx: SelectionContext) -> MaskArray:
        pairs = popcount(ctx.candidates) == 2
        if not pairs.any():
            return self.then.ask(ctx)
        if self.fraction < 1.0:
            return self._balanced(ctx, pairs)
        out: list[int] = []
        taken = np.zeros(ctx.candidates.shape[0], dtype=bool)
        for j in ctx.tasks:
            rows = np.flatnonzero(ctx.member[:, j] & pairs & ~taken)
            if rows.size == 0:
                rows = np.flatnonzero(pairs & ~taken)
            if rows.size == 0:
                break
            taken[rows[0]] = True
            out.append(int(ctx.candidates[rows[0]]))
        return np.array(out, dtype=np.uint64)

    def _balanced(self, ctx: SelectionContext, pairs: npt.NDArray[np.bool_]) -> MaskArray:
        """``fraction`` < 1: balanced pairs until the quota is met, the rest of the slots to
        ``then`` (asked for the tasks left, on the candidates not taken)."""
        n = ctx.member.shape[1]
        measured = ctx.measured[popcount(ctx.measured) == 2]
        quota = int(np.ceil(self.fraction * n * (n - 1) / 2)) - measured.size
        degree = np.zeros(n, dtype=np.int64)
        for m in measured.tolist():
            degree[[j for j in range(n) if (m >> j) & 1]] += 1
        row_of = {int(m): r for r, m in enumerate(ctx.candidates.tolist())}
        out: list[int] = []
        left: list[int] = []
        for j in ctx.tasks:
            if len(out) >= quota:
                left.append(j)
                continue
            best: tuple[int, int, int] | None = None
            for d in range(1, n):
                k = (j + d) % n
                m = (1 << j) | (1 << k)
                r = row_of.get(m)
                if r is None or not pairs[r] or m in out:
                    continue
                key = (int(degree[k]), d, r)
                best = key if best is None or key < best else best
            if best is None:
                left.append(j)
                continue
            out.append(int(ctx.candidates[best[2]]))
            degree[[j, (j + best[1]) % n]] += 1
        if left:
            keep = ~np.isin(ctx.candidates, np.array(out, dtype=np.uint64))
            sub = SelectionContext(tuple(left), ctx.candidates[keep], ctx.member[keep],
                                   None if ctx.mean is None else ctx.mean[keep],
                                   None if ctx.std is None else ctx.std[keep], ctx.measured,
                                   ctx.seed, tuple(r for j, r in zip(ctx.tasks, ctx.rounds)
                                                   if j in left) if ctx.rounds else ())
            out += [int(m) for m in self.then.ask(sub).tolist()]
        return np.array(out, dtype=np.uint64)

    def choose(self, task: int, rows: npt.NDArray[np.intp], ctx: SelectionContext) -> int:
        return 0
