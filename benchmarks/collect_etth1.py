"""Collect the transfer gains of all 127 combinations of the 7 ETTh1 forecasting tasks.

Every combination is trained with the built-in trainer (``ett`` suite, config below) for each seed,
as an "oracle" :class:`~mtgfast.Study` over a gain store (the store is the record: a killed
collection resumes where it stopped, on any executor). Per-task MAE is averaged over seeds, and
gains are the relative MAE reduction over the singletons (STL). Writes, in the MTG-Net release
format (masks 0/1, gains 0 outside each combination, space-separated): ``etth1_x.csv``,
``etth1_val_y.csv`` (validation: select on these), ``etth1_y.csv`` (test: report), and TAG's
baseline: ``etth1_tag_affinity.csv`` (the lookahead inter-task affinity of one all-task run per
seed, averaged) with ``etth1_tag.csv`` (its group gains for every combination, same layout).

    python benchmarks/collect_etth1.py [--data PATH] [--executor local|ray|inprocess]
        [--workers 2] [--address auto] [--gpus-per-run 0] [--seeds 0 1] [--out DIR]
    python benchmarks/collect_etth1.py --compare [--subset pairs|all] [--workers 2]

``--compare`` trains the same runs (``--subset pairs``: the 7 singletons and 21 pairs, seed 0;
``all``: the 254 runs of the collection) once on the local-process executor and once on Ray, each
into a fresh store, and prints both wall times (Ray's start-up reported apart).

Not a pytest file: the full collection runs for several minutes (about 15-25 min on 2 busy cores
with 2 workers and 2 seeds).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mtgfast.masks import all_masks, masks_to_dense
from mtgfast.mtl.study_adapter import suite_problem
from mtgfast.mtl.suites.ett import ETTSuite
from mtgfast.mtl.trainer import TrainConfig
from mtgfast.study.executors import Executor, LocalExecutor, RayExecutor, make_executor
from mtgfast.study.study import Study

REPO = Path(__file__).resolve().parents[1]
#: The collection's training procedure: the MLP overfits ETTh1 after a few epochs, so a small lr,
#: dropout and weight decay with patience 5 keep early stopping meaningful; about 3 s per run.
CONFIG = TrainConfig(epochs=40, patience=5, batch_size=128, lr=3e-4, weight_decay=1e-4, dropout=0.1)


def _tag_table(study: Study, masks: np.ndarray, out: Path) -> float:
    """TAG baseline: affinity from one all-task run per seed (kept if already written)."""
    from mtgfast.estimators.tag import TAG

    path = out / "etth1_tag_affinity.csv"
    t0 = time.perf_counter()
    if path.exists():
        affinity = np.loadtxt(path, delimiter=" ")
    else:
        assert study.problem.affinity is not None
        affinity = np.mean([study.problem.affinity(s) for s in study.seeds], axis=0)
        np.savetxt(path, affinity, fmt="%.8e", delimiter=" ")
    gains = TAG().fit_affinity(affinity, study.task_names).predict(masks)
    np.savetxt(out / "etth1_tag.csv", np.nan_to_num(gains, nan=0.0), fmt="%.8e", delimiter=" ")
    return time.perf_counter() - t0


def _executor(args: argparse.Namespace) -> Executor:
    if args.executor == "local":
        return LocalExecutor(args.workers, threads=args.threads, max_retries=2)
    return make_executor(args.executor, workers=args.workers, address=args.address,
                         gpus_per_run=args.gpus_per_run, max_retries=2)


def collect(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problem = suite_problem(ETTSuite(args.data), CONFIG)
    store = args.store or str(out / "etth1_runs.db")
    masks = all_masks(len(problem.task_names), "lex")  # the row order of the MTG-Net files
    t0 = time.perf_counter()
    with _executor(args) as ex, Study(problem, store=store, estimator="oracle",
                                      seeds=tuple(args.seeds), executor=ex,
                                      progress=not args.quiet) as study:
        before = study.store.count_runs(study.name, status="complete")
        print(f"{before} runs already stored in {store}, executor {ex!r}", flush=True)
        study.run()
        wall = time.perf_counter() - t0
        member = masks_to_dense(masks, len(problem.task_names))
        for split, fname in (("valid", "etth1_val_y.csv"), ("test", "etth1_y.csv")):
            g = study.gain_table(split).lookup(masks)
            np.savetxt(out / fname, np.where(member, g, 0.0), fmt="%.6f", delimiter=" ")
        np.savetxt(out / "etth1_x.csv", member.astype(int), fmt="%d", delimiter=" ")
        tag_seconds = _tag_table(study, masks, out)
        runs = study.store.runs(study.name, status="complete")
        trained = study.n_trained
    print(f"wall time {wall:.1f} s for {trained} runs ({sum(r.seconds for r in runs):.0f} s of "
          f"training in all {len(runs)} stored runs; TAG affinity runs {tag_seconds:.0f} s); "
          f"wrote {out}/etth1_x.csv, etth1_val_y.csv, etth1_y.csv, etth1_tag_affinity.csv, "
          "etth1_tag.csv", flush=True)
    return 0


def compare(args: argparse.Namespace) -> int:
    """The same runs on the local-process executor and on Ray, in one invocation."""
    import ray

    problem = suite_problem(ETTSuite(args.data), CONFIG)
    n = len(problem.task_names)
    if args.subset == "pairs":
        masks, seeds = [m for m in range(1, 1 << n) if bin(m).count("1") <= 2], (0,)
    else:
        masks, seeds = list(range(1, 1 << n)), tuple(args.seeds)
    t0 = time.perf_counter()
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             **({} if args.address else {"num_cpus": args.workers}))
    ray_start = time.perf_counter() - t0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, ex in (("local", LocalExecutor(args.workers, threads=args.threads,
                                                 max_retries=2)),
                         ("ray", RayExecutor(max_retries=2, max_in_flight=args.workers))):
            with ex, Study(problem, store=f"{tmp}/{kind}.db", estimator="oracle", seeds=seeds,
                           executor=ex, progress=False) as st:
                t0 = time.perf_counter()
                st.measure(masks, desc=kind)
                wall = time.perf_counter() - t0
                runs = st.store.runs(st.name, status="complete")
                results[kind] = (wall, len(runs), sum(r.seconds for r in runs),
                                 st.gain_table("valid"))
                print(f"{kind:5s}: {len(runs)} runs in {wall:.1f} s wall "
                      f"({sum(r.seconds for r in runs):.0f} s of training), "
                      f"{ex!r}", flush=True)
    ray.shutdown()
    (lw, ln, _, lt), (rw, rn, _, rt) = results["local"], results["ray"]
    same = np.allclose(np.nan_to_num(lt.lookup(masks)), np.nan_to_num(rt.lookup(masks)),
                       atol=1e-9)
    print(f"ray start-up {ray_start:.1f} s (not in the wall times); ray / local wall = "
          f"{rw / lw:.2f}; identical gains on both: {same}", flush=True)
    return 0 if ln == rn == len(masks) * len(seeds) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared" / "data" / "ett" /
                                          "ETTh1.csv"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "artifacts"))
    ap.add_argument("--store", default=None, help="gain store (default OUT/etth1_runs.db)")
    ap.add_argument("--executor", default="local", choices=("inprocess", "local", "ray"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per local worker")
    ap.add_argument("--address", default=None, help="Ray cluster: auto or ray://host:10001")
    ap.add_argument("--gpus-per-run", type=float, default=0.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--compare", action="store_true",
                    help="time the same runs on the local executor and on Ray")
    ap.add_argument("--subset", default="pairs", choices=("pairs", "all"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not Path(args.data).exists():
        alt = REPO.parent / "shared" / "data" / "ett" / "ETTh1.csv"
        args.data = str(alt) if alt.exists() else args.data
    return compare(args) if args.compare else collect(args)


if __name__ == "__main__":
    sys.exit(main())
