"""Benchmarks of the grouping search: ours (C++ core) vs a plain numpy/Python implementation of
the same algorithm, timed in the same run; every result is checked against the reference.

Groups (one per size; ``backend`` axis ``ours``/``numpy``):
- ``exact-dp-N``: all 2^N - 1 combinations of N = 5..12 tasks, every budget 1..N (partition DP).
- ``beam-27-tasks-3000``, ``beam-27-tasks-100k``: width 5, budgets 1..27, both backends.
- ``beam-27-tasks-1M``: ours only; the numpy reference needs minutes at this size (about 140 s
  on the 2-core VM), so the 100k group gives the ratio and 1M checks validity and the < 2 s target.
With ``--benchmark-disable`` (CI) each runs once; the 100k group shrinks to 10k, 1M to 200k. Timing targets
are reported in ``extra_info`` and asserted only with ``MTGFAST_BENCH_TARGETS=1``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mtgfast import group
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


def _run(benchmark, group_name: str, backend: str, fn, *args):
    """Benchmark fn(*args), remember its time, and report the speed-up of ours over numpy."""
    t0 = time.perf_counter()
    if backend == "numpy":  # slow: a few rounds are enough
        out = benchmark.pedantic(fn, args=args, rounds=3, iterations=1)
    else:
        out = benchmark(fn, *args)
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
            for r in group(masks, gains, range(1, 28), "beam", beam_width=5)}


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
    res = _run(benchmark, benchmark.group, "ours", group, masks, gains, range(1, 28), "beam")
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
