"""Replay evidence for MTG-Net (issue 4): Taskonomy-5 and ETTm1-7 curves vs oracle / HOA / TAG / random.

Protocol (mtgfast.replay): each method's gains select groups for every budget B (exact search), each
task is served by its best chosen group under those gains, the grouping is scored with test gains
(ETTm1_y.csv; Taskonomy uses one table for both). MTG-Net methods run the active loop on the
validation table (measure = lookup) with ``rounds`` K and average over ``--seeds`` seeds; each seed
runs in a child process (``--jobs`` at a time), retried if the child dies (results are deterministic).

    python benchmarks/replay_mtgnet.py --dataset ett --rounds 1 3 --seeds 5 --json out.json
    python benchmarks/replay_mtgnet.py --dataset taskonomy --rounds 1 2 --set temperature=0.2
    python benchmarks/replay_mtgnet.py --dataset etth1 --rounds 1 3    # after collect_etth1.py

Prints, per K, the curve of each method over budgets 2..N, the mean over those budgets as a
fraction of the oracle's, and whether MTG-Net beats HOA and TAG at every budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from mtgfast.cli import parse_option_value
from mtgfast.gains import GainTable
from mtgfast.replay import replay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtgnet"
#: ETTh1-7, collected by benchmarks/collect_etth1.py (issue 5)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def load(dataset: str, data: Path = DATA) -> dict[str, GainTable]:
    """Validation / test / HOA / TAG tables of one recorded data set."""
    if dataset == "taskonomy":
        d = data / "taskonomy"
        x = d / "taskonomy_x.csv"
        valid = GainTable.from_mtgnet(x, d / "taskonomy.csv", meta={"dataset": "taskonomy-5"})
        return {"valid": valid, "test": valid,
                "hoa": GainTable.from_mtgnet(x, d / "taskonomy_HOA.csv"),
                "tag": GainTable.from_mtgnet(x, d / "taskonomy_TAGHOA.csv")}
    if dataset == "etth1":
        x = ARTIFACTS / "etth1_x.csv"
        valid = GainTable.from_mtgnet(x, ARTIFACTS / "etth1_val_y.csv", meta={"dataset": "etth1-7"})
        return {"valid": valid, "test": GainTable.from_mtgnet(x, ARTIFACTS / "etth1_y.csv"),
                # HOA from the validation pairs (the replay's default), TAG from its affinity run
                "hoa": None, "tag": GainTable.from_mtgnet(x, ARTIFACTS / "etth1_tag.csv")}
    d = data / "ETT"
    x = d / "ETTm1_x.csv"
    return {"valid": GainTable.from_mtgnet(x, d / "ETTm1_val_y.csv", meta={"dataset": "ettm1-7"}),
            "test": GainTable.from_mtgnet(x, d / "ETTm1_y.csv"),
            "hoa": GainTable.from_mtgnet(x, d / "ETTm1_HOA.csv"),
            # the TAG file is in percent (the paper's notebook multiplies by 0.01)
            "tag": GainTable.from_mtgnet(x, d / "ETTm1_TAG_HOA.csv", scale=0.01)}


def summarize(res: dict[str, Any], n: int, mtg_methods: list[str]) -> dict[str, Any]:
    """Mean over budgets 2..N as a fraction of the oracle, and 'above HOA and TAG everywhere'."""
    budgets = list(res["budgets"])
    cols = [i for i, b in enumerate(budgets) if 2 <= b <= n]
    curve = {m: np.array(r["average_test_gain"])[cols] for m, r in res["methods"].items()}
    oracle = curve["oracle"].mean()
    out: dict[str, Any] = {"budgets": [budgets[i] for i in cols]}
    for m, c in curve.items():
        out[m] = {"curve": c.round(5).tolist(), "mean": float(c.mean()),
                  "frac_of_oracle": float(c.mean() / oracle)}
    for m in mtg_methods:
        for base in ("hoa", "tag"):
            if base in curve:
                out[m][f"above_{base}_every_budget"] = bool(np.all(curve[m] > curve[base]))
    return out


def _worker(args: argparse.Namespace) -> None:
    """One (method, K, seed) replay of an mtgnet* method; writes the predicted gains as .npy."""
    import torch
    from mtgfast.study.replay_methods import replay_method

    torch.set_num_threads(args.threads)
    options = {k: parse_option_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    valid = load(args.dataset)["valid"]
    pred, used = replay_method(args.worker, valid, seed=args.seed, rounds=args.k, **options)
    np.save(args.out, pred)
    Path(str(args.out) + ".measured").write_text(str(used))


def _run_seed(args: argparse.Namespace, method: str, k: int, seed: int, out: Path,
              retries: int = 3) -> tuple[np.ndarray, int]:
    """Run one seed in a child process (retried if it dies: the result is deterministic)."""
    cmd = [sys.executable, __file__, "--dataset", args.dataset, "--worker", method, "--k", str(k),
           "--seed", str(seed), "--out", str(out), "--threads", str(args.threads)]
    for kv in args.set:
        cmd += ["--set", kv]
    for attempt in range(retries):
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if rc.returncode == 0:
            return np.load(out), int(Path(str(out) + ".measured").read_text())
        print(f"  {method} K={k} seed={seed}: child exited with {rc.returncode} "
              f"(attempt {attempt + 1}); {rc.stderr.strip().splitlines()[-1:]}", flush=True)
    raise RuntimeError(f"{method} K={k} seed={seed} failed {retries} times")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("taskonomy", "ett", "etth1"), required=True)
    ap.add_argument("--rounds", type=int, nargs="+", default=[1])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--methods", default="oracle,hoa,tag,random,mtgnet")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="option of the mtgnet* methods (MTGNet args, alpha, kappa, use_measured)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per child (1 is fastest for these tiny models)")
    ap.add_argument("--jobs", type=int, default=2, help="seeds run in parallel child processes")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return

    from mtgfast.grouping import evaluate, group

    tabs = load(args.dataset)
    valid, test = tabs["valid"], tabs["test"]
    n = valid.n_tasks
    budgets = list(range(1, n + 1))
    options = {k: parse_option_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    methods = [m for m in args.methods.split(",") if m]
    mtg = [m for m in methods if m.startswith("mtgnet")]
    base = [m for m in methods if not m.startswith("mtgnet")]
    report: dict[str, Any] = {"dataset": args.dataset, "seeds": args.seeds, "options": options,
                              "rounds": {}}
    # baselines do not depend on K: the replay module (same protocol) computes them once
    base_res = replay(valid, test, methods=base, hoa=tabs["hoa"], tag=tabs["tag"],
                      dataset=args.dataset).to_dict() if base else {"methods": {}}
    tmp = Path(tempfile.mkdtemp(prefix="replay_mtgnet_"))
    for k in args.rounds:
        t0 = time.perf_counter()
        d: dict[str, Any] = {"budgets": budgets, "methods": dict(base_res["methods"])}
        for m in mtg:
            jobs = [(m, k, s, tmp / f"{m}_{k}_{s}.npy") for s in range(args.seeds)]
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                outs = list(pool.map(lambda j: _run_seed(args, *j), jobs))
            curves = []
            for pred, _ in outs:
                gs = group(valid.masks, pred, budgets)
                curves.append([float(evaluate(g, test)) for g in gs])
            d["methods"][m] = {"average_test_gain": np.mean(curves, axis=0).tolist(),
                               "std_over_seeds": np.std(curves, axis=0).tolist(),
                               "measured": float(np.mean([u for _, u in outs]))}
        s = summarize(d, n, mtg)
        s["seconds"] = round(time.perf_counter() - t0, 1)
        s["measured"] = {m: d["methods"][m].get("measured") for m in methods}
        report["rounds"][str(k)] = s
        print(f"== {args.dataset} K={k} seeds={args.seeds} options={options} "
              f"({s['seconds']} s)")
        print("budget      " + " ".join(f"{b:>8d}" for b in s["budgets"]) + "   mean  /oracle")
        for m in methods:
            c = s[m]
            flag = ""
            if m in mtg:
                flag = " ".join(f">{b}:{'yes' if c.get(f'above_{b}_every_budget') else 'no'}"
                                for b in ("hoa", "tag") if f"above_{b}_every_budget" in c)
                flag += f" measured={s['measured'][m]:.0f}"
            print(f"{m:<11s} " + " ".join(f"{v:8.4f}" for v in c["curve"]) +
                  f" {c['mean']:7.4f} {c['frac_of_oracle']:6.1%} {flag}", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
