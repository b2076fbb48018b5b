"""numba kernel of the random grouping baseline (imported lazily: ``import mtgfast`` never
imports numba). Compiled on first use and cached on disk beside this file (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["random_kernel"]


@numba.njit(cache=True, inline="always")
def _splitmix64(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(parallel=True, cache=True)
def random_kernel(masks, sel, tst, budget, n_trials, seed, full, alone, max_tries,
                  sums, sq, failed):
    """Random groupings of ``budget`` distinct candidates; per-chunk sums of the test value.

    Trials are split into ``len(sums)`` chunks, each with its own splitmix64 stream seeded from
    ``(seed, chunk)``, so the result depends on ``seed`` and ``n_trials`` only (not on threads).
    ``sel`` is -inf and ``tst`` 0 outside each combination; ``failed[0]`` is set when a trial needs
    more than ``max_tries`` draws to cover all tasks.
    """
    n_masks, n = sel.shape
    n_chunks = sums.shape[0]
    for c in numba.prange(n_chunks):
        lo = (n_trials * c) // n_chunks
        hi = (n_trials * (c + 1)) // n_chunks
        perm = np.arange(n_masks)
        state = seed ^ (np.uint64(c + 1) * np.uint64(0xD1B54A32D192ED03))
        s = 0.0
        s2 = 0.0
        for _t in range(lo, hi):
            if failed[0]:
                break
            tries = 0
            while True:
                cover = np.int64(0)
                for i in range(budget):  # partial Fisher-Yates: a uniform B-subset
                    state, z = _splitmix64(state)
                    r = i + np.int64((z >> np.uint64(11)) % np.uint64(n_masks - i))
                    tmp = perm[i]
                    perm[i] = perm[r]
                    perm[r] = tmp
                    cover |= masks[perm[i]]
                if alone or cover == full:
                    break
                tries += 1
                if tries >= max_tries:
                    failed[0] = 1
                    break
            if failed[0]:
                break
            value = 0.0
            for j in range(n):
                # "alone": training alone (gain 0) is always an option, as in grouping.group
                best = 0.0 if alone else -np.inf
                got = 0.0
                for i in range(budget):
                    g = sel[perm[i], j]
                    if g > best:
                        best = g
                        got = tst[perm[i], j]
                value += got
            s += value
            s2 += value * value
        sums[c] = s
        sq[c] = s2
