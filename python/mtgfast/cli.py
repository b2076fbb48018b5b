"""``mtgfast`` command line: ``replay`` here, ``demo``/``study``/``group`` in ``mtgfast.cli_study``.

Bad input prints one line ``mtgfast: error: ...`` on stderr and exits with status 2 (never a
traceback); unknown or misspelt options are errors (no abbreviations).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sqlite3
import stat
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli_study
from .cli_common import (
    EXIT_INTERNAL,
    EXIT_USAGE,
    Parser,
    UsageError,
    check_known_options,
    check_new_file,
    check_not_input,
    error_line,
    write_output,
    extra_options,
    float_range,
    int_at_least,
    misspelt_options,
    repeated_options,
    require_extra,
    parse_option_value,
    parse_set,
)
from .errors import InputError, MtgfastError, did_you_mean

__all__ = ["build_parser", "main", "mtgnet_option_names", "parse_option_value"]

#: ``replay --seeds``: a larger count is a typo, not a run of days
MAX_REPLAY_SEEDS = 1000
#: the most tasks a gain table has, so the largest budget any ``--budgets`` can mean
MAX_TASKS = 64
#: ``--set n_estimators``: MTG-Net ensembles of more members are a typo (and run out of memory)
MAX_ESTIMATORS = 1000
#: random groupings per seed and budget of the random method (replay()'s default too)
DEFAULT_RANDOM_TRIALS = 100_000
_BUDGET_PART = re.compile(r"[0-9]+(-[0-9]+)?", re.ASCII)

# kept for callers of the former private helper (tests, scripts)
_extra_options = extra_options


def _add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay the MTG-Net evaluation protocol on recorded gain tables",
        description=(
            "For each method and budget B: select at most B groups on the method's gains,\n"
            "serve each task by its best chosen group under those gains, and report the mean\n"
            "test gain over tasks (the validation gain when no --test is given).\n\n"
            "Files: MTG-Net matrices (comma or space separated, row by row with --masks) or\n"
            "tidy CSV/Parquet (columns mask|tasks, task, gain; put in the order of --masks).\n"
            "Options of the mtgnet* methods: --set KEY=VALUE (or --KEY VALUE), checked\n"
            "against MTGNet's parameters and the replay method's keywords.\n"
            "Output: a table in percent on stdout; --json writes fractions (0.05 = 5%)."))
    p.add_argument("--masks", required=True, metavar="PATH",
                   help="0/1 mask file, one row per combination (MTG-Net format)")
    p.add_argument("--valid", required=True, metavar="PATH",
                   help="validation gains: what oracle, HOA and mtgnet* select on")
    p.add_argument("--test", default=None, metavar="PATH",
                   help="test gains, used for scoring (default: score on --valid)")
    p.add_argument("--hoa", default=None, metavar="PATH",
                   help="HOA estimate table (default: HOA from the validation pairs)")
    p.add_argument("--tag", default=None, metavar="PATH", help="TAG estimate table")
    p.add_argument("--tag-scale", type=float_range(-1e12, 1e12), default=None,
                   help="multiply the --tag table (0.01 for ETTm1_TAG_HOA.csv, given in "
                        "percent) (default: 1)")
    p.add_argument("--task-names", default=None, metavar="A,B,...",
                   help="comma-separated task names (default: t0, t1, ...)")
    p.add_argument("--methods", default=None,
                   help="comma-separated: oracle,test-oracle,hoa,tag,random,mtgnet* "
                        "(default: oracle,test-oracle,hoa,[tag if --tag],random)")
    p.add_argument("--budgets", default=None, help="e.g. 1-7 or 1,3,5 (default: 1-N)")
    p.add_argument("--search", choices=("auto", "exact", "beam"), default="auto",
                   help="grouping search")
    p.add_argument("--beam-width", type=int_at_least(1), default=None,
                   help="width of the beam search (--search beam or auto) (default: 5)")
    p.add_argument("--seeds", type=int_at_least(1, high=MAX_REPLAY_SEEDS), default=1,
                   help="average seeded methods (random, mtgnet*) over seeds 0..S-1 "
                        f"(at most {MAX_REPLAY_SEEDS})")
    p.add_argument("--random-trials", type=int_at_least(1), default=None,
                   help="random groupings drawn per seed and budget of the random method "
                        f"(default: {DEFAULT_RANDOM_TRIALS:,})")
    p.add_argument("--uncovered", choices=("singleton", "alone"), default="singleton",
                   help="singleton: every task needs a chosen group (singletons cost budget); "
                        "alone: uncovered tasks train alone at gain 0 for free")
    p.add_argument("--rounds", type=int_at_least(0), default=None,
                   help="active-learning rounds of the mtgnet* methods (default: 1)")
    p.add_argument("--set", dest="set_options", action="append", default=None,
                   metavar="KEY=VALUE",
                   help="option of the mtgnet* methods, e.g. --set n_estimators=3 (repeatable)")
    p.add_argument("--dataset", default=None, help="name in the output (default: from file names)")
    p.add_argument("--json", dest="json_path", default=None, metavar="PATH",
                   help="write the curves as JSON here (fractions, rounded to 6 decimals)")
    p.add_argument("--json-exact", action="store_true",
                   help="write exact floats to --json instead of rounding")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="write a plot of the average gain (%%) vs budget here")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_replay, accepts_extra=True)


def mtgnet_option_names() -> set[str]:
    """Keywords ``--set`` / ``--KEY`` may give the ``mtgnet*`` replay methods: the methods' own
    options (:func:`~mtgfast.study.replay_methods.option_names`) and the plain-valued keywords
    of ``replay_method`` (``--rounds`` and the seeds are the command's own)."""
    from .study.replay_methods import PLAIN_KEYWORDS, option_names

    return set(option_names()) | set(PLAIN_KEYWORDS)


def _check_mtgnet_values(options: dict[str, Any]) -> None:
    """Bad values of MTGNet's parameters fail here, before any replay work (names are checked
    already): the estimator is built once with them and discarded."""
    n_est = options.get("n_estimators")
    if isinstance(n_est, int) and not isinstance(n_est, bool) and n_est > MAX_ESTIMATORS:
        raise UsageError(f"replay: n_estimators must be at most {MAX_ESTIMATORS} (members of "
                         f"each MTG-Net ensemble), got {n_est}")
    from .estimators.mtgnet import MTGNet
    from .study.registry import make_estimator

    params = set(inspect.signature(MTGNet.__init__).parameters) - {"self", "seed"}
    make_estimator("mtgnet", **{k: v for k, v in options.items() if k in params})


def _check_method_names(methods: Sequence[str]) -> None:
    """Every name of ``--methods`` is a built-in method or a registered mtgnet* variant."""
    from .replay import BUILTIN_METHODS
    from .study.replay_methods import REPLAY_METHODS

    known = (*BUILTIN_METHODS, *REPLAY_METHODS)
    for m in methods:
        if m not in known:
            raise UsageError(f"replay: --methods: unknown method {m!r}{did_you_mean(m, known)} "
                             f"(known: {', '.join(known)})")
    if len(set(methods)) != len(methods):
        dup = next(m for m in methods if methods.count(m) > 1)
        raise UsageError(f"replay: --methods names {dup!r} twice")


def _check_budgets_spec(spec: str) -> None:
    """``--budgets`` in ASCII digits (``٢`` is refused, as in every count option) and no budget
    above :data:`MAX_TASKS`: ``1-1000000000000`` fails now, not after filling the memory (the
    range against the table's task count is checked once the table is loaded)."""
    for part in spec.replace(" ", "").split(","):
        if part and not _BUDGET_PART.fullmatch(part):
            raise UsageError(f"--budgets {spec!r}: budgets must look like '1-7' or '1,3,5' "
                             "(ASCII digits)")
        for num in part.split("-") if part else ():
            if int(num) > MAX_TASKS:
                raise UsageError(f"--budgets {spec!r}: budget {int(num)} exceeds the "
                                 f"{MAX_TASKS} tasks a gain table can have")


def _own_flags(parser: argparse.ArgumentParser | None) -> list[str]:
    if parser is None:
        return []
    return [s for a in parser._actions for s in a.option_strings]


def _dataset_name(args: argparse.Namespace) -> str:
    if args.dataset:
        return str(args.dataset)
    stem = Path(args.masks or args.valid).stem
    for suffix in ("_x", "_val_y", "_y_valid", "_valid", "_val"):
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _is_device(path: str) -> bool:
    """``path`` is a character device (``--json /dev/null`` discards the output)."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def _check_replay_outputs(args: argparse.Namespace) -> None:
    """Output paths are checked before the replay runs, not after it finished; so are options
    that could not apply (refused, as ``--json-exact`` without ``--json``, not ignored)."""
    if args.json_exact and args.json_path is None:
        raise UsageError("replay: --json-exact needs --json PATH")
    if args.tag_scale is not None and args.tag is None:
        raise UsageError("replay: --tag-scale needs --tag PATH (it scales that table)")
    if args.beam_width is not None and args.search == "exact":
        raise UsageError("replay: --beam-width applies to --search beam or auto, not exact")
    inputs = {"--masks": args.masks, "--valid": args.valid, "--test": args.test,
              "--hoa": args.hoa, "--tag": args.tag}
    if args.json_path is not None:
        check_new_file(args.json_path, "--json", device_ok=True)
        if not _is_device(args.json_path):
            check_not_input(args.json_path, "--json", inputs)
    if args.plot is not None:
        check_new_file(args.plot, "--plot")
        check_not_input(args.plot, "--plot", {**inputs, "--json": args.json_path})
        require_extra("matplotlib", "plot", "--plot")
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
        except ModuleNotFoundError as exc:
            raise InputError(f"--plot needs matplotlib (pip install matplotlib): {exc}") from exc
        ext = os.path.splitext(args.plot)[1].lstrip(".").lower()
        formats = FigureCanvasAgg.get_supported_filetypes()
        if ext not in formats:
            raise InputError(f"--plot {args.plot!r}: unknown image type {ext or '(none)'!r}; "
                             f"expected one of {', '.join(sorted(formats))}")


def _cmd_replay(args: argparse.Namespace, extra: Sequence[str],
                parser: argparse.ArgumentParser | None = None) -> int:
    from .gains import load_table, read_matrix
    from .replay import JSON_DECIMALS, parse_budgets, replay

    if args.methods is None:
        methods = None
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise UsageError(f"replay: --methods {args.methods!r} names no method")
        _check_method_names(methods)
    plugin = methods is not None and any(m.startswith("mtgnet") for m in methods)
    if extra and not plugin:
        hint = misspelt_options(extra, parser) if parser is not None else ""
        raise UsageError(f"replay: unrecognized arguments: {' '.join(extra)}"
                         f"{' (' + hint + ')' if hint else ''} (options of the mtgnet* methods "
                         "need one in --methods)")
    # options of methods --methods does not run are refused, not ignored (the defaults run
    # random and no mtgnet*)
    if args.rounds is not None and not plugin:
        raise UsageError("replay: --rounds applies to mtgnet* methods, none is in --methods")
    if args.random_trials is not None and methods is not None and "random" not in methods:
        raise UsageError("replay: --random-trials applies to the random method, which is not "
                         "in --methods")
    set_opts = parse_set(args.set_options)
    if set_opts and not plugin:
        raise UsageError("replay: --set applies to mtgnet* methods, none is in --methods")
    extra_opts = extra_options(extra)
    both = set(set_opts) & set(extra_opts)
    if both:
        raise UsageError(f"replay: option {sorted(both)[0]} given both with --set and as --KEY")
    options = {**extra_opts, **set_opts}
    if plugin:
        if "rounds" in options:
            raise UsageError("replay: give the rounds as --rounds, not with --set")
        check_known_options(options, mtgnet_option_names(), "the mtgnet* methods",
                            also=_own_flags(parser))
        _check_mtgnet_values(options)
    if args.budgets is not None:
        _check_budgets_spec(args.budgets)
        try:
            parse_budgets(args.budgets)   # the syntax now; the range once N is known
        except InputError as exc:
            raise UsageError(f"--budgets {args.budgets!r}: {exc}") from None
    _check_replay_outputs(args)
    names = None
    if args.task_names is not None:
        names = [t.strip() for t in args.task_names.split(",")]
        if not all(names):
            raise UsageError(f"replay: --task-names {args.task_names!r} has an empty name")
        if len(set(names)) != len(names):
            dup = next(t for t in names if names.count(t) > 1)
            raise UsageError(f"replay: --task-names {args.task_names!r} names {dup!r} twice")

    def load(flag: str, path: str | None, **kw: Any) -> Any:
        if path is None:
            return None
        try:
            return load_table(path, args.masks, **kw)
        except InputError as exc:   # name the option as well as the file
            raise InputError(f"{flag}: {exc}") from exc

    try:   # the mask file on its own first, so that its errors name --masks, not --valid
        read_matrix(args.masks, name="mask file")
    except InputError as exc:
        raise InputError(f"--masks: {exc}") from exc
    valid = load("--valid", args.valid, task_names=names, split="valid")
    if args.budgets is not None:
        try:
            parse_budgets(args.budgets, valid.n_tasks)
        except InputError as exc:
            raise UsageError(f"--budgets {args.budgets!r}: {exc}") from None
    test = load("--test", args.test, task_names=valid.task_names, split="test")
    hoa = load("--hoa", args.hoa, task_names=valid.task_names)
    tag = load("--tag", args.tag, task_names=valid.task_names,
               scale=1.0 if args.tag_scale is None else args.tag_scale)
    if methods is None:
        methods = ["oracle", "test-oracle", "hoa", *(["tag"] if tag is not None else []), "random"]
    result = replay(valid, test, methods=methods, budgets=args.budgets, hoa=hoa, tag=tag,
                    search=args.search, beam_width=5 if args.beam_width is None
                    else args.beam_width, seeds=args.seeds,
                    random_trials=DEFAULT_RANDOM_TRIALS if args.random_trials is None
                    else args.random_trials, uncovered=args.uncovered,
                    dataset=_dataset_name(args),
                    options={"rounds": 1 if args.rounds is None else args.rounds, **options},
                    progress=not args.quiet)
    print(result.format_table())
    if args.json_path is not None:
        write_output(args.json_path, "--json", lambda path: result.to_json(
            path, None if args.json_exact else JSON_DECIMALS))
    if args.plot is not None:
        from .plots import plot_replay

        write_output(args.plot, "--plot", lambda path: plot_replay(result, path))
    return 0


def _cmd_selftest(args: argparse.Namespace) -> int:
    from . import selftest

    return selftest.main(["--quiet"] if args.quiet else [])


def build_parser() -> argparse.ArgumentParser:
    """The ``mtgfast`` argument parser with every subcommand."""
    from . import __version__

    parser = Parser(prog="mtgfast", description="Which tasks should be trained together?")
    parser.add_argument("--version", action="version", version=f"mtgfast {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add_replay(sub)
    cli_study.add_commands(sub)
    p = sub.add_parser("selftest", help="check the installed core against plain references",
                       description="The compiled core against plain Python references (what "
                       "'python -m mtgfast.selftest' runs; about 1 s): one line per check, exit "
                       "status 1 if any failed.")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_selftest)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``mtgfast = "mtgfast.cli:main"``); returns the exit status."""
    try:
        parser = build_parser()
        argl = list(argv) if argv is not None else sys.argv[1:]
        try:
            args, extra = parser.parse_known_args(argl)
        except SystemExit as exc:  # --help / --version printed their text
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        except UsageError as exc:
            # "--mask is required" reads better as "--mask: did you mean --masks?"
            sub = next((_subparser(parser, a) for a in argl if _subparser(parser, a)), None)
            hint = misspelt_options(argl, sub) if sub is not None else ""
            if hint:
                raise UsageError(f"{exc} -- unrecognized option(s): {hint}") from None
            raise
        func = getattr(args, "func", None)
        if func is None and extra:  # `mtgfast --bogus`: one line, not the whole help
            hint = misspelt_options(extra, parser)
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}"
                             f"{' (' + hint + ')' if hint else ''}; expected a command: "
                             f"replay, demo, study, group or selftest (see 'mtgfast --help')")
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        repeated = repeated_options(argl, _subparser(parser, args.command) or parser)
        if repeated:
            raise UsageError(f"{args.command}: option {repeated} given more than once (each "
                             f"takes one value; see 'mtgfast {args.command} --help')")
        if getattr(args, "accepts_extra", False):
            return int(func(args, extra, _subparser(parser, args.command)) or 0)
        if extra:
            hint = misspelt_options(extra, _subparser(parser, args.command) or parser)
            raise UsageError(f"{args.command}: unrecognized arguments: {' '.join(extra)}"
                             f"{' (' + hint + ')' if hint else ''} (see "
                             f"'mtgfast {args.command} --help')")
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print("mtgfast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mtgfast replay ... | head`: the reader left, nothing to report
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (interpreter exit flushes it)
        except OSError:
            pass
        return 141
    except (MtgfastError, ValueError, TypeError, OSError, sqlite3.Error) as exc:
        print(f"mtgfast: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("MTGFAST_DEBUG"):
            traceback.print_exc()
        print(f"mtgfast: internal error: {type(exc).__name__}: {error_line(exc)} (set "
              "MTGFAST_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
