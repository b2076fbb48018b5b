"""Active loop (Algorithm 1): ask/tell contract, no re-measurement (also across resume), selectors,
and a small real replay whose grouping beats the random baseline."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.masks import all_masks, masks_to_dense
from mtgfast.study.active import (ActiveLoop, ExpGainSelector, GreedySelector, RandomSelector,
                                  SelectionContext, Selector, UncertaintySelector,
                                  default_candidates, make_selector, paper_refit_interval)

SELECTORS = [ExpGainSelector(), GreedySelector(), RandomSelector(), UncertaintySelector()]


def _synthetic(n: int, seed: int = 0) -> GainTable:
    """Every combination of n tasks with random gains (0 for singletons)."""
    m = all_masks(n)
    member = masks_to_dense(m, n)
    g = np.random.default_rng(seed).normal(0, 0.1, (m.size, n))
    g[member.sum(axis=1) == 1] = 0
    return GainTable(m, np.where(member, g, np.nan), tuple(f"t{j}" for j in range(n)))


class Lookup:
    """A fake estimator that predicts the true gains (and a fixed spread): no torch, instant."""

    fits = 0

    def __init__(self, truth: GainTable) -> None:
        self.truth = truth

    def fit(self, table: GainTable) -> Lookup:
        Lookup.fits += 1
        self.n_rows_ = len(table)
        return self

    def predict(self, masks, return_std: bool = False):
        g = self.truth.lookup(masks)
        return (g, np.abs(g) * 0 + 0.01) if return_std else g


def _measure_recorder(truth: GainTable):
    calls: list[int] = []

    def measure(mask: int) -> np.ndarray:
        calls.append(mask)
        return truth.lookup([mask])[0]
    return measure, calls


@pytest.mark.parametrize("selector", SELECTORS, ids=lambda s: s.name)
def test_run_measures_each_combination_once_with_paper_schedule(selector: Selector) -> None:
    n = 5
    truth = _synthetic(n)
    loop = ActiveLoop(selector, lambda: Lookup(truth), None, n, seed=1)
    measure, calls = _measure_recorder(truth)
    batches = []
    real_ask = loop.ask

    def spy(max_masks=None):
        b = real_ask(max_masks)
        batches.append(b.size)
        return b
    loop.ask = spy  # type: ignore[method-assign]
    est = loop.run(measure, rounds=2)
    assert len(calls) == len(set(calls)) == 1 + 2 * n
    assert calls[0] == (1 << n) - 1 and all(c & (c - 1) for c in calls)   # full set, no singleton
    # eta = 1 during the first round (<= N + 1 measured), then one batch of N
    assert batches[:n + 1] == [1] * (n + 1) and batches[n + 1] == n
    assert loop.n_measured == 1 + 2 * n and est is loop.estimator_
    assert [t.source for t in loop.trials][:2] == ["full", "selected"]
    assert [t.task for t in loop.trials[1:n + 1]] == list(range(n))
    for t in loop.trials[1:]:
        assert (t.mask >> t.task) & 1   # each selection contains the task it serves
    tab = loop.table()
    assert len(tab) == n + loop.n_measured and est.n_rows_ == len(tab)


def test_resume_never_remeasures() -> None:
    n = 5
    truth = _synthetic(n, 3)
    first = ActiveLoop(ExpGainSelector(), lambda: Lookup(truth), None, n, seed=0)
    m1, calls1 = _measure_recorder(truth)
    first.run(m1, rounds=1)
    # a new process: the study hands the measured rows back, then asks for 2 rounds in total
    second = ActiveLoop(ExpGainSelector(), lambda: Lookup(truth), None, n, seed=7,
                        initial=first.table())
    assert second.selections_done() == n
    m2, calls2 = _measure_recorder(truth)
    second.run(m2, rounds=2)
    assert len(calls2) == n and not set(calls1) & set(calls2)
    assert second.n_measured == 1 + 2 * n
    # exhausting every candidate stops the loop without repeats
    m3, calls3 = _measure_recorder(truth)
    second.run(m3, rounds=100)
    everything = calls1 + calls2 + calls3
    assert len(everything) == len(set(everything)) == 2**n - 1 - n
    assert second.ask().size == 0


def test_ask_tell_contract() -> None:
    n = 4
    truth = _synthetic(n)
    loop = ActiveLoop(GreedySelector(), lambda: Lookup(truth), None, n)
    full = loop.ask()
    assert full.tolist() == [15]
    np.testing.assert_array_equal(loop.ask(), full)     # pending until told
    with pytest.raises(InputError, match=r"shape \(1, 4\)"):
        loop.tell(15, [0.1, 0.2])
    with pytest.raises(InputError, match="finite inside"):
        loop.tell(15, [np.nan, 0, 0, 0])
    loop.tell(15, truth.lookup([15])[0])
    with pytest.raises(InputError, match="already measured"):
        loop.tell(15, truth.lookup([15])[0])
    with pytest.raises(InputError, match="singleton"):
        loop.tell(2, [np.nan, 0, np.nan, np.nan])
    nxt = loop.ask()
    assert nxt.size == 1 and int(nxt[0]) & 1
    # greedy = the candidate containing task 0 with the largest |true gain of task 0|
    cand = [m for m in range(1, 15) if m & 1 and m & (m - 1)]
    best = max(cand, key=lambda m: abs(truth.lookup([m])[0][0]))
    assert int(nxt[0]) == best
    loop.tell(nxt, truth.lookup(nxt))                    # vector form
    assert loop.pending.size == 0 and loop.n_measured == 2


def test_bad_construction() -> None:
    truth = _synthetic(3)
    with pytest.raises(InputTypeError, match="Selector"):
        ActiveLoop("exp-gain", lambda: Lookup(truth), None, 3)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="callable"):
        ActiveLoop(RandomSelector(), Lookup(truth), None, 3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="task bit"):
        ActiveLoop(RandomSelector(), lambda: Lookup(truth), [3, 8], 3)
    with pytest.raises(InputError, match="unknown selector"):
        make_selector("best")
    with pytest.raises(InputTypeError, match="alpha"):
        ExpGainSelector(alpha="big")  # type: ignore[arg-type]
    loop = ActiveLoop(RandomSelector(), lambda: Lookup(truth), None, 3)
    with pytest.raises(InputError, match="rounds"):
        loop.run(lambda m: None, rounds=-1)
    with pytest.raises(InputTypeError, match="GainTable"):
        loop.tell_table(truth.gains)  # type: ignore[arg-type]


def test_uncertainty_needs_return_std() -> None:
    truth = _synthetic(3)

    class NoStd(Lookup):
        def predict(self, masks):  # type: ignore[override]
            return self.truth.lookup(masks)
    loop = ActiveLoop(UncertaintySelector(), lambda: NoStd(truth), None, 3,
                      initial=truth.select([6]))
    with pytest.raises(InputError, match="return_std"):
        loop.ask()


def test_exp_gain_sampling_follows_its_law() -> None:
    """P(C) = exp(alpha |g|) / Z: empirical frequencies of 20k draws match within 0.02."""
    n = 3
    cands = np.array([3, 5, 7], dtype=np.uint64)
    mean = np.array([[0.00, 0.0, np.nan], [0.04, np.nan, 0.0], [-0.08, 0.0, 0.0]])
    sel = ExpGainSelector(alpha=25)
    # randomness is derived from (seed, round, task): one draw per study seed
    draws = np.array([int(sel.ask(SelectionContext((0,), cands, masks_to_dense(cands, n), mean,
                                                   None, np.zeros(0, np.uint64), seed))[0])
                      for seed in range(20000)])
    p = np.exp(25 * np.array([0.0, 0.04, 0.08]))
    p /= p.sum()
    freq = np.array([(draws == c).mean() for c in (3, 5, 7)])
    np.testing.assert_allclose(freq, p, atol=0.02)


@pytest.mark.parametrize("selector", SELECTORS, ids=lambda s: s.name)
def test_selector_conformance(selector: Selector) -> None:
    """Every selector: one distinct proposal per task, each containing its task; skips exhausted."""
    n = 6
    cands = all_masks(n)
    cands = cands[(cands & (cands - np.uint64(1))) != 0]
    cands = cands[(cands & np.uint64(1)) == 0]          # task 0 has no candidate left
    rng = np.random.default_rng(0)
    mean = np.where(masks_to_dense(cands, n), rng.normal(0, 0.1, (cands.size, n)), np.nan)
    ctx = SelectionContext((0, 1, 2, 3, 4, 5, 1), cands, masks_to_dense(cands, n), mean,
                           np.abs(mean) * 0 + 0.01, np.zeros(0, np.uint64), 0)
    out = selector.ask(ctx)
    assert out.size == 6 and len(set(out.tolist())) == 6
    for task, m in zip((1, 2, 3, 4, 5, 1), out.tolist()):
        assert (m >> task) & 1 and m in set(cands.tolist())


def test_large_n_uses_a_pool() -> None:
    n = 27
    pool = default_candidates(n, pool_size=3000, seed=1)
    assert pool.size == 3001 and np.all(pool & (pool - np.uint64(1)))
    assert paper_refit_interval(n + 1, n) == n and paper_refit_interval(n, n) == 1


def test_study_package_does_not_import_torch() -> None:
    code = ("import sys, mtgfast, mtgfast.study, mtgfast.study.active; "
            "from mtgfast.study import ActiveLoop; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_replay_mtgnet_beats_random_grouping(data_dir) -> None:
    """Taskonomy-5, K = 1: the MTG-Net grouping beats the random baseline's mean at every budget."""
    import torch

    from mtgfast.baselines import random_grouping_scores
    from mtgfast.grouping import evaluate, group
    from mtgfast.study.replay_methods import replay_method

    d = data_dir / "mtgnet" / "taskonomy"
    valid = GainTable.from_mtgnet(d / "taskonomy_x.csv", d / "taskonomy.csv")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pred, used = replay_method("mtgnet", valid, seed=0, rounds=1, dim=16, ffn_dim=16,
                                   n_estimators=2, max_epochs=80, patience=20)
    finally:
        torch.set_num_threads(old)
    assert pred.shape == valid.gains.shape and used == 1 + valid.n_tasks
    assert np.all(np.isnan(pred[~valid.member()]))
    budgets = [2, 3, 4]
    ours = [evaluate(group(valid.masks, pred, b), valid) for b in budgets]
    rand, _ = random_grouping_scores(valid.masks, valid.gains, valid.gains, budgets,
                                     n_trials=20000, seed=0)
    assert all(o > r for o, r in zip(ours, rand)), (ours, rand)
    with pytest.raises(InputError, match="unknown MTG-Net replay method"):
        replay_method("mtgnet-best", valid, seed=0)
    with pytest.raises(InputError, match="dim must be >= 1"):
        replay_method("mtgnet", valid, seed=0, dim=0)
