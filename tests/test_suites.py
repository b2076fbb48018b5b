"""Built-in task suites: real data, fixed splits, registry."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from mtgfast.errors import InputError
from mtgfast.mtl.suites import SUITES, get_suite
from mtgfast.mtl.suites.base import TaskSuite, select_rows, task_target
from mtgfast.mtl.suites.digits import DigitsSuite
from mtgfast.mtl.suites.ett import SERIES, ETTSuite
from mtgfast.mtl.suites.synthetic import SyntheticSuite


def test_digits_splits_are_fixed_stratified_and_binary():
    s = DigitsSuite()
    sp = s.splits()
    assert s.n_tasks == 10 and s.in_dim == 64 and s.head_out_dim(3) == 1
    assert sp.X_train.shape == (1078, 64) and sp.Y_train.shape == (1078, 10)
    assert sp.X_valid.shape[0] + sp.X_test.shape[0] == 1797 - 1078
    for Y in (sp.Y_train, sp.Y_valid, sp.Y_test):
        assert torch.all(Y.sum(1) == 1)  # exactly one digit per image: one-vs-rest labels
        assert torch.all(Y.sum(0) > 0)  # stratified: every class in every split
    # standardised with train statistics
    assert sp.X_train.mean(0).abs().max() < 1e-4
    again = DigitsSuite().splits()
    assert torch.equal(sp.X_valid, again.X_valid)
    assert s.higher_is_better == (False,) * 10 and s.metric_names == ("bce",) * 10
    assert DigitsSuite(n_train=100).splits().X_train.shape == (100, 64)
    with pytest.raises(InputError):
        DigitsSuite(n_train=5)


def test_ett_windows_chronological_and_standardised_with_train_stats(data_dir):
    path = data_dir / "ett" / "ETTh1.csv"
    s = ETTSuite(path, window=96, horizon=24)
    sp = s.splits()
    assert s.task_names == SERIES and s.in_dim == 96 * 7 and s.head_out_dim(0) == 24
    n_train = 12 * 720 - 96 - 24 + 1
    assert sp.X_train.shape == (n_train, 672) and sp.Y_train.shape == (n_train, 7, 24)
    df = pd.read_csv(path)[list(SERIES)].to_numpy()
    mean, std = df[:8640].mean(0), df[:8640].std(0)
    z = (df - mean) / std
    # the first validation window reads the last 96 train hours and predicts the first valid ones
    np.testing.assert_allclose(sp.X_valid[0].numpy().reshape(96, 7), z[8640 - 96:8640], rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(sp.Y_valid[0, 6].numpy(), z[8640:8664, 6], rtol=1e-5, atol=1e-5)
    # last test target ends at the Informer border (20 months)
    np.testing.assert_allclose(sp.Y_test[-1, 0, -1].item(), z[20 * 720 - 1, 0], rtol=1e-5)
    assert abs(float(sp.Y_train[:, :, 0].mean())) < 0.05  # train targets ~ standardised
    strided = ETTSuite(path, stride=4).splits()
    assert strided.X_train.shape[0] == -(-n_train // 4)
    assert strided.X_valid.shape == sp.X_valid.shape  # only the training windows are strided


def test_ett_validates(tmp_path, data_dir):
    with pytest.raises(InputError, match="not found"):
        ETTSuite(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="window"):
        ETTSuite(data_dir / "ett" / "ETTh1.csv", window=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("date,HUFL\n2016-01-01,1.0\n")
    with pytest.raises(InputError, match="lacks columns"):
        ETTSuite(bad).splits()


def _own_series(tmp_path, change=None, rows=14_500):
    """An ETT-shaped CSV of a newcomer's own series (random walks), one cell changed."""
    from mtgfast.mtl.suites.ett import SERIES

    x = np.random.default_rng(0).normal(size=(rows, 7)).cumsum(0)
    lines = ["date," + ",".join(SERIES)] + ["2020-01-01," + ",".join(f"{v:.3f}" for v in r)
                                            for r in x]
    if change is not None:
        change(lines)
    p = tmp_path / "own.csv"
    p.write_text("\r\n".join(lines) + "\r\n")
    return p


def _cell(line, col, value):
    def edit(lines):
        parts = lines[line - 1].split(",")
        parts[col + 1] = value
        lines[line - 1] = ",".join(parts)
    return edit


def _constant(col):
    def edit(lines):
        for i in range(1, len(lines)):
            parts = lines[i].split(",")
            parts[col + 1] = "2.5"
            lines[i] = ",".join(parts)
    return edit


@pytest.mark.parametrize("change,words", [
    (_cell(102, 2, ""), ("'MUFL'", "line 102", "missing")),
    (_cell(7, 0, "n/a"), ("'HUFL'", "line 7", "missing", "n/a")),
    (_cell(8, 1, "12,5"), ("line 8", "saw 9")),   # a decimal comma: one field too many
    (_cell(8, 1, "1.2.3"), ("'HULL'", "line 8", "'1.2.3'")),
    (_cell(9000, 6, "inf"), ("'OT'", "line 9000", "finite")),
    (_constant(6), ("'OT'", "constant")),
])
def test_ett_own_series_bad_cells_are_named(tmp_path, change, words):
    """Used to be 'could not convert string to float' (no column, no line), or for a constant
    series a numpy division warning and 'missing or non-finite values'."""
    import warnings

    p = _own_series(tmp_path, change)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no RuntimeWarning on the way to the error
        with pytest.raises(InputError) as err:
            ETTSuite(p).splits()
    for w in (str(p), *words):
        assert w in str(err.value), (w, str(err.value))


def test_ett_own_series_loads(tmp_path):
    """CRLF lines, a NaN after the rows the splits use: loads (that row is never read)."""
    p = _own_series(tmp_path, _cell(14_490, 3, ""))
    sp = ETTSuite(p).splits()
    assert bool(torch.isfinite(sp.X_train).all()) and sp.Y_test.shape[1] == 7


def test_synthetic_plants_known_clusters():
    s = SyntheticSuite(clusters=(3, 2, 1))
    assert s.n_tasks == 6 and s.planted_groups == ((0, 1, 2), (3, 4), (5,))
    sp = s.splits()
    assert sp.Y_train.shape == (100, 6)
    # tasks of one cluster are the same feature up to scale/sign, so they correlate (|r| high on
    # the noise-free signal); tasks of different clusters use orthogonal directions
    clean = SyntheticSuite(clusters=(3, 2, 1), noise=0.0).splits().Y_valid.numpy()
    r = np.abs(np.corrcoef(clean.T))
    assert r[0, 1] > 0.99 and r[3, 4] > 0.99
    assert r[0, 3] < 0.2 and r[0, 5] < 0.2
    assert torch.equal(SyntheticSuite(clusters=(3, 2, 1)).splits().X_test, sp.X_test)
    assert not torch.equal(SyntheticSuite(clusters=(3, 2, 1), seed=1).splits().X_test, sp.X_test)
    with pytest.raises(InputError):
        SyntheticSuite(clusters=(0, 2))


def test_registry_and_pickling(data_dir):
    assert {"digits", "ett", "synthetic", "multidigits"} <= set(SUITES)
    s = get_suite("ett", path=data_dir / "ett" / "ETTh1.csv")
    assert isinstance(s, ETTSuite)
    with pytest.raises(InputError, match="digits"):
        get_suite("imagenet")
    s.splits()
    blob = pickle.dumps(s)
    assert len(blob) < 10_000  # cached tensors are not pickled: workers rebuild them
    back = pickle.loads(blob)
    assert back.fingerprint() == s.fingerprint()
    assert torch.equal(back.splits().X_test, s.splits().X_test)
    assert ETTSuite(data_dir / "ett" / "ETTh1.csv", horizon=12).fingerprint() != s.fingerprint()


def test_multidigits_is_loaded_lazily():
    s = get_suite("multidigits")
    assert isinstance(s, TaskSuite) and s.n_tasks >= 2


def test_targets_helpers():
    Y = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(task_target(Y, 1), Y[:, 1])
    lst = [Y[:, 0], Y[:, 1:]]
    assert torch.equal(task_target(lst, 1), Y[:, 1:])
    rows = torch.tensor([2, 0])
    assert torch.equal(select_rows(Y, rows), Y[rows])
    assert torch.equal(select_rows(lst, rows)[1], Y[rows][:, 1:])


def test_suite_losses_and_metrics_by_kind():
    s = DigitsSuite()
    logits = torch.tensor([[3.0], [-3.0]])
    y = torch.tensor([1.0, 0.0])
    assert float(s.loss(0, logits, y)) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)
    assert s.metric(0, logits, y) == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-5)
