"""Collect the transfer gains of all 127 combinations of the 7 ETTh1 forecasting tasks.

Every combination is trained with the built-in trainer (``ett`` suite, config below) for each seed;
per-task MAE is averaged over seeds, and gains are the relative MAE reduction over the singletons
(STL). Raw runs go to ``etth1_runs.jsonl`` as they finish, so a killed collection resumes. Writes, in
the MTG-Net release format (masks 0/1, gains 0 outside each combination, space-separated):
``etth1_x.csv``, ``etth1_val_y.csv`` (validation: select on these), ``etth1_y.csv`` (test: report),
and TAG's baseline: ``etth1_tag_affinity.csv`` (the lookahead inter-task affinity of one all-task run
per seed, averaged) with ``etth1_tag.csv`` (its group gains for every combination, same layout).

    python benchmarks/collect_etth1.py [--data PATH] [--workers 2] [--seeds 0 1 2] [--out DIR]

Not a pytest file: it runs for several minutes (about 15-25 min on 2 busy cores with 2 workers and 2 seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mtgfast.masks import all_masks, mask_to_indices, masks_to_dense
from mtgfast.mtl.gains_from_metrics import gain_row
from mtgfast.mtl.suites.ett import ETTSuite
from mtgfast.mtl.trainer import SuiteTrainFn, TrainConfig
from mtgfast.study.executors import make_executor

REPO = Path(__file__).resolve().parents[1]
#: The collection's training procedure: the MLP overfits ETTh1 after a few epochs, so a small lr,
#: dropout and weight decay with patience 5 keep early stopping meaningful; about 3 s per run.
CONFIG = TrainConfig(epochs=40, patience=5, batch_size=128, lr=3e-4, weight_decay=1e-4, dropout=0.1)


class _Job:
    """Picklable job runner: ``(mask, seed) -> (mask, seed, {task: (valid, test)}, seconds)``."""

    def __init__(self, fn: SuiteTrainFn, names: tuple[str, ...]) -> None:
        self.fn, self.names = fn, names

    def __call__(self, job: tuple[int, int]) -> dict:
        mask, seed = job
        t0 = time.perf_counter()
        metrics = self.fn(tuple(self.names[j] for j in mask_to_indices(mask)), seed)
        return {"mask": mask, "seed": seed, "metrics": metrics, "seconds": time.perf_counter() - t0}


def _tag_table(suite: ETTSuite, seeds: list[int], masks: np.ndarray, out: Path) -> float:
    """TAG baseline: affinity from one all-task run per seed (kept if already written)."""
    from mtgfast.estimators.tag import TAG
    from mtgfast.mtl.tag_affinity import collect_affinity

    path = out / "etth1_tag_affinity.csv"
    t0 = time.perf_counter()
    if path.exists():
        affinity = np.loadtxt(path, delimiter=" ")
    else:
        affinity = np.mean([collect_affinity(suite, s, CONFIG).matrix for s in seeds], axis=0)
        np.savetxt(path, affinity, fmt="%.8e", delimiter=" ")
    gains = TAG().fit_affinity(affinity, suite.task_names).predict(masks)
    np.savetxt(out / "etth1_tag.csv", np.nan_to_num(gains, nan=0.0), fmt="%.8e", delimiter=" ")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ett" / "ETTh1.csv"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "artifacts"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suite = ETTSuite(args.data)
    names = suite.task_names
    n = len(names)
    masks = all_masks(n, "lex")  # the row order of the MTG-Net release files
    log = out / "etth1_runs.jsonl"
    done: dict[tuple[int, int], dict] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("fingerprint") == CONFIG.fingerprint() + suite.fingerprint():
                    done[(rec["mask"], rec["seed"])] = rec
    jobs = [(int(m), s) for m in masks for s in args.seeds if (int(m), s) not in done]
    print(f"{len(done)} runs already recorded, {len(jobs)} to go ({args.workers} workers)",
          flush=True)
    t0 = time.perf_counter()
    from tqdm import tqdm

    with make_executor(args.workers) as ex, log.open("a") as fh, tqdm(total=len(jobs)) as bar:
        for _, rec in ex.map_runs(_Job(SuiteTrainFn(suite, CONFIG), names), jobs):
            rec["fingerprint"] = CONFIG.fingerprint() + suite.fingerprint()
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[(rec["mask"], rec["seed"])] = rec
            bar.update()
    wall = time.perf_counter() - t0

    # mean metric over seeds per (combination, task), then gains against the singletons
    def mean_metrics(mask: int, split: int) -> dict[str, float]:
        recs = [done[(mask, s)]["metrics"] for s in args.seeds]
        return {t: float(np.mean([r[t][split] for r in recs])) for t in recs[0]}

    higher = suite.higher_is_better
    member = masks_to_dense(masks, n)
    for split, fname in ((0, "etth1_val_y.csv"), (1, "etth1_y.csv")):
        stl: dict[str, float] = {}
        for j in range(n):
            stl.update(mean_metrics(1 << j, split))
        g = np.vstack([gain_row(int(m), mean_metrics(int(m), split), stl, names, higher)
                       for m in masks])
        np.savetxt(out / fname, np.where(member, g, 0.0), fmt="%.6f", delimiter=" ")
    np.savetxt(out / "etth1_x.csv", member.astype(int), fmt="%d", delimiter=" ")
    tag_seconds = _tag_table(suite, args.seeds, masks, out)
    run_seconds = sum(r["seconds"] for r in done.values())
    print(f"wall time {wall:.1f} s for {len(jobs)} runs ({run_seconds:.0f} s of training in all "
          f"recorded runs; TAG affinity runs {tag_seconds:.0f} s); wrote {out}/etth1_x.csv, "
          "etth1_val_y.csv, etth1_y.csv, etth1_tag_affinity.csv, etth1_tag.csv", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
