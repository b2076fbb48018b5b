"""MTG-Net inference: batched ``MTGNet.predict`` vs a naive per-combination loop, N = 27.

With the benchmark enabled the batched path predicts 1,000,000 random combinations and the naive
loop (one forward per combination, as a straightforward implementation would) a 300-combination
subset; the ratio of per-combination times is stored in ``extra_info`` (``speedup``: naive /
batched, higher is better; tracked by ``tools/bench_compare.py``) and printed. With
``--benchmark-disable`` (CI) both run once on small inputs and still check the numbers agree.

    pytest benchmarks/bench_mtgnet.py --benchmark-enable -s
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mtgfast.estimators.mtgnet import MTGNet
from mtgfast.gains import GainTable
from mtgfast.masks import masks_to_dense, sample_masks
from mtgfast.ops.reference import mtgnet_forward_dense

N_TASKS = 27


@pytest.fixture(scope="module")
def model() -> MTGNet:
    """A default-sized MTG-Net (D = 64, 2 layers, 5 members) fitted briefly on synthetic gains:
    inference cost does not depend on how well it is trained."""
    masks = sample_masks(N_TASKS, 200, sizes=range(2, N_TASKS + 1), seed=0)
    member = masks_to_dense(masks, N_TASKS)
    gains = np.where(member, np.random.default_rng(0).normal(0, 0.05, member.shape), np.nan)
    table = GainTable(masks, gains, tuple(f"t{j}" for j in range(N_TASKS)))
    return MTGNet(max_epochs=2, seed=0).fit(table)


def naive_predict(model: MTGNet, masks: np.ndarray) -> np.ndarray:
    """The baseline: one dense forward per combination and member, averaged (no batching)."""
    member = masks_to_dense(masks, N_TASKS)
    out = np.full(member.shape, np.nan)
    params = model.member_params()
    with torch.no_grad():
        for i in range(masks.shape[0]):
            row = torch.as_tensor(member[i:i + 1])
            y = sum(mtgnet_forward_dense(p, row) for p in params) / len(params)
            out[i, member[i]] = y[0].double().numpy()[member[i]] * model.scale_
    single = member.sum(axis=1) == 1
    out[single] = np.where(member[single], 0.0, np.nan)
    return out


@pytest.mark.benchmark(group="mtgnet: predict N=27, 1M combinations, CPU")
@pytest.mark.parametrize("backend", ["batched", "naive"])
def test_predict_n27(benchmark, model: MTGNet, backend: str) -> None:
    full = not benchmark.disabled
    n_batched, n_naive = (1_000_000, 300) if full else (4_000, 20)
    masks = sample_masks(N_TASKS, n_batched, seed=1)
    rng = np.random.default_rng(2)
    subset = masks[rng.choice(masks.shape[0], n_naive, replace=False)]
    old = torch.get_num_threads()
    torch.set_num_threads(2)   # the machine this runs on; the batched path uses both cores
    try:
        if backend == "batched":
            pred = benchmark.pedantic(model.predict, args=(masks,), rounds=1, iterations=1)
            assert pred.shape == (masks.shape[0], N_TASKS)
            order = np.argsort(masks)
            idx = order[np.searchsorted(masks[order], subset)]
            check = pred[idx]
        else:
            check = benchmark.pedantic(naive_predict, args=(model, subset), rounds=1, iterations=1)
        # both paths must give the same numbers (fp32 arithmetic, different op order)
        ref = model.predict(subset)
        np.testing.assert_allclose(check, ref, atol=1e-5, rtol=1e-4, equal_nan=True)
        if backend == "naive" and full:
            t0 = time.perf_counter()
            model.predict(masks[:100_000])
            per_batched = (time.perf_counter() - t0) / 100_000
            per_naive = benchmark.stats.stats.mean / n_naive
            benchmark.extra_info["naive_s_per_combination"] = per_naive
            benchmark.extra_info["batched_s_per_combination"] = per_batched
            benchmark.extra_info["speedup"] = per_naive / per_batched
            print(f"\nnaive {per_naive * 1e3:.3f} ms/comb, batched {per_batched * 1e6:.1f} us/comb, "
                  f"speedup x{per_naive / per_batched:.0f}; naive 1M would take "
                  f"{per_naive * 1e6 / 60:.0f} min")
    finally:
        torch.set_num_threads(old)
