"""The built-in MTL trainer on real small models and real data (digits, ETTh1), gains from metrics,
and TAG's lookahead affinity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mtgfast.errors import InputError, InputTypeError
from mtgfast.mtl.architectures import build_model
from mtgfast.mtl.gains_from_metrics import gain_row, relative_gain
from mtgfast.mtl.metrics import auroc
from mtgfast.mtl.models import HardSharing, MLPEncoder
from mtgfast.mtl.suites.digits import DigitsSuite
from mtgfast.mtl.suites.ett import ETTSuite
from mtgfast.mtl.suites.synthetic import SyntheticSuite
from mtgfast.mtl.tag_affinity import collect_affinity
from mtgfast.mtl.trainer import SuiteTrainFn, TrainConfig, train_mtl
from mtgfast.store import relative_gain as store_relative_gain

FAST = TrainConfig(epochs=8, patience=3, batch_size=64, lr=3e-3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits() -> DigitsSuite:
    return DigitsSuite(n_train=300)


@pytest.fixture(scope="module")
def ett(data_dir) -> ETTSuite:
    # every 8th training window keeps the run short; valid/test stay complete
    return ETTSuite(data_dir / "ett" / "ETTh1.csv", window=48, horizon=12, stride=8)


def test_training_reduces_loss_on_digits(digits):
    r = train_mtl(digits, [0, 3, 8], seed=0, config=FAST)
    first, last = np.array(r.history["train_loss"][0]), np.array(r.history["train_loss"][-1])
    assert first.shape == (3,)
    assert np.all(last < 0.5 * first), (first, last)
    assert set(r.metrics_valid) == {"digit0", "digit3", "digit8"} == set(r.metrics_test)
    # an untrained head predicts ~0.69 nats; the trained model is far better on held-out data
    assert max(r.metrics_test.values()) < 0.3


def test_early_stopping_restores_best_epoch(digits):
    # a large lr on 300 rows overfits within a few epochs, so early stopping must trigger
    cfg = TrainConfig(epochs=60, patience=3, batch_size=32, lr=1e-2, hidden=128)
    r = train_mtl(digits, [1, 8], seed=0, config=cfg)
    val = np.array(r.history["valid_loss"]).sum(1)
    assert r.epochs_run < 60, "early stopping never triggered"
    assert r.epochs_run == r.best_epoch + cfg.patience
    assert r.best_epoch == int(np.argmin(val)) + 1
    # the metric is the BCE loss itself, so the restored model reproduces the best epoch's numbers
    best = r.history["valid_loss"][r.best_epoch - 1]
    assert r.metrics_valid["digit1"] == pytest.approx(best[0], rel=1e-5)
    assert r.metrics_valid["digit8"] == pytest.approx(best[1], rel=1e-5)
    assert val[-1] > val.min()


def test_same_seed_same_numbers_other_seed_other_numbers(digits):
    a = train_mtl(digits, [2, 5], seed=3, config=FAST)
    b = train_mtl(digits, [2, 5], seed=3, config=FAST)
    c = train_mtl(digits, [2, 5], seed=4, config=FAST)
    assert dict(a.metrics_valid) == dict(b.metrics_valid)
    assert dict(a.metrics_test) == dict(b.metrics_test)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert dict(a.metrics_valid) != dict(c.metrics_valid)


def test_head_init_does_not_depend_on_the_combination(digits):
    # a task starts from the same head weights alone and in any group: gains measure sharing
    m1 = build_model("hard", digits, (4,), seed=7)
    m2 = build_model("hard", digits, (1, 4, 9), seed=7)
    torch.testing.assert_close(m1.heads[0].weight, m2.heads[1].weight)
    torch.testing.assert_close(m1.encoder.stem[0].weight, m2.encoder.stem[0].weight)


def test_ett_run_forecasts_better_than_the_mean(ett):
    r = train_mtl(ett, [0, 6], seed=0, config=FAST)
    assert set(r.metrics_valid) == {"HUFL", "OT"}
    # predicting the (standardised) train mean 0 has MAE = mean |y|; the model must beat it
    sp = ett.splits()
    for j, name in ((0, "HUFL"), (6, "OT")):
        baseline = float(sp.Y_test[:, j].abs().mean())
        assert r.metrics_test[name] < baseline, (name, r.metrics_test[name], baseline)


def test_esa_shortens_training(digits):
    full = TrainConfig(epochs=12, patience=50, batch_size=64)
    esa = TrainConfig(epochs=12, patience=50, batch_size=64, esa_fraction=0.25)
    assert esa.epochs_to_run == 3
    assert train_mtl(digits, [0], 0, esa).epochs_run == 3
    assert train_mtl(digits, [0], 0, full).epochs_run == 12
    assert esa.fingerprint() != full.fingerprint()


def test_max_train_batches_caps_each_epoch(digits):
    cfg = TrainConfig(epochs=2, patience=5, batch_size=16, max_train_batches=2)
    r = train_mtl(digits, [0], 0, cfg)
    assert r.epochs_run == 2


def test_fingerprint_covers_fields_but_not_device():
    base = TrainConfig()
    assert base.fingerprint() == TrainConfig().fingerprint()
    assert base.fingerprint() == TrainConfig(device="cuda").fingerprint()
    others = [TrainConfig(lr=2e-3), TrainConfig(weighting="dwa"), TrainConfig(arch="mtan"),
              TrainConfig(hidden=7), TrainConfig(arch_options={"tau": 1.0})]
    fps = {c.fingerprint() for c in others}
    assert len(fps) == len(others) and base.fingerprint() not in fps


@pytest.mark.parametrize("kw", [dict(epochs=0), dict(lr=-1.0), dict(esa_fraction=0.0),
                                dict(dropout=1.0), dict(batch_size=2.5), dict(hidden=0)])
def test_config_validation(kw):
    with pytest.raises((InputError, InputTypeError)):
        TrainConfig(**kw)


def test_train_mtl_validates_inputs(digits):
    with pytest.raises(InputError, match="out of range"):
        train_mtl(digits, [0, 10], 0, FAST)
    with pytest.raises(InputError, match="distinct"):
        train_mtl(digits, [1, 1], 0, FAST)
    with pytest.raises(InputError, match="empty"):
        train_mtl(digits, [], 0, FAST)
    with pytest.raises(InputTypeError):
        train_mtl("digits", [0], 0, FAST)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="seed"):
        train_mtl(digits, [0], -1, FAST)
    with pytest.raises(InputError, match="unknown tasks"):
        SuiteTrainFn(digits, FAST)(("digit0", "nope"), 0)


def test_unknown_architecture_lists_known(digits):
    with pytest.raises(InputError, match="hard"):
        build_model("transformer", digits, [0])


def test_models_follow_the_contract():
    enc = MLPEncoder(10, 16, 2)
    assert enc.out_dim == 16 and len(enc.blocks) == 2
    model = HardSharing(enc, torch.nn.ModuleList([torch.nn.Linear(16, 1), torch.nn.Linear(16, 3)]))
    outs = model(torch.randn(5, 10))
    assert [o.shape for o in outs] == [(5, 1), (5, 3)]
    assert model.regularizer().item() == 0.0


def test_an_encoder_without_out_dim_is_named():
    """A suite's encoder must expose ``out_dim`` (the heads' input width): one clear error."""

    class NoWidth(DigitsSuite):
        def make_encoder(self, hidden: int, n_blocks: int, dropout: float) -> torch.nn.Module:
            return torch.nn.Linear(self.in_dim, hidden)

    with pytest.raises(InputError, match="NoWidth|Linear.*out_dim"):
        build_model("hard", NoWidth(n_train=50), [0, 1])


def test_weighting_methods_plug_into_the_trainer(digits):
    for name in ("uncertainty", "dwa"):
        cfg = TrainConfig(epochs=3, patience=5, batch_size=64, weighting=name)
        r = train_mtl(digits, [0, 1], 0, cfg)
        assert len(r.history["weights"]) == 3 and len(r.history["weights"][0]) == 2
        assert all(math.isfinite(v) for v in r.metrics_valid.values())


# -- gains from metrics ---------------------------------------------------------------------------
metric_values = st.floats(0.01, 100.0, allow_nan=False)


@given(metric_values, metric_values, st.booleans())
def test_gain_sign_follows_the_metric_direction(mtl, stl, higher):
    g = relative_gain(mtl, stl, higher)
    better = mtl > stl if higher else mtl < stl
    worse = mtl < stl if higher else mtl > stl
    assert (g > 0) == better and (g < 0) == worse
    assert g == pytest.approx(float(store_relative_gain(mtl, stl, higher)))
    # relative: scaling both metrics leaves the gain unchanged
    assert relative_gain(3 * mtl, 3 * stl, higher) == pytest.approx(g)


def test_gain_row_is_nan_outside_and_exact_inside():
    names = ("a", "b", "c")
    row = gain_row(0b101, {"a": 0.8, "c": 0.5}, {"a": 1.0, "b": 2.0, "c": 0.4},
                   names, (False, False, True))
    assert row[0] == pytest.approx(0.2) and math.isnan(row[1]) and row[2] == pytest.approx(0.25)
    with pytest.raises(InputError):
        gain_row(0b10, {}, {"b": 1.0}, names, (False,) * 3)


def test_auroc_matches_rank_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(size=200)
    s[:20] = 0.5  # ties count one half
    pos, neg = s[y == 1], s[y == 0]
    expected = ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    assert auroc(torch.tensor(s), torch.tensor(y)) == pytest.approx(expected)


# -- TAG affinity ---------------------------------------------------------------------------------
def test_tag_affinity_is_higher_within_planted_clusters():
    suite = SyntheticSuite(clusters=(2, 2), n_train=100, n_eval=200)
    cfg = TrainConfig(epochs=15, patience=20, batch_size=32, lr=1e-2)
    res = collect_affinity(suite, 0, cfg, lookahead_lr=0.05)
    a = res.matrix
    assert a.shape == (4, 4) and np.all(np.isfinite(a))
    assert res.task_names == suite.task_names and res.n_steps == 15 * 4
    # a step on a task's own loss lowers it: positive self-affinity
    assert np.all(np.diag(a) > 0)
    within = np.mean([a[0, 1], a[1, 0], a[2, 3], a[3, 2]])
    across = np.mean([a[i, j] for i in (0, 1) for j in (2, 3)] + [a[j, i] for i in (0, 1)
                                                                 for j in (2, 3)])
    assert within > across, a


def test_tag_affinity_validates(digits):
    with pytest.raises(InputError, match="at least 2"):
        collect_affinity(digits, 0, FAST, tasks=[3])
    with pytest.raises(InputError, match="every"):
        collect_affinity(digits, 0, FAST, every=0)
