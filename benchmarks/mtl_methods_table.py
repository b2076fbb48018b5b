"""Per-task test accuracy of the shipped MTL methods on ``multidigits`` or ``digits`` one-vs-rest
(mean ± std over seeds).

Rows: single-task (each task alone), hard sharing with equal / DWA / uncertainty weighting, αVIL
(each task as the target, the other tasks its auxiliaries), MTAN and AdaShare (policy search, then
re-training). Every method uses the same encoder (residual MLP), seeds, splits and ``TrainConfig``.

    python benchmarks/mtl_methods_table.py                 # multidigits, 3 seeds (minutes on CPU)
    python benchmarks/mtl_methods_table.py --suite digits    # 10 one-vs-rest tasks
    python benchmarks/mtl_methods_table.py --seeds 0 1 --epochs 10

Not collected by pytest (a script, not a bench_*.py file).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict

import torch
from mtgfast.mtl.adashare import train_adashare
from mtgfast.mtl.alphavil import train_alphavil
from mtgfast.mtl.suites import get_suite
from mtgfast.mtl.trainer import TrainConfig, train_mtl


METHODS = ("single", "hard", "alphavil", "mtan", "adashare")


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "—"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{100 * statistics.mean(vals):.1f} ± {100 * sd:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=["multidigits", "digits"], default="multidigits")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-blocks", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--n-train", type=int, default=None,
                    help="training rows (multidigits: pairs, default 2000; digits: all 1,078)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--lambda-sparsity", type=float, default=0.02,
                    help="AdaShare's sparsity weight (scale it with the task losses)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.suite == "multidigits":
        suite = get_suite("multidigits", n_train=args.n_train or 2000)
        data = f"multidigits (n_train={args.n_train or 2000}, 500 valid / 500 test pairs)"
    else:
        suite = get_suite("digits", n_train=args.n_train)
        # the suite measures log loss (its gain metric); this table reports accuracy (logit > 0)
        suite.metric_names = ("accuracy",) * suite.n_tasks
        data = f"digits one-vs-rest (n_train={args.n_train or 1078}, 60/20/20 split)"
    names = suite.task_names
    tasks = tuple(range(suite.n_tasks))
    base = TrainConfig(epochs=args.epochs, n_blocks=args.n_blocks, hidden=args.hidden, patience=5)

    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    notes: dict[str, list[str]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    start = time.perf_counter()
    for seed in args.seeds:
        if "single" in args.methods:
            for t in tasks:
                r = train_mtl(suite, (t,), seed, base)
                acc["single-task"][names[t]].append(r.metrics_test[names[t]])
                seconds["single-task"] += r.seconds
        for w in ("equal", "dwa", "uncertainty") if "hard" in args.methods else ():
            key = f"hard sharing, {w}"
            r = train_mtl(suite, tasks, seed, TrainConfig(**{**base.to_dict(), "weighting": w}))
            for n in names:
                acc[key][n].append(r.metrics_test[n])
            seconds[key] += r.seconds
        for t in tasks if "alphavil" in args.methods else ():
            av = train_alphavil(suite, tasks, t, seed, base)
            acc["αVIL (row task = target)"][names[t]].append(av.run.metrics_test[names[t]])
            seconds["αVIL (row task = target)"] += av.run.seconds
            notes["αVIL"].append(f"seed {seed}, target {names[t]}: final weights "
                                 + ", ".join(f"{k}={v:.2f}" for k, v in av.weights.items()))
        if "mtan" in args.methods:
            r = train_mtl(suite, tasks, seed, TrainConfig(**{**base.to_dict(), "arch": "mtan"}))
            for n in names:
                acc["MTAN"][n].append(r.metrics_test[n])
            seconds["MTAN"] += r.seconds
        if "adashare" in args.methods:
            ada = train_adashare(suite, tasks, seed, base, warmup_epochs=3, search_epochs=12,
                                 policy_lr=0.1, lambda_sparsity=args.lambda_sparsity)
            key = f"AdaShare (λ_sp={args.lambda_sparsity:g})"
            for n in names:
                acc[key][n].append(ada.run.metrics_test[n])
            seconds[key] += ada.seconds
            notes["AdaShare"].append(f"seed {seed}: policy (tasks x blocks) {ada.policy}")
        print(f"seed {seed} done after {time.perf_counter() - start:.0f} s", flush=True)

    print()
    print(f"{data}, test accuracy % "
          f"(mean ± std over seeds {args.seeds}); encoder: residual MLP hidden={args.hidden}, "
          f"n_blocks={args.n_blocks}; epochs<={args.epochs}, early stopping (patience 5)")
    print()
    header = "| method | " + " | ".join(names) + " | mean | train s (all seeds) |"
    print(header)
    print("|" + "---|" * (len(names) + 3))
    for method, per in acc.items():
        cols = [_fmt(per[n]) for n in names]
        means = [statistics.mean(v) for v in zip(*(per[n] for n in names))]
        print(f"| {method} | " + " | ".join(cols) + f" | {_fmt(means)} | {seconds[method]:.0f} |")
    print()
    for k, lines in notes.items():
        for line in lines:
            print(f"{k}: {line}")
    cpu = platform.processor() or platform.machine()
    print(f"\ntotal {time.perf_counter() - start:.0f} s on {cpu}, "
          f"torch {torch.__version__}, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
