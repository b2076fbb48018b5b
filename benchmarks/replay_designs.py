"""What a fixed first design can reach, and what any sampler could: the final grouping built from
measured groups only (``mtgnet``'s ``final="measured"``), scored like the replay (mean test gain
over B = 2..N as a fraction of the oracle's, which selects on validation over everything).

- ``bound``: greedy with the truth, each pick the combination whose measurement most raises the
  test score (an upper reference no sampler can know to follow), after 1..``--picks`` picks;
- ``loo``: the full set plus the N leave-one-out sets (N + 1 measured: TAG-equal cost);
- ``random``: the full set plus N combinations drawn uniformly (mean over ``--draws`` designs);
- ``pairs``: the full set plus every pair (HOA's cost).

    python benchmarks/replay_designs.py --json benchmarks/artifacts/replay_designs8.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_mtgnet import load, score as replay_score  # noqa: E402

from mtgfast.gains import GainTable  # noqa: E402
from mtgfast.study.final import final_gains  # noqa: E402

#: (label, load() keyword arguments): the public tables, then held-out synthetic cells
CELLS: list[tuple[str, dict[str, Any]]] = [
    ("taskonomy", {"dataset": "taskonomy"}),
    ("ettm1", {"dataset": "ett"}),
    *[(f"synthetic N={n} gen={g}{' ' + tag if tag else ''}",
       {"dataset": "synthetic", "n_tasks": n, "gen_seed": g, "noise": noise})
      for n, g, tag, noise in [
          (8, 0, "", {}), (8, 1, "", {}), (8, 2, "", {}), (8, 3, "", {}), (8, 4, "", {}),
          (9, 5, "", {}), (10, 0, "", {}), (10, 1, "", {}), (10, 3, "", {}), (12, 7, "", {}),
          (8, 2, "s0.035", {"valid_noise": 0.035, "test_shift": 0.0, "test_noise": 0.035}),
          (8, 4, "s0.035", {"valid_noise": 0.035, "test_shift": 0.0, "test_noise": 0.035}),
          (8, 2, "s0.11", {"valid_noise": 0.11, "test_shift": 0.0, "test_noise": 0.11})]],
]


def score(valid: GainTable, test: GainTable, measured: set[int]) -> float:
    """Mean test gain over B = 2..N of the validation-best groupings of the measured groups: the
    replay's own final choice (``final_gains(..., "measured")``) and scoring."""
    n = valid.n_tasks
    known = valid.select(np.sort(valid.index_of(np.array(
        [1 << j for j in range(n)] + sorted(measured), dtype=np.uint64))))
    gains = final_gains(valid.masks, known, "measured")
    return float(np.mean(replay_score(valid, test, gains, list(range(2, n + 1)))))


def cell(valid: GainTable, test: GainTable, picks: int, draws: int) -> dict[str, Any]:
    n = valid.n_tasks
    full = (1 << n) - 1
    oracle = score(valid, test, {int(m) for m in valid.masks if bin(int(m)).count("1") >= 2})
    multi = [int(m) for m in valid.masks if bin(int(m)).count("1") >= 2 and int(m) != full]
    rng = np.random.default_rng(0)
    rand = [score(valid, test, {full, *rng.choice(multi, n, replace=False).tolist()})
            for _ in range(draws)]
    out: dict[str, Any] = {
        "n_tasks": n, "oracle": oracle,
        "loo": score(valid, test, {full, *(full ^ (1 << j) for j in range(n))}) / oracle,
        "random": float(np.mean(rand)) / oracle,
        "pairs": score(valid, test, {full, *((1 << i) | (1 << j) for i in range(n)
                                             for j in range(i))}) / oracle,
    }
    chosen, bound = {full}, []
    for _ in range(picks):
        best = max((m for m in multi if m not in chosen),
                   key=lambda m: score(valid, test, chosen | {m}))
        chosen.add(best)
        bound.append(score(valid, test, chosen) / oracle)
    out["bound"] = bound
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--picks", type=int, default=4, help="greedy picks of the bound")
    ap.add_argument("--draws", type=int, default=50, help="random designs per cell")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    report = {}
    print(f"{'cell':<34s} {'loo':>6s} {'random':>7s} {'pairs':>6s}  bound after 1..{args.picks}")
    for label, kw in CELLS:
        tabs = load(**kw)
        r = cell(tabs["valid"], tabs["test"], args.picks, args.draws)
        report[label] = r
        print(f"{label:<34s} {r['loo']:6.1%} {r['random']:7.1%} {r['pairs']:6.1%}  "
              + " ".join(f"{b:.1%}" for b in r["bound"]), flush=True)
    syn = [r for k, r in report.items() if k.startswith("synthetic")]
    print(f"synthetic mean: loo {np.mean([r['loo'] for r in syn]):.1%}, random "
          f"{np.mean([r['random'] for r in syn]):.1%}, pairs {np.mean([r['pairs'] for r in syn]):.1%}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
