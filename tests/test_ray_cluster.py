"""A study on a real multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and worker
raylets on this machine, each its own node with its own worker processes): the runs spread over
the nodes, and a worker node removed mid-study (its raylet and workers killed) costs nothing — the
run it held is retried on another node, every run is recorded once and the study ends exactly
where the in-process study ends.

The measure is ``test_executors.TableTrain`` (a recorded gain table, deterministic); each attempt
also writes the node it ran on to a log folder, so the test sees where the runs went.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mtgfast.store import RunStatus
from mtgfast.study.executors import RayExecutor

from test_executors import N, TableTrain, make_study, outcome_of

HERE = Path(__file__).resolve().parent
FULL = (1 << N) - 1

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class NodeTrain(TableTrain):
    """``TableTrain`` that logs ``mask seed node`` per attempt in ``log_dir``; on ``hold_node``
    the first run of two or more tasks writes ``held`` (its mask, seed) and hangs until its node
    is removed."""

    def __init__(self, log_dir: str, hold_node: str | None = None, sleep: float = 0.1) -> None:
        super().__init__(sleep=sleep)
        self.log_dir, self.hold_node = log_dir, hold_node

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "log_dir": self.log_dir, "hold_node": self.hold_node}

    def __call__(self, tasks: tuple[str, ...], seed: int) -> dict[str, tuple[float, float]]:
        import ray

        node = ray.get_runtime_context().get_node_id()
        mask = sum(1 << int(t[1:]) for t in tasks)
        log = Path(self.log_dir)
        (log / f"attempt-{uuid.uuid4().hex}").write_text(f"{mask} {seed} {node}")
        held = log / "held"
        if node == self.hold_node and len(tasks) >= 2 and not held.exists():
            held.write_text(f"{mask} {seed}")
            time.sleep(300)   # the test removes this node long before
        return super().__call__(tasks, seed)


def attempts(log_dir: Path) -> list[tuple[int, int, str]]:
    out = []
    for f in log_dir.glob("attempt-*"):
        mask, seed, node = f.read_text().split()
        out.append((int(mask), int(seed), node))
    return out


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node, one CPU each (so two runs in flight use both)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # the nodes' worker processes unpickle this module's train callable
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False,
        # a removed node is declared dead after ~1 s of failed health checks, not ~15 s
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 2,
                           "health_check_initial_delay_ms": 0}})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted in-process study (the same measure, no Ray)."""
    with make_study(tmp_path_factory.mktemp("ref") / "ref.db") as st:
        st.run()
        return outcome_of(st)


def recorded_once(study: Any) -> None:
    rows = study.store.runs(study.name)
    complete = Counter((r.mask, r.seed) for r in rows if r.status is RunStatus.COMPLETE)
    assert complete and max(complete.values()) == 1, "a run recorded twice"
    assert all(r.status is RunStatus.COMPLETE for r in rows), \
        [(r.mask, r.seed, r.status) for r in rows if r.status is not RunStatus.COMPLETE]


def test_study_runs_spread_over_both_nodes(cluster, reference, tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    nodes = {cluster.head_node.node_id, *(n.node_id for n in cluster.worker_nodes)}
    assert len(nodes) == 2
    with RayExecutor(address=cluster.address, max_retries=2) as ex, \
            make_study(tmp_path / "s.db", ex, train=NodeTrain(str(log))) as st:
        st.run()
        assert ex.max_in_flight == 2        # the cluster's CPUs / one CPU per run
        out = outcome_of(st)
        recorded_once(st)
    ran = attempts(log)
    assert {node for _, _, node in ran} == nodes, "the runs did not use both nodes"
    assert len(ran) == len(out[2])          # one attempt per run: nothing retried or repeated
    assert out == reference


def _remove_when_held(cluster: Any, node: Any, held: Path, stop: threading.Event,
                      removed: list[float]) -> None:
    while not stop.is_set():
        if held.exists():
            cluster.remove_node(node, allow_graceful=False)
            removed.append(time.monotonic())
            return
        time.sleep(0.05)


def test_a_worker_node_removed_mid_study_is_survived(cluster, reference, tmp_path):
    """A third node joins; the first multi-task run it gets hangs there and the node is removed
    (raylet and workers SIGKILLed): Ray retries the run on another node, the study finishes, every
    run is recorded once and the result is the in-process study's."""
    log = tmp_path / "log"
    log.mkdir()
    victim = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    stop, removed = threading.Event(), []
    watcher = threading.Thread(target=_remove_when_held,
                               args=(cluster, victim, log / "held", stop, removed))
    watcher.start()
    try:
        with RayExecutor(address=cluster.address, max_retries=2) as ex, \
                make_study(tmp_path / "s.db", ex,
                           train=NodeTrain(str(log), hold_node=victim.node_id)) as st:
            assert ex.max_retries == 2
            st.run()
            out = outcome_of(st)
            recorded_once(st)
    finally:
        stop.set()
        watcher.join()
    assert removed, "no multi-task run reached the third node: nothing was removed"
    held = tuple(int(v) for v in (log / "held").read_text().split())
    ran = attempts(log)
    on = [node for mask, seed, node in ran if (mask, seed) == held]
    assert len(on) == 2 and victim.node_id in on and len(set(on)) == 2, on   # retried elsewhere
    assert out == reference
