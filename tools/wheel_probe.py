"""Run by tools/check_wheel.sh inside the fresh environment: where mtgfast is installed, that
``import mtgfast`` loads none of torch/numba/triton, and how long the import takes."""

from __future__ import annotations

import subprocess
import sys

CODE = ("import sys, mtgfast; print(mtgfast.__file__); "
        "print(sorted(m for m in ('torch', 'numba', 'triton') if m in sys.modules))")


def import_ms(stmt: str, runs: int = 7) -> float:
    """Wall time of ``stmt`` in a fresh interpreter (start-up excluded); median of ``runs``."""
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    times = sorted(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                        text=True, check=True).stdout) for _ in range(runs))
    return 1000 * times[runs // 2]


def main() -> None:
    where, heavy = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[:2]
    if "site-packages" not in where:
        sys.exit(f"mtgfast was imported from {where}, not from the installed wheel")
    if heavy != "[]":
        sys.exit(f"import mtgfast imported {heavy}")
    print(f"installed at {where}")
    print("import mtgfast imports none of torch, numba, triton")
    print(f"import mtgfast: {import_ms('import mtgfast'):.1f} ms; "
          f"from mtgfast import group (numpy + _core): "
          f"{import_ms('from mtgfast import group'):.1f} ms (median of 7 fresh interpreters)")


if __name__ == "__main__":
    main()
