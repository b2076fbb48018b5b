"""Realistic synthetic gain tables for large N: the instances that search and estimator work is
checked on where no recorded table exists (N = 27 and beyond).

The model (per task j in a combination C, |C| >= 2), every part drawn from ``seed`` alone:

- **planted clusters**: tasks fall into clusters; a pair helps inside a cluster and hurts across
  (negative transfer), with per-task receptivity and per-task helpfulness (asymmetric pairs);
- **sub-additive pair effects**: the pair affinities of j's partners are summed and divided by
  ``(|C| - 1) ** beta`` (``beta`` < 1: more helpful partners help more than their average, so the
  average of pair gains, HOA, is biased);
- **higher-order effects**: a penalty per extra cluster in C (heterogeneous groups lose more than
  their pairs say), a capacity penalty for groups larger than a task's cluster, and a few planted
  triples whose members help each other only when all three are present;
- **noise**: validation gains = truth + measurement noise; test gains = truth + a per-entry
  generalisation shift + noise (validation and test disagree, as on real data). ``replicates`` R
  > 1 trains every combination R times (R noise draws, ``valid_noise`` each): the validation
  table is their mean and ``valid_var`` the per-entry variance of that mean estimated from the
  replicates (sample variance / R), as a collection with R seeds per combination would record.

Candidates follow the MTG-Net paper's large setting: all pairs, ``n_random`` random combinations
of >= 3 tasks and the full set (or every combination, ``n_random=None``, for small N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .checks import check_int, check_real, env_int
from .errors import InputError
from .gains import FloatArray, GainTable
from .masks import (
    DEFAULT_MAX_ENUM_BYTES,
    all_masks,
    check_n_tasks,
    k_subsets,
    masks_to_dense,
    sample_masks,
)

__all__ = ["SyntheticTables", "synthetic_gain_tables"]

#: above this many tasks ``n_random=None`` (every combination) is refused
MAX_ENUMERATED = 20
#: (n_masks, n_tasks) float64 arrays alive at the peak besides the replicates (truth, valid,
#: test, member, noise draws, ...): the size bound of :func:`_check_size`
ARRAYS_PER_TABLE = 10


@dataclass(frozen=True)
class SyntheticTables:
    """A generated instance: validation and test tables on the same candidates, the noiseless
    gains, the planted cluster of each task, the true pair-affinity matrix ``pair[j, k]`` (effect
    of k on j) and a noisy copy of it standing in for TAG's measured affinity."""

    valid: GainTable
    test: GainTable
    truth: GainTable
    clusters: npt.NDArray[np.int64]
    pair: FloatArray
    affinity: FloatArray
    #: replicates > 1: per-entry variance of the validation mean, estimated from the replicates
    valid_var: GainTable | None = None
    #: replicates > 1: the validation gains of every replicate, (R, n_masks, n_tasks)
    valid_replicates: FloatArray | None = None


def _candidates(n: int, n_random: int | None, seed: int) -> npt.NDArray[np.uint64]:
    if n_random is None:
        if n > MAX_ENUMERATED:
            raise InputError(f"n_random=None enumerates all 2^{n} - 1 combinations; allowed up to "
                             f"N = {MAX_ENUMERATED}; give n_random for larger N")
        return all_masks(n)
    singles = (np.uint64(1) << np.arange(n, dtype=np.uint64)).astype(np.uint64)
    parts = [singles]
    if n >= 2:
        parts.append(k_subsets(n, 2))
        parts.append(np.array([(1 << n) - 1 if n < 64 else 2**64 - 1], dtype=np.uint64))
    if n >= 3 and n_random > 0:
        parts.append(sample_masks(n, n_random, sizes=range(3, n + 1), seed=seed))
    return np.unique(np.concatenate(parts))


def _check_size(n: int, n_masks: int, reps: int) -> None:
    """``InputError`` naming the bytes when the tables would need more memory than
    ``MTGFAST_MAX_ENUM_BYTES`` (default 8 GiB), checked before the tables are allocated: about ten
    ``(n_masks, n_tasks)`` float64 arrays, plus the ``replicates`` copies twice over (drawn,
    then stacked)."""
    arrays = ARRAYS_PER_TABLE + (2 * reps if reps > 1 else 0)
    need = arrays * n_masks * n * 8
    limit = env_int("MTGFAST_MAX_ENUM_BYTES", DEFAULT_MAX_ENUM_BYTES)
    if need > limit:
        raise InputError(f"synthetic tables of {n} tasks, {n_masks} combinations and {reps} "
                         f"replicate(s) need about {need:,} bytes ({need / 2**30:.3g} GiB), over "
                         f"the limit of {limit / 2**30:.3g} GiB (MTGFAST_MAX_ENUM_BYTES); lower "
                         "replicates or n_random")


def synthetic_gain_tables(n_tasks: int = 27, *, n_random: int | None = 3000, seed: int = 0,
                          n_clusters: int | None = None, beta: float = 0.6,
                          pair_scale: float = 0.04, cluster_penalty: float = 0.008,
                          capacity_penalty: float = 0.01, n_triples: int | None = None,
                          valid_noise: float = 0.005, test_shift: float = 0.02,
                          test_noise: float = 0.005, affinity_noise: float = 0.5,
                          replicates: int = 1) -> SyntheticTables:
    """Generate a validation/test gain-table pair of ``n_tasks`` tasks (see the module doc).

    Gains are relative (0.04 = 4 %). ``n_clusters`` defaults to about sqrt(N); ``n_triples`` to N;
    ``affinity_noise`` is relative to the spread of the true pair matrix. ``replicates`` > 1:
    the validation table is the mean of that many noisy copies (the first is the one-replicate
    draw; the others come from a stream of their own, so every other output is the same as with
    one replicate), with ``valid_var`` and ``valid_replicates``. Every table's ``meta`` records
    the settings it was drawn with (seed, sizes, ``beta``, the scales and noises, replicates).
    """
    n = check_n_tasks(n_tasks)
    if n < 2:
        raise InputError(f"n_tasks must be >= 2 for a gain table with combinations, got {n}")
    if n_random is not None:
        n_random = check_int("n_random", n_random, 0)
    reps = check_int("replicates", replicates, 1)
    # the masks' sampler takes the seed modulo 2**64, the gains' generator does not: one range
    seed = check_int("seed", seed, 0, 2**64 - 1)
    k = max(1, round(np.sqrt(n))) if n_clusters is None else check_int("n_clusters", n_clusters, 1)
    if k > n:
        raise InputError(f"n_clusters must be <= n_tasks ({n}), got {k}")
    # a triple term needs three distinct tasks
    n_tri = (n if n >= 3 else 0) if n_triples is None else \
        check_int("n_triples", n_triples, 0, 0 if n < 3 else None,
                  expected=">= 0 (0 when n_tasks < 3: a triple needs 3 tasks)")
    beta = check_real("beta", beta, 0)
    scales = {nm: check_real(nm, v, 0) for nm, v in (
        ("pair_scale", pair_scale), ("cluster_penalty", cluster_penalty),
        ("capacity_penalty", capacity_penalty), ("valid_noise", valid_noise),
        ("test_shift", test_shift), ("test_noise", test_noise),
        ("affinity_noise", affinity_noise))}

    rng = np.random.default_rng([seed, n, 0x6D7467])
    # clusters of uneven size: every cluster non-empty, the rest assigned at random
    clusters = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])
    rng.shuffle(clusters)
    same = clusters[:, None] == clusters[None, :]
    receptive = rng.lognormal(0.0, 0.4, n)           # how much task j is moved by partners
    helpful = rng.normal(0.0, 0.3, n)                # how much task k moves its partners
    ps = scales["pair_scale"]
    pair = ps * (np.where(same, 0.8, -0.5) + helpful[None, :] + rng.normal(0.0, 0.35, (n, n)))
    pair *= receptive[:, None]
    np.fill_diagonal(pair, 0.0)
    cluster_size = np.bincount(clusters, minlength=k)[clusters]
    triples = [rng.choice(n, 3, replace=False) for _ in range(n_tri)]
    triple_w = rng.normal(ps, 0.5 * ps, n_tri)

    masks = _candidates(n, n_random, seed)   # (its own checks: the space, the masks' memory)
    _check_size(n, int(masks.shape[0]), reps)
    member = masks_to_dense(masks, n)
    size = member.sum(axis=1)
    multi = size >= 2
    d = member.astype(np.float64)
    # sum of pair[j, k] over the partners k in each combination, added in task order without
    # BLAS: a matmul's summation order depends on the CPU's kernel (OpenBLAS picks SkylakeX on
    # AVX-512, Haswell on AVX2), which changed the tables' last bits from machine to machine
    pair_sum = np.zeros((member.shape[0], n))
    for kk in range(n):
        np.add(pair_sum, pair[:, kk], out=pair_sum, where=member[:, kk:kk + 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        pair_part = pair_sum / np.maximum(size - 1, 1)[:, None] ** beta
    onehot = np.eye(k)[clusters]
    n_cl = ((d @ onehot) > 0).sum(axis=1)
    truth = pair_part - scales["cluster_penalty"] * (n_cl - 1)[:, None] * receptive[None, :]
    over = np.maximum(size[:, None] - (cluster_size[None, :] + 2), 0) / n
    truth -= scales["capacity_penalty"] * over * receptive[None, :] * n / 4
    for tri, w in zip(triples, triple_w):
        rows = member[:, tri].all(axis=1)
        truth[np.ix_(rows, tri)] += w
    truth[~multi] = 0.0
    truth = np.where(member, truth, np.nan)

    def noisy(sigma: float) -> FloatArray:
        return rng.normal(0.0, sigma, truth.shape) if sigma > 0 else np.zeros(truth.shape)

    valid = truth + noisy(scales["valid_noise"])
    test = truth + noisy(scales["test_shift"]) + noisy(scales["test_noise"])
    copies: FloatArray | None = None
    if reps > 1:
        # replicates 2..R from their own stream: the main stream (test, affinity) is untouched
        rep_rng = np.random.default_rng([seed, n, 0x6D7467, 1])
        sv = scales["valid_noise"]
        copies = np.stack([valid] + [truth + (rep_rng.normal(0.0, sv, truth.shape) if sv > 0
                                              else np.zeros(truth.shape))
                                     for _ in range(reps - 1)])
        valid = copies.mean(axis=0)
    for g in (valid, test, *(() if copies is None else tuple(copies))):
        g[~multi] = 0.0
        g[~member] = np.nan
    spread = float(np.std(pair[~np.eye(n, dtype=bool)])) if n > 1 else 0.0
    affinity = pair + rng.normal(0.0, scales["affinity_noise"] * spread, (n, n))
    np.fill_diagonal(affinity, 0.0)

    names = tuple(f"task{j:02d}" for j in range(n))
    # every setting the tables were drawn with, so a saved table (or a replay reading it) knows
    # its noise scales without reading the defaults off this signature
    meta = {"source": "synthetic", "seed": seed, "n_tasks": n, "n_random": n_random,
            "n_clusters": k, "beta": beta, "n_triples": n_tri, **scales, "replicates": reps}
    valid_var = None
    if copies is not None:
        var = copies.var(axis=0, ddof=1) / reps
        var[~multi] = 0.0
        var[~member] = np.nan
        valid_var = GainTable(masks, var, names, {**meta, "split": "valid_var",
                                                  "replicates": reps})
    return SyntheticTables(
        valid=GainTable(masks, valid, names, {**meta, "split": "valid"}),
        test=GainTable(masks, test, names, {**meta, "split": "test"}),
        truth=GainTable(masks, truth, names, {**meta, "split": "truth"}),
        clusters=clusters.astype(np.int64), pair=pair, affinity=affinity,
        valid_var=valid_var, valid_replicates=copies)
