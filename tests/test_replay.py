"""Replay benchmark: curves vs an independent brute-force implementation, JSON shape, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from mtgfast.errors import InputError
from mtgfast.gains import GainTable
from mtgfast.replay import ReplayResult, parse_budgets, replay

REPO = Path(__file__).resolve().parents[1]


# -- an independent reference: exact grouping by dynamic programming over task partitions --------
# A grouping of <= B chosen groups serves each task by its best chosen group; equivalently it splits
# the tasks into <= B blocks S, each served by one candidate G containing S, worth
# sum_{j in S} g[G, j].
# (Two blocks served by the same G merge into one, so the best partition is the best grouping.)

def _block_values(masks: np.ndarray, gains: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    full = 1 << n
    best = np.full(full, -np.inf)
    arg = np.full(full, -1, dtype=np.int64)
    g0 = np.nan_to_num(gains, nan=0.0)
    for r, m in enumerate(int(x) for x in masks):
        sub = m
        while sub:  # every non-empty subset S of G
            v = sum(g0[r, j] for j in range(n) if sub >> j & 1)
            if v > best[sub]:
                best[sub], arg[sub] = v, m
            sub = (sub - 1) & m
    for j in range(n):  # the singleton {j} is always a candidate with gain 0
        if best[1 << j] < 0:
            best[1 << j], arg[1 << j] = 0.0, 1 << j
    return best, arg


def reference_groups(masks: np.ndarray, gains: np.ndarray, n: int, budget: int
                     ) -> tuple[float, list[int]]:
    """Best total selection value with at most ``budget`` groups, and one optimal set of groups."""
    full = (1 << n) - 1
    w, arg = _block_values(masks, gains, n)
    f = np.full((budget + 1, full + 1), -np.inf)
    choice = np.zeros((budget + 1, full + 1), dtype=np.int64)
    f[:, 0] = 0.0
    for k in range(1, budget + 1):
        for u in range(1, full + 1):
            low = u & -u
            rest = u ^ low
            sub = rest
            while True:
                s = sub | low
                v = w[s] + f[k - 1][u ^ s]
                if v > f[k][u]:
                    f[k][u], choice[k][u] = v, s
                if sub == 0:
                    break
                sub = (sub - 1) & rest
    groups, u, k = [], full, budget
    while u:
        s = int(choice[k][u])
        groups.append(int(arg[s]))
        u ^= s
        k -= 1
    return float(f[budget][full]), sorted(set(groups))


def score_groups(groups: list[int], masks: np.ndarray, select: np.ndarray, test: np.ndarray,
                 n: int) -> tuple[float, float]:
    """(selection value, mean test gain) of serving each task by its best chosen group."""
    row = {int(m): r for r, m in enumerate(masks)}
    total_sel, total_test = 0.0, 0.0
    for j in range(n):
        best, got = -np.inf, None
        for g in groups:
            if not g >> j & 1:
                continue
            s, t = (select[row[g], j], test[row[g], j]) if g in row else (0.0, 0.0)
            if s > best:
                best, got = s, t
        assert got is not None, f"task {j} is not covered by {groups}"
        total_sel += best
        total_test += got
    return total_sel, total_test / n


# -- data -----------------------------------------------------------------------------------------
def _tables(data_dir: Path, name: str) -> dict[str, GainTable]:
    if name == "taskonomy":
        d = data_dir / "mtgnet" / "taskonomy"
        x = d / "taskonomy_x.csv"
        valid = GainTable.from_mtgnet(x, d / "taskonomy.csv")
        return {"valid": valid, "test": valid,
                "hoa": GainTable.from_mtgnet(x, d / "taskonomy_HOA.csv"),
                "tag": GainTable.from_mtgnet(x, d / "taskonomy_TAGHOA.csv")}
    d = data_dir / "mtgnet" / "ETT"
    x = d / "ETTm1_x.csv"
    return {"valid": GainTable.from_mtgnet(x, d / "ETTm1_val_y.csv"),
            "test": GainTable.from_mtgnet(x, d / "ETTm1_y.csv"),
            "hoa": GainTable.from_mtgnet(x, d / "ETTm1_HOA.csv"),
            "tag": GainTable.from_mtgnet(x, d / "ETTm1_TAG_HOA.csv", scale=0.01)}


@pytest.mark.parametrize("name", ["taskonomy", "ETTm1"])
def test_curves_match_brute_force(data_dir, name):
    t = _tables(data_dir, name)
    valid, test = t["valid"], t["test"]
    n = valid.n_tasks
    res = replay(valid, test, methods=["oracle", "test-oracle", "hoa", "tag"], hoa=t["hoa"],
                 tag=t["tag"], search="exact", dataset=name)
    assert res.budgets == tuple(range(1, n + 1))
    select = {"oracle": valid.gains, "test-oracle": test.gains, "hoa": t["hoa"].gains,
              "tag": t["tag"].gains}
    for method, sel in select.items():
        curve = res.methods[method].average_test_gain
        groups = res.methods[method].groups
        for k, b in enumerate(res.budgets):
            best, ref_groups = reference_groups(valid.masks, sel, n, b)
            # the replay's groups reach the optimum on the method's gains, within the budget ...
            assert len(groups[k]) <= b
            value, score = score_groups(list(groups[k]), valid.masks, sel, test.gains, n)
            assert value == pytest.approx(best, abs=1e-9), (method, b)
            # ... and its reported test gain is the test gain of that grouping
            assert curve[k] == pytest.approx(score, abs=1e-12), (method, b)
            _, ref_score = score_groups(ref_groups, valid.masks, sel, test.gains, n)
            if sorted(groups[k]) == ref_groups:
                assert curve[k] == pytest.approx(ref_score, abs=1e-12)
    # the test-oracle selects on test gains, so it is an upper bound of every other method
    for method in ("oracle", "hoa", "tag"):
        assert np.all(np.array(res.methods["test-oracle"].average_test_gain)
                      >= np.array(res.methods[method].average_test_gain) - 1e-12)
    # more budget never hurts the oracles
    for method in ("oracle", "test-oracle"):
        if method == "test-oracle" or test is valid:
            assert np.all(np.diff(res.methods[method].average_test_gain) >= -1e-12)
    # measured counts combinations of >= 2 tasks (the singletons are every method's baseline)
    assert res.methods["oracle"].measured == sum(bin(int(m)).count("1") >= 2 for m in valid.masks)
    assert res.methods["hoa"].measured == n * (n - 1) // 2
    assert res.methods["tag"].measured == 0


def test_hoa_default_is_computed_from_validation_pairs(data_dir):
    t = _tables(data_dir, "ETTm1")
    a = replay(t["valid"], t["test"], methods=["hoa"], budgets="1-4")
    b = replay(t["valid"], t["test"], methods=["hoa"], budgets="1-4", hoa=t["hoa"])
    # the released HOA file is the same estimate rounded to 4 decimals
    assert np.allclose(a.methods["hoa"].average_test_gain, b.methods["hoa"].average_test_gain,
                       atol=1e-3)


def test_random_curve_seeded_and_between_bounds(data_dir):
    t = _tables(data_dir, "ETTm1")
    kw = dict(methods=["random"], budgets="1-3", random_trials=20_000)
    a = replay(t["valid"], t["test"], seeds=2, **kw)
    b = replay(t["valid"], t["test"], seeds=2, **kw)
    c = replay(t["valid"], t["test"], seeds=1, **kw)
    assert a.methods["random"].average_test_gain == b.methods["random"].average_test_gain
    assert a.methods["random"].average_test_gain != c.methods["random"].average_test_gain
    # B = 1: the only covering single group is the full set, whatever the seed
    full = t["test"].lookup([(1 << 7) - 1])[0]
    assert a.methods["random"].average_test_gain[0] == pytest.approx(full.mean())


def test_to_dict_shape_and_table(data_dir):
    t = _tables(data_dir, "taskonomy")
    res = replay(t["valid"], methods=["oracle", "random"], budgets=[1, 3], random_trials=1000,
                 dataset="taskonomy")
    d = res.to_dict()
    assert set(d) == {"dataset", "n_tasks", "budgets", "methods"}
    assert d["dataset"] == "taskonomy" and d["n_tasks"] == 5 and d["budgets"] == [1, 3]
    for m in ("oracle", "random"):
        assert set(d["methods"][m]) == {"average_test_gain", "measured"}
        assert len(d["methods"][m]["average_test_gain"]) == 2
    json.dumps(d)
    text = res.format_table()
    assert "oracle" in text and "B=3" in text


def test_plot_writes_png(tmp_path, data_dir):
    from mtgfast.plots import plot_replay

    t = _tables(data_dir, "taskonomy")
    res = replay(t["valid"], methods=["oracle", "hoa"], budgets="1-3")
    plot_replay(res, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_input_errors(data_dir):
    t = _tables(data_dir, "ETTm1")
    with pytest.raises(InputError, match="unknown method"):
        replay(t["valid"], methods=["oracle", "magic"])
    with pytest.raises(InputError, match="needs a TAG"):
        replay(t["valid"], methods=["tag"])
    with pytest.raises(InputError, match="exceeds"):
        replay(t["valid"], methods=["oracle"], budgets="1-9")
    with pytest.raises(InputError, match="lacks a combination"):
        replay(t["valid"], t["test"].select(np.arange(100)), methods=["oracle"])
    with pytest.raises(InputError, match="distinct"):
        replay(t["valid"], methods=["oracle", "oracle"])


def test_parse_budgets():
    assert parse_budgets("1-3,5") == (1, 2, 3, 5)
    assert parse_budgets(range(2, 4)) == (2, 3)
    assert parse_budgets(4) == (4,)
    for bad in ("0-2", "3-1", "a", ""):
        with pytest.raises(InputError):
            parse_budgets(bad)


def test_mtgnet_plugin_is_called_with_seed_and_options(monkeypatch, data_dir):
    t = _tables(data_dir, "ETTm1")
    calls = []

    def replay_method(name, valid, *, seed, **options):
        calls.append((name, seed, options))
        # an "estimator" that knows the validation gains of the pairs only: HOA
        from mtgfast.estimators import HOA

        return HOA().fit(valid).predict(valid.masks), 21

    mod = types.ModuleType("mtgfast.study.replay_methods")
    mod.replay_method = replay_method
    monkeypatch.setitem(sys.modules, "mtgfast.study.replay_methods", mod)
    res = replay(t["valid"], t["test"], methods=["mtgnet-hoa", "hoa"], budgets="1-3", seeds=2,
                 options={"rounds": 3, "selection": "active"})
    assert calls == [("mtgnet-hoa", s, {"rounds": 3, "selection": "active"}) for s in (0, 1)]
    assert res.methods["mtgnet-hoa"].measured == 21
    assert res.methods["mtgnet-hoa"].average_test_gain == pytest.approx(
        res.methods["hoa"].average_test_gain)


def test_mtgnet_plugin_bad_prediction(monkeypatch, data_dir):
    t = _tables(data_dir, "taskonomy")
    mod = types.ModuleType("mtgfast.study.replay_methods")
    mod.replay_method = lambda name, valid, *, seed, **kw: (np.zeros((3, 5)), 0)
    monkeypatch.setitem(sys.modules, "mtgfast.study.replay_methods", mod)
    with pytest.raises(InputError, match="shape"):
        replay(t["valid"], methods=["mtgnet"], budgets="1-2")


# -- command line ---------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mtgfast.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_cli_replay_json(tmp_path, data_dir):
    d = data_dir / "mtgnet" / "ETT"
    out = tmp_path / "ett.json"
    png = tmp_path / "ett.png"
    r = _cli("replay", "--masks", str(d / "ETTm1_x.csv"), "--valid", str(d / "ETTm1_val_y.csv"),
             "--test", str(d / "ETTm1_y.csv"), "--hoa", str(d / "ETTm1_HOA.csv"),
             "--tag", str(d / "ETTm1_TAG_HOA.csv"), "--tag-scale", "0.01",
             "--methods", "oracle,test-oracle,hoa,tag,random", "--budgets", "1-7",
             "--random-trials", "2000", "--json", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert "oracle" in r.stdout
    d_json = json.loads(out.read_text())
    assert set(d_json) == {"dataset", "n_tasks", "budgets", "methods"}
    assert d_json["dataset"] == "ETTm1" and d_json["n_tasks"] == 7
    assert d_json["budgets"] == list(range(1, 8))
    assert set(d_json["methods"]) == {"oracle", "test-oracle", "hoa", "tag", "random"}
    for m in d_json["methods"].values():
        assert set(m) == {"average_test_gain", "measured"}
        assert len(m["average_test_gain"]) == 7
        assert all(isinstance(v, float) for v in m["average_test_gain"])
        assert isinstance(m["measured"], int)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input_is_one_line_exit_2(tmp_path, data_dir):
    d = data_dir / "mtgnet" / "ETT"
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("0 0\n1 2 3\n")
    cases = [
        ("replay", "--valid", str(d / "ETTm1_val_y.csv")),  # no --masks for a bare matrix
        ("replay", "--masks", str(d / "ETTm1_x.csv"), "--valid", str(tmp_path / "missing.csv")),
        ("replay", "--masks", str(d / "ETTm1_x.csv"), "--valid", str(ragged)),
        ("replay", "--masks", str(data_dir / "mtgnet" / "taskonomy" / "taskonomy_x.csv"),
         "--valid", str(d / "ETTm1_val_y.csv")),
        ("replay", "--masks", str(d / "ETTm1_x.csv"), "--valid", str(d / "ETTm1_val_y.csv"),
         "--methods", "oracle,nope"),
    ]
    from mtgfast.cli import main

    for args in cases:
        r = _cli(*args) if args is cases[0] else None
        if r is not None:
            assert r.returncode == 2
            assert r.stderr.count("\n") == 1 and r.stderr.startswith("mtgfast: error:")
            assert "Traceback" not in r.stderr
        else:
            assert main(list(args)) == 2


def test_cli_main_in_process(tmp_path, data_dir, capsys):
    from mtgfast.cli import main

    d = data_dir / "mtgnet" / "taskonomy"
    out = tmp_path / "t.json"
    rc = main(["replay", "--masks", str(d / "taskonomy_x.csv"), "--valid", str(d / "taskonomy.csv"),
               "--methods", "oracle,hoa", "--budgets", "1-3", "--json", str(out)])
    assert rc == 0
    d_json = json.loads(out.read_text())
    assert d_json["dataset"] == "taskonomy" and d_json["budgets"] == [1, 2, 3]
    assert "hoa" in capsys.readouterr().out
    assert main(["replay", "--masks", "x", "--valid"]) == 2
    assert main([]) == 2


def test_replay_result_type(data_dir):
    t = _tables(data_dir, "taskonomy")
    assert isinstance(replay(t["valid"], methods=["oracle"], budgets=1), ReplayResult)


# Printed by the MTG-Net authors' notebook model/taskonomy_grouping_reproduce.ipynb (exact
# branch-and-bound over the same released tables, budgets 1..5, "total_gain/5"): an external check
# of the whole protocol, independent of both our search and the reference above.
TASKONOMY_NOTEBOOK = {
    "oracle": [0.034694, 0.138752, 0.177636, 0.183484, 0.183484],
    "hoa": [0.034694, 0.12166, 0.167168, 0.16933, 0.16933],
    "tag": [0.034694, -0.173196, 0.048824, 0.048824, 0.048824],
}


def test_taskonomy_matches_the_authors_notebook(data_dir):
    t = _tables(data_dir, "taskonomy")
    res = replay(t["valid"], methods=list(TASKONOMY_NOTEBOOK), hoa=t["hoa"], tag=t["tag"])
    for method, expected in TASKONOMY_NOTEBOOK.items():
        assert res.methods[method].average_test_gain == pytest.approx(expected, abs=1e-6), method


def test_beam_search_never_beats_exact(data_dir):
    t = _tables(data_dir, "ETTm1")
    valid, n = t["valid"], t["valid"].n_tasks
    kw = dict(methods=["oracle", "hoa"], hoa=t["hoa"], budgets="1-7")
    exact = replay(valid, t["test"], search="exact", **kw)
    beam = replay(valid, t["test"], search="beam", beam_width=2, **kw)
    for method, sel in (("oracle", valid.gains), ("hoa", t["hoa"].gains)):
        for ge, gb in zip(exact.methods[method].groups, beam.methods[method].groups):
            ve, _ = score_groups(list(ge), valid.masks, sel, t["test"].gains, n)
            vb, _ = score_groups(list(gb), valid.masks, sel, t["test"].gains, n)
            assert vb <= ve + 1e-12


def test_cli_option_values_are_typed() -> None:
    # extra options reach the mtgnet* methods as keywords: "false" must not arrive as a truthy str
    from mtgfast.cli import _extra_options, parse_option_value

    assert parse_option_value("3") == 3 and parse_option_value("0.5") == 0.5
    assert parse_option_value("False") is False and parse_option_value("true") is True
    assert parse_option_value("active") == "active"
    assert _extra_options(["--use-measured", "false", "--alpha=25", "--flag"]) == {
        "use_measured": False, "alpha": 25, "flag": True}


# -- what the command line shows -----------------------------------------------------------------
def _small_files(tmp_path: Path) -> tuple[Path, Path]:
    masks = tmp_path / "s_x.csv"
    gains = tmp_path / "s_y.csv"
    masks.write_text("".join(" ".join("1" if m >> j & 1 else "0" for j in range(3)) + "\n"
                             for m in range(1, 8)))
    gains.write_text("".join(" ".join(f"{0.01234567 * (m + 2 * j):.8f}"
                                      if m >> j & 1 and m & (m - 1) else "0"
                                      for j in range(3)) + "\n" for m in range(1, 8)))
    return masks, gains


def test_table_is_percent_and_names_the_scored_split(data_dir):
    t = _tables(data_dir, "ETTm1")
    res = replay(t["valid"], t["test"], methods=["oracle"], budgets="1-3", dataset="ETTm1")
    lines = res.format_table().splitlines()
    assert lines[0].startswith("ETTm1: average test gain over 7 tasks, in % (2 decimals)")
    row = lines[3].split()
    assert row[0] == "oracle" and row[1] == "120"
    assert row[2:] == [f"{100 * v:.2f}" for v in res.methods["oracle"].average_test_gain]
    assert res.scored == "test"
    alone = replay(t["valid"], methods=["oracle"], budgets="1-3")
    assert alone.scored == "validation"
    assert "average validation gain over 7 tasks" in alone.format_table()
    assert "average test gain" not in alone.format_table()
    three = res.format_table(decimals=3).splitlines()[3].split()
    assert three[2] == f"{100 * res.methods['oracle'].average_test_gain[0]:.3f}"


def test_json_is_rounded_by_default_and_exact_on_request(tmp_path):
    from mtgfast.replay import JSON_DECIMALS, MethodResult

    noisy = 0.027200000000000748
    res = ReplayResult("d", 3, (1, 2), {"oracle": MethodResult((noisy, 1 / 3), 7)})
    res.to_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["methods"]["oracle"]["average_test_gain"] == [0.0272, round(1 / 3, JSON_DECIMALS)]
    res.to_json(tmp_path / "x.json", decimals=None)
    assert json.loads((tmp_path / "x.json").read_text())["methods"]["oracle"][
        "average_test_gain"] == [noisy, 1 / 3]


def test_cli_json_exact_and_stdout_units(tmp_path, capsys):
    from mtgfast.cli import main

    masks, gains = _small_files(tmp_path)
    base = ["replay", "--masks", str(masks), "--valid", str(gains), "--methods", "oracle,hoa",
            "--budgets", "1-3", "--quiet"]
    assert main([*base, "--json", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    assert "average validation gain over 3 tasks, in % (2 decimals)" in out and err == ""
    assert main([*base, "--json", str(tmp_path / "x.json"), "--json-exact"]) == 0
    capsys.readouterr()
    rounded = json.loads((tmp_path / "r.json").read_text())["methods"]
    exact = json.loads((tmp_path / "x.json").read_text())["methods"]
    for m in ("oracle", "hoa"):
        r, x = rounded[m]["average_test_gain"], exact[m]["average_test_gain"]
        assert r == [round(v, 6) for v in x]
        assert any(v != round(v, 6) for v in x)  # 8-decimal gains: rounding shows


def test_replay_progress_on_stderr_plain_lines_when_not_a_terminal(tmp_path, capsys):
    from mtgfast.cli import main

    masks, gains = _small_files(tmp_path)
    assert main(["replay", "--masks", str(masks), "--valid", str(gains), "--methods",
                 "oracle,random", "--seeds", "2", "--random-trials", "50"]) == 0
    out, err = capsys.readouterr()
    assert "replay s: 3/3 done in" in err            # oracle + random x 2 seeds
    assert "\x1b[" not in err and "\r" not in err    # no terminal escapes in a file
    assert "replay s:" not in out


def test_progress_helper_degrades_to_lines(monkeypatch):
    import io

    from mtgfast.progress import LineProgress, NoProgress, progress

    buf = io.StringIO()
    bar = progress(20, "runs", True, file=buf)
    assert isinstance(bar, LineProgress)
    bar.every = 0.0
    for _ in range(20):
        bar.update(1)
    bar.close()
    bar.close()   # idempotent
    lines = buf.getvalue().splitlines()
    assert lines[0] == "runs: 2/20" and lines[-1].startswith("runs: 20/20 done in")
    assert len(lines) == 10 and bar.n == 20     # about every 10%, not every step
    off = progress(5, "x", False, file=buf)
    assert isinstance(off, NoProgress) and off.update(3) is None and off.n == 3
    assert isinstance(progress(0, "x", True, file=buf), NoProgress)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty_bar = progress(5, "tty", True, file=Tty())
    assert type(tty_bar).__module__.startswith("tqdm")
    tty_bar.update(5)
    tty_bar.close()


def test_replay_method_records_wall_and_cpu_seconds_of_fits_predictions_and_asks() -> None:
    from mtgfast.generate import synthetic_gain_tables
    from mtgfast.study.replay_methods import replay_method

    syn = synthetic_gain_tables(5, n_random=None, seed=4)
    stats: dict[str, list[float]] = {}
    replay_method("mtgnet", syn.valid, seed=0, rounds=2, stats=stats, dim=16, ffn_dim=16,
                  n_estimators=2, max_epochs=20)
    fits = len(stats["fit_s"])
    assert fits >= 2 and len(stats["fit_cpu_s"]) == len(stats["fit_rows"]) == fits
    assert len(stats["predict_s"]) == len(stats["predict_cpu_s"]) >= 1
    assert len(stats["select_s"]) == len(stats["select_cpu_s"]) >= 2
    assert all(v >= 0 for key in ("fit_s", "fit_cpu_s", "predict_s", "select_cpu_s")
               for v in stats[key])
