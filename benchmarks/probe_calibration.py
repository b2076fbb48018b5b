"""Is the spread a study reports honest? Coverage of its 95% band on unmeasured gains.

On the thirteenth pass's random designs (the full set plus ``K * N`` combinations of >= 2 tasks
drawn uniformly, HOA-equal K, and the singletons), the network alone (``MTGNet``, the
``mtgnet-plain`` estimator) and the default blend (``BlendMTGNet(base="ridge")``) are fitted;
for every unmeasured entry (a task in a combination of >= 2 tasks) the estimate's error on the
validation table is compared with its spread: the ensemble's (raw) and the spread scaled per
task by its out-of-fold error over its ensemble spread on the candidates
(``study.final.spread_calibration``, what ``Study.result()`` reports as calibrated). Reported:
the share of entries inside ``estimate ± 1.96 spread`` (0.95 for an honest normal band) and the
median of ``|error| / spread``.

    python benchmarks/probe_calibration.py --designs 10 --json benchmarks/artifacts/probe_calibration16.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_estimators import CELLS, random_design  # noqa: E402
from replay_mtgnet import load  # noqa: E402

from mtgfast.gains import GainTable  # noqa: E402
from mtgfast.study.final import out_of_fold_residuals, spread_calibration  # noqa: E402

ESTIMATORS = ("mtgnet-plain", "mtgnet")


def run_cell(valid: GainTable, k: int, designs: int) -> dict[str, Any]:
    """Per design and estimator: coverage and median |error| / spread, raw and calibrated."""
    import torch

    from mtgfast.estimators.blend import BlendMTGNet
    from mtgfast.estimators.mtgnet import MTGNet

    torch.set_num_threads(1)
    masks, mem = valid.masks, valid.member()
    multi_all = mem.sum(axis=1) >= 2
    out: dict[str, dict[str, list[float]]] = {
        e: {"coverage_raw": [], "coverage_calibrated": [], "median_z_raw": [],
            "median_z_calibrated": []} for e in ESTIMATORS}
    for d in range(designs):
        meas, known = random_design(valid, k, d)
        unmeasured = ~known[:, None] & mem & multi_all[:, None]
        for e in ESTIMATORS:
            net = MTGNet(seed=d)
            est: Any = net if e == "mtgnet-plain" else BlendMTGNet(net, base="ridge")
            est.fit(meas)
            mean, std = est.predict(masks, return_std=True)
            factor = spread_calibration(out_of_fold_residuals(meas, est),
                                        mem & multi_all[:, None], std)
            err = np.abs(mean - valid.gains)[unmeasured]
            for kind, sd in (("raw", std), ("calibrated", std * factor[None, :])):
                s = sd[unmeasured]
                out[e][f"coverage_{kind}"].append(float(np.mean(err < 1.96 * s)))
                out[e][f"median_z_{kind}"].append(
                    float(np.median(err / np.maximum(s, 1e-12))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", type=int, default=10)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    cells: dict[str, Any] = {}
    for label, dataset, gen, k in CELLS:
        cells[label] = {"k": k, "designs": args.designs,
                        **run_cell(load(dataset, **gen)["valid"], k, args.designs)}
        print(label, "  ".join(
            f"{e}: coverage {np.mean(cells[label][e]['coverage_raw']):.2f} -> "
            f"{np.mean(cells[label][e]['coverage_calibrated']):.2f}" for e in ESTIMATORS),
            flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"cells": cells}, indent=1) + "\n")


if __name__ == "__main__":
    main()
