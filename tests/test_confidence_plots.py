"""Confidence of a chosen grouping (study/confidence.py) and the grouping/estimate/embedding plots,
on the recorded Taskonomy-5 table with a small, really trained MTG-Net."""

from __future__ import annotations

import numpy as np
import pytest

from mtgfast.errors import InputError, InputTypeError
from mtgfast.gains import GainTable
from mtgfast.grouping import group
from mtgfast.masks import popcount

SMALL = dict(dim=16, ffn_dim=16, n_estimators=3, max_epochs=120, patience=20)


@pytest.fixture(scope="module")
def fitted(data_dir, one_torch_thread):
    from mtgfast.estimators.mtgnet import MTGNet

    d = data_dir / "mtgnet" / "taskonomy"
    valid = GainTable.from_mtgnet(d / "taskonomy_x.csv", d / "taskonomy.csv")
    size = popcount(valid.masks)
    seen = valid.select((size == 2) | (size == valid.n_tasks))
    net = MTGNet(seed=0, **SMALL).fit(seen)
    pred = net.predict(valid.masks)
    return valid, seen, net, pred


def test_predict_members_make_the_ensemble_mean_and_std(fitted) -> None:
    valid, _, net, _ = fitted
    per = net.predict_members(valid.masks)
    mean, std = net.predict(valid.masks, return_std=True)
    assert per.shape == (3,) + valid.gains.shape
    np.testing.assert_allclose(per.mean(axis=0), mean, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(per.std(axis=0), std, atol=1e-9, equal_nan=True)


def test_confidence_reports_spread_and_verified_groups(fitted) -> None:
    from mtgfast.study.confidence import grouping_confidence

    valid, seen, net, pred = fitted
    for b in (2, 3):
        g = group(valid.masks, pred, b)
        c = grouping_confidence(net, g, seen)
        multi = [int(m) for m in g.groups.tolist() if bin(int(m)).count("1") >= 2]
        measured = [m for m in multi if seen.index_of(np.array([m], np.uint64))[0] >= 0]
        assert c.n_groups == len(multi) and c.n_verified == len(measured)
        assert c.spread is not None and c.spread >= 0.0
        # the estimate: measured gains where measured, the members' mean elsewhere
        per = net.predict_members(g.groups)
        want = np.zeros(valid.n_tasks)
        for j, a in enumerate(g.assignment.tolist()):
            m = int(g.groups[a])
            if bin(m).count("1") < 2:
                continue
            r = seen.index_of(np.array([m], np.uint64))[0]
            want[j] = seen.gains[r, j] if r >= 0 else per[:, a, j].mean()
        assert c.estimated == pytest.approx(want.mean(), abs=1e-12)
        if c.n_verified:
            assert c.verified_error is not None and c.verified_error >= 0.0
        text = c.format()
        assert "estimated average gain" in text and f"{c.n_verified} of {c.n_groups}" in text


def test_confidence_of_a_fully_measured_grouping_has_no_spread(fitted) -> None:
    from mtgfast.study.confidence import grouping_confidence

    valid, _, net, _ = fitted
    g = group(valid.masks, valid.gains, 2)          # chosen on everything measured
    c = grouping_confidence(net, g, valid)
    assert c.n_verified == c.n_groups and c.spread == pytest.approx(0.0, abs=1e-12)
    assert c.verified_measured == pytest.approx(g.average, abs=1e-12)
    with pytest.raises(InputTypeError, match="grouping must be a Grouping"):
        grouping_confidence(net, "ab", valid)
    with pytest.raises(InputTypeError, match="measured must be a GainTable"):
        grouping_confidence(net, g, valid.gains)


def _reference_calibration(net, seen: GainTable, cands: np.ndarray) -> np.ndarray:
    """Row by row: out-of-fold squared errors per task (shrunk towards the pooled mean by 3
    rows) over the mean ensemble variance on the candidates holding the task."""
    n = seen.n_tasks
    res: list[list[float]] = [[] for _ in range(n)]
    for r, m in enumerate(seen.masks.tolist()):
        if bin(int(m)).count("1") < 2:
            continue
        oof, count = net.predict_held_out(np.array([m], np.uint64))
        if count[0] == 0:
            continue
        for j in range(n):
            if (int(m) >> j) & 1:
                res[j].append(float(seen.gains[r, j] - oof[0, j]) ** 2)
    pooled = sum(sum(x) for x in res) / sum(len(x) for x in res)
    std = net.predict_members(cands).std(axis=0)
    out = np.ones(n)
    for j in range(n):
        v = [float(std[i, j]) ** 2 for i, m in enumerate(cands.tolist()) if (int(m) >> j) & 1]
        r_j = (sum(res[j]) + 3.0 * pooled) / (len(res[j]) + 3.0)
        if v and sum(v) > 0:
            out[j] = np.sqrt(r_j / (sum(v) / len(v)))
    return out


def test_confidence_calibrates_the_spread_on_the_out_of_fold_error(fitted) -> None:
    # the reported spread is the ensemble's with each task's member deviations scaled by its
    # out-of-fold error over its spread on the candidates (an ensemble's disagreement
    # understates its error): against a row-by-row reference and a direct recomputation
    from mtgfast.study.confidence import grouping_confidence

    valid, seen, net, pred = fitted
    cands = valid.masks[popcount(valid.masks) >= 2]
    want_c = _reference_calibration(net, seen, cands)
    for b in (2, 3):
        g = group(valid.masks, pred, b)
        c = grouping_confidence(net, g, seen, candidates=valid.masks)
        assert c.calibration is not None
        np.testing.assert_allclose(c.calibration, want_c, rtol=1e-6)   # float32 members
        per = net.predict_members(g.groups)
        scaled = per.mean(axis=0) + want_c * (per - per.mean(axis=0))
        value = np.zeros((per.shape[0], valid.n_tasks))
        for j, a in enumerate(g.assignment.tolist()):
            m = int(g.groups[a])
            if bin(m).count("1") < 2:
                continue
            r = seen.index_of(np.array([m], np.uint64))[0]
            value[:, j] = seen.gains[r, j] if r >= 0 else scaled[:, a, j]
        assert c.calibrated_spread == pytest.approx(float(value.mean(axis=1).std()), rel=1e-6)
        for grp in c.groups:
            assert grp.calibrated_spread is not None and grp.calibrated_spread >= 0.0
        assert "calibrated on the out-of-fold error" in c.format()
    # without candidates, or for an estimator with no record of held-out rows: raw only
    g = group(valid.masks, pred, 2)
    assert grouping_confidence(net, g, seen).calibrated_spread is None
    two = group(_TWO.masks, _TWO.gains, 1)
    assert grouping_confidence(_PointEstimate(), two, _TWO, candidates=_TWO.masks
                               ).calibrated_spread is None


def _png_ok(path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plots_write_pngs_on_real_data(fitted, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    from mtgfast.plots import plot_embeddings, plot_estimated_vs_measured, plot_grouping

    valid, seen, net, pred = fitted
    g = group(valid.masks, pred, 3)
    est = valid.with_gains(pred)
    plot_grouping(g, est, tmp_path / "grouping.png")
    plot_estimated_vs_measured(est, valid, tmp_path / "scatter.png")
    plot_embeddings(net, tmp_path / "embeddings.png")
    for name in ("grouping.png", "scatter.png", "embeddings.png"):
        _png_ok(tmp_path / name)
    with pytest.raises(InputError, match="tasks"):
        plot_grouping(g, GainTable.from_arrays(np.array([3], np.uint64), np.zeros((1, 2))))
    with pytest.raises(InputTypeError, match="fitted MTGNet"):
        plot_embeddings(object())


def test_plots_without_matplotlib_name_the_extra(monkeypatch, fitted) -> None:
    # matplotlib is the optional 'plot' extra: every plot says what to install, not a raw
    # ModuleNotFoundError
    import importlib.util

    from mtgfast import plots

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "matplotlib" else
                        real(name, *a))
    with pytest.raises(InputError, match=r'mtgfast\[plot\]'):
        plots.plot_embeddings(fitted[2])


class _PointEstimate:
    """An estimator of two tasks without an ensemble (predict only)."""

    n_tasks_ = 2

    def predict(self, masks):
        return np.zeros((len(masks), 2))


_TWO = GainTable.from_arrays(np.array([1, 2, 3], np.uint64), np.array(
    [[0.0, np.nan], [np.nan, 0.0], [0.1, 0.2]]))
_THREE = GainTable.from_arrays(np.array([7], np.uint64), np.full((1, 3), 0.1))

# (bad grouping or table, error, words): the plot and the confidence report share one checker
# (grouping.check_grouping_table), so they answer each mistake with the same words
_CHECKS = [
    ("grouping str", lambda g: ("ab", _TWO), InputTypeError, "grouping must be a Grouping, got str"),
    ("grouping None", lambda g: (None, _TWO), InputTypeError, "grouping must be a Grouping"),
    ("table array", lambda g: (g, _TWO.gains), InputTypeError, "must be a GainTable, got ndarray"),
    ("table other tasks", lambda g: (g, _THREE), InputError, "grouping has 2 tasks but"),
]


@pytest.mark.parametrize("case", _CHECKS, ids=[c[0] for c in _CHECKS])
@pytest.mark.parametrize("caller", ["plot_grouping", "grouping_confidence"])
def test_plot_and_confidence_check_their_input_alike(case, caller) -> None:
    from mtgfast.study.confidence import grouping_confidence

    _, build, error, words = case
    grouping, table = build(group(_TWO.masks, _TWO.gains, 1))
    name = "gains" if caller == "plot_grouping" else "measured"
    with pytest.raises(error, match=words) as info:
        if caller == "plot_grouping":
            from mtgfast.plots import plot_grouping

            plot_grouping(grouping, table)        # raises before matplotlib is needed
        else:
            grouping_confidence(_PointEstimate(), grouping, table)
    if "table" in case[0]:
        assert name in str(info.value)
