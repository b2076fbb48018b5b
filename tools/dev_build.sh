#!/usr/bin/env bash
# Developer build: compile mtgfast._core next to the sources so `python/` can be imported in place.
# (CI and users run `pip install .`; this is only for fast edit-compile-test loops.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build/dev" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build "$root/build/dev"
cp "$root"/build/dev/_core*.so "$root/python/mtgfast/"
