"""Benchmarks of the grouping search: ours (C++ core) vs a plain numpy/Python implementation of
the same algorithm, timed in the same run; every result is checked against the reference.

Groups (one per size; ``backend`` axis ``ours``/``numpy``):
- ``exact-dp-N``: all 2^N - 1 combinations of N = 5..12 tasks, every budget 1..N (partition DP).
- ``beam-27-tasks-3000``, ``beam-27-tasks-100k``: width 5, budgets 1..27, both backends.
- ``beam-27-tasks-1M``: ours only; the numpy reference needs minutes at this size (about 140 s
  on the 2-core VM), so the 100k group gives the ratio and 1M checks validity and the < 2 s target.
- ``search: proven optimum N=27, <M> candidates, B=1..27`` (``backend`` ``ours``/``highs``):
  branch-and-bound on realistic tables (``synthetic_gain_tables``, 3,000 and 5,000 candidates)
  against scipy's MILP (HiGHS, textbook formulation, relative gap 1e-6 like ours) on the same
  instances in the same run; every budget, the optimum checked against HiGHS.
- ``search: beam+local search N=27, <M> candidates, B=1..27`` (``ls``/``plain``): the heuristic's
  time and its worst relative distance to the proven optimum, against the plain beam.
- ``search: beam+LS N=27 20k pool`` (``plain``/``ls``): beam + local search on a 20,379-candidate
  pool (``synthetic_gain_tables(27, n_random=20000)``), budgets 2..27, against the plain beam of
  the same run (``extra_info["ls_over_plain"]``); CI: a 2,379-candidate pool, once.
With ``--benchmark-disable`` (CI) each runs once; the 100k group shrinks to 10k, 1M to 200k, the
proven-optimum groups to one 300-candidate table. Timing targets are reported in ``extra_info``
and asserted only with ``MTGFAST_BENCH_TARGETS=1``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mtgfast import group
from mtgfast.generate import synthetic_gain_tables
from mtgfast.masks import all_masks, masks_to_dense, sample_masks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference_search as ref

_TIMES: dict[tuple[str, str], float] = {}


def _disabled(benchmark) -> bool:
    return bool(getattr(benchmark, "disabled", False))


def _table(n_tasks: int, masks: np.ndarray, seed: int) -> np.ndarray:
    """Random gains rounded to multiples of 1/1024: every sum is exact in float32 and float64,
    so ours and the reference must agree bit for bit (ties included)."""
    rng = np.random.default_rng(seed)
    gains = np.round(rng.normal(0.0, 0.1, size=(masks.shape[0], n_tasks)) * 1024) / 1024
    gains[~masks_to_dense(masks, n_tasks)] = np.nan
    return gains


def _check_target(benchmark, seconds: float, what: str) -> None:
    """Record whether a timing target is met; assert it only when MTGFAST_BENCH_TARGETS=1 (wall
    times on a shared 2-core VM vary several-fold with its load)."""
    if _disabled(benchmark):
        return
    met = benchmark.stats.stats.min < seconds
    benchmark.extra_info["target"] = f"{what} < {seconds} s: {'met' if met else 'MISSED'}"
    print(f"\n[target] {what} < {seconds} s: min {benchmark.stats.stats.min:.3f} s")
    if os.environ.get("MTGFAST_BENCH_TARGETS") == "1":
        assert met, benchmark.extra_info["target"]


def _run(benchmark, group_name: str, backend: str, fn, *args, **kwargs):
    """Benchmark fn(*args), remember its time, and report the speed-up of ours over numpy."""
    t0 = time.perf_counter()
    if backend == "numpy":  # slow: a few rounds are enough
        out = benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=3, iterations=1)
    else:
        out = benchmark(fn, *args, **kwargs)
    elapsed = time.perf_counter() - t0
    _TIMES[(group_name, backend)] = elapsed if _disabled(benchmark) else benchmark.stats.stats.min
    other = _TIMES.get((group_name, "numpy" if backend == "ours" else "ours"))
    if other is not None:
        ours = _TIMES[(group_name, "ours")]
        numpy_t = _TIMES[(group_name, "numpy")]
        benchmark.extra_info["speedup_vs_numpy"] = round(numpy_t / ours, 1)
        print(f"\n[{group_name}] ours {ours * 1e3:.2f} ms, numpy {numpy_t * 1e3:.1f} ms: "
              f"{numpy_t / ours:.0f}x")
    return out


# -- exact: partition DP over all combinations, every budget -----------------------------------
def _dp_ours(masks, gains, n):
    return {r.budget: r.value for r in group(masks, gains, range(1, n + 1), "exact")}


def _dp_numpy(masks, gains, n):
    return ref.reference_dp(masks, gains, list(range(1, n + 1)))


@pytest.mark.parametrize("backend", ["numpy", "ours"])
@pytest.mark.parametrize("n", list(range(5, 13)))
def test_exact_dp_all_combinations(benchmark, n, backend):
    benchmark.group = f"exact-dp-{n}"
    masks = all_masks(n)
    gains = _table(n, masks, seed=n)
    fn = _dp_ours if backend == "ours" else _dp_numpy
    got = _run(benchmark, benchmark.group, backend, fn, masks, gains, n)
    other = _dp_numpy(masks, gains, n) if backend == "ours" else _dp_ours(masks, gains, n)
    assert set(got) == set(range(1, n + 1))
    for b in range(1, n + 1):
        assert got[b] == other[b]
    if backend == "ours" and n == 12:
        _check_target(benchmark, 1.0, "exact N=12, all 4095 candidates, every budget")


# -- beam: N = 27 ---------------------------------------------------------------------------------
def _beam_ours(masks, gains):
    return {r.budget: (sorted(r.groups.tolist()), r.value)
            for r in group(masks, gains, range(1, 28), "beam", beam_width=5, local_search=False)}


def _beam_numpy(masks, gains):
    return {b: v for b, v in ref.reference_beam(masks, gains, list(range(1, 28)), 5).items()
            if v is not None}


@pytest.mark.parametrize("backend", ["numpy", "ours"])
@pytest.mark.parametrize("size", ["3000", "100k"])
def test_beam_27_tasks(benchmark, size, backend):
    count = {"3000": 3000, "100k": 100_000}[size]
    if _disabled(benchmark) and size == "100k":
        count = 10_000
    benchmark.group = f"beam-27-tasks-{size}"
    masks = sample_masks(27, count, seed=1)
    gains = _table(27, masks, seed=2)
    fn = _beam_ours if backend == "ours" else _beam_numpy
    got = _run(benchmark, benchmark.group, backend, fn, masks, gains)
    other = _beam_numpy(masks, gains) if backend == "ours" else _beam_ours(masks, gains)
    assert got == other
    assert 27 in got


def test_beam_27_tasks_1m(benchmark):
    benchmark.group = "beam-27-tasks-1M"
    masks = sample_masks(27, 200_000 if _disabled(benchmark) else 1_000_000, seed=1)
    gains = _table(27, masks, seed=3)
    res = _run(benchmark, benchmark.group, "ours", group, masks, gains, range(1, 28), "beam", beam_width=5,
               local_search=False)
    member = masks_to_dense(masks, 27)
    row_of = {int(m): i for i, m in enumerate(masks)}
    for r in res:  # every result is a valid grouping whose value is that of its groups
        assert len(r.groups) <= r.budget
        served = [gains[row_of[int(r.groups[a])], j] if int(r.groups[a]) in row_of else 0.0
                  for j, a in enumerate(r.assignment)]
        assert all(member[row_of[int(r.groups[a])], j] for j, a in enumerate(r.assignment)
                   if int(r.groups[a]) in row_of)
        assert r.value == pytest.approx(sum(served), abs=1e-9)
    values = [r.value for r in res]
    assert values == sorted(values)
    _check_target(benchmark, 2.0, "beam width 5, N=27, 1M candidates, B=1..27")


# -- proven optimum at N = 27: branch-and-bound vs HiGHS ------------------------------------------
_TABLES = {"3000": (0, 3000), "5000": (2, 5000)}
_OPT: dict[str, dict[int, float]] = {}


def _n27(size: str, disabled: bool):
    seed, n_random = (5, 300) if disabled else _TABLES[size]
    t = synthetic_gain_tables(27, n_random=n_random, seed=seed).valid
    return t.masks, t.gains


def _bnb_all(masks, gains):
    return group(masks, gains, range(1, 28), "bnb")


def _highs_all(masks, gains, budgets=range(1, 28)):
    return {b: ref.milp_optimum(masks, gains, b, rel_gap=1e-6) for b in budgets}


def _n27_case(benchmark, size, workload):
    """(disabled, masks, gains, group name) of an N = 27 workload; in CI (benchmarks disabled)
    only the small table runs, once."""
    disabled = _disabled(benchmark)
    if disabled and size == "5000":
        pytest.skip("one small table is enough to check the workload once")
    masks, gains = _n27(size, disabled)
    name = f"search: {workload} N=27, {masks.shape[0]} candidates, B=1..27"
    benchmark.group = name
    return disabled, masks, gains, name


@pytest.mark.parametrize("backend", ["highs", "ours"])
@pytest.mark.parametrize("size", ["3000", "5000"])
def test_proven_optimum_27_tasks(benchmark, size, backend):
    disabled, masks, gains, name = _n27_case(benchmark, size, "proven optimum")
    budgets = [2, 5, 27] if disabled else list(range(1, 28))  # CI: HiGHS on three budgets
    if backend == "highs":
        t0 = time.perf_counter()
        got = benchmark.pedantic(_highs_all, args=(masks, gains, budgets), rounds=1, iterations=1)
        _TIMES[(name, "highs")] = time.perf_counter() - t0
        _OPT[name] = got
    else:
        t0c = time.process_time()
        res = benchmark.pedantic(_bnb_all, args=(masks, gains), rounds=1 if disabled else 3,
                                 iterations=1)
        cpu = (time.process_time() - t0c) / (1 if disabled else 3)
        _TIMES[(name, "ours")] = (time.perf_counter() - t0c) if disabled else benchmark.stats.stats.min
        highs = _OPT.get(name) or _highs_all(masks, gains, budgets)
        assert [r.budget for r in res] == list(range(1, 28))
        for r in res:  # proven, and the same optimum as HiGHS
            assert r.optimal and r.bound >= r.value
            if r.budget in highs:
                assert r.value == pytest.approx(highs[r.budget], rel=2e-6, abs=2e-6)
        per = []  # one budget per call: no warm start from the previous budget
        for b in range(1, 28):
            t0 = time.perf_counter()
            group(masks, gains, b, "bnb")
            per.append(time.perf_counter() - t0)
        benchmark.extra_info["cpu_s_all_budgets"] = round(cpu, 3)
        benchmark.extra_info["max_s_one_budget"] = round(max(per), 3)
        benchmark.extra_info["max_nodes"] = max(r.nodes for r in res)
        if (name, "highs") in _TIMES:
            ratio = _TIMES[(name, "highs")] / _TIMES[(name, "ours")]  # CI: 3 budgets vs 27
            benchmark.extra_info["speedup_vs_highs"] = round(ratio, 1)
            print(f"\n[{name}] ours {_TIMES[(name, 'ours')]:.2f} s (cpu {cpu:.2f} s), HiGHS "
                  f"{_TIMES[(name, 'highs')]:.1f} s: {ratio:.0f}x; slowest single budget "
                  f"{max(per):.3f} s")
            if not disabled and os.environ.get("MTGFAST_BENCH_TARGETS") == "1":
                assert ratio >= 20 and max(per) < 1.0


@pytest.mark.parametrize("variant", ["plain", "ls"])
@pytest.mark.parametrize("size", ["3000", "5000"])
def test_beam_local_search_quality_27_tasks(benchmark, size, variant):
    disabled, masks, gains, name = _n27_case(benchmark, size, "beam+local search")
    res = _run(benchmark, name, variant, group, masks, gains, range(1, 28), "beam",
               local_search=variant == "ls")
    exact = {r.budget: r.value for r in _bnb_all(masks, gains)}
    worst = max((exact[r.budget] - r.value) / abs(exact[r.budget]) for r in res)
    within = sum((exact[r.budget] - r.value) <= 1e-3 * abs(exact[r.budget]) for r in res)
    for r in res:
        assert r.value <= exact[r.budget] + 1e-12 and r.bound >= exact[r.budget] - 1e-9
    benchmark.extra_info["worst_rel_gap_to_optimum"] = float(f"{worst:.2e}")
    benchmark.extra_info["budgets_within_0.1pct"] = int(within)
    print(f"\n[{name} {variant}] worst {worst:.2e} below the optimum, {within}/27 budgets "
          f"within 0.1%")


# -- beam + local search on a large pool: the cost of the local search against the plain beam ------
_LARGE: dict[str, list] = {}


@pytest.mark.parametrize("variant", ["plain", "ls"])
def test_beam_local_search_large_pool(benchmark, variant):
    """The large-pool study's search (N = 27, 20,379 candidates, 26 budgets), local search on and
    off; the ratio of the two is what the local search costs over the beam."""
    disabled = _disabled(benchmark)
    t = synthetic_gain_tables(27, n_random=2000 if disabled else 20000, seed=0).valid
    name = "search: beam+LS N=27 20k pool"
    benchmark.group = name
    budgets = range(2, 28)
    fn = group
    kw = {"local_search": variant == "ls"}
    if variant == "ls" and not disabled:  # about a second a call: three rounds are enough
        res = benchmark.pedantic(fn, args=(t.masks, t.gains, budgets, "beam"), kwargs=kw,
                                 rounds=3, iterations=1)
    else:
        res = benchmark(fn, t.masks, t.gains, budgets, "beam", **kw)
    _LARGE[variant] = res
    if not disabled:
        _TIMES[(name, variant)] = benchmark.stats.stats.min
    assert [r.budget for r in res] == list(budgets)
    for r in res:
        assert r.bound >= r.value and len(r.groups) <= r.budget
    if set(_LARGE) == {"plain", "ls"}:  # local search never ends below the beam it starts from
        for p_, l_ in zip(_LARGE["plain"], _LARGE["ls"]):
            assert l_.value >= p_.value
        if (name, "plain") in _TIMES and (name, "ls") in _TIMES:
            ratio = _TIMES[(name, "ls")] / _TIMES[(name, "plain")]
            benchmark.extra_info["ls_over_plain"] = round(ratio, 1)
            print(f"\n[{name}] ls {_TIMES[(name, 'ls')]:.3f} s, plain "
                  f"{_TIMES[(name, 'plain')]:.3f} s: local search costs {ratio:.0f}x the beam")
