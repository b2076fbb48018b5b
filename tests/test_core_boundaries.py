"""The compiled core called directly (``mtgfast._core``) on hostile input: every case is a
Python exception of the expected type naming the argument, or a valid result — never a crash.

The cases run in a child interpreter (one for the table, restarted after a case that kills it),
so a segfault or an abort is a failing case here, not a dead pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# the directory the tested mtgfast is imported from (the source tree in development, the
# installed site-packages in CI), so a child interpreter tests the same build
import mtgfast  # noqa: E402

_PACKAGE_ROOT = str(Path(mtgfast.__file__).resolve().parents[1])


# name, expression, expected exception class name (None: returns), words in the message; G(...)
# is search.group with the runner's defaults (masks of 2 tasks, budget 1, beam of width 5, ...)
CASES: list[tuple[str, str, str | None, str]] = [
    ("enumerate_all n=0", "M.enumerate_all(0, 'lex', 1 << 30)", "ValueError", "n_tasks"),
    ("enumerate_all n=-1", "M.enumerate_all(-1, 'lex', 1 << 30)", "ValueError", "n_tasks"),
    ("enumerate_all n=65", "M.enumerate_all(65, 'lex', 1 << 30)", "ValueError", "n_tasks"),
    ("enumerate_all n=64", "M.enumerate_all(64, 'lex', 2**64 - 1)", "ValueError", "GiB"),
    ("enumerate_all bad order", "M.enumerate_all(3, 'gray', 1 << 30)", "ValueError", "order"),
    ("enumerate_all max_bytes 0", "M.enumerate_all(3, 'lex', 0)", "ValueError", "limit"),
    ("enumerate_all max_bytes -1", "M.enumerate_all(3, 'lex', -1)", "TypeError", ""),
    ("enumerate_all n str", "M.enumerate_all('3', 'lex', 1 << 30)", "TypeError", ""),
    ("enumerate_k k=0", "M.enumerate_k(4, 0, 'lex')", "ValueError", "k must be"),
    ("enumerate_k k>n", "M.enumerate_k(4, 5, 'colex')", "ValueError", "k must be"),
    ("enumerate_k n=64 k=64", "M.enumerate_k(64, 64, 'lex').tolist()", None, "[18446744073709551615]"),
    ("enumerate_k n=0", "M.enumerate_k(0, 0, 'lex')", "ValueError", "n_tasks"),
    ("binomial 64 32", "M.binomial(64, 32)", None, "1832624140942590534"),
    ("binomial 5 7", "M.binomial(5, 7)", None, "0"),
    ("binomial 100 50 (overflow)", "M.binomial(100, 50)", "ValueError", "n must be in [0, 64]"),
    ("binomial -1 2", "M.binomial(-1, 2)", "ValueError", "n must be in [0, 64]"),
    ("rank_colex float masks", "M.rank_colex(np.array([1.5]))", "TypeError", "masks must hold integers"),
    ("rank_colex bool masks", "M.rank_colex(np.array([True]))", "TypeError", "masks must hold integers"),
    ("rank_colex negative", "M.rank_colex(np.array([-1]))", "ValueError", "non-negative"),
    ("rank_colex mask 0", "M.rank_colex(np.array([0], np.uint64))", "ValueError", "mask 0"),
    ("rank_colex None", "M.rank_colex(None)", "TypeError", "masks"),
    ("rank_colex object", "M.rank_colex(np.array(['a'], object))", "TypeError", "masks"),
    ("rank_colex 2-d", "M.rank_colex(np.ones((2, 2), np.uint64))", "ValueError", "1-D"),
    ("rank_colex top mask", "M.rank_colex(np.array([2**64 - 1], np.uint64)).tolist()", None, "[0]"),
    ("rank_colex empty", "M.rank_colex(np.array([])).tolist()", None, "[]"),
    ("rank_colex non-contiguous", "M.rank_colex(np.arange(1, 11, dtype=np.uint64)[::3]).tolist()", None, "[0, 2, 0, 4]"),
    ("rank_colex negative stride", "M.rank_colex(np.array([3, 5, 6], np.uint64)[::-1]).tolist()", None, "[2, 1, 0]"),
    ("unrank rank too big", "M.unrank_colex(np.array([2**64 - 1], np.uint64), 64, 32)", "IndexError", "not below"),
    ("unrank k=0", "M.unrank_colex(np.array([0], np.uint64), 4, 0)", "ValueError", "k must be"),
    ("unrank n=65", "M.unrank_colex(np.array([0], np.uint64), 65, 2)", "ValueError", "n_tasks"),
    ("unrank float ranks", "M.unrank_colex(np.array([0.5]), 4, 2)", "TypeError", "ranks must hold integers"),
    ("unrank negative ranks", "M.unrank_colex(np.array([-2]), 4, 2)", "ValueError", "ranks must be non-negative"),
    ("sample too many", "M.sample_distinct(3, 100, [], 0)", "ValueError", "only"),
    ("sample count -1", "M.sample_distinct(3, -1, [], 0)", "TypeError", ""),
    ("sample bad size", "M.sample_distinct(3, 1, [9], 0)", "ValueError", "k must be"),
    ("sample n=0", "M.sample_distinct(0, 1, [], 0)", "ValueError", "n_tasks"),
    ("sample n=64 2^40 draws", "M.sample_distinct(64, 2**40, [], 0)", "MemoryError", ""),
    ("popcount float", "M.popcount(np.array([1.7]))", "TypeError", "masks must hold integers"),
    ("popcount list", "M.popcount([3, 7]).tolist()", None, "[2, 3]"),
    ("popcount None", "M.popcount(None)", "TypeError", "masks"),
    ("group n=0", "G(np.zeros((0, 0)), masks=np.array([], np.uint64))", "ValueError", "n_tasks"),
    ("group n=65", "G(np.zeros((1, 65)), masks=np.array([1], np.uint64))", "ValueError", "n_tasks"),
    ("group rows mismatch", "G(np.zeros((1, 2)))", "ValueError", "rows"),
    ("group mask 0", "G(np.zeros((1, 2)), masks=np.array([0], np.uint64))", "ValueError", "mask 0"),
    ("group mask bit >= N", "G(np.zeros((1, 2)), masks=np.array([8], np.uint64))", "ValueError", "n_tasks=2"),
    ("group duplicate masks", "G(np.zeros((2, 2)), masks=np.array([1, 1], np.uint64))", "ValueError", "duplicate"),
    ("group NaN inside", "G(np.full((1, 2), np.nan), masks=np.array([1], np.uint64))", "ValueError", "finite"),
    ("group inf inside", "G(np.full((1, 2), np.inf), masks=np.array([3], np.uint64))", "ValueError", "finite"),
    ("group 1.7e308 gains", "G(np.full((3, 2), 1.7e308), budgets=[1, 2])", "ValueError", "2^64"),
    ("group -1.7e308 gains", "G(np.full((3, 2), -1.7e308))", "ValueError", "2^64"),
    ("group budget 0", "G(np.zeros((3, 2)), budgets=[0])", "ValueError", "budget"),
    ("group no budget", "G(np.zeros((3, 2)), budgets=[])", "ValueError", "budget"),
    ("group budget 2^31", "G(np.zeros((3, 2)), budgets=[2**31])", "TypeError", ""),
    ("group budget 2^31-1", "G(np.zeros((3, 2)), budgets=[2**31 - 1])[0].feasible", None, "True"),
    ("group beam_width 0", "G(np.zeros((3, 2)), width=0, max_bytes=1)", "ValueError", "beam_width"),
    ("group time_limit NaN", "G(np.zeros((3, 2)), time_limit=float('nan'), max_bytes=1)", "ValueError", "time_limit"),
    ("group time_limit inf", "G(np.zeros((3, 2)), method=S.Method.bnb, time_limit=float('inf'), max_bytes=1)[0].feasible", None, "True"),
    ("group gap_tol NaN", "G(np.zeros((3, 2)), gap_tol=float('nan'))", "ValueError", "gap_tol"),
    ("group DP over memory", "G(np.zeros((3, 2)), method=S.Method.dp, max_bytes=0)", "ValueError", "memory"),
    ("group DP n=40", "G(np.zeros((1, 40)), masks=np.array([2**40 - 1], np.uint64), method=S.Method.dp, uncovered=S.Uncovered.singleton, max_bytes=2**64 - 1)", "ValueError", "memory"),
    ("group DP one 22-task row, 0.1 ms", "G(np.zeros((1, 22)), masks=np.array([2**22 - 1], np.uint64), method=S.Method.dp, uncovered=S.Uncovered.singleton, time_limit=1e-4, max_bytes=2**64 - 1)[0].timed_out", None, "True"),
    ("group gains str", "G(np.full((3, 2), 'a'))", "TypeError", "gains must hold real numbers"),
    ("group gains bool", "G(np.ones((3, 2), bool))", "TypeError", "gains must hold real numbers"),
    ("group gains complex", "G(np.ones((3, 2), complex))", "TypeError", "gains must hold real numbers"),
    ("group gains object", "G(np.full((3, 2), None))", "TypeError", "gains must hold real numbers"),
    ("group gains None", "G(None)", "TypeError", "gains"),
    ("group masks float", "G(np.zeros((1, 1)), masks=np.array([1.7]))", "TypeError", "masks must hold integers"),
    ("group masks negative", "G(np.zeros((1, 64)), masks=np.array([-1]))", "ValueError", "non-negative"),
    ("group masks 2-d", "G(np.zeros((1, 1)), masks=np.ones((1, 1), np.uint64))", "ValueError", "1-D"),
    ("group gains 3-d", "G(np.zeros((1, 1, 1)), masks=np.ones(1, np.uint64))", "ValueError", "2-D"),
    ("group method int", "G(np.zeros((1, 1)), masks=np.ones(1, np.uint64), method=7, max_bytes=1)", "TypeError", ""),
    ("group float32 gains", "G(np.ones((3, 2), np.float32))[0].value", None, "2.0"),
    ("group int gains", "G(np.ones((3, 2), np.int64))[0].value", None, "2.0"),
    ("group Fortran gains", "G(np.asfortranarray(np.ones((3, 2))))[0].value", None, "2.0"),
    ("group negative-stride gains", "G(np.ones((3, 2))[::-1])[0].value", None, "2.0"),
    ("group readonly", "(lambda g: (g.setflags(write=False), G(g)[0].value)[1])(np.ones((3, 2)))", None, "2.0"),
    ("group 64 tasks", "G(np.ones((2, 64)), budgets=[1, 64], masks=np.array([2**64 - 1, 2**63], np.uint64))[1].value", None, "64.0"),
    ("dp_bytes nonsense", "S.dp_bytes(-1, 1)", None, "18446744073709551615"),
    ("GroupingResult()", "S.GroupingResult()", "TypeError", "constructor"),
]

_RUNNER = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mtgfast import _core as C
    S, M = C.search, C.masks

    def G(gains, budgets=(1,), masks=None, method=S.Method.beam, width=5,
          uncovered=S.Uncovered.alone, time_limit=0.0, max_bytes=1 << 30, gap_tol=None):
        masks = np.array([1, 2, 3], np.uint64) if masks is None else masks
        args = (masks, gains, list(budgets), method, width, uncovered, time_limit, max_bytes)
        return S.group(*args) if gap_tol is None else S.group(*args, gap_tol)

    cases = json.loads(sys.stdin.read())
    for i, expr in cases:
        print(json.dumps({"i": i, "started": True}), flush=True)
        try:
            out = {"i": i, "ok": True, "value": repr(eval(expr))}
        except BaseException as exc:  # noqa: BLE001 - the type is the result
            out = {"i": i, "ok": False, "type": type(exc).__name__, "message": str(exc)}
        print(json.dumps(out), flush=True)
""")


@pytest.fixture(scope="module")
def outcomes() -> dict[int, dict]:
    """Run every case in a child interpreter; a case that kills it is recorded with its return
    code and the child restarted after it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [_PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")])}
    results: dict[int, dict] = {}
    todo = list(range(len(CASES)))
    while todo:
        payload = json.dumps([(i, CASES[i][1]) for i in todo])
        proc = subprocess.run([sys.executable, "-c", _RUNNER], input=payload, text=True,
                              capture_output=True, timeout=600, env=env)
        started = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            if rec.get("started"):
                started = rec["i"]
            else:
                results[rec["i"]] = rec
                started = None
        if started is None:
            if proc.returncode != 0 and not proc.stdout:   # the child could not even start
                raise RuntimeError(f"the case runner failed to start: {proc.stderr[-800:]}")
            break
        results[started] = {"i": started, "crashed": proc.returncode, "stderr": proc.stderr[-500:]}
        todo = [i for i in todo if i not in results]
    return results


@pytest.mark.parametrize("k", range(len(CASES)), ids=[c[0] for c in CASES])
def test_core_case(outcomes, k):
    name, expr, exc, words = CASES[k]
    got = outcomes.get(k)
    assert got is not None, f"{name}: no outcome (runner stopped early)"
    assert "crashed" not in got, f"{name}: the interpreter died (rc {got.get('crashed')}): {got}"
    if exc is None:
        assert got["ok"], f"{name}: expected a result, got {got}"
        assert got["value"] == words, got
    else:
        assert not got["ok"], f"{name}: expected {exc}, returned {got.get('value')}"
        assert got["type"] == exc, got
        assert words in got["message"], got
