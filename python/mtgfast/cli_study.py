"""Study commands of the ``mtgfast`` CLI: ``demo``, ``study`` and ``group`` (``add_commands``).

``mtgfast demo`` runs a whole study on scikit-learn's digits in a minute or two on a laptop CPU;
``mtgfast study`` runs one on a built-in suite; ``mtgfast group`` groups the tasks of a stored study
without training anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_commands", "cmd_demo", "cmd_group", "cmd_study"]

_ESTIMATORS = ("mtgnet", "hoa", "tag", "oracle")


def add_commands(subparsers: Any) -> None:
    """Register ``demo``, ``study`` and ``group`` on the CLI's subparsers."""
    p = subparsers.add_parser("demo", help="a complete study on scikit-learn's digits (1-2 min)",
                              description="Train one-vs-rest digit tasks in a few combinations, "
                              "fit MTG-Net, and print which tasks to train together.")
    p.add_argument("--store", default=None,
                   help="gain store file (default: a temporary one, deleted afterwards)")
    p.add_argument("--budget", type=int, default=3, help="number of groups (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="active-learning rounds (default 2)")
    p.add_argument("--estimator", choices=_ESTIMATORS, default="mtgnet")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = subparsers.add_parser("study", help="run a grouping study on a built-in task suite",
                              description="Collect STL baselines, run the active loop with MTL "
                              "runs, record every run in the gain store, print the grouping.")
    p.add_argument("--suite", required=True, help="digits, ett, synthetic or multidigits")
    p.add_argument("--data", default=None, help="data file of the suite (ett: the CSV)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--store", default="mtgfast.db")
    p.add_argument("--name", default=None, help="study name (default: from suite and config)")
    p.add_argument("--estimator", choices=_ESTIMATORS, default="mtgnet")
    p.add_argument("--weighting", default="equal", help="loss weighting: equal, uncertainty, dwa")
    p.add_argument("--arch", default="hard", help="architecture: hard, mtan, adashare")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--esa", type=float, default=1.0, metavar="FRACTION",
                   help="early-stopping approximation: train only this fraction of the epochs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)

    p = subparsers.add_parser("group", help="group the tasks of a stored study (no training)")
    p.add_argument("--store", required=True)
    p.add_argument("--study", default=None, help="study name (default: the only one stored)")
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--estimator", choices=("mtgnet", "hoa", "oracle"), default="oracle",
                   help="oracle: measured combinations only (default); hoa needs every pair")
    p.set_defaults(func=cmd_group)


def _digits_demo_parts() -> tuple[Any, Any]:
    from .mtl.suites.digits import DigitsSuite
    from .mtl.trainer import TrainConfig

    # 300 training images: few enough that sharing matters, small enough for ~1 s per run
    return DigitsSuite(n_train=300), TrainConfig(epochs=15, patience=3, batch_size=64, lr=3e-3)


def cmd_demo(args: argparse.Namespace) -> int:
    """``mtgfast demo``: digits study end to end, prints the groups and their gains."""
    from .study.study import Study

    suite, config = _digits_demo_parts()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or str(Path(tmp) / "mtgfast-demo.db")
        print(f"mtgfast demo: {suite.n_tasks} one-vs-rest tasks on scikit-learn's digits, "
              f"metric: validation log loss; store: {args.store or '(temporary)'}")
        with Study(suite, store=store, estimator=args.estimator, config=config,
                   workers=args.workers, progress=not args.quiet) as study:
            study.run(rounds=args.rounds)
            res = study.result(args.budget)
            n_runs = study.store.count_runs(study.name)
    print(res.format())
    print(f"{n_runs} training runs, {time.perf_counter() - start:.1f} s")
    return 0


def _make_suite(name: str, data: str | None) -> Any:
    from .errors import InputError
    from .mtl.suites import get_suite

    if name == "ett":
        if data is None:
            raise InputError("--suite ett needs --data PATH (e.g. ETTh1.csv)")
        return get_suite("ett", path=data)
    if data is not None:
        raise InputError(f"--data is not used by suite {name!r}")
    return get_suite(name)


def cmd_study(args: argparse.Namespace) -> int:
    """``mtgfast study``: run (or resume) a study on a built-in suite and print its grouping."""
    from .mtl.trainer import TrainConfig
    from .study.study import Study

    suite = _make_suite(args.suite, args.data)
    config = TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr,
                         batch_size=args.batch_size, weighting=args.weighting, arch=args.arch,
                         esa_fraction=args.esa)
    start = time.perf_counter()
    with Study(suite, store=args.store, estimator=args.estimator, name=args.name, config=config,
               seeds=tuple(args.seeds), workers=args.workers, progress=not args.quiet) as study:
        before = study.store.count_runs(study.name)
        if before:
            print(f"resuming study {study.name!r}: {before} run(s) already stored")
        study.run(rounds=args.rounds)
        res = study.result(args.budget)
        print(f"study {study.name!r} in {args.store}: {study.n_trained} run(s) trained now, "
              f"{study.store.count_runs(study.name)} stored")
    print(res.format())
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    """``mtgfast group``: best grouping of a stored study from its measured gains."""
    from .study.study import group_stored

    res = group_stored(args.store, args.budget, study=args.study, estimator=args.estimator)
    print(res.format())
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
