"""How well informed is the generator's TAG, and how much of its score is one lucky draw?

The replay scores TAG on a synthetic table from a single noisy copy of the generator's true pair
matrix (``affinity = pair + N(0, affinity_noise * spread)``), so TAG's column is one draw with no
interval while every MTG-Net column is a mean over seeds. This probe reports three things:

- ``pair_rho``: the Spearman correlation between TAG's pair gains (its affinity-based estimate of
  every 2-task combination) and the measured validation pair gains, on the three recorded tables
  and on synthetic cells: how much pair information a TAG affinity carries in each;
- ``valid_test_pair_rho``: the same correlation between the validation and the test pair gains
  (how far the table a method chooses on predicts the one it is scored on);
- ``draws``: on each synthetic cell, TAG's fraction of the oracle (the replay's scoring: groups
  chosen on TAG's estimate, scored on the test table, mean over budgets 2..N) over ``--draws``
  fresh affinity draws at the generator's ``affinity_noise`` and at matched noise (the
  affinity's noise SD equal to one validation measurement's, ``valid_noise``), with a 95% interval.

    python benchmarks/probe_tag_draws.py --draws 20 --json benchmarks/artifacts/probe_tag_draws17.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_mtgnet import affinity_draw, interval95, load, score  # noqa: E402

from mtgfast.estimators.tag import TAG  # noqa: E402
from mtgfast.gains import GainTable  # noqa: E402
from mtgfast.generate import synthetic_gain_tables  # noqa: E402
from mtgfast.masks import masks_to_dense  # noqa: E402

NOISY = {"valid_noise": 0.05, "test_shift": 0.128, "test_noise": 0.118}
# (name, n_tasks, gen_seed, noise): the replay's synthetic cells, quiet and as noisy as ETTh1
SYNTH = [("n8g2", 8, 2, {}), ("n8g4", 8, 4, {}), ("n8g7", 8, 7, {}), ("n9g5", 9, 5, {}),
         ("noisy_n8g7", 8, 7, NOISY), ("noisy_n9g5", 9, 5, NOISY)]


def pair_rho(valid: GainTable, tag: GainTable) -> float:
    """Spearman correlation of TAG's and the measured gains over every (pair, member) entry."""
    member = masks_to_dense(valid.masks, valid.n_tasks)
    rows = np.flatnonzero(member.sum(axis=1) == 2)
    sel = member[rows]
    return float(spearmanr(tag.gains[rows][sel], valid.gains[rows][sel])[0])


def tag_curve(valid: GainTable, test: GainTable, affinity: np.ndarray) -> np.ndarray:
    """TAG's test gain at each budget 2..N (groups chosen on its estimate, as the replay does)."""
    pred = TAG().fit_affinity(affinity.T, valid.task_names).predict_table(valid.masks)
    return np.asarray(score(valid, test, pred.gains, list(range(2, valid.n_tasks + 1))))


def tag_fraction(valid: GainTable, test: GainTable, affinity: np.ndarray, oracle: float) -> float:
    """TAG's mean test gain over budgets 2..N as a percentage of the oracle's."""
    return 100.0 * float(np.mean(tag_curve(valid, test, affinity))) / oracle


def synth_cell(n: int, gen_seed: int, noise: dict[str, float], draws: int) -> dict[str, Any]:
    """TAG over fresh affinity draws at the generator's noise and at measurement-matched noise."""
    syn = synthetic_gain_tables(n, n_random=None, seed=gen_seed, **noise)
    budgets = list(range(2, n + 1))
    oracle = float(np.mean(score(syn.valid, syn.test, syn.valid.gains, budgets)))
    spread = float(np.std(syn.pair[~np.eye(n, dtype=bool)]))
    valid_noise = float(syn.valid.meta["valid_noise"])   # the scale the table was drawn with
    out: dict[str, Any] = {"n_tasks": n, "gen_seed": gen_seed, "noise": noise, "spread": spread,
                           "oracle_mean_test_gain": oracle}
    tag0 = TAG().fit_affinity(syn.affinity.T, syn.valid.task_names).predict_table(syn.valid.masks)
    out["valid_test_pair_rho"] = pair_rho(syn.valid, syn.test)
    out["replay_draw"] = {"pct": tag_fraction(syn.valid, syn.test, syn.affinity, oracle),
                          "pair_rho": pair_rho(syn.valid, tag0)}
    for label, rel in (("generator", 0.5), ("matched", valid_noise / spread)):
        pcts, rhos, curves = [], [], []
        for r in range(draws):
            aff = affinity_draw(syn.pair, rel, gen_seed, r)
            curves.append(tag_curve(syn.valid, syn.test, aff))
            pcts.append(100.0 * float(np.mean(curves[-1])) / oracle)
            tag = TAG().fit_affinity(aff.T, syn.valid.task_names).predict_table(syn.valid.masks)
            rhos.append(pair_rho(syn.valid, tag))
        out[label] = {"affinity_noise": rel, "pct_mean": float(np.mean(pcts)),
                      "pct_ci95": interval95(pcts), "pct_min": float(np.min(pcts)),
                      "pct_max": float(np.max(pcts)), "pair_rho_mean": float(np.mean(rhos)),
                      "curve_mean": np.mean(curves, axis=0).tolist(), "per_draw_pct": pcts}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    result: dict[str, Any] = {"recorded": {}, "synthetic": {}, "draws": args.draws}
    for ds in ("taskonomy", "ett", "etth1"):
        t = load(ds)
        result["recorded"][ds] = {"pair_rho": pair_rho(t["valid"], t["tag"]),
                                  "valid_test_pair_rho": pair_rho(t["valid"], t["test"])}
        print(f"{ds:12s} TAG pair gains ~ measured pair gains: Spearman "
              f"{result['recorded'][ds]['pair_rho']:+.2f} (validation ~ test pairs "
              f"{result['recorded'][ds]['valid_test_pair_rho']:+.2f})")
    for name, n, g, noise in SYNTH:
        c = synth_cell(n, g, noise, args.draws)
        result["synthetic"][name] = c
        print(f"{name:12s} validation ~ test pairs {c['valid_test_pair_rho']:+.2f}; "
              f"replay's draw {c['replay_draw']['pct']:6.1f}% (pair Spearman "
              f"{c['replay_draw']['pair_rho']:+.2f}); " + "; ".join(
                  f"{lab} noise {c[lab]['affinity_noise']:.2f}: {c[lab]['pct_mean']:.1f}% ± "
                  f"{c[lab]['pct_ci95']:.1f} [{c[lab]['pct_min']:.1f}, {c[lab]['pct_max']:.1f}]"
                  f" (pair Spearman {c[lab]['pair_rho_mean']:+.2f})"
                  for lab in ("generator", "matched")), flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
