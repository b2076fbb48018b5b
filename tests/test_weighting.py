"""Loss weightings: input checks, the papers' formulas against plain references, permutation
properties, and their defining behaviour on real small training runs (digits)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mtgfast.errors import InputError, InputTypeError
from mtgfast.mtl.suites.base import Splits, TaskSuite
from mtgfast.mtl.trainer import TrainConfig, train_mtl
from mtgfast.mtl.weighting import (
    DWAWeighting,
    EqualWeighting,
    UncertaintyWeighting,
    dwa_weights,
    make_weighting,
)

losses_st = st.lists(st.floats(0.01, 50.0), min_size=1, max_size=8)


def _dwa_reference(prev: list[float], last: list[float], temp: float = 2.0) -> list[float]:
    """Liu et al. eq. 1 written out with math.exp: w_t = T exp(r_t/temp) / Σ_k exp(r_k/temp)."""
    r = [a / b for a, b in zip(last, prev)]
    m = max(r)  # shifting by the max leaves the softmax unchanged and avoids overflow
    e = [math.exp((x - m) / temp) for x in r]
    return [len(r) * x / sum(e) for x in e]


# -- construction and input checks -----------------------------------------------------------------
def test_make_weighting_known_names() -> None:
    assert isinstance(make_weighting("equal", 3), EqualWeighting)
    assert isinstance(make_weighting("uncertainty", 3), UncertaintyWeighting)
    assert isinstance(make_weighting("dwa", 3), DWAWeighting)
    assert make_weighting("dwa", 2, temperature=4.0).temperature == 4.0


def test_unknown_name_lists_known() -> None:
    with pytest.raises(InputError, match="dwa, equal, uncertainty"):
        make_weighting("gradnorm", 2)
    with pytest.raises(ValueError):
        make_weighting("gradnorm", 2)
    with pytest.raises(InputTypeError):
        make_weighting(3, 2)  # type: ignore[arg-type]
    with pytest.raises(InputError):
        make_weighting("DWA", 2)  # names are exact (they enter run fingerprints)


@pytest.mark.parametrize("n", [0, -1])
def test_bad_n_tasks(n: int) -> None:
    with pytest.raises(InputError):
        make_weighting("equal", n)
    with pytest.raises(InputTypeError):
        make_weighting("equal", 2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["equal", "uncertainty", "dwa"])
def test_combine_checks_input(name: str) -> None:
    w = make_weighting(name, 3)
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        w.combine(torch.ones(2))
    with pytest.raises(ValueError, match=r"shape \[3\]"):
        w.combine(torch.ones(1, 3))
    with pytest.raises(ValueError, match="finite.*\\[1\\]"):
        w.combine(torch.tensor([1.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="finite"):
        w.combine(torch.tensor([1.0, 1.0, float("inf")]))
    with pytest.raises(TypeError):
        w.combine([1.0, 1.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        w.end_epoch(torch.ones(4))
    assert torch.isfinite(w.combine(torch.ones(3)))


def test_dwa_rejects_negative_epoch_loss() -> None:
    with pytest.raises(InputError, match="non-negative"):
        make_weighting("dwa", 2).end_epoch(torch.tensor([1.0, -0.5]))


# -- formulas --------------------------------------------------------------------------------------
def test_equal_is_sum() -> None:
    losses = torch.tensor([0.5, 2.0, 3.0])
    assert float(make_weighting("equal", 3).combine(losses)) == pytest.approx(5.5)
    assert torch.equal(make_weighting("equal", 3).weights(), torch.ones(3))


def test_uncertainty_formula_and_optimum() -> None:
    w = UncertaintyWeighting(2)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.3, -1.2]))
    losses = torch.tensor([2.0, 0.25])
    expected = sum(math.exp(-s) * L + s for s, L in [(0.3, 2.0), (-1.2, 0.25)])
    assert float(w.combine(losses).detach()) == pytest.approx(expected, rel=1e-6)
    # minimising over s with fixed losses reaches s_t = log L_t, i.e. σ_t² = L_t
    opt = torch.optim.SGD(w.parameters(), lr=0.5)
    for _ in range(800):
        opt.zero_grad()
        w.combine(losses).backward()
        opt.step()
    assert torch.allclose(w.variances(), losses, rtol=1e-3)
    assert torch.allclose(w.weights(), 1 / losses, rtol=1e-3)


def test_dwa_first_two_epochs_are_ones_then_formula() -> None:
    w = DWAWeighting(3)
    assert torch.equal(w.weights(), torch.ones(3))
    w.end_epoch(torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(w.weights(), torch.ones(3))  # epoch 2 still uses weight 1
    w.end_epoch(torch.tensor([0.5, 1.9, 3.0]))
    ref = _dwa_reference([1.0, 2.0, 3.0], [0.5, 1.9, 3.0])
    assert w.weights().tolist() == pytest.approx(ref, rel=1e-6)
    # weights act on the next combine
    assert float(w.combine(torch.ones(3))) == pytest.approx(sum(ref), rel=1e-6)


@given(prev=losses_st, data=st.data(), temp=st.floats(0.5, 10.0))
def test_dwa_matches_plain_reference(prev: list[float], data: st.DataObject, temp: float) -> None:
    last = data.draw(st.lists(st.floats(0.01, 50.0), min_size=len(prev), max_size=len(prev)))
    w = DWAWeighting(len(prev), temperature=temp)
    w.end_epoch(torch.tensor(prev, dtype=torch.float64))
    w.end_epoch(torch.tensor(last, dtype=torch.float64))
    ref = _dwa_reference(prev, last, temp)
    assert w.weights().tolist() == pytest.approx(ref, rel=1e-5)
    assert float(w.weights().sum()) == pytest.approx(len(prev), rel=1e-5)


@given(prev=losses_st, data=st.data())
def test_dwa_permutation_equivariant(prev: list[float], data: st.DataObject) -> None:
    n = len(prev)
    last = data.draw(st.lists(st.floats(0.01, 50.0), min_size=n, max_size=n))
    perm = data.draw(st.permutations(range(n)))
    h = torch.tensor([prev, last], dtype=torch.float64)
    w = dwa_weights(h)
    w_perm = dwa_weights(h[:, list(perm)])
    assert torch.allclose(w_perm, w[list(perm)], rtol=1e-9)


@given(losses=losses_st, data=st.data())
def test_combine_permutation_invariant(losses: list[float], data: st.DataObject) -> None:
    n = len(losses)
    perm = list(data.draw(st.permutations(range(n))))
    s = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n)))
    L = torch.tensor(losses, dtype=torch.float32)
    u, up = UncertaintyWeighting(n), UncertaintyWeighting(n)
    with torch.no_grad():
        u.log_vars.copy_(s)
        up.log_vars.copy_(s[perm])
    expected = float(u.combine(L).detach())
    assert float(up.combine(L[perm]).detach()) == pytest.approx(expected, rel=1e-5)
    e = EqualWeighting(n)
    assert float(e.combine(L[perm])) == pytest.approx(float(e.combine(L)), rel=1e-5)


def test_uncertainty_params_reach_optimizer() -> None:
    w = make_weighting("uncertainty", 4)
    params = list(w.parameters())
    assert len(params) == 1 and params[0].shape == (4,) and params[0].requires_grad
    assert list(make_weighting("dwa", 4).parameters()) == []


# -- real runs -------------------------------------------------------------------------------------
class NoisyDigitValue(TaskSuite):
    """Two regressions on real 8x8 digits: the digit's value (standardised), and the same target
    with N(0, noise²) label noise added (train and validation labels) — a heteroscedastic pair."""

    name = "noisy_digit_value"
    task_names = ("value", "value_noisy")
    loss_kinds = ("mse", "mse")
    metric_names = ("mse", "mse")
    encoder_config = {"hidden": 32, "n_blocks": 1, "dropout": 0.0}

    def __init__(self, noise: float = 1.0) -> None:
        super().__init__(noise=noise)

    @property
    def in_dim(self) -> int:
        return 64

    def head_out_dim(self, task: int) -> int:
        return 1

    def _build_splits(self) -> Splits:
        from sklearn.datasets import load_digits

        d = load_digits()
        rng = np.random.default_rng(0)
        order = rng.permutation(len(d.target))
        X = (d.data[order] / 16.0).astype(np.float32)
        v = d.target[order].astype(np.float32)
        v = (v - v.mean()) / v.std()
        Y = np.stack([v, v + rng.normal(0, self.params["noise"], v.shape).astype(np.float32)], 1)
        t = torch.from_numpy
        return Splits(t(X[:1000]), t(Y[:1000]), t(X[1000:1400]), t(Y[1000:1400]),
                      t(X[1400:]), t(Y[1400:]))


@pytest.fixture(scope="module")
def noisy_suite() -> NoisyDigitValue:
    return NoisyDigitValue()


def test_uncertainty_gives_noisier_task_larger_variance(noisy_suite: NoisyDigitValue) -> None:
    cfg = TrainConfig(epochs=8, batch_size=64, lr=1e-2, patience=100, weighting="uncertainty")
    res = train_mtl(noisy_suite, [0, 1], 0, cfg)
    w_clean, w_noisy = res.history["weights"][-1]
    # weights are exp(-s_t) = 1/σ_t²: the noisy task has the larger variance, the smaller weight
    assert w_noisy < w_clean
    var_clean, var_noisy = 1 / w_clean, 1 / w_noisy
    assert var_noisy > 1.5 * var_clean
    # and the variances moved the way the losses ask (σ² towards L): noisy up, clean down from 1
    assert var_noisy > 1.0 > var_clean


def test_dwa_weights_follow_recorded_loss_ratios(noisy_suite: NoisyDigitValue) -> None:
    cfg = TrainConfig(epochs=8, batch_size=64, lr=3e-3, patience=100, weighting="dwa")
    res = train_mtl(noisy_suite, [0, 1], 0, cfg)
    L = res.history["train_loss"]
    W = res.history["weights"]
    assert W[0] == [1.0, 1.0]  # weight 1 for the first two epochs
    slower_wins = 0
    for e in range(1, len(W)):
        ref = _dwa_reference(L[e - 1], L[e])
        assert W[e] == pytest.approx(ref, rel=1e-5)
        r = [L[e][k] / L[e - 1][k] for k in range(2)]
        if abs(r[0] - r[1]) > 1e-3:
            # the task whose loss falls slower (larger ratio) gets the larger weight
            assert (W[e][0] > W[e][1]) == (r[0] > r[1])
            slower_wins += 1
    assert slower_wins >= 3
    # the noisy task's loss plateaus at the noise floor: it falls slower and ends up weighted more
    assert W[-1][1] > W[-1][0]
