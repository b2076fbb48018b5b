"""The whole-space call against brute force: every combination scored with ``MTGNet.predict``,
then top-k, the greedy marginal-gain search and the grouping search on the full table.

A real small MTG-Net is fitted on ETTm1 (7 tasks, 127 combinations) from the shared data; on the
CPU the call runs the chunked PyTorch reference (chunks that do not divide the space on purpose).
"""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast import MTGNet, all_masks, evaluate_tasks, group
from mtgfast.errors import InputError, InputTypeError
from mtgfast.estimators.whole_space import score_whole_space
from mtgfast.gains import GainTable

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(dim=16, ffn_dim=16, n_estimators=2, max_epochs=60, patience=15)


@pytest.fixture(scope="module")
def ett_net(data_dir) -> MTGNet:
    import torch

    torch.set_num_threads(1)
    d = data_dir / "mtgnet" / "ETT"
    table = GainTable.from_mtgnet(d / "ETTm1_x.csv", d / "ETTm1_val_y.csv")
    return MTGNet(**SMALL, seed=3).fit(table)


def brute_greedy(masks: np.ndarray, gains: np.ndarray, steps: int) -> list[tuple[int, float]]:
    """The marginal-gain greedy on the full table: first maximum in mask order, singletons out."""
    order = np.argsort(masks)
    masks, gains = masks[order], np.nan_to_num(gains[order], nan=-np.inf)
    multi = np.array([bin(int(m)).count("1") > 1 for m in masks])
    cur = np.zeros(gains.shape[1])
    out = []
    for _ in range(steps):
        marg = np.where(np.isfinite(gains), np.maximum(gains - cur, 0.0), 0.0).sum(axis=1)
        marg[~multi] = -1.0
        i = int(np.argmax(marg))
        if marg[i] <= 0:
            break
        out.append((int(masks[i]), float(marg[i])))
        cur = np.where(np.isfinite(gains[i]), np.maximum(cur, gains[i]), cur)
    return out


def test_whole_space_matches_brute_force(ett_net: MTGNet) -> None:
    n = ett_net.n_tasks_
    full = all_masks(n)
    g = ett_net.predict(full)
    # k = 2^(N-1) = every combination holding the task: the pool is the whole space
    res = score_whole_space(ett_net, topk=64, chunk=17, progress=False)
    assert res.combinations_per_pass == 127 and res.backend == "torch"
    for j in range(n):
        col = np.sort(g[:, j][np.isfinite(g[:, j])])[::-1]
        np.testing.assert_allclose(res.topk_values[j, :col.size], col, rtol=1e-5, atol=1e-6)
        assert np.all(np.isinf(res.topk_values[j, col.size:]))
        for v, m in zip(res.topk_values[j, :col.size], res.topk_masks[j, :col.size]):
            assert (int(m) >> j) & 1
            row = int(np.nonzero(full == m)[0][0])
            assert abs(g[row, j] - v) <= 1e-5 * max(1.0, abs(v))
    assert set(res.pool_masks.tolist()) == set(full.tolist())
    # groupings over the pool = the search on the full table, every budget 1..N
    ref = group(full, g, range(1, n + 1))
    assert [r.budget for r in res.groupings] == [r.budget for r in ref]
    for got, want in zip(res.groupings, ref):
        assert got.value == pytest.approx(want.value, rel=1e-9, abs=1e-9)
        assert evaluate_tasks(got, g, full).sum() == pytest.approx(got.value, rel=1e-9, abs=1e-9)
    # greedy picks: each is a maximiser of the marginal gain given the earlier picks
    bg = brute_greedy(full, g, n)
    assert len(res.greedy_masks) == len(bg) > 0
    np.testing.assert_allclose(res.greedy_marginals, [v for _, v in bg], rtol=1e-5, atol=1e-6)
    assert [int(m) for m in res.greedy_masks] == [m for m, _ in bg]


def test_small_k_pool_and_progress(ett_net: MTGNet, capsys: pytest.CaptureFixture) -> None:
    n = ett_net.n_tasks_
    full = all_masks(n)
    g = ett_net.predict(full)
    res = score_whole_space(ett_net, topk=3, budgets=[2, 4], chunk=50, progress=True)
    assert "whole space N=7" in capsys.readouterr().err
    for j in range(n):
        col = np.sort(g[:, j][np.isfinite(g[:, j])])[::-1][:3]
        np.testing.assert_allclose(res.topk_values[j], col, rtol=1e-5, atol=1e-6)
    opt = {r.budget: r.value for r in group(full, g, [2, 4], method="exact")}
    assert [r.budget for r in res.groupings] == [2, 4]
    for r in res.groupings:
        assert r.value <= opt[r.budget] + 1e-9
        assert evaluate_tasks(r, g, full).sum() == pytest.approx(r.value, rel=1e-9, abs=1e-9)
    assert res.passes == 5 and len(res.greedy_masks) <= 4


def test_refuses_what_the_machine_cannot_do() -> None:
    # 40 tasks on a CPU: 1.1e12 combinations; the error names the time it would need
    rng = np.random.default_rng(0)
    masks = np.unique(rng.integers(1, 1 << 40, size=60, dtype=np.uint64))
    member = ((masks[:, None] >> np.arange(40, dtype=np.uint64)) & np.uint64(1)).astype(bool)
    gains = np.where(member, rng.normal(size=member.shape), np.nan)
    table = GainTable(masks, gains, tuple(f"t{i}" for i in range(40)))
    net = MTGNet(dim=8, ffn_dim=8, n_layers=1, n_estimators=1, max_epochs=1).fit(table)
    with pytest.raises(InputError, match=r"would take ~.* s"):
        score_whole_space(net, progress=False)


def test_bad_arguments(ett_net: MTGNet) -> None:
    with pytest.raises(InputTypeError, match="fitted MTGNet"):
        score_whole_space("net", progress=False)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="topk"):
        score_whole_space(ett_net, topk=0, progress=False)
    with pytest.raises(InputError, match="topk"):
        score_whole_space(ett_net, topk=65, progress=False)
    with pytest.raises(InputError, match="budget"):
        score_whole_space(ett_net, budgets=[0], progress=False)
    with pytest.raises(InputError, match="chunk"):
        score_whole_space(ett_net, chunk=0, progress=False)
    with pytest.raises(InputError, match="uncovered"):
        score_whole_space(ett_net, uncovered="free", progress=False)
    with pytest.raises(InputError, match="max_seconds"):
        score_whole_space(ett_net, max_seconds=0, progress=False)
    # mtgfast.checks' rules: bools and floats are type errors, numpy integers are ints
    with pytest.raises(InputTypeError, match="topk must be an int, got bool"):
        score_whole_space(ett_net, topk=True, progress=False)
    with pytest.raises(InputTypeError, match="chunk must be an int, got float"):
        score_whole_space(ett_net, chunk=64.0, progress=False)
    with pytest.raises(InputTypeError, match="max_seconds must be a number, got str"):
        score_whole_space(ett_net, max_seconds="10", progress=False)
    with pytest.raises(InputError, match=r"budget must be in \[1, 7\], got 8"):
        score_whole_space(ett_net, budgets=np.int64(8), progress=False)
    with pytest.raises(ValueError):
        score_whole_space(MTGNet(), progress=False)    # not fitted
