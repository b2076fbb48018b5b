"""Audit findings on the estimators, replay and the Ray executor (FINDINGS #5, #11, #14, #21,
#22, #23): each bad input is refused at the public boundary, before any work, with a typed error
naming the problem; valid inputs keep their exact numbers."""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from mtgfast import GainTable
from mtgfast.errors import InputError, InputTypeError
from mtgfast.estimators.tag import TAG
from mtgfast.masks import all_masks, masks_to_dense
from mtgfast.replay import replay

DATA = Path(os.environ.get("MTGFAST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _table(names: tuple[str, ...] = ("a", "b", "c"), value: float = 0.1,
           seed: int | None = None) -> GainTable:
    """Every combination of 3 tasks: singletons 0, the rest ``value`` (or random normal)."""
    m = all_masks(len(names))
    mem = masks_to_dense(m, len(names))
    g = np.full(mem.shape, value)
    if seed is not None:
        g = np.random.default_rng(seed).normal(0.0, 0.05, mem.shape)
    g = np.where(mem, g, np.nan)
    single = mem.sum(1) == 1
    g[single] = np.where(mem[single], 0.0, np.nan)
    return GainTable(m, g, names)


# -- #14: replay checks mtgnet* names and options before running any method --------------------
def _spy_random(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the random baseline's calls: a check must come before it runs."""
    import mtgfast.baselines as baselines

    calls: list[int] = []
    real = baselines.random_grouping_scores

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(baselines, "random_grouping_scores", spy)
    return calls


def test_replay_unknown_mtgnet_method_before_any_method(monkeypatch):
    calls = _spy_random(monkeypatch)
    with pytest.raises(InputError, match=r"unknown method 'mtgnet-bogus'.*did you mean"):
        replay(_table(), methods=["random", "mtgnet-bogus"], budgets="1-2", random_trials=10)
    assert calls == []


def test_replay_misspelt_option_is_input_error_before_any_method(monkeypatch):
    calls = _spy_random(monkeypatch)
    with pytest.raises(InputError, match=r"'dimm'.*did you mean 'dim'"):
        replay(_table(), methods=["random", "mtgnet"], budgets="1-2", random_trials=10,
               options={"dimm": 8})
    assert calls == []


def test_replay_bad_option_value_and_seed_before_any_method(monkeypatch):
    calls = _spy_random(monkeypatch)
    with pytest.raises(InputError, match="dim"):
        replay(_table(), methods=["random", "mtgnet"], budgets="1-2", random_trials=10,
               options={"dim": 0})
    with pytest.raises(InputError, match="seed"):
        replay(_table(), methods=["random", "mtgnet"], budgets="1-2", random_trials=10,
               options={"seed": 3})
    with pytest.raises(InputError, match="shrink"):   # an option of mtgnet-prior only
        replay(_table(), methods=["random", "mtgnet"], budgets="1-2", random_trials=10,
               options={"shrink": 1.0})
    assert calls == []


@pytest.mark.parametrize("opts, what", [
    ({"stats": 1}, "stats must be a dict"),              # was an AttributeError after a fit
    ({"use_measured": "no"}, "use_measured must be a bool"),  # a truthy string meant True
])
def test_replay_method_keywords_of_the_wrong_type_before_any_method(monkeypatch, opts, what):
    calls = _spy_random(monkeypatch)
    with pytest.raises(InputTypeError, match=what):
        replay(_table(), methods=["random", "mtgnet"], budgets="1-2", random_trials=10,
               options=opts)
    assert calls == []


def test_replay_method_selector_option_is_input_error():
    from mtgfast.study.replay_methods import check_method, replay_method

    with pytest.raises(InputError, match="committee"):
        check_method("mtgnet-random", _table(), committee=True)
    with pytest.raises(InputError, match=r"unknown option 'n_estimator'.*n_estimators"):
        replay_method("mtgnet", _table(), seed=0, n_estimator=2)


def test_replay_plugin_without_checks_still_runs(monkeypatch):
    """A plugin module that has only replay_method (the documented contract) is not checked."""
    mod = types.ModuleType("mtgfast.study.replay_methods")
    t = _table()
    mod.replay_method = lambda name, valid, *, seed, **kw: (np.nan_to_num(valid.gains), 0)
    monkeypatch.setitem(sys.modules, "mtgfast.study.replay_methods", mod)
    res = replay(t, methods=["mtgnet-x"], budgets="1-2", options={"anything": 1})
    assert "mtgnet-x" in res.methods


# -- #21: flags must be bools ----------------------------------------------------------------------
def test_replay_progress_must_be_bool():
    with pytest.raises(InputTypeError, match="progress"):
        replay(_table(), methods=["oracle"], budgets="1", progress="no")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_net():
    from mtgfast import MTGNet

    return MTGNet(n_estimators=2, dim=8, max_epochs=3).fit(_table())


def test_predict_return_std_must_be_bool(tiny_net):
    with pytest.raises(InputTypeError, match="return_std"):
        tiny_net.predict([3], return_std="yes")
    mean, std = tiny_net.predict([3], return_std=np.True_)
    assert mean.shape == std.shape == (1, 3)


def test_score_whole_space_progress_must_be_bool(tiny_net):
    from mtgfast.estimators.whole_space import score_whole_space

    with pytest.raises(InputTypeError, match="progress"):
        score_whole_space(tiny_net, progress="no")  # type: ignore[arg-type]


# -- #5: token_prior in the table's task order -----------------------------------------------------
def test_token_prior_reordered_to_the_table():
    from mtgfast import MTGNet

    table = _table(seed=1)
    prior = _table(seed=2)
    kw = dict(n_estimators=1, dim=8, max_epochs=5)
    same = MTGNet(token_prior=prior, **kw).fit(table)
    other = MTGNet(token_prior=prior.with_task_order(("c", "a", "b")), **kw).fit(table)
    m = table.masks
    np.testing.assert_array_equal(same.predict(m), other.predict(m))
    assert other.token_prior_.task_names == table.task_names


def test_token_prior_of_other_tasks_refused():
    from mtgfast import MTGNet

    with pytest.raises(InputError, match=r"\['x', 'y', 'z'\].*\['a', 'b', 'c'\]"):
        MTGNet(n_estimators=1, dim=8, max_epochs=3,
               token_prior=_table(("x", "y", "z"))).fit(_table())


def test_replay_method_prior_of_other_tasks_refused():
    from mtgfast.study.replay_methods import check_method

    with pytest.raises(InputError, match=r"\['x', 'y', 'z'\].*\['a', 'b', 'c'\]"):
        check_method("mtgnet-tag", _table(), prior=_table(("x", "y", "z")))


# -- #22: TAG.fit_affinity checks its inputs -------------------------------------------------------
@pytest.mark.parametrize("names, err", [("abc", InputTypeError), (["a", "a"], InputError),
                                        (["a", " "], InputError)])
def test_tag_fit_affinity_names(names, err):
    with pytest.raises(err, match="task"):
        TAG().fit_affinity(np.zeros((len(names), len(names))), names)


@pytest.mark.parametrize("matrix", [np.eye(2, dtype=bool), [["x", "y"], ["z", "w"]], [[1, 2], [3]]])
def test_tag_fit_affinity_matrix_type(matrix):
    with pytest.raises(InputTypeError, match="affinity"):
        TAG().fit_affinity(matrix, ["a", "b"])


def test_tag_scale_bool_and_overflow():
    with pytest.raises(InputTypeError, match="scale"):
        TAG(scale=True).fit_affinity(np.ones((2, 2)), ["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="overflow"):
        TAG(scale=10).fit_affinity(np.full((2, 2), 1e308), ["a", "b"])
    a = np.array([[0.0, 0.3], [-0.2, 0.0]])
    np.testing.assert_array_equal(TAG(scale=2).fit_affinity(a, ["a", "b"]).affinity_, a * 2.0)


# -- #23: MTGNet's target scale for tiny gains -----------------------------------------------------
def test_mtgnet_scale_of_tiny_gains():
    from mtgfast import MTGNet

    net = MTGNet(n_estimators=1, dim=8, max_epochs=20, seed=0).fit(_table(value=1e-200))
    assert net.scale_ == pytest.approx(1e-200, rel=1e-12)
    pred = net.predict([7])[0]
    assert np.all(np.abs(pred) < 1e-198)


def _recorded_multi_gains() -> list[np.ndarray]:
    out = []
    for x, ys in (("taskonomy/taskonomy_x.csv", ("taskonomy/taskonomy.csv",)),
                  ("ETT/ETTm1_x.csv", ("ETT/ETTm1_val_y.csv", "ETT/ETTm1_y.csv"))):
        for y in ys:
            if not (DATA / "mtgnet" / x).exists():
                continue
            t = GainTable.from_mtgnet(DATA / "mtgnet" / x, DATA / "mtgnet" / y)
            multi = t.member() & (t.member().sum(1) >= 2)[:, None] & np.isfinite(t.gains)
            out.append(t.gains[multi])
    return out


def test_mtgnet_scale_unchanged_for_ordinary_gains():
    """The robust RMS is only a fallback: ordinary gains keep the plain RMS bit for bit."""
    from mtgfast import MTGNet

    rng = np.random.default_rng(0)
    samples = [*_recorded_multi_gains(), *(rng.normal(0, s, 200) for s in (1e-3, 0.05, 3.0))]
    for g in samples:
        plain = float(np.sqrt(np.mean(g ** 2)))
        assert plain >= np.finfo(np.float64).tiny   # the fallback is never taken here
    t = _table(seed=3)
    net = MTGNet(n_estimators=1, dim=8, max_epochs=2).fit(t)
    multi = t.member() & (t.member().sum(1) >= 2)[:, None]
    assert net.scale_ == float(np.sqrt(np.mean(t.gains[multi] ** 2)))


@pytest.mark.parametrize("unit", [1e-200, 1.0, 1e200])
def test_mtgnet_prior_scales_are_the_rms_in_any_unit(unit):
    """token_prior and attention_prior enter over their RMS: a prior in tiny or huge units has
    the same effect as in ordinary ones (a plain RMS read 1e-200 as 0 and 1e200 as inf)."""
    from mtgfast import MTGNet

    train = _table(seed=3)
    prior = GainTable(train.masks, train.gains * unit, train.task_names)
    bias = np.array([[0.0, 0.3, -0.1], [0.2, 0.0, 0.4], [-0.3, 0.1, 0.0]]) * unit
    opts = {"n_estimators": 1, "dim": 8, "max_epochs": 5, "seed": 0}
    feat = MTGNet(**opts, token_prior=prior).fit(train)
    multi = train.member() & (train.member().sum(1) >= 2)[:, None]
    v = train.gains[multi]
    assert feat.feature_scale_ == pytest.approx(unit * float(np.sqrt(np.mean(v * v))), rel=1e-12)
    biased = MTGNet(**opts, attention_prior=bias).fit(train)
    off = bias[~np.eye(3, dtype=bool)] / unit
    assert biased.bias_scale_ == pytest.approx(unit * float(np.sqrt(np.mean(off * off))),
                                               rel=1e-12)
    for net in (feat, biased):
        assert np.all(np.isfinite(net.predict(train.masks)[train.member()]))


# -- #11: the Ray executor refuses a run no node can hold ------------------------------------------
@pytest.fixture()
def local_ray():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.parametrize("resources, what", [({"num_cpus": 1, "num_gpus": 1}, "GPU=1"),
                                             ({"num_cpus": 64}, "CPU=64"),
                                             ({"num_cpus": 1, "tpu_slice": 1}, "tpu_slice=1")])
def test_ray_executor_refuses_infeasible_resources(local_ray, resources, what):
    from mtgfast.study.executors import RayExecutor

    ex = RayExecutor(resources_per_run=resources)
    t0 = time.monotonic()
    try:
        with pytest.raises(InputError, match=what):
            list(ex.run_jobs(abs, [1, 2]))
    finally:
        ex.close()
    assert time.monotonic() - t0 < 30


def test_ray_executor_feasible_request_runs(local_ray):
    from mtgfast.study.executors import make_executor

    ex = make_executor("ray")
    try:
        assert sorted(r for _, r in ex.map_runs(abs, [-1, 2, -3])) == [1, 2, 3]
    finally:
        ex.close()


def test_ray_executor_that_started_ray_refuses_and_shuts_it_down():
    """The audit's case: make_executor("ray", gpus_per_run=1) on a machine without a GPU."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    from mtgfast.study.executors import make_executor

    ex = make_executor("ray", gpus_per_run=1.0)
    ex.init_options.update(num_cpus=1, num_gpus=0, log_to_driver=False)
    try:
        with pytest.raises(InputError, match="GPU=1"):
            list(ex.run_jobs(abs, [1]))
        assert not ray.is_initialized()
    finally:
        ex.close()
        ray.shutdown()
