"""Adversarial sweep (third pass) of what the earlier sweeps left: the MTL trainers' public API
(TrainConfig, the suites, each method's options, weightings, architectures, devices), the
active loop's ask/tell, the executors and ``synthetic_gain_tables``. Each case is what a hostile
but fair user might pass and what must happen: an ``InputError``/``InputTypeError`` whose message
names the argument, raised before any training; never a raw torch/numpy error, a hang, a silent
coercion (1.7 -> 1, "no" -> True, None -> "None") or a wrong answer. Cases marked "fixed" passed
silently, or crashed with a bare builtin error (or after training started), before this pass; of
the others, some were refused before with another class or wording (a wrong type is now an
``InputTypeError`` everywhere, and messages give the range, from ``mtgfast.checks``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mtgfast.errors import InputError, InputTypeError

torch = pytest.importorskip("torch")

from mtgfast.generate import synthetic_gain_tables  # noqa: E402
from mtgfast.mtl.adashare import train_adashare  # noqa: E402
from mtgfast.mtl.alphavil import train_alphavil  # noqa: E402
from mtgfast.mtl.engine import TrainConfig  # noqa: E402
from mtgfast.mtl.study_adapter import StudyProblem  # noqa: E402
from mtgfast.mtl.suites import get_suite  # noqa: E402
from mtgfast.mtl.tag_affinity import collect_affinity  # noqa: E402
from mtgfast.mtl.trainer import SuiteTrainFn, train_mtl  # noqa: E402
from mtgfast.mtl.weighting import make_weighting  # noqa: E402
from mtgfast.study import ActiveLoop, RandomSelector  # noqa: E402
from mtgfast.study.executors import (InProcessExecutor, LocalExecutor,  # noqa: E402
                                     RayExecutor, make_executor)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NAN, INF = float("nan"), float("inf")
_SUITE: list[Any] = []


def suite() -> Any:
    """A tiny synthetic suite (6 tasks), built once; no case here trains on it."""
    if not _SUITE:
        _SUITE.append(get_suite("synthetic", n_train=32, n_eval=32))
    return _SUITE[0]


def cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, **kw})


def ett_path() -> str:
    from conftest import _data_dir

    p = _data_dir() / "ett" / "ETTh1.csv"
    if not p.is_file():
        pytest.skip(f"ETT csv not found at {p}")
    return str(p)


def _bare_study(**kw: Any) -> Any:
    from mtgfast.study import Study

    kw.setdefault("task_names", list("abc"))
    kw.setdefault("progress", False)
    return Study(lambda t, s: {x: 0.5 for x in t}, ":memory:", **kw)


# name, call, exception, words of the message
CASES = [
    # -- TrainConfig: names of methods, devices, options, numbers
    ("config unknown weighting (fixed)", lambda: cfg(weighting="nope"), InputError,
     "unknown weighting 'nope'"),
    ("config unknown arch (fixed)", lambda: cfg(arch="nope"), InputError,
     "unknown architecture 'nope'"),
    ("config weighting None", lambda: cfg(weighting=None), InputTypeError, "weighting must be a str"),
    ("config device misspelt (fixed)", lambda: cfg(device="gpu"), InputError, "device must be"),
    ("config device empty (fixed)", lambda: cfg(device=""), InputError, "device must be"),
    ("config device int", lambda: cfg(device=0), InputTypeError, "device must be a str"),
    ("config arch_options int (fixed)", lambda: cfg(arch_options=5), InputTypeError,
     "arch_options must be a mapping"),
    ("config arch_options str (fixed)", lambda: cfg(arch_options="ab"), InputTypeError,
     "arch_options must be a mapping"),
    ("config epochs 0", lambda: cfg(epochs=0), InputError, "epochs must be >= 1"),
    ("config epochs -1", lambda: cfg(epochs=-1), InputError, "epochs must be >= 1"),
    ("config epochs True", lambda: cfg(epochs=True), InputTypeError, "epochs must be an int"),
    ("config epochs 2.0", lambda: cfg(epochs=2.0), InputTypeError, "epochs must be an int"),
    ("config epochs NaN", lambda: cfg(epochs=NAN), InputTypeError, "epochs must be an int"),
    ("config batch_size 0", lambda: cfg(batch_size=0), InputError, "batch_size must be >= 1"),
    ("config batch_size 1.5", lambda: cfg(batch_size=1.5), InputTypeError, "batch_size"),
    ("config lr 0", lambda: cfg(lr=0), InputError, "lr must be a finite number > 0"),
    ("config lr NaN", lambda: cfg(lr=NAN), InputError, "lr must be"),
    ("config lr True (fixed)", lambda: cfg(lr=True), InputTypeError, "lr must be a number"),
    ("config lr str", lambda: cfg(lr="1e-3"), InputTypeError, "lr must be a number"),
    ("config weight_decay inf (fixed)", lambda: cfg(weight_decay=INF), InputError, "weight_decay"),
    ("config weight_decay -1", lambda: cfg(weight_decay=-1), InputError, "weight_decay"),
    ("config dropout 1", lambda: cfg(dropout=1.0), InputError, r"dropout must be a finite number in \[0, 1\)"),
    ("config dropout str (fixed)", lambda: cfg(dropout="x"), InputTypeError, "dropout must be a number"),
    ("config dropout True (fixed)", lambda: cfg(dropout=True), InputTypeError, "dropout"),
    ("config esa_fraction True (fixed)", lambda: cfg(esa_fraction=True), InputTypeError,
     "esa_fraction must be a number"),
    ("config esa_fraction 0", lambda: cfg(esa_fraction=0), InputError, "esa_fraction"),
    ("config hidden 0", lambda: cfg(hidden=0), InputError, "hidden must be None or a positive"),
    ("config hidden True", lambda: cfg(hidden=True), InputError, "hidden"),
    ("config n_blocks -1", lambda: cfg(n_blocks=-1), InputError, "n_blocks must be None or a non-negative"),
    ("config max_train_batches 0", lambda: cfg(max_train_batches=0), InputError, "max_train_batches"),
    # -- a run: the device must exist, seeds and tasks are ints (checked before any data moves)
    ("run on a CUDA device that is not there (fixed)",
     lambda: train_mtl(suite(), (0, 1), 0, cfg(device="cuda:99")), InputError, "cuda:99"),
    ("run on the meta device (fixed)", lambda: train_mtl(suite(), (0, 1), 0, cfg(device="meta")),
     InputError, "device 'meta'"),
    ("run seed 2**70 (fixed)", lambda: train_mtl(suite(), (0, 1), 2**70, cfg()), InputError,
     "seed must be an int in"),
    ("run seed -1", lambda: train_mtl(suite(), (0, 1), -1, cfg()), InputError, "seed"),
    ("run seed True", lambda: train_mtl(suite(), (0, 1), True, cfg()), InputError, "seed"),
    ("run tasks float (fixed)", lambda: train_mtl(suite(), (0.0, 1), 0, cfg()), InputTypeError,
     "task indices"),
    ("run tasks bool (fixed)", lambda: train_mtl(suite(), (True, 2), 0, cfg()), InputTypeError,
     "task indices"),
    ("run tasks empty", lambda: train_mtl(suite(), (), 0, cfg()), InputError, "must not be empty"),
    ("run tasks duplicate", lambda: train_mtl(suite(), (0, 0), 0, cfg()), InputError, "distinct"),
    ("run tasks out of range", lambda: train_mtl(suite(), (0, 99), 0, cfg()), InputError,
     "out of range"),
    ("run tasks a set", lambda: train_mtl(suite(), {0, 1}, 0, cfg()), InputError, "sequence"),
    ("train fn seed str (fixed)", lambda: SuiteTrainFn(suite(), cfg())(["c0t0"], "a"),
     InputTypeError, "seed must be an int"),
    ("train fn seed 1.7 (fixed)", lambda: SuiteTrainFn(suite(), cfg())(["c0t0"], 1.7),
     InputTypeError, "seed must be an int"),
    ("train fn unknown task", lambda: SuiteTrainFn(suite(), cfg())(["nope"], 0), InputError,
     "unknown tasks"),
    # -- architectures and weightings: unknown options name the method
    ("adashare unknown option (fixed)", lambda: train_mtl(suite(), (0, 1), 0, cfg(
        arch="adashare", arch_options={"bogus": 1})), InputError, "architecture 'adashare'.*bogus"),
    ("adashare tau 0", lambda: train_mtl(suite(), (0, 1), 0, cfg(
        arch="adashare", arch_options={"tau": 0})), InputError, "tau must be"),
    ("adashare tau_decay str (fixed)", lambda: train_mtl(suite(), (0, 1), 0, cfg(
        arch="adashare", arch_options={"tau_decay": "x"})), InputTypeError, "tau_decay"),
    ("mtan unknown option", lambda: train_mtl(suite(), (0, 1), 0, cfg(
        arch="mtan", arch_options={"b": 1})), InputError, "takes no options"),
    ("mtan without blocks", lambda: train_mtl(suite(), (0, 1), 0, cfg(arch="mtan", n_blocks=0)),
     InputError, "n_blocks >= 1"),
    ("weighting unknown option (fixed)", lambda: make_weighting("equal", 2, bogus=1), InputError,
     "weighting 'equal'.*bogus"),
    ("weighting unknown name", lambda: make_weighting("nope", 2), InputError, "unknown weighting"),
    ("weighting n_tasks 0", lambda: make_weighting("dwa", 0), InputError, "n_tasks must be >= 1"),
    ("weighting n_tasks True", lambda: make_weighting("dwa", True), InputTypeError, "n_tasks"),
    ("dwa temperature True (fixed)", lambda: make_weighting("dwa", 2, temperature=True),
     InputTypeError, "temperature must be a number"),
    ("dwa temperature 0", lambda: make_weighting("dwa", 2, temperature=0), InputError,
     "temperature must be a finite number > 0"),
    ("uncertainty init str (fixed)", lambda: make_weighting("uncertainty", 2, init_log_var="a"),
     InputTypeError, "init_log_var must be a number"),
    ("uncertainty init NaN", lambda: make_weighting("uncertainty", 2, init_log_var=NAN),
     InputError, "init_log_var"),
    # -- αVIL
    ("alphavil learn_target_weight str (fixed)", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), learn_target_weight="yes"), InputTypeError,
     "learn_target_weight must be a bool"),
    ("alphavil learn_target_weight 1 (fixed)", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), learn_target_weight=1), InputTypeError, "learn_target_weight"),
    ("alphavil sample_fraction str (fixed)", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), sample_fraction="a"), InputTypeError, "sample_fraction"),
    ("alphavil sample_fraction 0", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), sample_fraction=0), InputError, r"sample_fraction.*\(0, 1\]"),
    ("alphavil inner_momentum 1", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), inner_momentum=1), InputError, r"inner_momentum.*\[0, 1\)"),
    ("alphavil inner_lr True (fixed)", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), inner_lr=True), InputTypeError, "inner_lr"),
    ("alphavil alpha_steps 2.0", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), alpha_steps=2.0), InputTypeError, "alpha_steps"),
    ("alphavil dev_rows 0", lambda: train_alphavil(
        suite(), (0, 1), 0, 0, cfg(), dev_rows=0), InputError, "dev_rows"),
    ("alphavil target not a task", lambda: train_alphavil(suite(), (0, 1), 5, 0, cfg()),
     InputError, "target 5"),
    ("alphavil target str", lambda: train_alphavil(suite(), (0, 1), "c0t0", 0, cfg()),
     InputTypeError, "target must be a task index"),
    ("alphavil target bool", lambda: train_alphavil(suite(), (0, 1), True, 0, cfg()),
     InputTypeError, "target"),
    ("alphavil with a weighting", lambda: train_alphavil(suite(), (0, 1), 0, 0, cfg(
        weighting="dwa")), InputError, "weighting='equal'"),
    # -- AdaShare's schedule
    ("adashare sample_policy str (fixed)", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), sample_policy="no"), InputTypeError, "sample_policy must be a bool"),
    ("adashare warmup_epochs -1", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), warmup_epochs=-1), InputError, "warmup_epochs must be >= 0"),
    ("adashare search_epochs 1.0", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), search_epochs=1.0), InputTypeError, "search_epochs"),
    ("adashare stage_epochs True", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), stage_epochs=True), InputTypeError, "stage_epochs"),
    ("adashare policy_lr inf (fixed)", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), policy_lr=INF), InputError, "policy_lr must be a finite number > 0"),
    ("adashare lambda_sharing NaN", lambda: train_adashare(
        suite(), (0, 1), 0, cfg(), lambda_sharing=NAN), InputError, "lambda_sharing"),
    # -- TAG's lookahead affinity
    ("affinity every 0", lambda: collect_affinity(suite(), 0, cfg(), every=0), InputError,
     "every must be >= 1"),
    ("affinity every True", lambda: collect_affinity(suite(), 0, cfg(), every=True),
     InputTypeError, "every"),
    ("affinity lookahead_lr str (fixed)", lambda: collect_affinity(
        suite(), 0, cfg(), lookahead_lr="a"), InputTypeError, "lookahead_lr must be a number"),
    ("affinity lookahead_lr NaN", lambda: collect_affinity(suite(), 0, cfg(), lookahead_lr=NAN),
     InputError, "lookahead_lr"),
    ("affinity one task", lambda: collect_affinity(suite(), 0, cfg(), tasks=(0,)), InputError,
     "at least 2 tasks"),
    # -- suites
    ("suite unknown name", lambda: get_suite("nope"), InputError, "unknown suite 'nope'"),
    ("suite name not a str", lambda: get_suite(3), InputError, "unknown suite 3"),
    ("suite unknown option (fixed)", lambda: get_suite("synthetic", bogus=1), InputError,
     "suite 'synthetic'.*bogus"),
    ("digits n_train float (fixed)", lambda: get_suite("digits", n_train=20.5), InputTypeError,
     "n_train must be an int"),
    ("digits n_train out of range", lambda: get_suite("digits", n_train=5), InputError,
     r"n_train must be in \[20, 1078\]"),
    ("synthetic clusters int (fixed)", lambda: get_suite("synthetic", clusters=3), InputTypeError,
     "clusters must be a sequence"),
    ("synthetic cluster of 0", lambda: get_suite("synthetic", clusters=(3, 0)), InputError,
     r"clusters\[1\] must be >= 1"),
    ("synthetic n_features float (fixed)", lambda: get_suite("synthetic", n_features=8.5),
     InputTypeError, "n_features must be an int"),
    ("synthetic freq inf (fixed)", lambda: get_suite("synthetic", freq=INF), InputError, "freq"),
    ("synthetic noise NaN", lambda: get_suite("synthetic", noise=NAN), InputError, "noise"),
    ("ett path int (fixed)", lambda: get_suite("ett", path=3), InputTypeError, "path must be"),
    ("ett path missing", lambda: get_suite("ett", path="/nonexistent/ETTh1.csv"), InputError,
     "not found"),
    ("ett window longer than the training months (fixed)",
     lambda: get_suite("ett", path=ett_path(), window=9000), InputError, "window \\+ horizon"),
    ("ett horizon longer than a split (fixed)",
     lambda: get_suite("ett", path=ett_path(), horizon=3000), InputError, "horizon"),
    ("multidigits metric", lambda: get_suite("multidigits", metric="x"), InputError, "metric"),
    ("multidigits n_test bool", lambda: get_suite("multidigits", n_test=True), InputTypeError,
     "n_test must be an int"),
    # -- the problem a study is built from
    ("problem task name None (fixed)", lambda: StudyProblem(
        lambda t, s: {}, ("a", None), ("m", "m"), (False, False), "fp", "p"), InputError,
     "task names must be non-empty strings"),
    ("problem task name empty (fixed)", lambda: StudyProblem(
        lambda t, s: {}, ("a", ""), ("m", "m"), (False, False), "fp", "p"), InputError,
     "task names"),
    ("problem directions 'yes' (fixed)", lambda: StudyProblem(
        lambda t, s: {}, ("a", "b", "c"), ("m",) * 3, "yes", "fp", "p"), InputTypeError,
     "higher_is_better must be a sequence"),
    ("problem directions ints (fixed)", lambda: StudyProblem(
        lambda t, s: {}, ("a", "b"), ("m", "m"), (1, 0), "fp", "p"), InputTypeError,
     "higher_is_better must be bools"),
    ("problem metric not a str (fixed)", lambda: StudyProblem(
        lambda t, s: {}, ("a", "b"), ("m", 3), (True, True), "fp", "p"), InputError, "metrics"),
    # -- executors: every option checked when the executor is made, not in a worker
    ("executor unknown kind", lambda: make_executor("nope"), InputError, "executor kind"),
    ("executor workers 0", lambda: make_executor("local", workers=0), InputError,
     "workers must be >= 1"),
    ("executor workers -2", lambda: LocalExecutor(-2), InputError, "workers must be >= 1"),
    ("executor workers True", lambda: make_executor("local", workers=True), InputTypeError,
     "workers must be an int"),
    ("executor workers 2.0", lambda: LocalExecutor(2.0), InputTypeError, "workers must be an int"),
    ("executor threads 0", lambda: LocalExecutor(2, 0), InputError, "threads"),
    ("executor in-process with workers", lambda: make_executor("inprocess", workers=2),
     InputError, "one job at a time"),
    ("executor retries -1", lambda: InProcessExecutor(max_retries=-1), InputError, "max_retries"),
    ("executor retries 1.0", lambda: InProcessExecutor(max_retries=1.0), InputTypeError,
     "max_retries"),
    ("executor gpus_per_run NaN", lambda: make_executor("local", workers=2, gpus_per_run=NAN),
     InputError, "gpus_per_run"),
    ("executor gpus_per_run str", lambda: make_executor("local", workers=2, gpus_per_run="1"),
     InputTypeError, "gpus_per_run"),
    ("executor address without ray", lambda: make_executor("inprocess", address="auto"),
     InputError, "only used by the ray executor"),
    ("executor gpus None (fixed)", lambda: LocalExecutor(2, gpus=[None]), InputError,
     "gpus must be device ids"),
    ("executor gpus float (fixed)", lambda: LocalExecutor(2, gpus=3.5), InputTypeError,
     "gpus must be device ids"),
    ("ray resources str (fixed)", lambda: RayExecutor(None, "cpus"), InputTypeError,
     "resources_per_run must be a mapping"),
    ("ray resources NaN", lambda: RayExecutor(None, {"num_cpus": NAN}), InputError,
     r"resources_per_run\['num_cpus'\]"),
    ("ray resources bool (fixed)", lambda: RayExecutor(None, {"num_cpus": True}), InputTypeError,
     r"resources_per_run\['num_cpus'\]"),
    ("ray resources key int", lambda: RayExecutor(None, {3: 1}), InputTypeError,
     "resource names"),
    ("ray address", lambda: RayExecutor("nohost"), InputError, "address must be"),
    ("run_jobs fn not callable (fixed)", lambda: InProcessExecutor().run_jobs(3, [1]),
     InputTypeError, "fn must be a callable"),
    ("run_jobs jobs not iterable (fixed)", lambda: InProcessExecutor().run_jobs(abs, 3),
     InputTypeError, "jobs must be an iterable"),
    # -- synthetic_gain_tables
    ("tables n_tasks 2 (fixed)", lambda: synthetic_gain_tables(2, n_random=0, n_triples=1),
     InputError, "a triple needs 3 tasks"),
    ("tables seed 2**64 (fixed)", lambda: synthetic_gain_tables(10, n_random=50, seed=2**64),
     InputError, "seed must be between 0 and"),
    ("tables n_tasks 1", lambda: synthetic_gain_tables(1), InputError, "n_tasks must be >= 2"),
    ("tables n_tasks 3.0", lambda: synthetic_gain_tables(3.0), InputTypeError, "n_tasks"),
    ("tables n_random 2.5", lambda: synthetic_gain_tables(10, n_random=2.5), InputTypeError,
     "n_random"),
    ("tables n_random beyond the space", lambda: synthetic_gain_tables(4, n_random=10**6),
     InputError, "only 5 exist"),
    ("tables n_random beyond memory", lambda: synthetic_gain_tables(40, n_random=10**12),
     InputError, "too much memory"),
    ("tables all of 2^30", lambda: synthetic_gain_tables(30, n_random=None), InputError,
     "give n_random"),
    ("tables n_clusters > n", lambda: synthetic_gain_tables(5, n_random=0, n_clusters=6),
     InputError, "n_clusters"),
    ("tables beta bool", lambda: synthetic_gain_tables(5, n_random=0, beta=True), InputTypeError,
     "beta must be a number"),
    ("tables pair_scale inf", lambda: synthetic_gain_tables(5, n_random=0, pair_scale=INF),
     InputError, "pair_scale must be a finite number >= 0"),
    # -- Study with a train callable (the lead's fixes in study/study.py)
    ("study int task names (fixed)", lambda: _bare_study(task_names=[1, 2, 3]), InputError,
     "task names must be non-empty strings"),
    ("study None task name (fixed)", lambda: _bare_study(task_names=["a", None, "c"]),
     InputError, "task names must be non-empty strings"),
    ("study metric 3 (fixed)", lambda: _bare_study(metric=3), InputError,
     "metrics must be non-empty strings"),
    ("study measure float mask (fixed)", lambda: _bare_study(estimator="hoa").measure([1.5]),
     InputTypeError, "masks must hold integers"),
    ("study measure mask 0", lambda: _bare_study(estimator="hoa").measure([0]), InputError,
     "mask 0"),
    ("study fingerprint empty (fixed)", lambda: _bare_study(fingerprint=""), InputError,
     "fingerprint must be a non-empty string"),
    ("study progress 'no' (fixed)", lambda: _bare_study(progress="no"), InputTypeError,
     "progress must be a bool"),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_error(name, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_each_case_raises_before_any_training(monkeypatch):
    # the cases that reach a method must fail in the checks: opening an Engine is an error here
    from mtgfast.mtl import engine

    def no_engine(*a: Any, **k: Any) -> None:
        raise AssertionError("a training run started on bad input")

    monkeypatch.setattr(engine.Engine, "__init__", no_engine)
    for name, call, error, match in CASES:
        if name.startswith(("run ", "train fn", "alphavil", "adashare", "affinity")):
            with pytest.raises(error, match=match):
                call()


def test_good_numbers_of_other_types_are_accepted_and_fingerprinted_alike():
    a = TrainConfig(epochs=np.int64(3), batch_size=np.int32(16), lr=np.float32(0.5))
    b = TrainConfig(epochs=3, batch_size=16, lr=float(np.float32(0.5)))
    assert a.fingerprint() == b.fingerprint()  # fixed: np.int64(3) hashed as "np.int64(3)"
    assert type(a.epochs) is int and type(a.lr) is float
    assert TrainConfig().fingerprint() == TrainConfig(epochs=30).fingerprint()
    from mtgfast.mtl.engine import check_device

    assert check_device("cpu").type == "cpu"
    s = get_suite("synthetic", clusters=np.array([2, 2]), n_train=np.int64(32), n_eval=32)
    assert s.n_tasks == 4 and s.params["n_train"] == 32 and type(s.params["n_train"]) is int
    assert synthetic_gain_tables(2, n_random=0).valid.masks.tolist() == [1, 2, 3]  # fixed: crashed


def test_ett_windows_that_fit_still_build(data_dir):
    s = get_suite("ett", path=str(data_dir / "ett" / "ETTh1.csv"), window=24, horizon=12,
                  stride=24)
    sp = s.splits()
    assert sp.X_train.shape[1] == 24 * 7 and sp.X_valid.shape[0] > 0 and sp.X_test.shape[0] > 0


# -- the active loop's ask/tell ------------------------------------------------------------------
class _Zero:
    """A fake estimator that predicts zero gains everywhere: no torch, instant."""

    def fit(self, table: Any) -> _Zero:
        return self

    def predict(self, masks: Any, return_std: bool = False) -> Any:
        g = np.zeros((np.asarray(masks).shape[0], 3))
        return (g, g + 0.01) if return_std else g


def _loop() -> ActiveLoop:
    return ActiveLoop(RandomSelector(), _Zero, None, 3, seed=0)


def test_tell_cases():
    loop = _loop()
    loop.tell(3, [0.1, 0.2, NAN])
    with pytest.raises(InputError, match="already measured"):
        loop.tell(3, [0.1, 0.2, NAN])  # twice
    with pytest.raises(InputError, match="must be finite inside it"):
        loop.tell(5, [NAN, 0.2, 0.1])  # NaN inside the mask
    with pytest.raises(InputError, match="must be finite inside it"):
        loop.tell(6, [NAN, INF, 0.3])
    with pytest.raises(InputTypeError, match="gains must be numbers"):  # fixed: bare ValueError
        loop.tell(6, "ab")
    with pytest.raises(InputTypeError, match="masks"):
        loop.tell(True, [0.1, 0.2, 0.3])
    with pytest.raises(InputTypeError, match="masks"):
        loop.tell(6.0, [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="task bit"):
        loop.tell(8, [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="shape"):
        loop.tell(6, [0.1, 0.2])
    with pytest.raises(InputError, match="singleton"):
        loop.tell(1, [0.0, NAN, NAN])
    with pytest.raises(InputError, match="same combination twice"):
        loop.tell([5, 5], [[0.1, NAN, 0.2]] * 2)
    # a failed tell records nothing: 5 and 6 are still to be measured
    assert set(loop.table().masks.tolist()) >= {3} and 5 not in loop.table().masks.tolist()


def test_tell_of_a_mask_never_asked_is_an_extra_measurement():
    loop = _loop()
    loop.tell(3, [0.1, 0.2, NAN])  # never asked: recorded, as on resume
    asked: list[int] = []
    while True:
        batch = loop.next_batch(rounds=2)
        if batch.size == 0:
            break
        for m in batch.tolist():
            asked.append(m)
            loop.tell(m, np.where([(m >> j) & 1 for j in range(3)], 0.05, NAN))
    assert 3 not in asked and len(asked) == len(set(asked))


def test_ask_cases():
    loop = _loop()
    with pytest.raises(InputError, match="max_masks must be >= 0"):  # fixed: silently empty
        loop.ask(-1)
    for bad in (True, 1.5, "2"):
        with pytest.raises(InputTypeError, match="max_masks must be an int"):
            loop.ask(bad)
    assert loop.ask(0).size == 0
    with pytest.raises(InputError, match="rounds must be >= 0"):
        loop.next_batch(-1)
    with pytest.raises(InputTypeError, match="rounds must be an int"):
        loop.run(lambda m: None, rounds=1.5)


# -- what a failing or lying train callable leaves in the store ----------------------------------
NAMES = ("a", "b", "c")


def _study(fn: Any, store: Any = ":memory:") -> Any:
    from mtgfast.study import Study

    return Study(fn, store, estimator="hoa", task_names=NAMES, progress=False, name="sweep",
                 fingerprint="one-procedure", executor=InProcessExecutor(max_retries=0))


def _fails_on_ab(kind: str):
    def train(tasks: tuple[str, ...], seed: int) -> dict[str, Any]:
        if set(tasks) == {"a", "b"}:
            if kind == "raise":
                raise RuntimeError("boom on a+b")
            if kind == "nan":
                return {t: NAN for t in tasks}
            if kind == "shape":
                return {t: (1.0, 2.0, 3.0) for t in tasks}
            return {"x": 1.0}
        return {t: 0.5 + 0.01 * len(tasks) for t in tasks}
    return train


def _good(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
    return {t: 0.5 + 0.01 * len(tasks) for t in tasks}


@pytest.mark.parametrize(("kind", "error", "match"), [
    ("raise", "RunFailedError", r"(?s)combination \{a, b\}.*boom on a\+b"),
    ("nan", "InputError", r"returned nan for task 'a' of combination \{a, b\}"),
    ("shape", "InputError", r"task 'a' of combination \{a, b\}.*\(valid, test\)"),
    ("keys", "InputError", r"on combination \{a, b\}.*expected exactly"),
])
def test_a_bad_run_names_its_combination_and_nothing_collected_is_lost(tmp_path, kind, error,
                                                                        match):
    from mtgfast.study import RunFailedError

    db = tmp_path / "s.db"
    st = _study(_fails_on_ab(kind), db)
    with pytest.raises(RunFailedError if error == "RunFailedError" else InputError, match=match):
        st.run()
    kept = st.n_trained
    assert kept >= 3  # the singletons ran before the first pair
    st.close()
    again = _study(_good, db)  # resumes: only what was not stored trains
    again.run()
    assert again.n_trained == 6 - kept  # 3 singletons + 3 pairs in all
    assert again.gain_table().masks.size == 6
    again.close()
