"""How far could a better estimator take the default sampler? Its loop with a generous estimate.

The replay's default ``mtgnet`` reaches 60-94% of the validation oracle at HOA-equal cost
(README, twelfth and thirteenth passes). This probe asks how much of the shortfall a better
estimator could close: the default's sampler and final choice (``SearchSelector``, kappa = 0,
the final grouping of measured groups only, exactly as ``replay_method("mtgnet")``) run with
an estimator that is fixed in advance and far better informed than any refit on the loop's
``1 + K * N`` rows can be:

- ``oof-mtgnet``: every combination's gains predicted by an MTGNet trained on all the other
  combinations but one tenth of the table (10-fold cross-fitting over the rows of >= 2 tasks; the
  full set and singletons in every fold): the model class with about 9 times the loop's data;
- ``oof-linear``: the same with the per-task ridge surrogate of ``probe_estimators.py``;
- ``truth``: the validation gains themselves (the harness's check: it must reach the oracle).

The loop's own rows keep their measured gains (as in the replay); the estimate is what it ranks
unmeasured combinations on. Each replicate draws new folds and network seeds. Scored on the
validation table (the selection criterion, ``--score-on valid``) and on the test table (the
issue's measure), as a fraction of the oracle (ETTh1: above random, as ``replay_mtgnet.py``).

    python benchmarks/probe_ceiling.py --replicates 10 --json benchmarks/artifacts/probe_ceiling14.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_estimators import linear_surrogate  # noqa: E402
from replay_mtgnet import interval95, load, score  # noqa: E402

from mtgfast.gains import FloatArray, GainTable  # noqa: E402

#: (label, dataset, generator options, HOA-equal K) — the twelfth pass's cells
CELLS: list[tuple[str, str, dict[str, Any], int]] = [
    ("taskonomy", "taskonomy", {}, 2), ("ettm1", "ett", {}, 3), ("etth1", "etth1", {}, 3),
    ("synth8g2", "synthetic", {"n_tasks": 8, "gen_seed": 2}, 3),
    ("synth8g4", "synthetic", {"n_tasks": 8, "gen_seed": 4}, 3)]
ESTIMATES = ("oof-mtgnet", "oof-linear", "truth")
FOLDS = 10


class FixedEstimate:
    """An estimator whose predictions are fixed in advance (a lookup in ``table``); ``fit`` is a
    no-op, so the loop's sampler ranks on an estimate it did not have to learn."""

    def __init__(self, table: GainTable) -> None:
        self.table = table

    def fit(self, table: GainTable) -> FixedEstimate:
        return self

    def predict(self, masks: object, return_std: bool = False) -> Any:
        mean = self.table.lookup(np.asarray(masks, dtype=np.uint64))
        return (mean, np.zeros_like(mean)) if return_std else mean


def cross_fitted(valid: GainTable, what: str, replicate: int) -> GainTable:
    """Every row of >= 2 tasks (but the full set) predicted by a fit on the other folds."""
    from mtgfast.estimators.mtgnet import MTGNet

    n = valid.n_tasks
    masks, size = valid.masks, valid.member().sum(axis=1)
    full = np.uint64((1 << n) - 1)
    always = np.flatnonzero((size == 1) | (masks == full))
    rows = np.flatnonzero((size >= 2) & (masks != full))
    rng = np.random.default_rng(7000 + replicate)
    folds = np.array_split(rng.permutation(rows), FOLDS)
    out = valid.gains.copy()
    for f, held in enumerate(folds):
        train = np.concatenate([always, *[g for i, g in enumerate(folds) if i != f]])
        meas = GainTable(masks[train], valid.gains[train], valid.task_names)
        if what == "oof-mtgnet":
            est = MTGNet(seed=100 * replicate + f).fit(meas)
            out[held] = np.asarray(est.predict(masks[held]), dtype=np.float64)
        else:
            out[held] = linear_surrogate(meas, masks[held], n)
    return GainTable(masks, out, valid.task_names)


def loop_with(valid: GainTable, estimate: GainTable, k: int, seed: int) -> FloatArray:
    """The default mtgnet loop (sampler, warm-start irrelevant, final of measured groups) with
    the fixed estimate in place of its refits: the gains its final search sees."""
    from mtgfast.study.active import ActiveLoop, make_selector
    from mtgfast.study.final import final_gains
    from mtgfast.study.replay_methods import METHOD_DEFAULTS

    opts = METHOD_DEFAULTS["mtgnet"]
    selector = make_selector("search", kappa=opts["kappa"])
    loop = ActiveLoop(selector, lambda: FixedEstimate(estimate), valid.masks, valid.n_tasks,
                      task_names=valid.task_names, seed=seed)
    selector.bind(loop)
    loop.run(lambda m: valid.lookup(np.array([m], dtype=np.uint64))[0], k)
    return final_gains(valid.masks, loop.table(), opts["final"])


def fractions(curves: list[list[float]], oracle: float, rnd: float, above: bool) -> list[float]:
    """Per curve the mean over budgets 2..N as a fraction of the oracle (or above random)."""
    means = [float(np.mean(c)) for c in curves]
    return [(m - rnd) / (oracle - rnd) if above else m / oracle for m in means]


def run_cell(dataset: str, gen: dict[str, Any], k: int, replicates: int) -> dict[str, Any]:
    import torch

    from mtgfast.replay import replay

    torch.set_num_threads(1)
    tabs = load(dataset, **gen)
    valid, test = tabs["valid"], tabs["test"]
    n = valid.n_tasks
    budgets = list(range(2, n + 1))
    out: dict[str, Any] = {"k": k, "replicates": replicates}
    for on, tab in (("valid", valid), ("test", test)):
        base = replay(valid, tab, methods=["oracle", "random"], hoa=tabs["hoa"],
                      tag=tabs["tag"], dataset=dataset, search="auto").to_dict()["methods"]
        out[on] = {"oracle": float(np.mean(base["oracle"]["average_test_gain"][1:])),
                   "random": float(np.mean(base["random"]["average_test_gain"][1:]))}
    spear: dict[str, list[float]] = {}
    curves: dict[str, dict[str, list[list[float]]]] = {"valid": {}, "test": {}}
    from scipy.stats import spearmanr

    mem, size = valid.member(), valid.member().sum(axis=1)
    multi = mem & (size[:, None] >= 2)
    for what in ESTIMATES:
        for r in range(1 if what == "truth" else replicates):
            est = valid if what == "truth" else cross_fitted(valid, what, r)
            spear.setdefault(what, []).append(
                float(spearmanr(est.gains[multi], valid.gains[multi])[0]))
            final = loop_with(valid, est, k, seed=r)
            for on, tab in (("valid", valid), ("test", test)):
                curves[on].setdefault(what, []).append(score(valid, tab, final, budgets))
    above = dataset == "etth1"
    for on in ("valid", "test"):
        o, rnd = out[on]["oracle"], out[on]["random"]
        out[on]["frac"] = {w: fractions(c, o, rnd, above) for w, c in curves[on].items()}
        out[on]["curves"] = curves[on]
    out["spearman"] = spear
    return out


def summary(label: str, c: dict[str, Any]) -> str:
    parts = []
    for w in ESTIMATES:
        v, t = np.array(c["valid"]["frac"][w]), np.array(c["test"]["frac"][w])
        parts.append(f"{w} valid {100 * v.mean():.1f}% +- {100 * interval95(list(v)):.1f} "
                     f"test {100 * t.mean():.1f}% +- {100 * interval95(list(t)):.1f} "
                     f"(rho {np.mean(c['spearman'][w]):.2f})")
    return f"{label:10s} K={c['k']}  " + "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--cells", default=",".join(c[0] for c in CELLS))
    ap.add_argument("--tag-equal", action="store_true", help="K = 1 instead of HOA-equal K")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    cells: dict[str, Any] = {}
    wanted = args.cells.split(",")
    for label, dataset, gen, k in CELLS:
        if label not in wanted:
            continue
        t0 = time.perf_counter()
        cells[label] = run_cell(dataset, gen, 1 if args.tag_equal else k, args.replicates)
        print(summary(label, cells[label]), f"[{time.perf_counter() - t0:.0f} s]", flush=True)
        if args.json_path:   # after every cell: a killed run keeps the cells it finished
            Path(args.json_path).write_text(json.dumps({"cells": cells}, indent=1) + "\n")


if __name__ == "__main__":
    main()
