#!/usr/bin/env bash
# Developer build: compile mtgfast._core next to the sources so `python/` can be imported in place.
# (CI and users run `pip install .`; this is only for fast edit-compile-test loops.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$root" -B "$root/build/dev" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >/dev/null
cmake --build "$root/build/dev"
# a new file renamed over the old one: a process that has the old module loaded keeps its copy
for so in "$root"/build/dev/_core*.so; do
  dest="$root/python/mtgfast/$(basename "$so")"
  cp "$so" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
done
