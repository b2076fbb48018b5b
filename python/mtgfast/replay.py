"""Replay benchmark: the MTG-Net paper's evaluation protocol on recorded gain tables.

For each method and each budget ``B``: choose at most ``B`` groups among the recorded combinations
with the exact (or beam) search on *that method's* gains, serve each task by its chosen group with
the highest gain under those same gains, then score the *test* gains of those assignments, averaged
over the ``N`` tasks. Singletons (gain 0) are always candidates and cost budget like any group.

Methods: ``oracle`` selects on validation gains, ``test-oracle`` on test gains (an upper bound),
``hoa``/``tag`` on estimate tables (HOA defaults to the estimate from the validation pairs),
``random`` is the random grouping baseline, and any name starting with ``mtgnet`` comes from
``mtgfast.study.replay_methods.replay_method`` (imported only when asked for).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from .checks import check_int, is_int
from .errors import InputError, InputTypeError, did_you_mean
from .files import atomic_write
from .gains import FloatArray, GainTable
from .masks import MAX_TASKS, popcount
from .progress import progress as progress_bar

if TYPE_CHECKING:
    from .grouping import Method, Uncovered

#: replay seeds per call (each seed replays every method on the whole table)
MAX_SEEDS = 1000
_BUDGET_PART = re.compile(r"[0-9]+(-[0-9]+)?")


__all__ = ["BUILTIN_METHODS", "JSON_DECIMALS", "TABLE_DECIMALS", "MethodResult", "ReplayResult",
           "parse_budgets", "replay"]

BUILTIN_METHODS = ("oracle", "test-oracle", "hoa", "tag", "random")
#: Decimal places of the percent table and of the fractions written to JSON by default.
TABLE_DECIMALS = 2
JSON_DECIMALS = 6
#: Seeded methods are averaged over seeds ``0 .. seeds - 1``.
SEEDED_PREFIXES = ("random", "mtgnet")


@dataclass(frozen=True)
class MethodResult:
    """One method's curve: mean test gain per budget, and how many true gains it consumed."""

    average_test_gain: tuple[float, ...]
    measured: int
    std: tuple[float, ...] | None = None  # over seeds (mtgnet*) or random trials (random)
    groups: tuple[tuple[int, ...], ...] | None = None  # chosen masks per budget (first seed)


@dataclass(frozen=True)
class ReplayResult:
    """Curves of all methods on one dataset; ``to_dict`` gives the documented JSON shape."""

    dataset: str
    n_tasks: int
    budgets: tuple[int, ...]
    methods: Mapping[str, MethodResult] = field(default_factory=dict)
    #: which gains scored the groupings: "test", or "validation" when no test table was given
    scored: str = "test"

    def to_dict(self, decimals: int | None = None) -> dict[str, Any]:
        """``{"dataset", "n_tasks", "budgets", "methods": {name: {"average_test_gain",
        "measured"}}}`` -- exactly the shape other tools read. Gains are fractions (0.05 = 5%),
        exact by default, or rounded to ``decimals`` places."""
        if decimals is not None and (not is_int(decimals) or decimals < 0):
            raise InputError(f"decimals must be a non-negative int or None, got {decimals!r}")

        def num(v: float) -> float:
            return float(v) if decimals is None else round(float(v), decimals)

        return {"dataset": self.dataset, "n_tasks": self.n_tasks, "budgets": list(self.budgets),
                "methods": {k: {"average_test_gain": [num(v) for v in r.average_test_gain],
                                "measured": int(r.measured)} for k, r in self.methods.items()}}

    def to_json(self, path: str | os.PathLike[str], decimals: int | None = JSON_DECIMALS) -> None:
        """Write :meth:`to_dict` as JSON (gains as fractions rounded to ``decimals`` places)."""
        d = self.to_dict(decimals)
        text = json.dumps(d, indent=2) + "\n"
        # whole or not at all: a failed write leaves the previous file as it was
        atomic_write(path, lambda tmp: Path(tmp).write_text(text))

    def format_table(self, decimals: int = TABLE_DECIMALS) -> str:
        """A plain-text table in percent (``decimals`` places): one row per method, one column
        per budget; the title says which gains scored the groupings."""
        name_w = max([len("method"), *(len(k) for k in self.methods)])
        w = max(8, 5 + decimals)
        head = f"{'method':<{name_w}}  {'measured':>8}  " + "  ".join(
            f"{'B=' + str(b):>{w}}" for b in self.budgets)
        title = (f"{self.dataset + ': ' if self.dataset else ''}average {self.scored} gain over "
                 f"{self.n_tasks} tasks, in % ({decimals} decimals); measured = combinations "
                 "of >= 2 tasks whose true gains the method used")
        lines = [title, head, "-" * len(head)]
        for k, r in self.methods.items():
            lines.append(f"{k:<{name_w}}  {r.measured:>8d}  " + "  ".join(
                f"{100 * v:>{w}.{decimals}f}" for v in r.average_test_gain))
        return "\n".join(lines)


def parse_budgets(spec: str | int | Iterable[int], n_tasks: int | None = None) -> tuple[int, ...]:
    """``"1-7"``, ``"3"``, ``"1,2,5"``, ``"1-3,6"`` or an iterable of ints -> sorted budgets."""
    out: set[int] = set()
    if isinstance(spec, str):
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if not _BUDGET_PART.fullmatch(part):   # ASCII digits ('1_0', '٢': refused)
                    raise ValueError(part)
                if "-" in part:
                    lo_s, hi_s = part.split("-", 1)
                    lo, hi = int(lo_s), int(hi_s)
                    if hi < lo:
                        raise InputError(f"budget range {part!r} is empty")
                    if hi > (n_tasks or MAX_TASKS):   # before the range fills the memory
                        raise InputError(f"budget {hi} exceeds the {n_tasks or MAX_TASKS} "
                                         "tasks" + ("" if n_tasks else " a gain table can have"))
                    out.update(range(lo, hi + 1))
                else:
                    out.add(int(part))
            except InputError:
                raise
            except ValueError as exc:
                raise InputError(f"budgets must look like '1-7' or '1,3,5', got {spec!r}") from exc
    elif is_int(spec):
        out.add(int(spec))
    else:
        try:
            items = list(cast(Iterable[object], spec))  # not iterable: the TypeError below
        except TypeError as exc:
            raise InputTypeError(f"budgets must be a string, an int or ints, got {spec!r}") from exc
        for b in items:
            if not is_int(b):
                raise InputTypeError(f"budgets must be ints, got {b!r}")
            out.add(int(b))
    if not out:
        raise InputError("no budget given")
    if min(out) < 1:
        raise InputError(f"budgets must be >= 1, got {min(out)}")
    if n_tasks is not None and max(out) > n_tasks:
        raise InputError(f"budget {max(out)} exceeds the {n_tasks} tasks (B = N already allows "
                         "every task alone)")
    return tuple(sorted(out))


def _n_multi(table: GainTable) -> int:
    """Combinations of >= 2 tasks in ``table``: what the ``measured`` column counts (singletons
    are every method's common baseline, so they are not counted for any)."""
    return int(np.count_nonzero(popcount(table.masks) >= 2))


def _aligned(table: GainTable | None, valid: GainTable, what: str) -> GainTable | None:
    if table is None:
        return None
    if not isinstance(table, GainTable):
        raise InputTypeError(f"{what} must be a GainTable, got {type(table).__name__}")
    table = table.aligned_to(valid.task_names, what, "the validation table")
    try:
        return table.reindex(valid.masks)
    except InputError as exc:
        raise InputError(f"{what} lacks a combination of the validation table: {exc}") from exc


def _select_and_score(valid: GainTable, select: FloatArray, test: GainTable,
                      budgets: Sequence[int], search: Method, beam_width: int,
                      uncovered: Uncovered) -> tuple[list[float], list[tuple[int, ...]]]:
    from .grouping import evaluate, group

    found = group(valid.masks, select, list(budgets), method=search, beam_width=beam_width,
                  uncovered=uncovered)
    by_budget = {g.budget: g for g in (found if isinstance(found, list) else [found])}
    missing = [b for b in budgets if b not in by_budget]
    if missing:  # group() leaves out budgets without a valid grouping
        raise InputError(f"no valid grouping with budget(s) {missing}: no such number of "
                         "recorded combinations covers every task (drop those budgets or use "
                         "uncovered='alone')")
    groupings = [by_budget[b] for b in budgets]
    scores = [float(evaluate(g, test)) for g in groupings]
    chosen = [tuple(int(m) for m in g.groups) for g in groupings]
    return scores, chosen


def _check_prediction(pred: object, valid: GainTable, name: str) -> FloatArray:
    p = np.array(pred, dtype=np.float64)
    if p.shape != valid.gains.shape:
        raise InputError(f"method {name!r} returned gains of shape {p.shape}, expected "
                         f"{valid.gains.shape} (one row per combination of the validation table)")
    member = valid.member()
    if not np.all(np.isfinite(p[member])):
        raise InputError(f"method {name!r} returned non-finite gains inside a combination")
    p[~member] = np.nan
    return p


def replay(valid: GainTable, test: GainTable | None = None, *,
           methods: Sequence[str] = ("oracle", "test-oracle", "hoa", "random"),
           budgets: str | int | Iterable[int] | None = None, hoa: GainTable | None = None,
           tag: GainTable | None = None, search: Literal["auto", "exact", "beam"] = "auto",
           beam_width: int = 5, seeds: int = 1, random_trials: int = 100_000,
           uncovered: Literal["singleton", "alone"] = "singleton", dataset: str = "",
           options: Mapping[str, Any] | None = None, progress: bool = False) -> ReplayResult:
    """Run the replay protocol (module docstring) and return every method's curve.

    ``test`` defaults to ``valid`` (Taskonomy-5 has one table). ``hoa``/``tag`` are estimate tables
    holding every combination of ``valid``. ``seeds`` averages the seeded methods (``random``,
    ``mtgnet*``) over seeds ``0..seeds-1``; ``options`` go to ``mtgnet*`` methods as keywords.
    ``progress``: a bar (plain lines off a terminal) per method and seed on stderr.
    """
    if not isinstance(valid, GainTable):
        raise InputTypeError(f"valid must be a GainTable, got {type(valid).__name__}")
    test_t = _aligned(test, valid, "test table") if test is not None else valid
    assert test_t is not None
    hoa_t = _aligned(hoa, valid, "HOA table")
    tag_t = _aligned(tag, valid, "TAG table")
    n = valid.n_tasks
    blist = parse_budgets(budgets if budgets is not None else f"1-{n}", n)
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m]
    names = [str(m).strip() for m in methods]
    if not names:
        raise InputError("no method given")
    if len(set(names)) != len(names):
        raise InputError(f"methods must be distinct, got {names}")
    for m in names:
        if m not in BUILTIN_METHODS and not m.startswith("mtgnet"):
            raise InputError(f"unknown method {m!r}; known: {', '.join(BUILTIN_METHODS)}, mtgnet*")
    if "tag" in names and tag_t is None:
        raise InputError("method 'tag' needs a TAG estimate table (--tag)")
    if search not in ("auto", "exact", "beam"):
        raise InputError(f"search must be 'auto', 'exact' or 'beam', got {search!r}")
    if uncovered not in ("singleton", "alone"):
        raise InputError(f"uncovered must be 'singleton' or 'alone', got {uncovered!r}")
    from .baselines.random import MAX_TRIALS  # (numba loads only when a baseline is scored)

    for what, v, lo, hi in (("seeds", seeds, 1, None), ("beam_width", beam_width, 1, None),
                            ("random_trials", random_trials, 1, MAX_TRIALS)):
        check_int(what, v, lo, hi)
    if seeds > MAX_SEEDS:
        raise InputError(f"seeds must be at most {MAX_SEEDS} (each replays every method on the "
                         f"whole table), got {seeds}")
    if options is not None and not isinstance(options, Mapping):
        raise InputTypeError(f"options must be a mapping, got {type(options).__name__}")
    opts = dict(options or {})
    if not isinstance(progress, (bool, np.bool_)):
        raise InputTypeError(f"progress must be a bool, got {progress!r}")
    plugins = [m for m in names if m not in BUILTIN_METHODS]
    if plugins:   # every mtgnet* name and option is checked before the first method runs
        _check_plugins(_plugin_module(plugins[0]), plugins, valid, opts)
    n_pairs = n * (n - 1) // 2
    steps = sum(seeds if name.startswith(SEEDED_PREFIXES) else 1 for name in names)
    bar = progress_bar(steps, f"replay {dataset or valid.meta.get('dataset', '')}".strip(),
                       bool(progress))
    try:
        results = _run_methods(names, valid, test_t, hoa_t, tag_t, blist, seeds, search,
                               beam_width, uncovered, random_trials, opts, n_pairs, bar)
    finally:
        bar.close()
    return ReplayResult(dataset or str(valid.meta.get("dataset", "")), n, blist,
                        MappingProxyType(results), "test" if test is not None else "validation")


def _run_methods(names: Sequence[str], valid: GainTable, test_t: GainTable,
                 hoa_t: GainTable | None, tag_t: GainTable | None, blist: tuple[int, ...],
                 seeds: int, search: Method, beam_width: int, uncovered: Uncovered, random_trials: int,
                 opts: dict[str, Any], n_pairs: int, bar: Any) -> dict[str, MethodResult]:
    results: dict[str, MethodResult] = {}
    for name in names:
        bar.set_postfix_str(name)
        if name in ("oracle", "test-oracle", "hoa", "tag"):
            if name == "oracle":
                select, measured = valid.gains, _n_multi(valid)
            elif name == "test-oracle":
                select, measured = test_t.gains, _n_multi(test_t)
            elif name == "hoa":
                if hoa_t is None:
                    from .estimators.hoa import HOA

                    hoa_t = HOA().fit(valid).predict_table(valid.masks)
                select, measured = hoa_t.gains, n_pairs
            else:
                assert tag_t is not None
                select, measured = tag_t.gains, 0
            scores, chosen = _select_and_score(valid, select, test_t, blist, search, beam_width,
                                               uncovered)
            results[name] = MethodResult(tuple(scores), int(measured), None, tuple(chosen))
            bar.update(1)
        elif name == "random":
            from .baselines import random_grouping_scores

            curves, stds = [], []
            for s in range(seeds):
                mean, std = random_grouping_scores(valid.masks, valid.gains, test_t.gains, blist,
                                                   n_trials=random_trials, seed=s,
                                                   uncovered=uncovered)
                curves.append(mean)
                stds.append(std)
                bar.update(1)
            results[name] = MethodResult(tuple(float(v) for v in np.mean(curves, axis=0)), 0,
                                         tuple(float(v) for v in np.mean(stds, axis=0)))
        else:
            results[name] = _replay_plugin(name, valid, test_t, blist, seeds, search, beam_width,
                                           uncovered, opts, bar)
    return results


def _check_plugins(mod: Any, names: Sequence[str], valid: GainTable,
                   opts: Mapping[str, Any]) -> None:
    """Unknown ``mtgnet*`` names and bad options are an InputError before any method runs (a
    plugin module without ``REPLAY_METHODS`` / ``check_method`` checks its calls itself)."""
    known = getattr(mod, "REPLAY_METHODS", None)
    if known is not None:
        for m in names:
            if m not in known:
                raise InputError(f"unknown method {m!r}{did_you_mean(m, known)} "
                                 f"(known: {', '.join((*BUILTIN_METHODS, *known))})")
    if "seed" in opts:
        raise InputError("options must not set 'seed': replay runs the seeded methods with seeds "
                         "0 .. seeds - 1 (seeds=)")
    check = getattr(mod, "check_method", None)
    if check is not None:
        for m in names:
            check(m, valid, seed=0, **opts)


def _plugin_module(name: str) -> Any:
    """``mtgfast.study.replay_methods`` (imported only when an ``mtgnet*`` method is asked for)."""
    try:
        return importlib.import_module("mtgfast.study.replay_methods")
    except ModuleNotFoundError as exc:
        if exc.name not in ("mtgfast.study.replay_methods", "mtgfast.study"):
            raise
        raise InputError(f"method {name!r} needs mtgfast.study.replay_methods, which is not "
                         "available in this installation") from exc


def _replay_plugin(name: str, valid: GainTable, test: GainTable, budgets: Sequence[int],
                   seeds: int, search: Method, beam_width: int, uncovered: Uncovered,
                   options: Mapping[str, Any], bar: Any) -> MethodResult:
    mod = _plugin_module(name)
    curves, measured_all, first_groups = [], [], None
    for s in range(seeds):
        pred, measured = mod.replay_method(name, valid, seed=s, **options)
        p = _check_prediction(pred, valid, name)
        scores, chosen = _select_and_score(valid, p, test, budgets, search, beam_width, uncovered)
        curves.append(scores)
        measured_all.append(int(measured))
        if first_groups is None:
            first_groups = tuple(chosen)
        bar.update(1)
    arr = np.array(curves)
    return MethodResult(tuple(float(v) for v in arr.mean(axis=0)),
                        int(round(float(np.mean(measured_all)))),
                        tuple(float(v) for v in arr.std(axis=0)), first_groups)
