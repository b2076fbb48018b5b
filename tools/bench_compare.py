#!/usr/bin/env python3
"""Compare two pytest-benchmark JSON files on their ratio figures; exit 1 on a regression.

Each benchmark of mtgfast times its fast path and a plain baseline in the same run and stores the
speed-up (baseline time / our time, higher is better) in ``extra_info`` under a key that starts
with ``speedup`` or ``ratio`` (``speedup_vs_numpy``...). A ratio survives a noisy or different
machine far better than an absolute time, so only ratios decide; minimum times are shown for
information.

    # save a baseline (machine info included), then compare the working tree against it
    python -m pytest benchmarks --benchmark-enable --benchmark-json=baseline.json
    python tools/bench_compare.py baseline.json --run            # runs the benchmarks itself
    python tools/bench_compare.py baseline.json new.json --threshold 0.25

A ratio counts as a regression when ``new < baseline * (1 - threshold)``. Exit status: 0 no
regression, 1 regression(s), 2 bad input (unreadable file, or no ratio to compare).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Comparison", "compare", "load", "main", "ratio_figures"]

RATIO_PREFIXES = ("speedup", "ratio")


class BenchFileError(ValueError):
    """A file is not a pytest-benchmark JSON report."""


@dataclass(frozen=True)
class Comparison:
    """One ratio figure of one benchmark in both runs."""

    group: str
    name: str
    key: str
    baseline: float
    new: float
    threshold: float

    @property
    def change(self) -> float:
        """Relative change of the ratio (+0.1: 10% faster relative to the baseline code)."""
        return self.new / self.baseline - 1.0

    @property
    def regressed(self) -> bool:
        return self.new < self.baseline * (1.0 - self.threshold)


def load(path: str | Path) -> dict[str, Any]:
    """A pytest-benchmark report (``--benchmark-json`` / ``--benchmark-autosave`` output)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchFileError(f"{path} is not a pytest-benchmark JSON report (no 'benchmarks' list)")
    return data


def ratio_figures(report: dict[str, Any]) -> dict[tuple[str, str], tuple[str, float]]:
    """``{(benchmark fullname, extra_info key): (group, ratio)}`` for every numeric ratio."""
    out: dict[tuple[str, str], tuple[str, float]] = {}
    for bench in report["benchmarks"]:
        name = str(bench.get("fullname") or bench.get("name"))
        group = str(bench.get("group") or "")
        for key, value in (bench.get("extra_info") or {}).items():
            if (key.startswith(RATIO_PREFIXES) and isinstance(value, (int, float))
                    and not isinstance(value, bool) and value > 0):
                out[(name, key)] = (group, float(value))
    return out


def compare(baseline: dict[str, Any], new: dict[str, Any], threshold: float
            ) -> tuple[list[Comparison], list[str], list[str]]:
    """Ratios present in both reports, plus the figures only the baseline / only the new run
    has (``"fullname [key]"``)."""
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    old_r, new_r = ratio_figures(baseline), ratio_figures(new)
    rows = [Comparison(group=new_r[k][0] or old_r[k][0], name=k[0], key=k[1],
                       baseline=old_r[k][1], new=new_r[k][1], threshold=threshold)
            for k in sorted(old_r.keys() & new_r.keys(), key=lambda k: (old_r[k][0], k))]
    only_old = [f"{n} [{k}]" for n, k in sorted(old_r.keys() - new_r.keys())]
    only_new = [f"{n} [{k}]" for n, k in sorted(new_r.keys() - old_r.keys())]
    return rows, only_old, only_new


def _machine(report: dict[str, Any]) -> str:
    m = report.get("machine_info") or {}
    cpu = (m.get("cpu") or {}).get("brand_raw") or m.get("processor") or "?"
    commit = (report.get("commit_info") or {}).get("id") or "?"
    return (f"{m.get('node', '?')}, {cpu}, {m.get('python_implementation', '')} "
            f"{m.get('python_version', '?')}, commit {str(commit)[:10]}, "
            f"{report.get('datetime', '?')}")


def format_table(rows: Sequence[Comparison]) -> str:
    """A markdown table: group, benchmark, figure, both ratios, change, verdict."""
    lines = ["| group | benchmark | figure | baseline | new | change | |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        short = r.name.split("::", 1)[-1]
        verdict = "**REGRESSION**" if r.regressed else "ok"
        lines.append(f"| {r.group} | {short} | {r.key} | {r.baseline:.3g} | {r.new:.3g} | "
                     f"{100 * r.change:+.1f}% | {verdict} |")
    return "\n".join(lines)


def _run_benchmarks(pytest_args: Sequence[str]) -> dict[str, Any]:
    """Run the benchmarks of the working tree (``benchmarks/`` unless paths are given)."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "new.json"
        cmd = [sys.executable, "-m", "pytest", *(pytest_args or ["benchmarks"]),
               "--benchmark-enable", "--benchmark-only", f"--benchmark-json={out}", "-q"]
        print("running:", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=root).returncode
        if rc != 0 or not out.exists():
            raise BenchFileError(f"the benchmark run failed (pytest exit status {rc})")
        return load(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", help="saved pytest-benchmark JSON (the reference)")
    ap.add_argument("new", nargs="?", help="JSON of the run to check (omit with --run)")
    ap.add_argument("--threshold", type=float, default=0.25,
                    help="tolerated relative drop of a ratio (default 0.25: 25%%)")
    ap.add_argument("--run", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                    help="run the benchmarks of the working tree now (optional pytest args, "
                         "default: benchmarks) and compare that run")
    args = ap.parse_args(argv)
    if (args.new is None) == (args.run is None):
        ap.error("give either NEW.json or --run")
    if not 0 <= args.threshold < 1:
        ap.error(f"--threshold must be in [0, 1), got {args.threshold}")
    try:
        baseline = load(args.baseline)
        new = load(args.new) if args.new is not None else _run_benchmarks(args.run)
    except BenchFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, only_old, only_new = compare(baseline, new, args.threshold)
    print(f"baseline: {_machine(baseline)}")
    print(f"new:      {_machine(new)}")
    if not rows:
        print("error: no ratio figure (extra_info 'speedup*'/'ratio*') is in both reports",
              file=sys.stderr)
        return 2
    print(format_table(rows))
    for what, names in (("only in the baseline", only_old), ("only in the new run", only_new)):
        if names:
            print(f"{what} (not compared): {', '.join(names)}")
    bad = [r for r in rows if r.regressed]
    print(f"{len(rows)} ratio(s) compared, threshold {100 * args.threshold:.0f}%: "
          f"{len(bad)} regression(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
