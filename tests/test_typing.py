"""The public API is typed (``py.typed`` ships): mypy checks the whole package with the
``[tool.mypy]`` settings of ``pyproject.toml`` and must find no error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_the_package() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]')")
    # the cache next to the tree (ignored by git): a warm run takes seconds, a cold one ~45 s
    cache = REPO / ".mypy_cache"
    env = {**os.environ, "MYPY_FORCE_COLOR": "0"}
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "pyproject.toml",
                           "--cache-dir", str(cache), "--no-error-summary", "--hide-error-context"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert proc.returncode == 0 and not errors, (
        f"mypy exit {proc.returncode}, {len(errors)} error(s):\n" + "\n".join(errors[:40])
        + f"\n{proc.stderr[-2000:]}")


def test_the_package_ships_its_type_marker() -> None:
    assert (REPO / "python" / "mtgfast" / "py.typed").is_file()
    assert (REPO / "python" / "mtgfast" / "_core.pyi").is_file()
