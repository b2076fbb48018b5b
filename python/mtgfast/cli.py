"""``mtgfast`` command line: ``mtgfast replay ...`` here; ``demo``/``study``/``group`` come from
``mtgfast.cli_study`` when that module is installed.

Bad input prints one line ``mtgfast: error: ...`` and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError, MtgfastError

__all__ = ["build_parser", "main"]

_EXIT_USAGE = 2


def _add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay", allow_abbrev=False,
        help="replay the MTG-Net evaluation protocol on recorded gain tables",
        description="For each method and budget B: select at most B groups on the method's gains, "
                    "serve each task by its best chosen group under those gains, report the mean "
                    "test gain over tasks. Files: MTG-Net matrices (need --masks; comma or space "
                    "separated) or tidy CSV/Parquet (columns mask|tasks, task, gain). Options not "
                    "listed here (e.g. --selection active) are passed to mtgnet* methods.")
    p.add_argument("--masks", help="0/1 mask file, one row per combination (MTG-Net format)")
    p.add_argument("--valid", required=True, help="validation gains (selection)")
    p.add_argument("--test", help="test gains (scoring); defaults to --valid")
    p.add_argument("--hoa", help="HOA estimate table (default: HOA from the validation pairs)")
    p.add_argument("--tag", help="TAG estimate table")
    p.add_argument("--tag-scale", type=float, default=1.0,
                   help="multiply the TAG table (0.01 for ETTm1_TAG_HOA.csv, given in percent)")
    p.add_argument("--task-names", help="comma-separated task names (default t0, t1, ...)")
    p.add_argument("--methods", default=None,
                   help="comma-separated: oracle,test-oracle,hoa,tag,random,mtgnet* "
                        "(default: oracle,test-oracle,hoa,[tag if --tag],random)")
    p.add_argument("--budgets", default=None, help="e.g. 1-7 or 1,3,5 (default 1-N)")
    p.add_argument("--search", choices=("auto", "exact", "beam"), default="auto")
    p.add_argument("--beam-width", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1,
                   help="average seeded methods (random, mtgnet*) over seeds 0..S-1")
    p.add_argument("--random-trials", type=int, default=100_000,
                   help="random groupings drawn per seed and budget")
    p.add_argument("--uncovered", choices=("singleton", "alone"), default="singleton",
                   help="singleton: every task needs a chosen group (singletons cost budget); "
                        "alone: uncovered tasks train alone at gain 0 for free")
    p.add_argument("--rounds", type=int, default=1, help="passed to mtgnet* methods")
    p.add_argument("--dataset", default=None, help="name in the output (default: from file names)")
    p.add_argument("--json", dest="json_path", help="write the curves as JSON here")
    p.add_argument("--plot", help="write a PNG plot of test gain vs budget here")
    p.set_defaults(func=_cmd_replay, accepts_extra=True)


def parse_option_value(value: str) -> Any:
    """A command-line option value: an int, a float, ``true``/``false`` (any case) as a bool, or
    else the string itself (so ``--use-measured false`` is False, not the truthy "false")."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def _extra_options(extra: Sequence[str]) -> dict[str, Any]:
    """``--key value``, ``--key=value`` and bare ``--flag`` (True) -> keyword options."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise InputError(f"unexpected argument {tok!r}")
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out[key] = parse_option_value(val)
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out[key] = parse_option_value(extra[i + 1])
            i += 1
        else:
            out[key] = True
        i += 1
    return out


def _dataset_name(args: argparse.Namespace) -> str:
    if args.dataset:
        return str(args.dataset)
    stem = Path(args.masks or args.valid).stem
    for suffix in ("_x", "_val_y", "_y_valid", "_valid", "_val"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _cmd_replay(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .gains import load_table
    from .replay import replay

    names = [t.strip() for t in args.task_names.split(",")] if args.task_names else None
    valid = load_table(args.valid, args.masks, task_names=names, split="valid")
    test = load_table(args.test, args.masks, task_names=valid.task_names,
                      split="test") if args.test else None
    hoa = load_table(args.hoa, args.masks, task_names=valid.task_names) if args.hoa else None
    tag = load_table(args.tag, args.masks, task_names=valid.task_names,
                     scale=args.tag_scale) if args.tag else None
    if args.methods is None:
        methods = ["oracle", "test-oracle", "hoa", *(["tag"] if tag is not None else []), "random"]
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = {"rounds": args.rounds, **_extra_options(extra)}
    result = replay(valid, test, methods=methods, budgets=args.budgets, hoa=hoa, tag=tag,
                    search=args.search, beam_width=args.beam_width, seeds=args.seeds,
                    random_trials=args.random_trials, uncovered=args.uncovered,
                    dataset=_dataset_name(args), options=options)
    print(result.format_table())
    if args.json_path:
        result.to_json(args.json_path)
    if args.plot:
        from .plots import plot_replay

        plot_replay(result, args.plot)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mtgfast`` argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="mtgfast",
                                     description="Which tasks should be trained together?")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"mtgfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_replay(sub)
    try:
        cli_study = importlib.import_module("mtgfast.cli_study")
    except ModuleNotFoundError as exc:
        if exc.name != "mtgfast.cli_study":
            raise
    else:
        cli_study.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``mtgfast = "mtgfast.cli:main"``); returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse already printed usage / help
        return int(exc.code) if isinstance(exc.code, int) else _EXIT_USAGE
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return _EXIT_USAGE
    if extra and not getattr(args, "accepts_extra", False):
        print(f"mtgfast: error: unrecognized arguments: {' '.join(extra)}", file=sys.stderr)
        return _EXIT_USAGE
    try:
        if getattr(args, "accepts_extra", False):
            return int(func(args, extra) or 0)
        return int(func(args) or 0)
    except (MtgfastError, ValueError, OSError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"mtgfast: error: {msg}", file=sys.stderr)
        return _EXIT_USAGE
    except KeyboardInterrupt:
        print("mtgfast: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
