"""Regressions of the CLI audit (/work/audit/cli/FINDINGS.md): atomic outputs, outputs that are
inputs, folder-like output paths, ``group`` with nothing finished, unbounded counts, non-ASCII
digits, "done" on an interrupted step, options that cannot apply, checks before torch, seeds
2**32 apart. Each test names its finding (#k)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtgfast.cli import main
from mtgfast.errors import InputError
from test_cli_wrong_args import WorkStarted, no_work  # noqa: F401  (the sentinel fixture)

M3 = "1 0 0\n0 1 0\n0 0 1\n1 1 0\n1 0 1\n0 1 1\n1 1 1\n"
G3 = "0 0 0\n0 0 0\n0 0 0\n0.1 0.2 0\n0.1 0 -0.1\n0 0.3 0.1\n0.2 0.1 0.05\n"


@pytest.fixture
def f(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "m.csv").write_text(M3)
    (tmp_path / "g.csv").write_text(G3)
    return {"dir": str(tmp_path), "masks": str(tmp_path / "m.csv"),
            "gains": str(tmp_path / "g.csv")}


def _replay(f: dict[str, str], *more: str) -> list[str]:
    return ["replay", "--masks", f["masks"], "--valid", f["gains"], "--methods", "oracle",
            "--quiet", *more]


def _usage(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("mtgfast: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# -- #5: outputs are written atomically ----------------------------------------------------------
def test_failed_json_write_keeps_the_previous_file(f: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import mtgfast.replay

    out = Path(f["dir"]) / "out.json"
    assert main(_replay(f, "--json", str(out))) == 0
    good = out.read_bytes()
    json.loads(good)

    def half(self: Any, path: str, decimals: Any = None) -> None:
        with open(path, "w") as fh:
            fh.write('{"dataset": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mtgfast.replay.ReplayResult, "to_json", half)
    capsys.readouterr()
    _usage(capsys, _replay(f, "--json", str(out)), "--json", "cannot write")
    assert out.read_bytes() == good   # the previous file, whole
    assert sorted(os.listdir(f["dir"])) == ["g.csv", "m.csv", "out.json"]   # no temp left


def test_json_to_dev_null_still_works(f: dict[str, str]) -> None:
    assert main(_replay(f, "--json", os.devnull)) == 0


def test_a_device_that_fails_stays_a_device(tmp_path: Path) -> None:
    """A failed write to a device (``/dev/full``: no space) is the error, never a temporary
    file moved over the device."""
    from mtgfast.cli_common import atomic_write

    dev = tmp_path / "full"
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    except (OSError, AttributeError):
        pytest.skip("cannot make a device node here")
    with pytest.raises(OSError):
        atomic_write(str(dev), lambda p: Path(p).write_text("x"))
    assert stat.S_ISCHR(dev.stat().st_mode) and os.listdir(tmp_path) == ["full"]


def test_atomic_write_keeps_the_mode_and_the_link(tmp_path: Path) -> None:
    from mtgfast.cli_common import atomic_write

    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(str(link), lambda p: Path(p).write_text("new"))
    assert link.is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o640
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(real), lambda p: (Path(p).write_text("part"),
                                           (_ for _ in ()).throw(KeyboardInterrupt())))
    assert real.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["link.json",
                                                                          "real.json"]


def test_failed_plot_write_keeps_the_previous_image(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from mtgfast import plots

    out = tmp_path / "p.png"
    out.write_bytes(b"old image")
    real = Figure.savefig

    def half(self: Any, fname: Any, **kw: Any) -> None:
        real(self, fname, **kw)
        with open(fname, "r+b") as fh:
            fh.truncate(10)
        raise OSError(27, "File too large")

    fig = plots._figure((2.0, 2.0))
    monkeypatch.setattr(Figure, "savefig", half)
    with pytest.raises(OSError):
        plots._save(fig, str(out))
    assert out.read_bytes() == b"old image" and os.listdir(tmp_path) == ["p.png"]
    monkeypatch.setattr(Figure, "savefig", real)
    plots._save(fig, str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"


# -- #14: an output that is an input ---------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_output_that_is_an_input_is_refused(f: dict[str, str], no_work: None, flag: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    if flag == "--plot":
        pytest.importorskip("matplotlib")
        png = Path(f["dir"]) / "m.png"
        png.write_bytes(b"x")
        os.link(f["masks"], Path(f["dir"]) / "hard.png")   # the same file by another name
        target = str(Path(f["dir"]) / "hard.png")
    else:
        target = f["masks"]
    before = Path(f["masks"]).read_text()
    _usage(capsys, _replay(f, flag, target), flag, "--masks")
    assert Path(f["masks"]).read_text() == before
    rel = os.path.relpath(f["gains"])
    _usage(capsys, _replay(f, "--json", rel), "--json", "--valid")


# -- #7: output paths that name a folder -----------------------------------------------------------
def test_output_path_ending_in_a_slash_is_refused_up_front(f: dict[str, str], no_work: None,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    newout = os.path.join(f["dir"], "newout") + os.sep
    _usage(capsys, _replay(f, "--json", newout), "--json", "expected a file name")
    store = os.path.join(f["dir"], "newstore") + os.sep
    _usage(capsys, ["demo", "--quiet", "--store", store], "--store", "expected a file name")
    _usage(capsys, ["study", "--suite", "digits", "--budget", "2", "--quiet", "--store", store],
           "--store")
    assert sorted(os.listdir(f["dir"])) == ["g.csv", "m.csv"]   # nothing created


# -- #3: group with no finished multi-task run -----------------------------------------------------
def test_group_without_a_finished_multi_task_run(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from mtgfast import GainStore

    requested, stl = str(tmp_path / "r.db"), str(tmp_path / "stl.db")
    with GainStore(requested) as s:
        s.create_study("s", ["a", "b", "c"])
        s.request_runs("s", [(m, 0) for m in range(1, 8)])
    with GainStore(stl) as s:
        s.create_study("s", ["a", "b", "c"])
        for m in (1, 2, 4):
            s.record_run("s", m, 0, metrics_valid={t: 1.0 for t, b in zip("abc", (1, 2, 4))
                                                   if m & b})
    for path in (requested, stl):
        for est in ("oracle", "mtgnet"):
            line = _usage(capsys, ["group", "--store", path, "--budget", "2", "--estimator", est],
                          "study 's'", "no finished multi-task run yet", path)
            assert "uncovered" not in line and "internal" not in line


# -- #4 / #10 / #9: counts and digits --------------------------------------------------------------
@pytest.mark.parametrize("more,words", [
    (["--budgets", "1-1000000000000"], ("--budgets", "64")),
    (["--budgets", "1,99"], ("--budgets", "99", "64")),
    (["--budgets", "\u0662"], ("--budgets", "ASCII")),
    (["--budgets", "1-\u0663"], ("--budgets", "ASCII")),
    (["--seeds", "100000000000"], ("--seeds", "1000")),
    (["--methods", "oracle,mtgnet", "--set", "n_estimators=1000000000"], ("n_estimators", "1000")),
    (["--methods", "oracle,mtgnet", "--n-estimators", "1000000000"], ("n_estimators", "1000")),
    (["--methods", "oracle,mtgnet", "--set", "dim=\u0661\u0666"], ("dim",)),
    (["--methods", "oracle,mtgnet", "--set", "dim=1_6"], ("dim",)),
])
def test_counts_and_digits_are_refused_at_parse_time(f: dict[str, str], no_work: None,
                                                     capsys: pytest.CaptureFixture[str],
                                                     more: list[str], words: tuple[str, ...]
                                                     ) -> None:
    argv = _replay(f)
    if "--methods" in more:
        argv = argv[:argv.index("--methods")] + argv[argv.index("--methods") + 2:]
    _usage(capsys, argv + more, *words)


def test_counts_at_their_bounds_are_accepted(f: dict[str, str], no_work: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for more in (["--seeds", "1000"], ["--budgets", "1-3"]):
        assert main(_replay(f, *more)) == 1 and "WorkStarted" in capsys.readouterr().err
    from mtgfast.cli_common import parse_option_value

    assert parse_option_value("16") == 16 and parse_option_value("1e-3") == 1e-3
    assert parse_option_value("\u0661\u0666") == "\u0661\u0666"


# -- #12: an interrupted step is not "done" --------------------------------------------------------
def test_interrupted_progress_says_interrupted() -> None:
    import io

    from mtgfast.progress import LineProgress

    buf = io.StringIO()
    bar = LineProgress(3, "MTL runs", buf)
    with pytest.raises(KeyboardInterrupt):
        try:
            raise KeyboardInterrupt
        finally:
            bar.close()
    assert buf.getvalue().strip().startswith("MTL runs: interrupted at 0/3 after"), buf.getvalue()
    buf = io.StringIO()
    with pytest.raises(RuntimeError), LineProgress(2, "replay", buf) as bar2:
        bar2.update(1)
        raise RuntimeError("x")
    assert "replay: stopped at 1/2 after" in buf.getvalue() and "done" not in buf.getvalue()
    buf = io.StringIO()
    with LineProgress(1, "ok", buf) as bar3:
        bar3.update(1)
    assert "ok: 1/1 done in" in buf.getvalue()


# -- #13: options that cannot apply --------------------------------------------------------------
def test_options_that_cannot_apply_are_refused(f: dict[str, str], no_work: None,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _usage(capsys, _replay(f, "--tag-scale", "5"), "--tag-scale", "--tag")
    _usage(capsys, _replay(f, "--search", "exact", "--beam-width", "3"), "--beam-width",
           "exact")
    for more in (["--search", "beam", "--beam-width", "3"], ["--beam-width", "3"],
                 ["--tag", f["gains"], "--tag-scale", "0.5"]):
        assert main(_replay(f, *more)) == 1 and "WorkStarted" in capsys.readouterr().err


# -- #11: plain checks before torch loads ----------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["study", "--suite", "bogus", "--budget", "2"],
    ["study", "--suite", "digits", "--weighting", "bogus", "--budget", "2"],
    ["study", "--suite", "digits", "--arch", "bogus", "--budget", "2"],
    ["study", "--suite", "ett", "--data", "missing.csv", "--budget", "2"],
    ["study", "--suite", "digits", "--data", "x.csv", "--budget", "2"],
    ["study", "--suite", "digits", "--budget", "11"],
    ["study", "--suite", "ett", "--data", "@csv", "--budget", "8"],
    ["demo", "--budget", "11"],
])
def test_plain_checks_do_not_load_torch(tmp_path: Path, argv: list[str]) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text("date,HUFL\n")
    argv = [str(csv) if a == "@csv" else a for a in argv]
    code = ("import sys; from mtgfast.cli import main; rc = main(sys.argv[1:]); "
            "sys.exit(rc * 10 + ('torch' in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-c", code, *argv, "--store", str(tmp_path / "s.db")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 20, (p.returncode, p.stderr)   # exit 2, torch not imported
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("mtgfast: error: "), p.stderr


def test_static_names_match_the_registries() -> None:
    from mtgfast.cli_study import ARCH_NAMES, DEMO_TASKS, SUITE_TASKS, WEIGHTING_NAMES
    from mtgfast.mtl.architectures import ARCHITECTURES
    from mtgfast.mtl.suites import SUITES, get_suite
    from mtgfast.mtl.suites.digits import DigitsSuite
    from mtgfast.mtl.weighting import WEIGHTINGS

    assert set(WEIGHTING_NAMES) == set(WEIGHTINGS)
    assert set(ARCH_NAMES) == set(ARCHITECTURES)
    assert set(SUITE_TASKS) == set(SUITES)
    for name, n in SUITE_TASKS.items():
        if name == "ett":
            from mtgfast.mtl.suites.ett import ETTSuite

            assert len(ETTSuite.task_names) == n
        else:
            assert get_suite(name).n_tasks == n, name
    assert DigitsSuite(n_train=300).n_tasks == DEMO_TASKS


# -- #8: seeds 2**32 apart -------------------------------------------------------------------------
def test_torch_seed_keeps_small_seeds_and_separates_large_ones() -> None:
    from mtgfast.mtl.models import torch_seed

    for s in (0, 1, 12345, 2**31, 2**32 - 1):
        assert torch_seed(s) == s
    big = [torch_seed(2**32 * k + r) for k in (1, 2, 2**20) for r in (0, 1, 7)]
    assert len({b % 2**32 for b in big} | {0, 1, 7}) == len(big) + 3   # low 32 bits all differ
    assert all(0 <= b < 2**64 for b in big) and torch_seed(2**63 - 1) == torch_seed(2**63 - 1)


@pytest.mark.parametrize("arch", ["hard", "mtan"])
def test_seeds_2_to_the_32_apart_train_different_models(arch: str) -> None:
    from mtgfast.mtl.suites import get_suite
    from mtgfast.mtl.trainer import TrainConfig, train_mtl

    suite = get_suite("synthetic") if arch == "hard" else get_suite("digits", n_train=100)
    cfg = TrainConfig(epochs=2, patience=2, batch_size=32, arch=arch)
    a = train_mtl(suite, [0, 1], 0, cfg).metrics_valid
    again = train_mtl(suite, [0, 1], 0, cfg).metrics_valid
    b = train_mtl(suite, [0, 1], 2**32, cfg).metrics_valid
    assert dict(a) == dict(again)
    assert dict(a) != dict(b)


def test_the_cli_limits_are_the_library_ones() -> None:
    """The command line checks counts before numpy loads with its own copies of the library's
    limits; they must agree (``replay()`` refuses the same values from Python)."""
    from mtgfast import cli, replay

    assert cli.MAX_TASKS == replay.MAX_TASKS
    assert cli.MAX_REPLAY_SEEDS == replay.MAX_SEEDS
    assert cli._BUDGET_PART.pattern == replay._BUDGET_PART.pattern
    with pytest.raises(InputError, match="exceeds the 64 tasks"):
        replay.parse_budgets("1-1000000000000")
    with pytest.raises(InputError, match="budgets must look like"):
        replay.parse_budgets("\u0662")
    with pytest.raises(InputError, match="exceeds the 7 tasks"):
        replay.parse_budgets("2-9", 7)
    from mtgfast.estimators.mtgnet import MAX_ESTIMATORS, MTGNet

    assert cli.MAX_ESTIMATORS == MAX_ESTIMATORS
    with pytest.raises(InputError, match="n_estimators"):
        MTGNet(n_estimators=MAX_ESTIMATORS + 1)._check_params()


@pytest.mark.parametrize("more, said", [
    (["--rounds", "2"], "--rounds applies to mtgnet"),
    (["--random-trials", "50"], "--random-trials applies to the random"),
])
def test_options_of_methods_that_do_not_run_are_refused(f: dict[str, str], no_work: None,
                                                        capsys: pytest.CaptureFixture[str],
                                                        more: list[str], said: str) -> None:
    assert main(_replay(f, *more)) == 2
    assert said in capsys.readouterr().err


def test_the_random_trials_default_is_the_library_one() -> None:
    import inspect

    from mtgfast import cli, replay

    assert inspect.signature(replay.replay).parameters["random_trials"].default == \
        cli.DEFAULT_RANDOM_TRIALS
