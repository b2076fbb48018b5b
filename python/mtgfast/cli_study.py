"""Study commands of the ``mtgfast`` CLI: ``demo``, ``study`` and ``group`` (``add_commands``).

``mtgfast demo`` runs a whole study on scikit-learn's digits in a minute or two on a laptop CPU;
``mtgfast study`` runs one on a built-in suite; ``mtgfast group`` groups the tasks of a stored study
without training anything. Every option is checked before any training starts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_common import (
    UsageError,
    check_new_file,
    check_new_folder,
    check_readable_file,
    require_extra,
    float_range,
    int_at_least,
    write_output,
)
from .errors import InputError, MtgfastError, StoreError
from .study.registry import estimator_names, estimator_spec

__all__ = ["ARCH_NAMES", "DEMO_TASKS", "EXECUTORS", "SUITE_TASKS", "WEIGHTING_NAMES",
           "add_commands", "cmd_demo", "cmd_group", "cmd_study", "make_cli_executor",
           "write_plots"]

_ESTIMATORS = estimator_names()   # the registry's (import-light: no torch)
#: ``--executor`` kinds: this process, local worker processes, a Ray cluster
EXECUTORS = ("inprocess", "local", "ray")
_SUITE_NAMES = "digits, ett, synthetic or multidigits"
#: what the CLI checks before torch loads (seconds): the built-in suites with their task counts
#: (as built by ``study``), the loss weightings and the architectures; a test keeps these in step
#: with ``mtl.suites.SUITES``, ``mtl.weighting.WEIGHTINGS`` and ``mtl.architectures``
SUITE_TASKS = {"digits": 10, "ett": 7, "synthetic": 6, "multidigits": 2}
WEIGHTING_NAMES = ("equal", "uncertainty", "dwa")
ARCH_NAMES = ("hard", "mtan", "adashare")
#: the digits demo's task count (``DigitsSuite``)
DEMO_TASKS = SUITE_TASKS["digits"]


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int_at_least(1), default=1,
                   help="training runs in parallel")
    p.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="where runs train (default: local processes when --workers > 1, "
                        "else inprocess)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address for --executor ray (default: none, i.e. Ray's "
                        "auto-detection or a local instance)")
    p.add_argument("--gpus-per-run", type=float_range(0.0), default=0.0,
                   help="GPUs reserved per training run (--executor ray)")
    p.add_argument("--max-retries", type=int_at_least(0), default=2,
                   help="retries of a failed or lost run")


def _add_output_options(p: argparse.ArgumentParser, func: Callable[..., Any]) -> None:
    """``--plot DIR`` and ``--quiet`` of the training commands (demo, study), run by ``func``."""
    p.add_argument("--plot", default=None, metavar="DIR",
                   help="write pictures of the result into this folder (created if missing): "
                        "grouping.png (task x group matrix coloured by serving gain), "
                        "estimated_vs_measured.png, embeddings.png (MTG-Net's task embeddings)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=func)


def _check_plot_dir(path: str | None) -> None:
    if path is not None:
        check_new_folder(path, "--plot")
        require_extra("matplotlib", "plot", "--plot")
        if os.path.isdir(path):
            check_new_file(os.path.join(path, "grouping.png"), "--plot")


def write_plots(study: Any, res: Any, folder: str) -> list[str]:
    """The pictures of a finished study's result, as PNG files in ``folder``; their paths."""
    from .gains import GainTable
    from .plots import plot_embeddings, plot_estimated_vs_measured, plot_grouping

    os.makedirs(folder, exist_ok=True)
    masks, gains = study.predict()
    names = tuple(study.task_names)
    estimated = GainTable(masks, gains, names, {"source": "estimate"})
    out = [os.path.join(folder, "grouping.png")]
    plot_grouping(res.grouping, estimated, out[0], title="chosen grouping (estimated gains)")
    measured = study.gain_table()
    multi = measured.masks[(measured.masks & (measured.masks - 1)) != 0]
    if multi.size:
        est = study.estimator_.predict(multi)
        out.append(os.path.join(folder, "estimated_vs_measured.png"))
        plot_estimated_vs_measured(GainTable(multi, est, names), measured.reindex(multi), out[-1])
    if hasattr(study.estimator_, "embeddings"):
        out.append(os.path.join(folder, "embeddings.png"))
        plot_embeddings(study.estimator_, out[-1])
    return out


def _plots(study: Any, res: Any, folder: str | None) -> list[str]:
    if folder is None:
        return []
    out: list[str] = []
    write_output(folder, "--plot", lambda path: out.extend(write_plots(study, res, path)),
                 folder=True)
    return out


def _print_result(res: Any, pictures: list[str], last: str) -> int:
    """The grouping and its confidence, the pictures written, then ``last`` (time, runs)."""
    print(res.format())
    for path in pictures:
        print(f"wrote {path}")
    print(last)
    return 0


def add_commands(subparsers: Any) -> None:
    """Register ``demo``, ``study`` and ``group`` on the CLI's subparsers."""
    p = subparsers.add_parser("demo", help="a complete study on scikit-learn's digits (1-2 min)",
                              description="Train one-vs-rest digit tasks in a few combinations, "
                              "fit MTG-Net, and print which tasks to train together.")
    p.add_argument("--store", default=None,
                   help="gain store file (default: a temporary one, deleted afterwards)")
    p.add_argument("--budget", type=int_at_least(1), default=3,
                   help="number of groups, 1 to 10 (the digits tasks)")
    p.add_argument("--rounds", type=int_at_least(0), default=2, help="active-learning rounds")
    p.add_argument("--estimator", choices=_ESTIMATORS, default="mtgnet",
                   help="gain estimator of the study")
    _add_executor_options(p)
    _add_output_options(p, cmd_demo)

    p = subparsers.add_parser("study", help="run a grouping study on a built-in task suite",
                              description="Collect STL baselines, run the active loop with MTL "
                              "runs, record every run in the gain store, print the grouping.")
    p.add_argument("--suite", required=True, help=f"task suite: {_SUITE_NAMES}")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="data file of the suite (ett: the CSV; others take none)")
    p.add_argument("--rounds", type=int_at_least(0), default=5, help="active-learning rounds")
    p.add_argument("--budget", type=int_at_least(1), required=True,
                   help="number of groups (1 to the number of tasks)")
    p.add_argument("--store", default="mtgfast.db",
                   help="gain store file (created if missing; a study resumes from it)")
    p.add_argument("--name", default=None, help="study name (default: from suite and config)")
    p.add_argument("--estimator", choices=_ESTIMATORS, default="mtgnet",
                   help="gain estimator of the study")
    p.add_argument("--weighting", default="equal", help="loss weighting: equal, uncertainty, dwa")
    p.add_argument("--arch", default="hard", help="architecture: hard, mtan, adashare")
    _add_executor_options(p)
    p.add_argument("--seeds", type=int_at_least(0), nargs="+", default=[0],
                   help="training seeds; each combination is trained once per seed")
    p.add_argument("--epochs", type=int_at_least(1), default=30, help="epochs per training run")
    p.add_argument("--patience", type=int_at_least(1), default=5,
                   help="early-stopping patience in epochs")
    p.add_argument("--lr", type=float_range(0.0, low_inclusive=False), default=1e-3,
                   help="learning rate")
    p.add_argument("--batch-size", type=int_at_least(1), default=128, help="batch size")
    p.add_argument("--esa", type=float_range(0.0, 1.0, low_inclusive=False), default=1.0,
                   metavar="FRACTION",
                   help="early-stopping approximation: train only this fraction of the epochs")
    _add_output_options(p, cmd_study)

    p = subparsers.add_parser("group", help="group the tasks of a stored study (no training)",
                              description="Best grouping of a stored study from its measured "
                              "gains; the store is only read, never created.")
    p.add_argument("--store", required=True, help="an existing gain store file")
    p.add_argument("--study", default=None, help="study name (default: the only one stored)")
    p.add_argument("--budget", type=int_at_least(1), required=True, help="number of groups")
    p.add_argument("--estimator", choices=estimator_names(fits_table=True), default="oracle",
                   help="oracle: measured combinations only; hoa needs every pair")
    p.set_defaults(func=cmd_group)


def make_cli_executor(kind: str | None, *, workers: int, address: str | None,
                      gpus_per_run: float, max_retries: int) -> Any:
    """The executor of ``--executor`` (``None``: local processes when ``workers > 1``, else in
    this process), from ``mtgfast.study.executors.make_executor``; Ray is imported only for
    ``ray``. Options that do not apply to the kind are errors."""
    kind = kind if kind is not None else ("local" if workers > 1 else "inprocess")
    if kind not in EXECUTORS:
        raise InputError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if kind == "inprocess" and workers > 1:
        raise UsageError(f"--workers {workers} needs --executor local or ray (inprocess runs "
                         "one at a time)")
    if kind != "ray" and address is not None:
        raise UsageError(f"--address applies to --executor ray, not {kind}")
    if kind != "ray" and gpus_per_run > 0:
        raise UsageError(f"--gpus-per-run applies to --executor ray, not {kind}")
    from .study import executors

    return executors.make_executor(kind, workers=workers, address=address,
                                   gpus_per_run=gpus_per_run, max_retries=max_retries)


def _check_executor_extra(args: argparse.Namespace) -> None:
    """``--executor ray`` without Ray: one line naming the extra before torch and the data load."""
    if args.executor == "ray":
        require_extra("ray", "ray", "--executor ray")


def _executor(args: argparse.Namespace) -> Any:
    return make_cli_executor(args.executor, workers=args.workers, address=args.address,
                             gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)


def _check_budget(budget: int, n_tasks: int, what: str) -> None:
    if budget > n_tasks:
        raise InputError(f"--budget {budget} exceeds the {n_tasks} tasks of {what} (B = N "
                         "already trains every task alone)")


def _check_rounds(rounds: int, n_tasks: int, estimator: str, what: str) -> None:
    """The active loop chooses N combinations a round among those not yet measured: more
    rounds than there are combinations is a typo (``--rounds 1000``), not hours of training."""
    left = 2 ** n_tasks - n_tasks - 2   # neither a singleton nor the full set
    active = estimator_spec(estimator).collect == "active"
    if active and rounds * n_tasks > max(left, 0) + n_tasks - 1:
        most = -(-left // n_tasks) if left > 0 else 0
        raise InputError(f"--rounds {rounds} asks for {rounds * n_tasks:,} choices, but {what} "
                         f"has only {left:,} combinations to choose from (at most {most} "
                         "rounds; --estimator oracle measures every one)")


def _digits_demo_parts() -> tuple[Any, Any]:
    from .mtl.suites.digits import DigitsSuite
    from .mtl.trainer import TrainConfig

    # 300 training images: few enough that sharing matters, small enough for ~1 s per run
    return DigitsSuite(n_train=300), TrainConfig(epochs=15, patience=3, batch_size=64, lr=3e-3)


def cmd_demo(args: argparse.Namespace) -> int:
    """``mtgfast demo``: digits study end to end, prints the groups and their gains."""
    from .study.study import Study

    if args.store is not None:
        check_new_file(args.store, "--store")
    _check_plot_dir(args.plot)
    _check_executor_extra(args)
    _check_budget(args.budget, DEMO_TASKS, "the digits demo")   # before torch loads
    _check_rounds(args.rounds, DEMO_TASKS, args.estimator, "the digits demo")
    suite, config = _digits_demo_parts()
    _check_budget(args.budget, suite.n_tasks, "the digits demo")
    _check_rounds(args.rounds, suite.n_tasks, args.estimator, "the digits demo")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, _executor(args) as executor:
        store = args.store or str(Path(tmp) / "mtgfast-demo.db")
        # the executor carries --workers (Study refuses workers= beside executor=)
        with Study(suite, store=store, estimator=args.estimator, config=config,
                   executor=executor, progress=not args.quiet) as study:
            # after the store opened: a bad --store is one error line, not a banner and a line
            print(f"mtgfast demo: {suite.n_tasks} one-vs-rest tasks on scikit-learn's digits, "
                  f"metric: validation log loss; store: {args.store or '(temporary)'}",
                  flush=True)
            study.run(rounds=args.rounds)
            res = study.result(args.budget)
            n_runs = study.store.count_runs(study.name)
            pictures = _plots(study, res, args.plot)
    return _print_result(res, pictures, f"{n_runs} training runs, "
                                        f"{time.perf_counter() - start:.1f} s")


def _make_suite(name: str, data: str | None) -> Any:
    from .mtl.suites import SUITES, get_suite

    if name not in SUITES:
        raise InputError(f"--suite {name!r} is not a built-in suite; known: {', '.join(SUITES)}")
    if name == "ett":
        if data is None:
            raise InputError("--suite ett needs --data PATH (e.g. ETTh1.csv)")
        from .gains import read_text

        check_readable_file(data, "--data")
        read_text(data, "--data file")   # binary / non-UTF-8 named here, not deep in pandas
        suite = get_suite("ett", path=data)
        _check_suite_data(suite, data)
        return suite
    if data is not None:
        raise InputError(f"--data is not used by suite {name!r}")
    return get_suite(name)


def _check_suite_data(suite: Any, data: str) -> None:
    """Build the suite's splits now, so that a file that is no series fails with one line naming
    it before any training run (not after every run failed its retries)."""
    import torch

    try:
        splits = suite.splits()
    except MtgfastError as exc:
        raise InputError(f"--data {data!r}: {exc}") from None
    except Exception as exc:  # pandas' parser errors, a column of text...
        raise InputError(f"--data {data!r}: not a series this suite can read "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    for name in ("X_train", "X_valid", "X_test"):
        x = getattr(splits, name)
        if isinstance(x, torch.Tensor) and not bool(torch.isfinite(x).all()):
            raise InputError(f"--data {data!r}: the series holds missing or non-finite values "
                             f"(they reach the {name[2:]} split); fill or drop them first")


def _check_training_names(weighting: str, arch: str) -> None:
    from .mtl.architectures import ARCHITECTURES
    from .mtl.weighting import WEIGHTINGS

    if weighting not in WEIGHTINGS:
        raise InputError(f"--weighting {weighting!r} is unknown; known: {', '.join(WEIGHTINGS)}")
    if arch not in ARCHITECTURES:
        raise InputError(f"--arch {arch!r} is unknown; known: {', '.join(ARCHITECTURES)}")


def _check_study_static(args: argparse.Namespace) -> None:
    """The checks of ``study`` that need no torch, against :data:`SUITE_TASKS`,
    :data:`WEIGHTING_NAMES` and :data:`ARCH_NAMES`: a misspelt name, a missing ``--data`` file
    or a budget above the suite's task count fails at once, not after torch loaded."""
    if args.weighting not in WEIGHTING_NAMES:
        raise InputError(f"--weighting {args.weighting!r} is unknown; known: "
                         f"{', '.join(WEIGHTING_NAMES)}")
    if args.arch not in ARCH_NAMES:
        raise InputError(f"--arch {args.arch!r} is unknown; known: {', '.join(ARCH_NAMES)}")
    if args.suite not in SUITE_TASKS:
        raise InputError(f"--suite {args.suite!r} is not a built-in suite; known: "
                         f"{', '.join(SUITE_TASKS)}")
    if args.suite == "ett":
        if args.data is None:
            raise InputError("--suite ett needs --data PATH (e.g. ETTh1.csv)")
        check_readable_file(args.data, "--data")
    elif args.data is not None:
        raise InputError(f"--data is not used by suite {args.suite!r}")
    n_tasks = SUITE_TASKS[args.suite]
    _check_budget(args.budget, n_tasks, f"suite {args.suite!r}")
    _check_rounds(args.rounds, n_tasks, args.estimator, f"suite {args.suite!r}")


def cmd_study(args: argparse.Namespace) -> int:
    """``mtgfast study``: run (or resume) a study on a built-in suite and print its grouping."""
    if len(set(args.seeds)) != len(args.seeds):
        raise InputError(f"--seeds must be distinct, got {args.seeds}")
    if args.name is not None and not args.name.strip():
        raise InputError(f"--name must be a study name, got {args.name!r}")
    check_new_file(args.store, "--store")
    _check_plot_dir(args.plot)
    _check_executor_extra(args)
    _check_study_static(args)   # these before torch loads (seconds)
    from .mtl.trainer import TrainConfig
    from .study.study import Study

    _check_training_names(args.weighting, args.arch)
    suite = _make_suite(args.suite, args.data)
    _check_budget(args.budget, suite.n_tasks, f"suite {args.suite!r}")
    _check_rounds(args.rounds, suite.n_tasks, args.estimator, f"suite {args.suite!r}")
    config = TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr,
                         batch_size=args.batch_size, weighting=args.weighting, arch=args.arch,
                         esa_fraction=args.esa)
    start = time.perf_counter()
    with _executor(args) as executor, \
            Study(suite, store=args.store, estimator=args.estimator, name=args.name,
                  config=config, seeds=tuple(args.seeds), executor=executor,
                  progress=not args.quiet) as study:
        before = study.store.count_runs(study.name)
        if before:
            print(f"resuming study {study.name!r}: {before} run(s) already stored", flush=True)
        study.run(rounds=args.rounds)
        res = study.result(args.budget)
        print(f"study {study.name!r} in {args.store}: {study.n_trained} run(s) trained now, "
              f"{study.store.count_runs(study.name)} stored")
        pictures = _plots(study, res, args.plot)
    return _print_result(res, pictures, f"{time.perf_counter() - start:.1f} s")


def _check_has_multi_task_run(path: str, study: str) -> None:
    """A study with no finished run of two or more tasks (killed before its first MTL run
    ended, or only its STL baselines done) has nothing to group on: say so, naming the study."""
    from .store import GainStore

    with GainStore(path, readonly=True) as store:
        masks = store.gain_table(study, "valid").masks
    if not (masks & (masks - 1)).any():
        raise InputError(f"study {study!r} in --store {path!r} has no finished multi-task run "
                         "yet: nothing to group on (resume it with 'mtgfast study ... --store "
                         f"{path}')")


def cmd_group(args: argparse.Namespace) -> int:
    """``mtgfast group``: best grouping of a stored study from its measured gains."""
    from .study.study import group_stored

    check_readable_file(args.store, "--store")   # never create a store here (nor read a FIFO)
    if os.path.getsize(args.store) == 0:
        raise InputError(f"--store {args.store!r} is an empty file, not a gain store")
    study = args.study
    from .store import GainStore

    names: list[str | None]
    try:   # the choice in the command's words (group_stored's says "study=")
        with GainStore(args.store, readonly=True) as store:
            names = list(store.studies())
    except StoreError as exc:   # a version-1 store: group_stored migrates it, then picks
        if "old schema" not in str(exc):
            raise
        names = [None] if study is None else [study]
    if study is not None and study not in names:
        raise InputError(f"--study: no study {study!r} in --store {args.store!r} (it holds "
                         f"{names!r})")
    if study is None:
        if len(names) != 1:
            raise InputError(f"--store {args.store!r} holds {len(names)} studies "
                             f"{', '.join(map(repr, names)) or '(none)'}: name one with --study")
        study = names[0]
    if study is not None:
        _check_has_multi_task_run(args.store, study)
    res = group_stored(args.store, args.budget, study=study, estimator=args.estimator)
    print(res.format())
    return 0
