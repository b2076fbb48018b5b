"""One conformance suite for every executor (in-process, local processes, Ray): same results as
in-process, failing runs recorded and retried, a cap on runs in flight, a study that resumes from
its store; then the faults: a worker process killed mid-run, the driver killed with SIGKILL
mid-study (no Ray and Ray), each resumed to exactly the choices and grouping of an uninterrupted run.

The measure is a plain callable over a generated gain table (metric = 1 - gain; deterministic), so
the determinism checks are exact; the Ray tests share one local cluster
(``ray.init(num_cpus=2)``) started by a module fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtgfast.errors import InputError
from mtgfast.store import GainStore, RunStatus
from mtgfast.study.executors import (Executor, InProcessExecutor, LocalExecutor, RayExecutor,
                                     make_executor)
from mtgfast.study.study import RunFailedError, Study

HERE = Path(__file__).resolve().parent
N = 5
NAMES = tuple(f"t{j}" for j in range(N))
#: a tiny, deterministic MTG-Net: the study's estimator runs in the driver
TINY = {"dim": 8, "n_estimators": 1, "max_epochs": 40, "patience": 10, "seed": 0}
KINDS = ["inprocess", "local", "ray"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- picklable jobs ---------------------------------------------------------------------------------
def square(job: int) -> int:
    return job * job


class Flaky:
    """Raises on the first ``fails`` attempts of each job (attempts counted in files, so this
    works across worker processes), then returns ``job + 100``."""

    def __init__(self, folder: str, fails: int) -> None:
        self.folder, self.fails = folder, fails

    def __call__(self, job: int) -> int:
        path = Path(self.folder) / f"job-{job}"
        with path.open("a") as fh:
            fh.write("x")
        if len(path.read_text()) <= self.fails:
            raise ValueError(f"flaky failure of job {job}")
        return job + 100


class AlwaysBroken:
    def __call__(self, job: int) -> int:
        raise RuntimeError(f"always broken on {job}")


class Pid:
    def __call__(self, job: int) -> tuple[int, int]:
        time.sleep(0.2)
        return job, os.getpid()


class TableTrain:
    """A user's train callable over a recorded gain table: metric = 1 - gain (STL metric 1), a
    seed-dependent offset, an optional sleep; ``pid_dir``: the first attempt of the full set
    writes its pid there and hangs until killed."""

    def __init__(self, sleep: float = 0.0, pid_dir: str | None = None) -> None:
        self.sleep, self.pid_dir = sleep, pid_dir
        self._tables: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"sleep": self.sleep, "pid_dir": self.pid_dir, "_tables": None}

    def __call__(self, tasks: tuple[str, ...], seed: int) -> dict[str, tuple[float, float]]:
        from mtgfast.generate import synthetic_gain_tables

        if self._tables is None:
            self._tables = synthetic_gain_tables(N, n_random=None, seed=0)
        idx = [NAMES.index(t) for t in tasks]
        mask = sum(1 << j for j in idx)
        if self.pid_dir is not None and len(tasks) == N:
            marker = Path(self.pid_dir) / f"pid-{seed}"
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                time.sleep(120)   # killed by the test long before this ends
        if self.sleep:
            time.sleep(self.sleep)
        v = self._tables.valid.lookup([mask])[0]
        t = self._tables.test.lookup([mask])[0]
        return {NAMES[j]: (1.0 - float(v[j]) + 1e-3 * seed, 1.0 - float(t[j]))
                for j in idx}


def make_study(store: Path | str, executor: Executor | None = None, *, train: Any = None,
               rounds: int = 2) -> Study:
    return Study(train if train is not None else TableTrain(), store=store, estimator="mtgnet",
                 task_names=NAMES, metric="loss", higher_is_better=False,
                 fingerprint="table-v1", executor=executor, progress=False,
                 estimator_options=TINY, active_options={"seed": 3}, budget=2, rounds=rounds,
                 stale_after=30.0)


def outcome_of(study: Study) -> tuple[list[Any], tuple[Any, ...], list[tuple[int, int]]]:
    """(choices, groups, (mask, seed) of every complete run) of a finished study."""
    res = study.result()
    runs = sorted((r.mask, r.seed) for r in study.store.runs(study.name, status="complete"))
    return study.selections(), res.groups, runs


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # Ray's workers import the picklable jobs of this module: put the tests folder on their path
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted in-process study every other run must reproduce."""
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    with make_study(db) as st:
        st.run()
        return outcome_of(st)


@pytest.fixture(scope="module")
def local_pool():
    """One pool of 2 local workers for the module (starting workers is the slow part)."""
    with LocalExecutor(2, threads=1) as ex:
        yield ex


def _executor(kind: str, request: pytest.FixtureRequest, *, max_retries: int = 2,
              max_in_flight: int | None = None) -> Executor:
    """The executor of ``kind``; the caller must not close it (the module fixtures do)."""
    if kind == "inprocess":
        return InProcessExecutor(max_retries=max_retries)
    if kind == "local":
        ex: LocalExecutor = request.getfixturevalue("local_pool")
        ex.max_retries, ex.max_in_flight = max_retries, max_in_flight or ex.workers
        return ex
    request.getfixturevalue("ray_cluster")
    return RayExecutor(max_retries=max_retries, max_in_flight=max_in_flight)


# -- the conformance suite: every executor --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_results_match_in_process(kind, request):
    jobs = list(range(7))
    ex = _executor(kind, request)
    outs = list(ex.run_jobs(square, jobs))
    assert sorted(o.job for o in outs) == jobs                      # each job once
    assert all(o.ok and o.final and o.attempt == 1 for o in outs)
    assert {o.job: o.value for o in outs} == {j: j * j for j in jobs}
    assert sorted(InProcessExecutor().map_runs(square, jobs)) == [(j, j * j) for j in jobs]


@pytest.mark.parametrize("kind", KINDS)
def test_failing_run_is_reported_then_retried(kind, request, tmp_path):
    ex = _executor(kind, request, max_retries=2)
    outs = list(ex.run_jobs(Flaky(str(tmp_path), fails=1), [1, 2, 3]))
    by_job = {j: [o for o in outs if o.job == j] for j in (1, 2, 3)}
    for j, attempts in by_job.items():
        first, second = sorted(attempts, key=lambda o: o.attempt)
        assert not first.ok and not first.final and f"flaky failure of job {j}" in first.error
        assert "ValueError" in first.error
        assert second.ok and second.final and second.value == j + 100 and second.attempt == 2


@pytest.mark.parametrize("kind", KINDS)
def test_run_failing_every_attempt_gives_its_traceback(kind, request):
    ex = _executor(kind, request, max_retries=1)
    outs = list(ex.run_jobs(AlwaysBroken(), [7]))
    assert [o.attempt for o in outs] == [1, 2] and [o.final for o in outs] == [False, True]
    assert all("always broken on 7" in o.error and "Traceback" in o.error for o in outs)
    with pytest.raises(RuntimeError, match="always broken on 7"):
        list(ex.map_runs(AlwaysBroken(), [7]))


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_cap_on_runs_in_flight(kind, request):
    ex = _executor(kind, request, max_in_flight=1)
    outs = list(ex.run_jobs(Pid(), [0, 1, 2]))
    assert ex.peak_in_flight == 1 and [o.job for o in outs] == [0, 1, 2]
    ex = _executor(kind, request, max_in_flight=2)
    list(ex.run_jobs(Pid(), [0, 1, 2, 3]))
    assert ex.peak_in_flight == 2


@pytest.mark.parametrize("kind", KINDS)
def test_study_makes_the_in_process_choices_and_resumes(kind, request, tmp_path, reference):
    """Same choices, grouping and runs as the in-process reference; and a study stopped after
    one round and resumed (a new Study on the same store) ends exactly there too."""
    ex = _executor(kind, request)
    with make_study(tmp_path / "a.db", ex) as st:
        st.run()
        assert outcome_of(st) == reference
    with make_study(tmp_path / "b.db", ex, rounds=1) as st:
        st.run()
        assert st.selections() == reference[0][:1 + N]
    with make_study(tmp_path / "b.db", ex) as st:
        st.run()
        assert st.n_trained == N     # only the second round's selections
        assert outcome_of(st) == reference


@pytest.mark.parametrize("kind", KINDS)
def test_failed_runs_are_recorded_with_traceback_and_stop_the_study(kind, request, tmp_path):
    def ok_names():
        with GainStore(tmp_path / "f.db") as s:
            return {(r.mask, r.status) for r in s.runs(s.studies()[0])}
    ex = _executor(kind, request, max_retries=1)
    with make_study(tmp_path / "f.db", ex, train=BrokenTrain()) as st:
        with pytest.raises(RunFailedError, match="t2 is broken") as info:
            st.run()
        assert "{t2}" in str(info.value) and "2 attempt(s)" in str(info.value)
    with GainStore(tmp_path / "f.db") as s:
        failed = s.runs("BrokenTrain", status="failed")
    assert [r.mask for r in failed] == [0b100]
    assert "ValueError: t2 is broken" in failed[0].error and failed[0].attempts == 2
    assert (0b001, RunStatus.COMPLETE) in ok_names()


class BrokenTrain(TableTrain):
    """Task t2's single-task run always raises."""

    def __call__(self, tasks, seed):
        if tasks == ("t2",):
            raise ValueError("t2 is broken")
        return super().__call__(tasks, seed)


class BrokenWhileFlagged(TableTrain):
    """The full set's run raises while the flag file exists (a bug the user then fixes)."""

    def __init__(self, flag: str) -> None:
        super().__init__()
        self.flag = flag

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "flag": self.flag}

    def __call__(self, tasks, seed):
        if len(tasks) == N and Path(self.flag).exists():
            raise RuntimeError("out of memory (pretend)")
        return super().__call__(tasks, seed)


def test_a_failed_choice_is_retried_when_the_study_is_rerun(tmp_path, reference):
    flag = tmp_path / "bug"
    flag.write_text("")
    db = tmp_path / "retry.db"
    with make_study(db, InProcessExecutor(max_retries=1), train=BrokenWhileFlagged(str(flag))) \
            as st:
        with pytest.raises(RunFailedError, match="out of memory"):
            st.run()
        assert [r.mask for r in st.store.runs(st.name, status="failed")] == [(1 << N) - 1]
    flag.unlink()   # the user fixes the bug and reruns: the failed choice is retried, not skipped
    with make_study(db, train=BrokenWhileFlagged(str(flag))) as st:
        st.run()
        assert outcome_of(st) == reference


def test_make_executor_kinds_and_checks(request):
    assert isinstance(make_executor(), InProcessExecutor)
    ex = make_executor("auto", workers=2, max_retries=3)
    assert isinstance(ex, LocalExecutor) and ex.workers == 2 and ex.max_retries == 3
    assert isinstance(make_executor("local", workers=1), LocalExecutor)
    for kwargs, words in [({"kind": "slurm"}, "executor kind"),
                          ({"kind": "local", "workers": 0}, "workers"),
                          ({"kind": "inprocess", "workers": 2}, "in-process"),
                          ({"kind": "local", "address": "auto"}, "address"),
                          ({"kind": "local", "gpus_per_run": -1.0}, "gpus_per_run"),
                          ({"kind": "local", "gpus_per_run": 2.0}, "at most one GPU"),
                          ({"kind": "local", "max_retries": -1}, "max_retries")]:
        with pytest.raises(InputError, match=words):
            make_executor(**kwargs)
    with pytest.raises(InputError, match="address"):
        RayExecutor(address="nowhere")


def test_local_gpu_per_worker_through_cuda_visible_devices(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    ex = make_executor("local", workers=2, gpus_per_run=1.0)
    assert isinstance(ex, LocalExecutor) and ex.gpus == ("3", "5")
    with ex:
        seen = sorted(o.value for o in ex.run_jobs(VisibleDevices(str(tmp_path)), [0, 1, 2, 3]))
    assert set(seen) == {"3", "5"}   # each worker sees one of them, and only one
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(InputError, match="no GPU is visible"):
        make_executor("local", workers=2, gpus_per_run=1.0)


class VisibleDevices:
    """Reports the worker's CUDA_VISIBLE_DEVICES once two workers have checked in (a barrier
    through files), so both workers surely take jobs."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, job: int) -> str:
        Path(self.folder, f"pid-{os.getpid()}").write_text("")
        deadline = time.monotonic() + 60
        while len(list(Path(self.folder).glob("pid-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        return os.environ.get("CUDA_VISIBLE_DEVICES", "")


# -- faults: a worker process killed mid-run -----------------------------------------------------
def _kill_when_reported(folder: Path, stop: threading.Event, killed: list[int]) -> None:
    while not stop.is_set():
        for f in folder.glob("pid-*"):
            text = f.read_text().strip()
            if text and int(text) not in killed:
                killed.append(int(text))
                os.kill(int(text), signal.SIGKILL)
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_worker_killed_mid_run_is_retried_and_recorded_once(kind, request, tmp_path, reference):
    pids = tmp_path / "pids"
    pids.mkdir()
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_when_reported, args=(pids, stop, killed))
    watcher.start()
    try:
        ex = _executor(kind, request)
        with make_study(tmp_path / "k.db", ex, train=TableTrain(pid_dir=str(pids))) as st:
            st.run()
            out = outcome_of(st)
            runs = st.store.runs(st.name)
    finally:
        stop.set()
        watcher.join()
    assert len(killed) == 1 and killed[0] != os.getpid()
    full = [r for r in runs if r.mask == (1 << N) - 1]
    assert len(full) == 1 and full[0].status is RunStatus.COMPLETE   # retried, recorded once
    assert out == reference                                           # nothing lost or repeated


# -- faults: the driver killed with SIGKILL mid-study, then resumed --------------------------------
_DRIVER = """
import sys
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from test_executors import TableTrain, make_study
db, kind, address = sys.argv[1], sys.argv[2], sys.argv[3]
ex = None
if kind == "local":
    from mtgfast.study.executors import LocalExecutor
    ex = LocalExecutor(2, threads=1, max_retries=2)
if kind == "ray":
    import ray
    from mtgfast.study.executors import RayExecutor
    ray.init(address=address, log_to_driver=False)
    ex = RayExecutor(max_retries=2)
with make_study(db, ex, train=TableTrain(sleep=0.15)) as st:
    st.run()
    st.result()
print("FINISHED")
"""


def _complete(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with GainStore(db, readonly=True) as s:
            return s.count_runs(status="complete") if s.studies() else 0
    except Exception:   # the schema may be half-made at the very start  # noqa: BLE001
        return 0


def _drive_and_kill(db: Path, kind: str, address: str, kill_at: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER.format(here=str(HERE)), str(db), kind,
                             address], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None and _complete(db) < kill_at:
            time.sleep(0.05)
        assert proc.poll() is None, f"the driver ended before it could be killed: " \
                                    f"{proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _resume_after_kills(tmp_path: Path, kind: str, address: str, kills: list[int],
                        executor: Executor | None, reference: Any) -> None:
    db = tmp_path / "killed.db"
    seen = []
    for k in kills:
        _drive_and_kill(db, kind, address, k)
        seen.append(_complete(db))
    assert seen == sorted(seen) and seen[-1] < len(reference[2]), seen
    with GainStore(db) as s:
        assert s.integrity_check() == "ok"
        name = s.studies()[0]
        before = {(r.mask, r.seed): r.metrics_valid for r in s.runs(name, status="complete")}
        assert s.count_runs(name, status="running") >= 0
    with make_study(db, executor) as st:
        st.run()
        out = outcome_of(st)
        assert st.n_trained == len(reference[2]) - len(before)     # only the missing runs
        after = {(r.mask, r.seed): r.metrics_valid for r in st.store.runs(name)}
        assert st.store.count_runs(name, status="running") == 0
        assert st.store.count_runs(name, status="waiting") == 0
    assert out == reference                # same choices, same grouping, same runs
    for key, metrics in before.items():
        assert after[key] == metrics       # nothing finished was lost or redone


def test_driver_sigkill_resumes_to_the_same_choices_and_grouping(tmp_path, reference):
    # killed three times: during the STL runs, the first round (eta = 1), the second round
    _resume_after_kills(tmp_path, "inprocess", "", [3, 8, 13], None, reference)


def test_ray_driver_sigkill_resumes_to_the_same_grouping(tmp_path, reference, ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    with RayExecutor(max_retries=2) as ex:
        _resume_after_kills(tmp_path, "ray", address, [4, 10], ex, reference)


# -- faults: a worker that dies (os._exit) or raises in the middle of a study ----------------------
class DiesWhileFlagged(TableTrain):
    """While the flag file exists, the run of the full set ends its worker process with
    ``os._exit(3)`` (``how="exit"``) or raises (``how="raise"``) — a segfaulting extension or a
    bug the user then fixes; every other run trains normally."""

    def __init__(self, flag: str, how: str) -> None:
        super().__init__()
        self.flag, self.how = flag, how

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "flag": self.flag, "how": self.how}

    def __call__(self, tasks, seed):
        if len(tasks) == N and Path(self.flag).exists():
            if self.how == "exit":
                os._exit(3)
            raise RuntimeError("the full set blew up (pretend)")
        return super().__call__(tasks, seed)


@pytest.mark.parametrize("how", ["exit", "raise"])
@pytest.mark.parametrize("kind", ["local", "ray"])
def test_worker_dying_every_attempt_names_the_run_and_the_study_resumes(kind, how, request,
                                                                        tmp_path, reference):
    flag = tmp_path / "bug"
    flag.write_text("")
    db = tmp_path / "dies.db"
    full = "{" + ", ".join(NAMES) + "}"
    with make_study(db, _executor(kind, request, max_retries=1),
                    train=DiesWhileFlagged(str(flag), how)) as st:
        with pytest.raises(RunFailedError) as info:
            st.run()
        done = {(r.mask, r.seed): dict(r.metrics_valid)
                for r in st.store.runs(st.name, status="complete")}
        failed = st.store.runs(st.name, status="failed")
    text = str(info.value)
    assert full in text and "2 attempt(s)" in text, text        # names the combination
    if how == "raise":
        assert "the full set blew up" in text
    assert [r.mask for r in failed] == [(1 << N) - 1] and failed[0].attempts == 2
    assert {(1 << j, 0) for j in range(N)} <= set(done)        # collected before it: kept
    flag.unlink()
    with make_study(db, _executor(kind, request), train=DiesWhileFlagged(str(flag), how)) as st:
        st.run()
        assert st.n_trained == len(reference[2]) - len(done)    # nothing collected is redone
        assert outcome_of(st) == reference
        for r in st.store.runs(st.name, status="complete"):
            if (r.mask, r.seed) in done:
                assert dict(r.metrics_valid) == done[(r.mask, r.seed)]


def test_local_driver_sigkill_resumes_to_the_same_choices_and_grouping(tmp_path, reference,
                                                                       local_pool):
    # the driver and its two worker processes killed twice mid-study, resumed on a local pool
    _resume_after_kills(tmp_path, "local", "", [4, 11], local_pool, reference)


class ReportPidAndHang:
    """Writes the worker's pid into ``folder`` and sleeps (until its process is ended)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __call__(self, job: int) -> int:
        Path(self.folder, f"worker-{job}").write_text(str(os.getpid()))
        time.sleep(120)
        return job


_ORPHANING_DRIVER = """
import sys
sys.path.insert(0, {here!r})
from test_executors import ReportPidAndHang
from mtgfast.study.executors import LocalExecutor
with LocalExecutor(2, threads=1) as ex:
    list(ex.run_jobs(ReportPidAndHang(sys.argv[1]), [0, 1]))
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:   # a zombie is dead too
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_local_workers_end_when_their_driver_is_killed(tmp_path):
    """(fixed) a driver killed with SIGKILL left its worker processes waiting for jobs forever
    (found as orphans 40 minutes after a test); they now notice and exit within a second."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHANING_DRIVER.format(here=str(HERE)),
                             str(tmp_path)], stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 2 and proc.poll() is None:
            time.sleep(0.05)
            pids = [int(f.read_text()) for f in tmp_path.glob("worker-*") if f.read_text()]
        assert len(pids) == 2, proc.communicate(timeout=5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        survivors = [p for p in pids if _alive(p)]
        assert not survivors, f"orphaned workers still running: {survivors}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


# -- two drivers of one study at once --------------------------------------------------------------
_TWIN = """
import sys, time
sys.path.insert(0, {here!r})
import torch
torch.set_num_threads(1)
from mtgfast.errors import StoreError
from test_executors import TableTrain, make_study
db, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
try:
    with make_study(db, train=TableTrain(sleep=0.05)) as st:
        st.run()
        st.result()
except StoreError as exc:
    print("REFUSED", exc)
else:
    print("FINISHED")
"""


def test_two_drivers_of_one_study_at_once_lose_nothing(tmp_path, reference):
    """The same study started twice at the same instant on one store (two real processes): the
    runs are shared out through the store, the loser of the selection race stops with one clear
    StoreError naming the study and the file (no "database is locked", no duplicate or lost run),
    and a rerun ends exactly at the uninterrupted choices and grouping."""
    db = tmp_path / "twins.db"
    start = time.time() + 4.0      # both past their imports before they touch the store
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _TWIN.format(here=str(HERE)), str(db),
                               repr(start)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and ("FINISHED" in out or "REFUSED" in out), (out, err)
        assert "locked" not in out + err, (out, err)
    refused = [out for out, _ in outs if "REFUSED" in out]
    for out in refused:
        assert "another process runs the same study's loop" in out and str(db) in out, out
    assert len(refused) < 2, outs
    with make_study(db) as st:
        st.run()
        out = outcome_of(st)
        runs = st.store.runs(st.name)
    assert out == reference
    keys = [(r.mask, r.seed) for r in runs]
    assert len(keys) == len(set(keys))                     # no run stored twice
