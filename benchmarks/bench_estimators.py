"""Benchmarks: HOA on 1M combinations of 27 tasks and the random baseline with 1M trials, each
ours (numba) vs a plain numpy implementation in the same run; every result is checked.

``--benchmark-disable`` (CI) runs each once on a smaller size so the check stays cheap. With the
benchmarks enabled, the numba entry of each group records ``speedup_vs_numpy`` (numpy time / ours,
same run; higher is better), the figure that ``tools/bench_compare.py`` tracks.
"""

from __future__ import annotations

import numpy as np
import pytest
from mtgfast.estimators.hoa import aggregate_pairs
from mtgfast.baselines import random_grouping_scores
from mtgfast.masks import all_masks, masks_to_dense, sample_masks

_TIMES: dict[tuple[str, str], float] = {}


def _size(benchmark, full: int, quick: int) -> int:
    return quick if getattr(benchmark, "disabled", False) else full


def _record(benchmark, backend: str) -> None:
    """Remember this backend's best time; once both ran, store numpy / numba on the numba entry."""
    if getattr(benchmark, "disabled", False):
        return
    _TIMES[(benchmark.group, backend)] = benchmark.stats.stats.min
    ours, ref = _TIMES.get((benchmark.group, "numba")), _TIMES.get((benchmark.group, "numpy"))
    if backend == "numba" and ours and ref:
        benchmark.extra_info["speedup_vs_numpy"] = round(ref / ours, 2)
        print(f"\n[{benchmark.group}] numba {ours:.3f} s, numpy {ref:.3f} s: {ref / ours:.1f}x")


# -- HOA -------------------------------------------------------------------------------------------
def hoa_numpy(masks: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Plain numpy HOA: dense membership times the pair matrix, divided by (size - 1)."""
    d = masks_to_dense(masks, pairs.shape[0]).astype(np.float64)
    size = d.sum(axis=1, keepdims=True)
    out = (d @ pairs.T) / np.maximum(size - 1, 1)
    out[d == 0] = np.nan
    return out


@pytest.mark.benchmark(group="estimators: HOA, N=27, 1M combinations")
@pytest.mark.parametrize("backend", ["numpy", "numba"])  # numba second: its entry gets the ratio
def test_hoa_27(benchmark, backend):
    n = 27
    count = _size(benchmark, 1_000_000, 50_000)
    masks = sample_masks(n, count, sizes=range(2, n + 1), seed=0)
    rng = np.random.default_rng(0)
    pairs = rng.normal(size=(n, n))
    np.fill_diagonal(pairs, 0.0)
    if backend == "numba":
        aggregate_pairs(masks[:10], pairs, backend="numba")  # compile outside the timing
        got = benchmark(aggregate_pairs, masks, pairs, backend="numba")
    else:
        got = benchmark(hoa_numpy, masks, pairs)
    _record(benchmark, backend)
    ref = hoa_numpy(masks, pairs) if backend == "numba" else aggregate_pairs(masks, pairs,
                                                                            backend="numba")
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    assert got.shape == (count, n)


# -- random baseline ------------------------------------------------------------
def random_numpy(masks: np.ndarray, select: np.ndarray, test: np.ndarray, budget: int,
                 n_trials: int, seed: int, chunk: int = 100_000) -> float:
    """Plain numpy random baseline: random keys -> B distinct candidates, redraw non-covering."""
    rng = np.random.default_rng(seed)
    n = select.shape[1]
    full = np.uint64((1 << n) - 1)
    member = masks_to_dense(masks, n)
    sel = np.where(member, select, -np.inf)
    tst = np.where(member, test, 0.0)
    total = 0.0
    for start in range(0, n_trials, chunk):
        t = min(chunk, n_trials - start)
        picks = np.empty((t, budget), dtype=np.int64)
        todo = np.arange(t)
        while todo.size:
            keys = rng.random((todo.size, masks.shape[0]))
            cand = np.argpartition(keys, budget - 1, axis=1)[:, :budget]
            cover = np.bitwise_or.reduce(masks[cand], axis=1)
            ok = cover == full
            picks[todo[ok]] = cand[ok]
            todo = todo[~ok]
        s = sel[picks]  # (t, B, n)
        best = np.argmax(s, axis=1)  # (t, n)
        total += np.take_along_axis(tst[picks], best[:, None, :], axis=1).sum()
    return total / n_trials / n


@pytest.mark.benchmark(group="baselines: random grouping, N=7, B=3, 1M trials")
@pytest.mark.parametrize("backend", ["numpy", "numba"])  # numba second: its entry gets the ratio
def test_random_baseline(benchmark, backend):
    n, budget = 7, 3
    trials = _size(benchmark, 1_000_000, 100_000)
    masks = all_masks(n)
    rng = np.random.default_rng(1)
    member = masks_to_dense(masks, n)
    select = np.where(member, rng.normal(size=member.shape), np.nan)
    test = np.where(member, select + rng.normal(scale=0.5, size=member.shape), np.nan)
    select[member.sum(axis=1) == 1] = 0.0
    test[member.sum(axis=1) == 1] = 0.0
    if backend == "numba":
        random_grouping_scores(masks, select, test, budget, n_trials=10)  # compile
        mean, std = benchmark(random_grouping_scores, masks, select, test, budget,
                              n_trials=trials, seed=0)
        got, sd = float(mean[0]), float(std[0])
        other = random_numpy(masks, select, test, budget, trials, seed=0)
    else:
        # slow (seconds per call): three rounds are enough for its minimum
        got = benchmark.pedantic(random_numpy, args=(masks, select, test, budget, trials, 0),
                                 rounds=3, iterations=1)
        mean, std = random_grouping_scores(masks, select, test, budget, n_trials=trials, seed=0)
        other, sd = float(mean[0]), float(std[0])
    _record(benchmark, backend)
    # two independent samplers of the same expectation: within 6 standard errors of each other
    assert abs(got - other) <= 6 * sd * np.sqrt(2.0 / trials)
