"""Every subcommand, every option, a wrong value: status 2, one stderr line naming the option.

The options are read off the parser (``mtgfast --help``'s commands), so a new command or option
is covered as soon as it exists: a command needs a valid command line in ``VALID`` and an option
that takes free text needs a wrong value in ``WRONG_TEXT`` (the test says which is missing).
Training and replay work are replaced by a sentinel that fails the test: each error must come
before any of it. Root ignores folder permissions, so "read-only folder" uses ``/proc``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from mtgfast.cli import build_parser, main

MISSING = "/no-such-folder-mtgfast/x"


class WorkStarted(AssertionError):
    """Raised by the sentinels: training or replay work began despite a wrong argument."""


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the CLI has no subcommands")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 3-task table (masks + gains) and a store holding one finished study."""
    from mtgfast import GainStore

    d = tmp_path_factory.mktemp("cli_wrong")
    (d / "m.csv").write_text("1 0 0\n0 1 0\n0 0 1\n1 1 0\n1 0 1\n0 1 1\n1 1 1\n")
    (d / "g.csv").write_text("0 0 0\n0 0 0\n0 0 0\n0.1 0.2 0\n0.1 0 -0.1\n0 0.3 0.1\n"
                             "0.2 0.1 0.05\n")
    store = d / "s.db"
    with GainStore(str(store)) as s:
        s.create_study("s", ["a", "b", "c"])
        for m in range(1, 8):
            s.record_run("s", m, 0, metrics_valid={t: 1.0 - 0.01 * m for t, bit in
                                                   zip("abc", (1, 2, 4)) if m & bit})
    return {"dir": str(d), "masks": str(d / "m.csv"), "gains": str(d / "g.csv"),
            "store": str(store)}


def VALID(cmd: str, f: dict[str, str]) -> list[str]:
    """A command line of ``cmd`` that is right (a wrong option is added to it)."""
    new_store = str(Path(f["dir"]) / "new.db")
    return {
        "replay": ["replay", "--masks", f["masks"], "--valid", f["gains"], "--methods", "oracle",
                   "--quiet"],
        "demo": ["demo", "--quiet", "--store", new_store],
        "study": ["study", "--suite", "digits", "--budget", "2", "--store", new_store, "--quiet"],
        "group": ["group", "--store", f["store"], "--budget", "2"],
        "selftest": ["selftest", "--quiet"],
    }[cmd]


#: Wrong values of options that take free text (by option string).
WRONG_TEXT: dict[str, list[str]] = {
    "--masks": [MISSING, "@dir"],
    "--valid": [MISSING, "@dir"],
    "--test": [MISSING, "@dir"],
    "--hoa": [MISSING],
    "--tag": [MISSING],
    "--task-names": [",", "a,a,b"],
    "--methods": ["bogus", ",", "mtgnet-bogus", "oracle,oracle"],
    "--budgets": ["0", "9", "x-y", "3-1"],
    "--set": ["dimm=3", "=1", "dim=-1"],
    "--dataset": [],                      # any text is a name
    "--json": [MISSING, "@dir", "/proc/mtgfast.json"],
    "--plot": [MISSING, "/proc/mtgfast.png"],
    "--store": [MISSING, "@dir", "", "/proc/mtgfast.db"],
    "--data": [MISSING],
    "--suite": ["bogus"],
    "--name": ["", "   "],
    "--weighting": ["bogus"],
    "--arch": ["bogus"],
    "--address": ["auto"],                # without --executor ray
    "--study": ["no-such-study"],
}

#: Wrong values by the option's parsed type.
WRONG_INT = ["x", "-3", "1.5", "1e3", "٣", "1_0"]
WRONG_FLOAT = ["x", "nan", "inf", "-1"]


def _wrong_values(action: argparse.Action) -> list[str]:
    flag = max(action.option_strings, key=len)
    if action.choices is not None:
        return ["no-such-choice"]
    if action.type is not None and callable(action.type):
        try:
            sample = action.type("1")
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            sample = None
        if isinstance(sample, int):
            return WRONG_INT
        if isinstance(sample, float):
            return [v for v in WRONG_FLOAT if not _accepts(action, v)]
    if flag not in WRONG_TEXT:
        raise AssertionError(f"option {flag} takes free text: add its wrong values to WRONG_TEXT")
    return WRONG_TEXT[flag]


def _accepts(action: argparse.Action, text: str) -> bool:
    try:
        action.type(text)  # type: ignore[misc]
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return True


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for cmd, sub in _subcommands().items():
        for action in sub._actions:
            if not action.option_strings or action.nargs == 0 or "--help" in action.option_strings:
                continue
            flag = max(action.option_strings, key=len)
            out.extend((cmd, flag, v) for v in _wrong_values(action))
    return out


CASES = _cases()


def test_every_subcommand_has_a_valid_line(files: dict[str, str]) -> None:
    for cmd in _subcommands():
        VALID(cmd, files)   # KeyError: a new command needs its line above


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training (the STL baselines come first in every study) and replay work raise."""
    import mtgfast.replay
    import mtgfast.study.study

    def boom(*a: Any, **k: Any) -> Any:
        raise WorkStarted("work started despite a wrong argument")

    monkeypatch.setattr(mtgfast.study.study.Study, "collect_stl", boom)
    monkeypatch.setattr(mtgfast.study.study.Study, "measure", boom)
    monkeypatch.setattr(mtgfast.replay, "_run_methods", boom)


@pytest.mark.parametrize("cmd,flag,value", CASES, ids=[f"{c} {f} {v!r}" for c, f, v in CASES])
def test_wrong_value_is_one_line_status_2(files: dict[str, str], no_work: None,
                                          capsys: pytest.CaptureFixture[str], cmd: str,
                                          flag: str, value: str) -> None:
    value = files["dir"] if value == "@dir" else value
    argv = VALID(cmd, files)
    if flag == "--set":   # --set applies to the mtgnet* methods
        argv[argv.index("--methods") + 1] = "oracle,mtgnet"
    if flag in argv:   # replace the valid value of that option
        i = argv.index(flag)
        argv = argv[:i] + argv[i + 2:]
    rc = main(argv + [flag, value])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("mtgfast: error: "), err
    assert "Traceback" not in err
    key = value.split("=")[0] if flag == "--set" and "=" in value and value[0] != "=" else flag
    assert key in lines[0], (key, lines[0])   # names the option (or --set's key)
    store = Path(files["dir"]) / "new.db"
    assert not store.exists() or store.stat().st_size == 0 or _no_runs(store)


def _no_runs(path: Path) -> bool:
    from mtgfast import GainStore

    with GainStore(str(path), readonly=True) as s:
        return all(s.count_runs(name) == 0 for name in s.studies())


def test_valid_lines_pass_the_checks(files: dict[str, str], no_work: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The valid lines reach the work (the sentinel), so the wrong values above are what fail."""
    for cmd in _subcommands():
        if cmd in ("group", "selftest"):
            assert main(VALID(cmd, files)) == 0, capsys.readouterr().err
            continue
        rc = main(VALID(cmd, files))
        err = capsys.readouterr().err
        assert rc == 1 and "WorkStarted" in err, (cmd, rc, err)


@pytest.mark.parametrize("argv,words", [
    (["demo", "--rounds", "103"], ("--rounds 103", "1,012 combinations", "at most 102")),
    (["demo", "--rounds", "99999999999999"], ("--rounds", "at most 102")),
    (["study", "--suite", "digits", "--budget", "2", "--rounds", "500"], ("--rounds 500",)),
    (["demo", "--budget", "11"], ("--budget 11", "10 tasks")),
    (["group", "--budget", "4"], ("budget", "3")),
])
def test_out_of_range_counts(files: dict[str, str], no_work: None,
                             capsys: pytest.CaptureFixture[str], argv: list[str],
                             words: tuple[str, ...]) -> None:
    """Ranges that need the suite or the store: still one line, before any run (used to train:
    ``demo --rounds 99999999999999`` ran until every combination was measured)."""
    if argv[0] == "group":
        argv = argv + ["--store", files["store"]]
    elif "--store" not in argv:
        argv = argv + ["--store", str(Path(files["dir"]) / "new.db")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, (w, err)


def test_rounds_at_the_limit_is_accepted(files: dict[str, str], no_work: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """101 rounds of 10 choose 1,010 of the 1,012; 102 may reach the last two: both allowed."""
    for r in ("101", "102"):
        rc = main(VALID("demo", files) + ["--rounds", r])
        assert rc == 1 and "WorkStarted" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["mtgnet-repshrunk", "mtgnet-repsample"])
def test_replay_refuses_the_replicate_methods_it_cannot_feed(
        files: dict[str, str], no_work: None, capsys: pytest.CaptureFixture[str],
        method: str) -> None:
    """The replicate-noise methods need variances the command line cannot read: one line naming
    the method and where they can be had, before any work."""
    argv = VALID("replay", files)
    argv[argv.index("--methods") + 1] = f"oracle,{method}"
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert method in err and "reads no replicate variances" in err and "--replicates" in err
