"""The package's public surface: every name in ``__all__`` resolves, and the literal ``__all__``
stays in step with the lazy-export table; ``import mtgfast`` stays light; the installed-package
self-test (the wheels' test-command) passes and catches a broken core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mtgfast
from mtgfast import selftest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parent.parent


def test_all_lists_exactly_the_lazy_exports() -> None:
    assert set(mtgfast.__all__) == {"__version__", *mtgfast._LAZY}
    assert len(mtgfast.__all__) == len(set(mtgfast.__all__))


# every public name of the sub-packages, as it was before their tables went module by module
SUBPACKAGE_EXPORTS = {
    "mtgfast.estimators": ["GainEstimator", "Oracle", "HOA", "TAG", "MTGNet", "PairPriorMTGNet",
                           "TablePriorMTGNet"],
    "mtgfast.study": ["ActiveLoop", "Selector", "SelectionContext", "Trial", "ExpGainSelector",
                      "GreedySelector", "RandomSelector", "UncertaintySelector", "make_selector",
                      "LoopState", "MemoryLoopState", "replay_method", "Study", "StudyResult",
                      "RunFailedError", "group_stored", "Executor", "InProcessExecutor",
                      "LocalExecutor", "RayExecutor", "make_executor", "estimator_names",
                      "make_estimator"],
    "mtgfast.baselines": ["RandomGrouping", "random_grouping_scores", "with_singletons"],
}


@pytest.mark.parametrize("package", sorted(SUBPACKAGE_EXPORTS))
def test_subpackage_exports_resolve_to_their_modules(package) -> None:
    import importlib

    pkg = importlib.import_module(package)
    assert pkg.__all__ == SUBPACKAGE_EXPORTS[package]
    assert sorted(dir(pkg)) == dir(pkg) and set(pkg.__all__) <= set(dir(pkg))
    for name in pkg.__all__:  # the lazy name is the defining module's object
        assert getattr(pkg, name) is getattr(importlib.import_module(pkg._LAZY[name]), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        pkg.nope  # noqa: B018


def test_an_export_listed_twice_is_an_error() -> None:
    from mtgfast._lazy import exports_by_module

    assert exports_by_module("p", {"a": ("x", "y"), "b.c": ("z",)}) == {
        "x": "p.a", "y": "p.a", "z": "p.b.c"}
    with pytest.raises(ValueError, match="'x' is exported by 'p.a' and p.b"):
        exports_by_module("p", {"a": ("x",), "b": ("x",)})


def test_every_public_name_resolves() -> None:
    for name in mtgfast.__all__:
        assert getattr(mtgfast, name) is not None, name
    assert sorted(dir(mtgfast)) == dir(mtgfast) and "group" in dir(mtgfast)


# -- the installed package: light import, self-test, wheel configuration ------------------------
def test_import_mtgfast_loads_no_torch_numba_triton() -> None:
    code = ("import sys, mtgfast, mtgfast.mtl, mtgfast.baselines, mtgfast.estimators\n"
            "print(sorted(m for m in ('torch', 'numba', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": _package_root()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def _package_root() -> str:
    return str(Path(mtgfast.__file__).resolve().parent.parent)


def test_selftest_passes_in_a_subprocess() -> None:
    # exactly the wheel's test-command, run from outside the source tree
    out = subprocess.run([sys.executable, "-m", "mtgfast.selftest"], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).anchor,
                         env={**os.environ, "PYTHONPATH": _package_root()})
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"all {len(selftest.CHECKS)} checks passed" in out.stdout


def test_selftest_catches_a_broken_core(monkeypatch, capsys) -> None:
    import mtgfast.grouping as grouping
    import mtgfast.masks as masks

    real_group, real_popcount = grouping.group, masks.popcount
    # an "exact" search that is really a width-1 beam without local search, and a popcount off by
    # one on bit 63
    monkeypatch.setattr(grouping, "group", lambda m, g, b, method="auto", **kw: real_group(
        m, g, b, "beam", **{**kw, "beam_width": 1, "local_search": False}))
    monkeypatch.setattr(masks, "popcount", lambda m: real_popcount(m) - (
        (np.asarray(m, dtype=np.uint64) >> np.uint64(63)).astype(np.int32)))
    failed = selftest.run(verbose=True)
    assert "exact-search" in failed and "popcount-rank-unrank" in failed
    assert "FAIL exact-search" in capsys.readouterr().out
    monkeypatch.undo()
    assert selftest.run(verbose=False) == []
    assert selftest.main(["-q"]) == 0


def test_brute_force_reference_on_a_hand_example() -> None:
    # tasks 0,1,2: {0,1} helps both (0.2 + 0.3), {1,2} helps 2 more (0.5) but hurts 1 (-0.1)
    masks = np.array([0b011, 0b110, 0b111], dtype=np.uint64)
    nan = np.nan
    gains = np.array([[0.2, 0.3, nan], [nan, -0.1, 0.5], [0.0, 0.0, 0.1]])
    assert selftest.brute_force_value(masks, gains, 1, "singleton") == pytest.approx(0.1)
    assert selftest.brute_force_value(masks, gains, 2, "singleton") == pytest.approx(1.0)
    assert selftest.brute_force_value(masks, gains, 1, "alone") == pytest.approx(0.5)
    assert selftest.brute_force_value(masks[:1], gains[:1], 1, "singleton") is None


def test_wheel_test_command_needs_no_source_tree() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert cfg["test-command"] == "python -m mtgfast.selftest"
    assert "{project}" not in cfg["test-command"] and "test-requires" not in cfg
    # Windows x86_64 is built: that needs the portable bit operations below
    assert "*-win*" not in cfg["skip"].split() and "*-win32" in cfg["skip"].split()


def test_csrc_is_portable_to_msvc() -> None:
    """GCC-only constructs live in csrc/bits.hpp (behind #if) or under a compiler guard only."""
    import re

    banned = re.compile(r"__builtin_(popcount|ctz|clz)\w*|__int128")
    for path in sorted((REPO / "csrc").rglob("*.[ch]pp")):
        if path.name == "bits.hpp":
            continue
        hits = [ln for ln in path.read_text().splitlines() if banned.search(ln)]
        assert not hits, f"{path.name}: {hits}"


def test_estimators_random_is_a_deprecated_alias_of_baselines() -> None:
    from mtgfast import baselines

    with pytest.warns(DeprecationWarning, match="mtgfast.baselines"):
        from mtgfast.estimators.random import RandomGrouping
    assert RandomGrouping is baselines.RandomGrouping
    assert "RandomGrouping" in dir(baselines)


def test_selftest_and_tests_judge_the_core_by_one_reference() -> None:
    # one definition of the objective and mask order: the tests' references are the self-test's
    sys.path.insert(0, str(REPO / "tests"))
    try:
        import reference_search as ref
    finally:
        sys.path.remove(str(REPO / "tests"))
    assert ref.brute_force_value is selftest.brute_force_value
    assert ref.colex_rank is selftest.colex_rank and ref.lex_masks is selftest.lex_masks


def test_ci_runs_exactly_the_readme_quick_start() -> None:
    """The README's two Quick-start commands are what .ci/run runs, letter for letter (after
    its fresh-venv preamble); a newcomer's `python -m pytest` tests what CI tests."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    quick = [ln.split("#", 1)[0].strip() for ln in block.strip().splitlines()]
    ci = [ln.strip() for ln in (REPO / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert ci[-2:] == quick, (ci[-2:], quick)
    assert ci[:-2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "python3 -m venv .venv",
                       ". .venv/bin/activate", "python -m pip install -q --upgrade pip"]
    assert not any(ln.startswith("export ") for ln in ci)   # no environment only CI has
