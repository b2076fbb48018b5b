"""tools/bench_compare.py: the regression check on ratio figures of pytest-benchmark reports, on
small JSON reports written here (the shape pytest-benchmark writes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "tools" / "bench_compare.py"
_spec = importlib.util.spec_from_file_location("bench_compare", _PATH)
assert _spec is not None and _spec.loader is not None
bench_compare = importlib.util.module_from_spec(_spec)
sys.modules["bench_compare"] = bench_compare
_spec.loader.exec_module(bench_compare)


def _report(ratios: dict[str, dict[str, object]], minimum: float = 0.01) -> dict:
    """A pytest-benchmark report with one benchmark per entry: name -> extra_info."""
    return {
        "machine_info": {"node": "vm", "cpu": {"brand_raw": "AMD EPYC"}, "python_version": "3.11"},
        "commit_info": {"id": "c640e46abcdef"},
        "datetime": "2026-12-01T10:00:00",
        "benchmarks": [{"group": f"search: {name}", "name": name,
                        "fullname": f"benchmarks/bench_x.py::{name}",
                        "stats": {"min": minimum}, "extra_info": extra}
                       for name, extra in ratios.items()],
    }


def _write(tmp_path: Path, name: str, report: dict) -> str:
    p = tmp_path / name
    p.write_text(json.dumps(report))
    return str(p)


def test_regression_beyond_threshold_fails(tmp_path, capsys) -> None:
    old = _write(tmp_path, "old.json", _report({"exact[12]": {"speedup_vs_numpy": 100.0},
                                                "beam[3000]": {"speedup_vs_numpy": 80.0}}))
    # 100 -> 70 is a 30% drop (beyond 25%); 80 -> 64 is 20% (within)
    new = _write(tmp_path, "new.json", _report({"exact[12]": {"speedup_vs_numpy": 70.0},
                                                "beam[3000]": {"speedup_vs_numpy": 64.0}}))
    assert bench_compare.main([old, new, "--threshold", "0.25"]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s)" in out and "| search: exact[12] | exact[12] |" in out
    assert "-30.0% | **REGRESSION**" in out and "-20.0% | ok" in out
    # a looser threshold accepts both; a stricter one flags both
    assert bench_compare.main([old, new, "--threshold", "0.35"]) == 0
    assert bench_compare.main([old, new, "--threshold", "0.1"]) == 1
    rows, _, _ = bench_compare.compare(bench_compare.load(old), bench_compare.load(new), 0.1)
    assert [r.regressed for r in rows] == [True, True]


def test_boundary_and_improvement_pass(tmp_path) -> None:
    base = _report({"a": {"speedup": 10.0}, "b": {"ratio_vs_numpy_arange": 1.2}})
    new = _report({"a": {"speedup": 7.5}, "b": {"ratio_vs_numpy_arange": 5.0}})
    rows, only_old, only_new = bench_compare.compare(base, new, 0.25)
    assert [r.regressed for r in rows] == [False, False]  # exactly at the threshold is no regression
    assert rows[0].change == pytest.approx(-0.25) and rows[1].change == pytest.approx(5 / 1.2 - 1)
    assert only_old == only_new == []


def test_only_ratio_keys_count_and_absolute_times_do_not(tmp_path) -> None:
    base = _report({"a": {"speedup_vs_numpy": 50.0, "target": "met", "n": 7,
                          "naive_s_per_combination": 1.0}}, minimum=0.01)
    # ten times slower in absolute terms (a busier machine) but the same ratio: no regression
    new = _report({"a": {"speedup_vs_numpy": 50.0, "target": "MISSED", "n": 7,
                         "naive_s_per_combination": 10.0}}, minimum=0.1)
    rows, _, _ = bench_compare.compare(base, new, 0.25)
    assert [(r.key, r.regressed) for r in rows] == [("speedup_vs_numpy", False)]


def test_missing_benchmarks_are_listed_not_failed(tmp_path, capsys) -> None:
    old = _write(tmp_path, "old.json", _report({"a": {"speedup": 3.0}, "gone": {"speedup": 2.0}}))
    new = _write(tmp_path, "new.json", _report({"a": {"speedup": 3.1}, "added": {"ratio": 9.0}}))
    assert bench_compare.main([old, new]) == 0
    out = capsys.readouterr().out
    assert "only in the baseline (not compared): benchmarks/bench_x.py::gone [speedup]" in out
    assert "only in the new run (not compared): benchmarks/bench_x.py::added [ratio]" in out


def test_bad_input_exits_2(tmp_path, capsys) -> None:
    good = _write(tmp_path, "good.json", _report({"a": {"speedup": 3.0}}))
    no_ratio = _write(tmp_path, "none.json", _report({"a": {"target": "met"}}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"results": []}))
    assert bench_compare.main([good, no_ratio]) == 2
    assert "no ratio figure" in capsys.readouterr().err
    assert bench_compare.main([good, str(tmp_path / "broken.json")]) == 2
    assert bench_compare.main([good, str(tmp_path / "other.json")]) == 2
    assert bench_compare.main([good, str(tmp_path / "missing.json")]) == 2
    with pytest.raises(SystemExit):
        bench_compare.main([good])  # neither NEW.json nor --run
    with pytest.raises(SystemExit):
        bench_compare.main([good, good, "--threshold", "1.5"])
    with pytest.raises(ValueError, match="threshold"):
        bench_compare.compare(_report({}), _report({}), -0.1)
