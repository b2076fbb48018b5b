"""Is MTG-Net the estimator that limits the replay? Estimators fitted on the same random designs.

Each design is the full set plus ``K * N`` combinations of >= 2 tasks drawn uniformly (the
HOA-equal cost of the replay cells); every estimator is fitted on those rows, the grouping of
every budget B = 2..N is searched on measured gains where measured and the estimate elsewhere,
and scored on the validation table (as ``replay_mtgnet.py --score-on valid``: the selection
criterion itself, so the number is the estimator's error, not the validation-test shift), as a
fraction of the validation oracle. Estimators:

- ``mtgnet``: the default ``MTGNet`` (5 members, the design's seed);
- ``linear``: per task, ridge regression of its gain on which other tasks share its group
  (``b_j + sum_{k in C, k != j} w_jk``; the linear surrogate of Li, Nguyen and Zhang, TMLR 2023),
  the penalty chosen by leave-one-out error (scikit-learn's ``RidgeCV``);
- ``pooled``: HOA's form on the measured rows (``prior.pooled_pair_matrix``, the base of
  ``mtgnet-prior`` and ``mtgnet-blend``);
- ``mix``: the mean of ``mtgnet`` and ``linear``;
- with ``--extra gp,gplin`` (fourteenth pass): a Gaussian process per task on the Hamming
  distance between groups (``gp``), plus a linear kernel (``gplin``);
- with ``--extra ridgepairs,ridgemean`` (sixteenth pass): ``linear`` on other features of the
  partners: their indicators and the products of every two of them (``ridgepairs``: pairwise
  interactions between partners, the next term of the set function's expansion), or the
  indicators divided by the number of partners (``ridgemean``: HOA's averaging form).

Also the Spearman correlation of each estimate with the truth on the unmeasured entries.

    python benchmarks/probe_estimators.py --designs 30 --json benchmarks/artifacts/probe_estimators13.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_mtgnet import interval95, load  # noqa: E402

from mtgfast.gains import FloatArray, GainTable  # noqa: E402
from mtgfast.grouping import evaluate, group  # noqa: E402
from mtgfast.masks import MaskArray, masks_to_dense  # noqa: E402

#: (label, dataset, generator options, K) — the twelfth pass's validation-scored cells
CELLS: list[tuple[str, str, dict[str, Any], int]] = [
    ("taskonomy", "taskonomy", {}, 2), ("ettm1", "ett", {}, 3), ("etth1", "etth1", {}, 3),
    ("synth8g2", "synthetic", {"n_tasks": 8, "gen_seed": 2}, 3),
    ("synth8g4", "synthetic", {"n_tasks": 8, "gen_seed": 4}, 3)]
ESTIMATORS = ("mtgnet", "linear", "pooled", "mix")
#: estimators a run may add with --estimators (fourteenth pass)
EXTRA = ("gp", "gplin", "ridgepairs", "ridgemean")


def _per_task(meas: GainTable, masks: MaskArray, n: int, regressor: Callable[[], Any],
              features: Callable[[FloatArray], FloatArray] | None = None) -> FloatArray:
    """Per task, ``regressor()`` (a scikit-learn estimator) fitted on the other tasks'
    indicators of the measured rows of >= 2 tasks that hold it, predicting ``masks``; the task's
    mean where it has fewer than 3 rows, 0 for singletons, NaN outside each combination."""
    mem = masks_to_dense(meas.masks, n)
    size = mem.sum(axis=1)
    out = masks_to_dense(masks, n)
    osize = out.sum(axis=1)
    pred = np.where(out, 0.0, np.nan)
    for t in range(n):
        rows = mem[:, t] & (size >= 2) & np.isfinite(meas.gains[:, t])
        y = meas.gains[rows, t]
        sel = out[:, t] & (osize >= 2)
        if not sel.any():    # no row to predict holds the task
            continue
        if rows.sum() < 3:   # too few rows for a leave-one-out choice: the task's mean
            pred[sel, t] = float(y.mean()) if y.size else 0.0
            continue
        f = features or (lambda z: z)
        fit = regressor().fit(f(np.delete(mem[rows].astype(np.float64), t, axis=1)), y)
        pred[sel, t] = fit.predict(f(np.delete(out[sel].astype(np.float64), t, axis=1)))
    return pred


def partner_pairs(x: FloatArray) -> FloatArray:
    """The partners' indicators, then the product of every two of them."""
    i, j = np.triu_indices(x.shape[1], 1)
    return np.hstack([x, x[:, i] * x[:, j]])


def partner_mean(x: FloatArray) -> FloatArray:
    """The partners' indicators divided by their number (HOA's average over partners)."""
    return x / np.maximum(x.sum(axis=1, keepdims=True), 1.0)


def linear_surrogate(meas: GainTable, masks: MaskArray, n: int,
                     features: Callable[[FloatArray], FloatArray] | None = None) -> FloatArray:
    """Per-task ridge regression on the other tasks' indicators (or ``features`` of them),
    LOO-chosen penalty."""
    from sklearn.linear_model import RidgeCV

    return _per_task(meas, masks, n, lambda: RidgeCV(alphas=np.logspace(-4, 2, 13)), features)


def gp_surrogate(meas: GainTable, masks: MaskArray, n: int, linear: bool = False) -> FloatArray:
    """Per task, a Gaussian process on the other tasks' indicators: an RBF kernel of the Hamming
    distance between groups (plus a linear kernel with ``linear``) and a noise term, its scales
    fitted by marginal likelihood (scikit-learn); the standard surrogate of Bayesian
    optimisation over sets, which updates the neighbours of every measured group."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel

    def regressor() -> Any:
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(1.0, (0.1, 100.0)) + \
            WhiteKernel(0.1, (1e-6, 10.0))
        if linear:
            kernel = kernel + ConstantKernel(0.1, (1e-4, 1e2)) * DotProduct(1.0, "fixed")
        return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                        random_state=0)

    return _per_task(meas, masks, n, regressor)


def pooled_estimate(meas: GainTable, masks: MaskArray) -> FloatArray:
    """HOA's average over partners of the pooled pair matrix of the measured rows."""
    from mtgfast.estimators.hoa import aggregate_pairs
    from mtgfast.estimators.prior import pooled_pair_matrix

    return aggregate_pairs(masks, pooled_pair_matrix(meas), backend="numpy")


def random_design(valid: GainTable, k: int, design: int
                  ) -> tuple[GainTable, npt.NDArray[np.bool_]]:
    """Design number ``design``: the full set, ``k * N`` combinations of >= 2 tasks drawn
    uniformly (seed ``1000 + design``) and the singletons, as a measured table; and which rows
    of ``valid`` it holds."""
    n, masks = valid.n_tasks, valid.masks
    size = valid.member().sum(axis=1)
    full = (1 << n) - 1
    rng = np.random.default_rng(1000 + design)
    multi = np.flatnonzero((size >= 2) & (masks != full))
    rows = np.concatenate([np.flatnonzero(masks == full),
                           rng.choice(multi, size=k * n, replace=False),
                           np.flatnonzero(size == 1)])
    known = np.zeros(len(masks), dtype=bool)
    known[rows] = True
    return GainTable(masks[rows], valid.gains[rows], valid.task_names), known


def run_cell(valid: GainTable, k: int, designs: int,
             estimators: tuple[str, ...] = ESTIMATORS) -> dict[str, Any]:
    """Per design and estimator: the fraction of the validation oracle and Spearman's rho."""
    import torch
    from scipy.stats import spearmanr

    from mtgfast.estimators.mtgnet import MTGNet

    torch.set_num_threads(1)
    n = valid.n_tasks
    masks, mem = valid.masks, valid.member()
    size = mem.sum(axis=1)
    budgets = list(range(2, n + 1))

    def mean_score(gains: FloatArray) -> float:
        return float(np.mean([evaluate(g, valid) for g in group(masks, gains, budgets,
                                                                 method="exact")]))

    oracle = mean_score(valid.gains)
    frac: dict[str, list[float]] = {e: [] for e in estimators}
    rho: dict[str, list[float]] = {e: [] for e in estimators}
    for d in range(designs):
        meas, known = random_design(valid, k, d)
        est: dict[str, FloatArray] = {
            "mtgnet": np.asarray(MTGNet(seed=d).fit(meas).predict(masks), dtype=np.float64),
            "linear": linear_surrogate(meas, masks, n),
            "pooled": pooled_estimate(meas, masks)}
        est["mix"] = 0.5 * (est["mtgnet"] + est["linear"])
        if "gp" in estimators:
            est["gp"] = gp_surrogate(meas, masks, n)
        if "gplin" in estimators:
            est["gplin"] = gp_surrogate(meas, masks, n, linear=True)
        if "ridgepairs" in estimators:
            est["ridgepairs"] = linear_surrogate(meas, masks, n, partner_pairs)
        if "ridgemean" in estimators:
            est["ridgemean"] = linear_surrogate(meas, masks, n, partner_mean)
        unmeasured = ~known[:, None] & mem & (size[:, None] >= 2)
        for e in estimators:
            frac[e].append(mean_score(np.where(known[:, None], valid.gains, est[e])) / oracle)
            rho[e].append(float(spearmanr(est[e][unmeasured], valid.gains[unmeasured])[0]))
    return {"frac_of_oracle": frac, "spearman": rho}


def summary(cells: dict[str, Any]) -> list[str]:
    """One line per cell: each estimator's mean fraction and its paired difference to mtgnet."""
    lines = []
    for label, c in cells.items():
        base = np.array(c["frac_of_oracle"]["mtgnet"])
        parts = [f"mtgnet {100 * base.mean():.1f}% (rho {np.mean(c['spearman']['mtgnet']):.2f})"]
        for e in [e for e in c["frac_of_oracle"] if e != "mtgnet"]:
            diff = 100 * (np.array(c["frac_of_oracle"][e]) - base)
            parts.append(f"{e} {diff.mean():+.1f} +- {interval95(list(diff)):.1f} "
                         f"(rho {np.mean(c['spearman'][e]):.2f})")
        lines.append(f"{label:10s} K={c['k']}  " + ", ".join(parts))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=30)
    ap.add_argument("--extra", default="", help=f"comma-separated extra estimators of {EXTRA}")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    extra = tuple(e for e in args.extra.split(",") if e)
    if not set(extra) <= set(EXTRA):
        ap.error(f"--extra takes {', '.join(EXTRA)}, got {args.extra!r}")
    cells: dict[str, Any] = {}
    for label, dataset, gen, k in CELLS:
        valid = load(dataset, **gen)["valid"]
        cells[label] = {"k": k, "designs": args.designs,
                        **run_cell(valid, k, args.designs, ESTIMATORS + extra)}
        print(summary({label: cells[label]})[0], flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"cells": cells}, indent=1) + "\n")


if __name__ == "__main__":
    main()
