"""End-to-end studies on real training runs: planted grouping recovered, resumable after SIGKILL,
plain train callables, worker processes, the CLI commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtgfast.errors import InputError, InputTypeError, StoreError
from mtgfast.store import GainStore
from mtgfast.study.executors import (InlineExecutor, InProcessExecutor, ProcessExecutor,
                                     make_executor)
from mtgfast.study.registry import estimator_names, make_estimator
from mtgfast.study.study import Study, group_stored

REPO = Path(__file__).resolve().parents[1]

# small, fast and deterministic: one run of the 4-task synthetic suite takes ~1 s on one core
SYNTH = "SyntheticSuite(clusters=(2, 2), n_eval=500)"
CONFIG = "TrainConfig(epochs=60, patience=8, batch_size=32, lr=1e-2)"


def _synthetic():
    from mtgfast.mtl.suites.synthetic import SyntheticSuite
    from mtgfast.mtl.trainer import TrainConfig

    return eval(SYNTH), eval(CONFIG)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_hoa_study_recovers_the_planted_grouping_and_resumes_for_free(tmp_path):
    suite, config = _synthetic()
    db = tmp_path / "s.db"
    with Study(suite, store=db, estimator="hoa", config=config, workers=2,
               progress=False) as study:
        study.run()
        assert study.n_trained == 4 + 6  # STL baselines + every pair
        res = study.result(budget=2)
        valid = study.gain_table("valid")
    assert sorted(res.groups) == [("c0t0", "c0t1"), ("c1t0", "c1t1")]
    # mixing clusters hurts, sharing within a cluster does not
    pair = lambda a, b: valid.lookup([(1 << a) | (1 << b)])[0]  # noqa: E731
    assert np.nanmean(pair(0, 2)) < 0 and np.nanmean(pair(1, 3)) < 0
    assert np.nanmean(pair(0, 1)) > np.nanmean(pair(0, 2))
    assert res.measured_valid_gain == pytest.approx(res.estimated_gain)  # pairs are measured
    assert np.isfinite(res.measured_test_gain)
    # a second study object on the same store trains nothing: every run is read back
    with Study(suite, store=db, estimator="hoa", config=config, progress=False) as again:
        again.run()
        assert again.n_trained == 0
        assert again.result(budget=2).groups == res.groups


def test_oracle_study_on_all_combinations_prefers_planted_clusters(tmp_path):
    suite, config = _synthetic()
    with Study(suite, store=tmp_path / "o.db", estimator="oracle", config=config,
               progress=False) as study:
        study.run()
        table = study.gain_table("valid")
        assert len(table) == 15
        res = study.result(budget=2)
    # every task's assigned group keeps it with its cluster mate
    for name, grp in res.assignment.items():
        mate = name[:2] + ("t1" if name.endswith("t0") else "t0")
        assert mate in grp, (name, grp)
    planted = table.lookup([0b0011, 0b1100])
    mixed = table.lookup([0b0101, 0b1010, 0b0110, 0b1001])
    assert np.nanmean(planted) > np.nanmean(mixed)



@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_mtgnet_study_keeps_planted_cluster_mates_together(tmp_path, seed):
    # the default estimator: full set + 2 active rounds, then MTG-Net predicts the rest
    suite, config = _synthetic()
    with Study(suite, store=tmp_path / "m.db", estimator="mtgnet", config=config,
               progress=False, active_options={"seed": seed},
               estimator_options={"seed": seed}) as study:
        study.run(rounds=2)
        assert study.n_trained == 4 + 1 + 2 * 4  # STL, the full set, N selections per round
        res = study.result(budget=2)
        # the default final choice (the replay's best, final="measured"): only measured groups,
        # so verifying the chosen groups trains nothing
        assert study.final == "measured" and study.n_trained == 4 + 1 + 2 * 4
        measured = set(int(m) for m in study.gain_table().masks)
        assert all(int(m) in measured for m in res.grouping.groups if int(m) & (int(m) - 1))
        assert res.measured_valid_gain == pytest.approx(res.estimated_gain)
    for name, grp in res.assignment.items():
        mate = name[:2] + ("t1" if name.endswith("t0") else "t0")
        assert mate in grp, (name, grp)
    # final="estimate" on the same store (trains nothing): every candidate, and a measured
    # combination keeps its measured gains rather than the estimate
    with Study(suite, store=tmp_path / "m.db", estimator="mtgnet", config=config,
               progress=False, active_options={"seed": seed},
               estimator_options={"seed": seed}, final="estimate") as again:
        again.run(rounds=2)
        assert again.n_trained == 0
        cands, gains = again.predict()
        assert len(cands) == 15
        table = again.gain_table()
        rows = table.index_of(cands)
        for i in np.flatnonzero(rows >= 0):
            members = [j for j in range(4) if int(cands[i]) >> j & 1]
            np.testing.assert_array_equal(gains[i, members], table.gains[rows[i], members])

_CHILD = f"""
import os, signal, sqlite3, sys, threading, time, torch
torch.set_num_threads(1)
from mtgfast.mtl.suites.synthetic import SyntheticSuite
from mtgfast.mtl.trainer import TrainConfig
from mtgfast.study.study import Study

def kill_after(path, n):
    # SIGKILL this process, wherever the training thread is, once n runs are stored (a raw
    # read-only connection: the watcher must not change what the study writes)
    while True:
        time.sleep(0.02)
        try:
            con = sqlite3.connect(f"file:{{path}}?mode=ro", uri=True, timeout=1)
            try:
                done = con.execute("SELECT COUNT(*) FROM runs WHERE status IN "
                                   "('complete', 'failed')").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            continue
        if done >= n:
            os.kill(os.getpid(), signal.SIGKILL)

threading.Thread(target=kill_after, args=(sys.argv[1], 6), daemon=True).start()
with Study({SYNTH}, store=sys.argv[1], estimator="oracle", config={CONFIG},
           progress=False) as st:
    st.run()
"""


def test_study_killed_mid_run_resumes_without_losing_or_repeating(tmp_path):
    db = tmp_path / "kill.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the child SIGKILLs itself from a watcher thread once 6 runs are stored: a kill mid-study
    # at a point that does not depend on how fast this machine trains (a parent polling the
    # store raced a fast child: all 15 runs were stored before the parent's kill landed)
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db)], env=env)
    try:
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL, f"the study was not killed mid-run (exit status {rc})"
    with GainStore(db) as s:
        assert s.integrity_check() == "ok"
        name = s.studies()[0]
        before = {(r.mask, r.seed): (r.created, dict(r.metrics_valid)) for r in s.runs(name)}
    assert 6 <= len(before) < 15
    suite, config = _synthetic()
    with Study(suite, store=db, estimator="oracle", config=config, progress=False) as study:
        assert study.name == name
        study.run()
        # exactly the missing runs were trained: nothing finished was lost or repeated
        assert study.n_trained == 15 - len(before)
        after = {(r.mask, r.seed): (r.created, dict(r.metrics_valid))
                 for r in study.store.runs(name)}
    assert len(after) == 15
    for key, value in before.items():
        assert after[key] == value  # untouched rows, same timestamps


def _plain_train(tasks: tuple[str, ...], seed: int) -> dict[str, tuple[float, float]]:
    """A user's own trainer: least squares on a shared design, where tasks 'a' and 'b' share data
    and 'c' is unrelated noise (any training code fits this callable protocol)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 5))
    w = {"a": np.array([1.0, 2, 0, 0, 0]), "b": np.array([1.0, 2, 0, 0, 0]),
         "c": np.array([0.0, 0, 0, 3, -1])}
    Ys = np.stack([X @ w[t] + rng.normal(size=40) for t in tasks], 1)
    # a shared fit over the tasks of the combination, then per-task error on fresh data
    coef, *_ = np.linalg.lstsq(np.tile(X, (len(tasks), 1)), Ys.T.reshape(-1), rcond=None)
    Xv = rng.normal(size=(200, 5))
    return {t: (float(np.mean((Xv @ coef - Xv @ w[t]) ** 2)) + 1.0,
                float(np.mean(np.abs(Xv @ coef - Xv @ w[t]))) + 1.0) for t in tasks}


def test_plain_callable_study_in_worker_processes(tmp_path):
    with Study(_plain_train, store=tmp_path / "c.db", estimator="oracle", task_names=("a", "b", "c"),
               metric="mse", higher_is_better=False, seeds=(0, 1), workers=2,
               progress=False) as study:
        study.run()
        assert study.n_trained == 7 * 2
        res = study.result(budget=2)
        assert ("a", "b") in res.groups and ("c",) in res.groups
        runs = study.store.runs(study.name)
        assert {r.seed for r in runs} == {0, 1}
        assert all(set(r.metrics_test) == set(r.metrics_valid) for r in runs)
    # the stored study can be grouped again without its training code
    again = group_stored(tmp_path / "c.db", 2)
    assert again.groups == res.groups


def test_fingerprints_keep_training_methods_apart(tmp_path):
    from mtgfast.mtl.trainer import TrainConfig

    suite, config = _synthetic()
    db = tmp_path / "f.db"
    a = Study(suite, store=db, estimator="hoa", config=config, progress=False)
    b = Study(suite, store=db, estimator="hoa",
              config=TrainConfig(epochs=60, patience=8, batch_size=32, lr=1e-2, weighting="dwa"),
              progress=False)
    assert a.name != b.name and a.fingerprint != b.fingerprint
    a.close()
    b.close()
    with pytest.raises(StoreError, match="fingerprint"):
        Study(suite, store=db, name=a.name, estimator="hoa", config=TrainConfig(lr=0.5),
              progress=False)


def test_study_validates_inputs(tmp_path):
    suite, config = _synthetic()
    with pytest.raises(InputError, match="unknown estimator"):
        Study(suite, store=tmp_path / "v.db", estimator="bogus", config=config)
    with pytest.raises(InputError, match="task_names"):
        Study(_plain_train, store=tmp_path / "v.db")
    with pytest.raises(InputError, match="seeds"):
        Study(suite, store=tmp_path / "v.db", config=config, seeds=(1, 1))
    # checked at construction, before anything is trained
    with pytest.raises(InputError, match="affinity"):
        Study(_plain_train, store=tmp_path / "v.db", estimator="tag", task_names=("a", "b", "c"),
              progress=False)
    with pytest.raises(InputError):
        make_executor(0)


def test_result_before_run_names_the_missing_step(tmp_path):
    s = Study(_plain_train, task_names=["a", "b", "c"], store=":memory:", estimator="oracle",
              progress=False)
    for call in (s.result, s.group, lambda budget: s.predict()):
        with pytest.raises(InputError,
                           match=r"call run\(\) before predict\(\), group\(\) or result"):
            call(budget=2)
    s.close()


_CALLS: list[tuple[str, ...]] = []


def _counting_train(tasks: tuple[str, ...], seed: int) -> dict[str, float]:
    _CALLS.append(tasks)
    return {t: 1.0 for t in tasks}


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"budget": 0}, InputError, "budget"),
    ({"budget": 4}, InputError, "between 1 and 3"),
    ({"rounds": -1}, InputError, "rounds"),
    ({"seeds": (-1,)}, InputError, "seeds"),
    ({"seeds": (2**70,)}, InputError, "seeds"),
    ({"seeds": (1.5,)}, InputTypeError, "seeds"),
    ({"seeds": ()}, InputError, "seeds"),
    ({"estimator": "bogus"}, InputError, "unknown estimator"),
    ({"estimator": 3}, InputTypeError, "estimator"),
    ({"estimator_options": {"dim": 0}}, InputError, "dim"),
    ({"estimator_options": {"nope": 1}}, InputError, "bad options for estimator 'mtgnet'"),
    ({"active_options": {"selector": "best"}}, InputError, "unknown selector"),
    ({"active_options": {"sed": 1}}, InputError, "unknown active_options"),
    ({"active_options": {"seed": -2}}, InputError, "seed"),
    ({"workers": 0}, InputError, "workers"),
    ({"workers": 2, "executor": InProcessExecutor()}, InputError, "not both"),
    ({"executor": "ray"}, InputTypeError, "Executor"),
    ({"stale_after": 0}, InputError, "stale_after"),
    ({"final": "best"}, InputError, "final must be one of"),
    ({"final": 1}, InputTypeError, "final"),
    ({"name": ""}, InputError, "name"),
    ({"estimator": "tag"}, InputError, "affinity"),
    ({"affinity": np.zeros((2, 2))}, InputError, "affinity"),
])
def test_every_parameter_is_checked_before_any_training(tmp_path, kwargs, exc, words):
    _CALLS.clear()
    db = tmp_path / "never.db"
    with pytest.raises(exc, match=words):
        Study(_counting_train, store=db, task_names=("a", "b", "c"), progress=False, **kwargs)
    assert _CALLS == [] and not db.exists()   # nothing trained, not even the store created


def test_unpicklable_callable_with_workers_fails_at_once_naming_it(tmp_path):
    db = tmp_path / "l.db"
    with pytest.raises(InputError, match=r"train callable '.*<lambda>' cannot be sent to .*worker processes"):
        Study(lambda tasks, seed: {t: 1.0 for t in tasks}, store=db, task_names=("a", "b"),
              workers=2, progress=False)
    assert not db.exists()
    # in-process, a lambda is fine
    with Study(lambda tasks, seed: {t: 1.0 + len(tasks) for t in tasks}, store=db,
               task_names=("a", "b"), estimator="hoa", progress=False) as st:
        st.run()
        assert st.n_trained == 3


def _abc_train(tasks: tuple[str, ...], seed: int) -> dict[str, object]:
    return {t: ("abc" if len(tasks) > 1 else 1.0) for t in tasks}


def test_bad_output_names_the_task_and_the_combination(tmp_path):
    with Study(_abc_train, store=tmp_path / "abc.db", task_names=("a", "b", "c"), estimator="hoa",
               progress=False) as st:
        with pytest.raises(InputError, match=r"returned 'abc' for task 'a' of combination "
                                             r"\{a, b\} \(seed 0\)"):
            st.run()
        failed = st.store.runs(st.name, status="failed")
        assert [r.mask for r in failed] == [0b011] and "'abc'" in failed[0].error
        assert st.n_trained == 3   # the STL runs before it are kept
    with Study(lambda tasks, seed: [1.0], store=tmp_path / "list.db", task_names=("a", "b"),
               progress=False) as st:
        with pytest.raises(InputTypeError, match=r"mapping task -> metric, got list .*\{a\}"):
            st.run()


def test_running_rows_of_a_silent_driver_elsewhere_come_back_when_stale(tmp_path):
    with Study(_plain_train, store=tmp_path / "stale.db", estimator="hoa",
               task_names=("a", "b", "c"), stale_after=0.5, progress=False) as st:
        # another machine's driver claimed the STL runs, then went silent (no heartbeat)
        st.store.request_runs(st.name, [(1, 0), (2, 0), (4, 0)])
        held = st.store.claim_runs(st.name, "elsewhere:4242:abcd")
        assert len(held) == 3
        st.run()   # waits for them, takes them back once stale, and finishes the study
        runs = {r.mask: r for r in st.store.runs(st.name)}
        assert st.n_trained == 6 and len(runs) == 6
        assert all(runs[m].status.value == "complete" and runs[m].attempts == 2
                   for m in (1, 2, 4))
        assert st.store.count_runs(st.name, status="running") == 0


def test_group_never_creates_a_store(tmp_path):
    with pytest.raises(StoreError, match="no gain store"):
        group_stored(tmp_path / "none.db", 2)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(InputError, match="cannot be fitted on stored gains"):
        group_stored(tmp_path / "none.db", 2, estimator="tag")


def test_one_estimator_registry():
    assert estimator_names() == ("mtgnet", "hoa", "tag", "oracle", "mtgnet-plain")
    assert estimator_names(fits_table=True) == ("mtgnet", "hoa", "oracle", "mtgnet-plain")
    assert type(make_estimator("hoa")).__name__ == "HOA"
    # the default blends MTG-Net with the per-task ridge surrogate; its options are the network's
    est = make_estimator("mtgnet", dim=8)
    assert type(est).__name__ == "BlendMTGNet" and est.base_kind == "ridge"
    assert est.model.dim == 8 and est.alpha is None
    assert type(make_estimator("mtgnet-plain", dim=8)).__name__ == "MTGNet"
    assert make_estimator("mtgnet-plain", dim=8).dim == 8
    with pytest.raises(InputError, match="bad options for estimator 'mtgnet'"):
        make_estimator("mtgnet", dimm=8)
    with pytest.raises(InputError, match="dim"):
        make_estimator("mtgnet", dim=0)   # the network's checks run before any training
    with pytest.raises(InputError, match="unknown estimator 'best'; known: mtgnet, hoa"):
        make_estimator("best")


def test_executors_yield_every_job_once():
    jobs = list(range(7))
    inline = sorted(InlineExecutor().map_runs(abs, jobs))
    with ProcessExecutor(2, threads=1) as ex:
        procs = sorted(ex.map_runs(abs, jobs))
    assert inline == procs == [(j, j) for j in jobs]


def test_cli_study_and_group_commands(tmp_path, capsys):
    from mtgfast.cli import main

    db = tmp_path / "cli.db"
    rc = main(["study", "--suite", "synthetic", "--estimator", "hoa", "--budget", "2",
               "--store", str(db), "--epochs", "40", "--lr", "0.01", "--batch-size", "32",
               "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 group(s)" in out and "measured mean gain, test" in out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("{")]
    larger = [ln for ln in lines if ln.count(",") >= 2]  # chosen groups of 3+ tasks
    with GainStore(db) as s:
        # synthetic (3, 3): 6 STL + 15 pairs, plus each chosen larger group trained to verify it
        assert s.count_runs() == 6 + 15 + len(larger)
    assert main(["group", "--store", str(db), "--budget", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 group(s)" in out and "measured mean gain, validation" in out
    assert main(["study", "--suite", "ett", "--budget", "2", "--store", str(db)]) != 0


def test_cli_study_mtgnet_prints_confidence_and_writes_plots(tmp_path, capsys):
    """The default estimator end to end from the command line: real runs on the synthetic suite,
    the search sampler, the confidence of the result and its three pictures."""
    from mtgfast.cli import main

    plots = tmp_path / "pictures"
    rc = main(["study", "--suite", "synthetic", "--budget", "2", "--rounds", "1",
               "--store", str(tmp_path / "m.db"), "--epochs", "20", "--lr", "0.01",
               "--batch-size", "32", "--plot", str(plots), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "estimated average gain" in out and "ensemble spread" in out
    assert "calibrated on the out-of-fold error" in out   # the default blend's held-out rows
    for name in ("grouping.png", "estimated_vs_measured.png", "embeddings.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"wrote {plots / name}" in out
    # a folder that cannot be made fails before any training
    (tmp_path / "file").write_text("x")
    assert main(["study", "--suite", "synthetic", "--budget", "2", "--store",
                 str(tmp_path / "n.db"), "--plot", str(tmp_path / "file" / "sub")]) == 2
    assert not (tmp_path / "n.db").exists()


def _open_fds_to(path: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            out.append(target)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_refused_study_leaves_its_store_closed(tmp_path):
    """A study refused for another definition closes the store it opened (fixed: it stayed open,
    -wal/-shm files held), and a GainStore handed in by the caller stays the caller's."""
    db = tmp_path / "s.db"
    first = GainStore(db)
    first.create_study("s", ("a", "b", "c"))
    first.close()
    with pytest.raises(StoreError, match="other task names"):
        Study(lambda mask, seed: {"x": 0.0, "y": 0.0}, task_names=("x", "y"), store=db, name="s")
    assert _open_fds_to(db) == []
    mine = GainStore(db)
    with pytest.raises(StoreError):
        Study(lambda mask, seed: {"x": 0.0, "y": 0.0}, task_names=("x", "y"), store=mine, name="s")
    assert mine.studies() == ["s"]   # still open, still the caller's
    mine.close()
    with pytest.raises(InputError, match=r"s2\.db.*2 studies.*pass study="):
        s2 = GainStore(tmp_path / "s2.db")
        s2.create_study("p", ("a", "b"))
        s2.create_study("q", ("a", "b"))
        s2.close()
        group_stored(tmp_path / "s2.db", 1)
