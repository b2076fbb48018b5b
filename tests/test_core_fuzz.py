"""``mtgfast._core`` called directly with hypothesis-generated wrong dtypes, shapes, strides, sizes
and values: every call returns or raises a Python exception; none aborts, crashes or hangs the
interpreter. The fuzz runs in a subprocess, so a crash is this test's failure, not a dead pytest.

``MTGFAST_FUZZ_EXAMPLES=5000`` runs a longer fuzz (the default run: a few hundred calls)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mtgfast

SCALE = max(1, int(os.environ.get("MTGFAST_FUZZ_EXAMPLES", "0")) // 100)

FUZZ = r'''
import math, os, sys
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from mtgfast import _core

M, S = _core.masks, _core.search
N_EXAMPLES = int(sys.argv[1])
PHYS = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
calls = 0

DTYPES = ["u8", "i8", "i1", "u1", "f8", "f4", "f2", "?", "c16", ">u8", ">f8", "<U3", "M8[s]", "O"]
values = st.one_of(st.integers(-2**65, 2**65), st.integers(0, 70),
                   st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, 2**63]))


@st.composite
def arrays(draw, max_dims=2):
    """An array of any dtype, shape (0-d and empty included) and layout (strided, reversed,
    transposed, non-native byte order), or a Python object that is no array at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, 3, -1, 2**70, 1.5, "x", b"y", [[1, 2], [3]], {},
                                     [1, "a"], (), [[[]]]]))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=max_dims)))
    flat = draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)))
    a = np.array(flat, dtype=object).reshape(shape)
    dt = draw(st.sampled_from(DTYPES))
    try:
        with np.errstate(all="ignore"):
            a = a.astype(dt)
    except (OverflowError, ValueError, TypeError):
        a = np.zeros(shape, dtype=dt if dt != "O" else "u8")
    view = draw(st.sampled_from(["as is", "step", "reverse", "T", "fortran"]))
    if view == "step" and a.ndim:
        a = np.repeat(a, 2, axis=0)[::2]
    elif view == "reverse" and a.ndim:
        a = a[::-1]
    elif view == "T":
        a = a.T
    elif view == "fortran":
        a = np.asfortranarray(a)
    return a


def small_masks(draw, n):
    k = draw(st.integers(0, 12))
    top = (1 << min(n, 64)) - 1 if n >= 1 else 1
    return np.array(draw(st.lists(st.integers(0, max(top, 1)), min_size=k, max_size=k)),
                    dtype=np.uint64)


sizes = st.one_of(st.integers(-3, 70), st.integers(-2**64, 2**65), st.sampled_from([True, 1.5, None, "3"]))


def heavy(n_bytes):
    """A request the machine could really serve, but only slowly and with gigabytes: skipped
    (beyond the machine's memory the core must refuse it, and that is tested)."""
    return 2**24 < n_bytes <= PHYS


def call(f, *args, **kw):
    global calls
    calls += 1
    try:
        f(*args, **kw)
    except Exception:
        pass  # any Python exception is a fine answer here; a crash is not


cfg = settings(max_examples=N_EXAMPLES, deadline=None, database=None,
               suppress_health_check=list(HealthCheck))


@cfg
@given(n=sizes, k=sizes, order=st.sampled_from(["lex", "colex", "binary", "gray", ""]),
       max_bytes=st.one_of(st.integers(-1, 2**64), st.just(2**64 - 1)), data=st.data())
def fuzz_masks(n, k, order, max_bytes, data):
    ni, ki = (n if type(n) is int else 3), (k if type(k) is int else 2)
    if not (0 <= ni <= 64 and heavy(8.0 * ((1 << ni) - 1)) and max_bytes >= 8 * ((1 << ni) - 1)):
        call(M.enumerate_all, n, order, max_bytes)
    if not (0 <= ki <= ni <= 64 and heavy(8.0 * math.comb(ni, ki))):
        call(M.enumerate_k, n, k, order)
    call(M.binomial, n, k)
    call(M.popcount, data.draw(arrays()))
    call(M.rank_colex, data.draw(arrays()))
    call(M.unrank_colex, data.draw(arrays()), n, k)
    count = data.draw(st.one_of(st.integers(-1, 2**64), st.integers(0, 50)))
    if not (isinstance(count, int) and heavy(72.0 * count)):
        call(M.sample_distinct, n, count, data.draw(st.lists(sizes, max_size=3)),
             data.draw(st.integers(-1, 2**64)))
    call(S.dp_bytes, n, k)


@cfg
@given(data=st.data(), n=st.integers(0, 66), method=st.sampled_from(list(S.Method.__members__.values())),
       mode=st.sampled_from(list(S.Uncovered.__members__.values())))
def fuzz_search(data, n, method, mode):
    structured = data.draw(st.booleans())
    masks = small_masks(data.draw, n) if structured else data.draw(arrays(max_dims=2))
    if structured:
        gains = np.where(data.draw(st.booleans()), np.nan, 0.0) + np.asarray(
            data.draw(st.lists(values, min_size=len(masks) * n, max_size=len(masks) * n)),
            dtype=float).reshape(len(masks), n) if n else np.zeros((len(masks), 0))
    else:
        gains = data.draw(arrays(max_dims=3))
    budgets = data.draw(st.lists(st.one_of(st.integers(-2, 70), st.integers(-2**40, 2**40)),
                                 max_size=4))
    width = data.draw(st.one_of(st.integers(-2, 64), st.integers(0, 100_000)))
    limit = data.draw(st.sampled_from([0.2, 0.05, -1.0, float("nan"), float("inf")]))
    if not (limit > 0 and limit < 1):  # no limit: keep the DP on tables the machine does fast
        limit = 0.2 if method == S.Method.dp or n > 12 else limit
    dp_bytes = data.draw(st.sampled_from([0, 1 << 30, 2**64 - 1, -1]))
    gap = data.draw(st.sampled_from([1e-6, 0.0, -1.0, float("nan"), float("inf")]))
    call(S.group, masks, gains, budgets, method, width, mode, limit, dp_bytes, gap,
         data.draw(st.booleans()))
    start = small_masks(data.draw, n) if data.draw(st.booleans()) else data.draw(arrays())
    call(S.local_search, masks, gains, start, data.draw(st.integers(-2, 70)), mode,
         data.draw(st.integers(-2, 300)), data.draw(st.booleans()),
         data.draw(st.integers(0, 2**64 - 1)), data.draw(st.booleans()))


fuzz_masks()
fuzz_search()
print(f"FUZZ OK {calls} calls", flush=True)
'''


def test_core_never_crashes_on_hostile_arguments(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(mtgfast.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    script = tmp_path / "fuzz_core.py"
    script.write_text(FUZZ)
    out = subprocess.run([sys.executable, str(script), str(150 * SCALE)], capture_output=True,
                         text=True, timeout=600 * SCALE, env=env)
    # a negative return code is a signal (SIGABRT, SIGSEGV...): the core crashed the interpreter
    assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-4000:])
    assert "FUZZ OK" in out.stdout, out.stdout[-2000:]
