"""ETTh1-7's two seeds (seventh pass): the replicate variance the runner gives mtgnet-repshrunk
and the seed-noise vs shift decomposition, against a loop over the recorded runs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "benchmarks" / "artifacts" / "etth1_runs.jsonl"


#: the synthetic cells of the seventeenth and eighteenth passes, as the README names them
SYNTH_CELLS = {"n8g2": "synthetic N = 8 gen. 2", "n8g4": "synthetic N = 8 gen. 4",
               "n8g7": "synthetic N = 8 gen. 7", "n9g5": "synthetic N = 9 gen. 5",
               "noisy_n8g7": "N = 8 gen. 7, as noisy as ETTh1",
               "noisy_n9g5": "N = 9 gen. 5, as noisy as ETTh1"}


def _signed(x: float) -> str:
    """A paired difference as the README prints it: sign (− below 0), one decimal."""
    return ("−" if x < 0 else "+") + f"{abs(x):.1f}"


def _default_at_hoa_equal(art: Path, cell: str) -> tuple[Path, str]:
    """The artifact holding the default at HOA-equal K on ``cell``, and its column's name there
    (the fourteenth pass's runs, the fifteenth's N = 10, the sixteenth's fresh draws)."""
    if cell in ("n8g7", "n9g5"):
        return art / f"replay_taskblend16_{cell}.json", "mtgnet"
    if cell == "n10g3":
        return art / "replay_hoa_15_n10g3.json", "mtgnet-ridgeblend"
    return art / f"replay_ridgeblend14_{cell}.json", "mtgnet-ridgeblend"


def _runner():
    spec = importlib.util.spec_from_file_location("replay_mtgnet_q7",
                                                  REPO / "benchmarks" / "replay_mtgnet.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_etth1_replicate_variance_and_noise_shares() -> None:
    mod = _runner()
    valid = mod.load("etth1")["valid"]
    var = mod.etth1_replicate_var(valid)
    # the loop reference: per entry, half the sample variance of the two seeds' gains
    runs = [json.loads(line) for line in RUNS.read_text().splitlines()]
    names = list(dict.fromkeys(t for r in runs for t in r["metrics"]))
    val = {(r["mask"], t, r["seed"]): v[0] for r in runs for t, v in r["metrics"].items()}
    for i, m in enumerate(valid.masks.tolist()[:60]):
        for j in range(7):
            if not (m >> j) & 1:
                assert np.isnan(var.gains[i, j])
                continue
            if bin(m).count("1") == 1:
                assert var.gains[i, j] == 0.0
                continue
            g = [1 - val[(m, names[j], s)] / val[(1 << j, names[j], s)] for s in (0, 1)]
            assert abs(var.gains[i, j] - (g[0] - g[1]) ** 2 / 4) < 1e-12
            # the table's gain is that of the seed-averaged MAEs, close to the mean of the two
            assert abs(valid.gains[i, j] - np.mean(g)) < 0.02
    rep = mod.replicate_noise()
    multi = valid.member() & (np.array([bin(m).count("1") for m in valid.masks.tolist()])
                              >= 2)[:, None]
    assert abs(rep["noise_var_valid_mean"] - var.gains[multi].mean()) < 1e-12
    shares = (rep["share_of_disagreement_valid_seed_noise"] +
              rep["share_of_disagreement_test_seed_noise"] + rep["share_of_disagreement_shift"])
    assert abs(shares - 1.0) < 1e-12 and rep["entries"] == int(multi.sum())
    assert abs(rep["spearman_valid_test"] - 0.173) < 0.001    # the README's rho


def test_paired_matches_seeds_by_number_and_never_across_scoring_splits(tmp_path: Path) -> None:
    mod = _runner()

    def artifact(name: str, method: str, fracs: list[float], first: int, score_on: str) -> str:
        rep = {"dataset": "ett", "first_seed": first,
               "rounds": {"3": {method: {"per_seed_frac_of_oracle": fracs}}},
               **({} if score_on == "test" else {"score_on": score_on})}
        path = tmp_path / name
        path.write_text(json.dumps(rep))
        return str(path)

    a = artifact("a.json", "A", [0.5, 0.6, 0.7], 0, "test")
    b = artifact("b.json", "B", [0.4, 0.9], 1, "test")          # seeds 1, 2
    rows = mod.paired([a, b], "A", "B")
    assert len(rows) == 1 and rows[0]["seeds"] == 2 and rows[0]["K"] == 3
    np.testing.assert_allclose(rows[0]["diff"], np.mean([100 * (0.6 - 0.4), 100 * (0.7 - 0.9)]))
    # the same method scored on validation is another table: it pairs with nothing scored on test
    v = artifact("v.json", "B", [0.1, 0.1, 0.1], 0, "valid")
    rows = mod.paired([a, v], "A", "B")
    assert rows == []
    va = artifact("va.json", "A", [0.3, 0.3, 0.3], 0, "valid")
    rows = mod.paired([a, v, va], "A", "B")
    assert [r["table"] for r in rows] == ["ett scored on valid"] and rows[0]["seeds"] == 3


def test_twelfth_pass_table_is_what_the_artifacts_pair_to() -> None:
    # the README's paired differences come from the committed artifacts, not by hand
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    files = [str(art / f"replay_valid{p}.json") for p in
             ("11_etth1", "11_ettm1", "11_ettm1_variants", "12_taskonomy", "12_ettm1",
              "12_etth1", "12_synth8g2", "12_synth8g4")]
    readme = (REPO / "README.md").read_text()
    for variant, cells in (("mtgnet-paper", 5), ("mtgnet-deterministic", 4)):
        rows = mod.paired(files, variant, "mtgnet")
        assert len(rows) == cells
        for r in rows:
            sign = "+" if r["diff"] > 0 else "−"
            text = (f"{sign}{abs(r['diff']):.1f} ± {r['ci95']:.1f} "
                    f"({r['wins']} / {r['losses']})")
            assert text in readme, (r["table"], text)


def test_thirteenth_pass_tables_are_what_the_artifacts_give() -> None:
    # the README's pairs-first differences and its estimator probe come from the artifacts
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    files = [str(art / f"replay_valid{p}.json") for p in
             ("11_etth1", "11_ettm1", "12_taskonomy", "12_synth8g2", "12_synth8g4",
              "12_taskonomy_pairs", "12_ettm1_pairs", "12_etth1_pairs", "12_synth8g2_pairs",
              "12_synth8g4_pairs")]
    readme = (REPO / "README.md").read_text()

    for variant in ("mtgnet-halfpairs", "mtgnet-pairs"):
        rows = mod.paired(files, variant, "mtgnet")
        assert len(rows) == 5
        for r in rows:
            text = f"{_signed(r['diff'])} ± {r['ci95']:.1f} ({r['wins']} / {r['losses']})"
            assert text in readme, (r["table"], text)
    probe = json.loads((art / "probe_estimators13.json").read_text())["cells"]
    assert set(probe) == {"taskonomy", "ettm1", "etth1", "synth8g2", "synth8g4"}
    for cell in probe.values():
        base = np.array(cell["frac_of_oracle"]["mtgnet"])
        assert len(base) == cell["designs"] == 30
        row = [f"{100 * base.mean():.1f}%"]
        for e in ("linear", "pooled", "mix"):
            diff = 100 * (np.array(cell["frac_of_oracle"][e]) - base)
            row.append(f"{_signed(diff.mean())} ± {mod.interval95(list(diff)):.1f}")
        assert " | ".join(row) + " |" in readme, row


def test_fourteenth_pass_tables_are_what_the_artifacts_give() -> None:
    # the README's in-loop pairs (fixed mean, ridge blend) and its GP probe come from the
    # artifacts; the packaged mtgnet-ridgeblend's test-scored pairs likewise
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    base = [str(art / f"replay_valid{p}.json") for p in
            ("11_etth1", "11_ettm1", "12_taskonomy", "12_synth8g2", "12_synth8g4")]

    for variant, prefix in (("mtgnet-mixlinear", "probe_mixloop14"),
                            ("mtgnet-ridgeblend", "probe_ridgeblend14")):
        files = sorted(str(f) for f in art.glob(f"{prefix}_*.json"))
        rows = mod.paired(files + base, variant, "mtgnet")
        assert len(rows) == 5
        for r in rows:
            text = f"{_signed(r['diff'])} ± {r['ci95']:.1f} ({r['wins']} / {r['losses']})"
            assert text in readme, (variant, r["table"], text)
    probe = json.loads((art / "probe_estimators14_gp.json").read_text())["cells"]
    for cell in probe.values():
        net = np.array(cell["frac_of_oracle"]["mtgnet"])
        for e in ("gp", "gplin"):
            diff = 100 * (np.array(cell["frac_of_oracle"][e]) - net)
            assert f"{_signed(diff.mean())} ± {mod.interval95(list(diff)):.1f}" in readme, e
    test_scored = sorted(str(f) for f in art.glob("replay_ridgeblend14_*.json"))
    default = sorted(str(f) for f in art.glob("replay_default14_*.json"))
    rows = mod.paired(test_scored + default, "mtgnet-ridgeblend", "mtgnet")
    assert len(rows) == len(test_scored) >= 3
    for r in rows:
        text = f"{_signed(r['diff'])} ± {r['ci95']:.1f} ({r['wins']} / {r['losses']})"
        assert text in readme, ("test-scored", r["table"], text)


def test_fifteenth_pass_table_is_what_the_artifacts_give() -> None:
    # every row of the README's fifteenth-pass table (the blend, now `mtgnet`, against the network
    # alone, then named `mtgnet`) and its two means come from the artifacts
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()

    def frac(r: dict, m: str, etth1: bool) -> str:
        key = "frac_above_random" if etth1 else "frac_of_oracle"
        return f"{100 * r[m][key]:.1f}% ± {100 * r[m]['ci95_' + key]:.1f}"

    k1 = sorted(art.glob("replay_k1_15_*.json")) + [art / "replay_hoa_15_n10g3.json"]
    hoa_equal = sorted(art.glob("replay_ridgeblend14_*.json"))
    assert len(k1) == 6 and len(hoa_equal) == 5
    means: dict[bool, list[float]] = {True: [], False: []}
    for f in [*k1, *hoa_equal]:
        rep = json.loads(f.read_text())
        etth1 = rep["dataset"] == "etth1"
        ((k, r),) = rep["rounds"].items()
        if f in hoa_equal:
            other = f.name.replace("ridgeblend14", "default14")
            ((_, plain),) = json.loads((art / other).read_text())["rounds"].items()
            files = [str(f), str(art / other)]
        else:
            plain, files = r, [str(f)]
        (row,) = mod.paired(files, "mtgnet-ridgeblend", "mtgnet")
        means[k == "1"].append(row["diff"])
        pair = f"{_signed(row['diff'])} ± {row['ci95']:.1f} ({row['wins']} / {row['losses']})"
        line = (f"| {frac(r, 'mtgnet-ridgeblend', etth1)} | {frac(plain, 'mtgnet', etth1)} | "
                f"{pair} |")
        assert line in readme, (f.name, line)
    assert f"{_signed(float(np.mean(means[True])))} over the 5 K = 1 cells" in readme
    assert f"{_signed(float(np.mean(means[False])))} over the 6 HOA-equal cells" in readme
    big = json.loads((art / "replay_synthetic27_20k_k13_final15.json").read_text())
    ((_, r27),) = big["rounds"].items()
    t = r27["timing"]["mtgnet"]
    assert big["generator"] == {"n_tasks": 27, "n_random": 20000, "seed": 0}
    assert r27["measured"]["mtgnet"] == 352 and t["fits_per_seed"] == 40
    assert f"{100 * r27['mtgnet']['frac_of_oracle']:.1f}% of the oracle" in readme
    assert f"estimator {t['estimator_cpu_s_per_seed']:.0f} s CPU over 40 refits" in readme


def test_sixteenth_pass_taskblend_table_is_what_the_artifacts_give() -> None:
    # every row of the README's sixteenth-pass table (mtgnet-taskblend against the default, per
    # seed) and the means its decision rests on come from the artifacts
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()

    cells = []
    for c in ("taskonomy", "ettm1", "etth1", "n8g2", "n8g4"):
        cells.append((art / f"replay_taskblend15_k1_{c}.json", art / f"replay_k1_15_{c}.json",
                      "mtgnet-ridgeblend"))
        cells.append((art / f"replay_taskblend15_{c}.json", *_default_at_hoa_equal(art, c)))
    for c in ("n10g3", "n8g7", "n9g5"):   # the fresh draws: both methods in one run
        cells.append((art / f"replay_taskblend16_{c}.json", *_default_at_hoa_equal(art, c)))
    diffs = []
    for f, g, default in cells:
        rep = json.loads(f.read_text())
        key = "frac_above_random" if rep["dataset"] == "etth1" else "frac_of_oracle"
        ((k, r),) = rep["rounds"].items()
        ((kb, rb),) = json.loads(g.read_text())["rounds"].items()
        assert k == kb
        (row,) = mod.paired(sorted({str(f), str(g)}), "mtgnet-taskblend", default)
        diffs.append(row["diff"])

        def frac(x: dict) -> str:
            return f"{100 * x[key]:.1f}% ± {100 * x['ci95_' + key]:.1f}"

        t = r["mtgnet-taskblend"]
        above = ", ".join("yes" if t[f"above_{m}_every_budget"] else "no" for m in ("hoa", "tag"))
        line = (f"| {k} ({int(r['measured']['mtgnet-taskblend'])}) | {frac(t)} | "
                f"{frac(rb[default])} | {_signed(row['diff'])} ± {row['ci95']:.1f} "
                f"({row['wins']} / {row['losses']}) | {above} |")
        assert line in readme, (f.name, line)
    assert f"Mean paired difference {_signed(float(np.mean(diffs)))} over the 13 cells" in readme
    assert f"on the three unseen cells {_signed(float(np.mean(diffs[-3:])))}" in readme
    assert np.mean(diffs[-3:]) <= 0   # the adoption rule's third condition failed: not adopted
    assert f"({_signed(float(np.mean(diffs[:10:2])))} over the K = 1 cells, " \
           f"{_signed(float(np.mean(diffs[1:10:2])))} over the five" in readme
    probe = json.loads((art / "probe_estimators16_ridgefeatures.json").read_text())["cells"]
    old = json.loads((art / "probe_estimators13.json").read_text())["cells"]
    for label, cell in probe.items():
        for e in ("mtgnet", "linear", "pooled", "mix"):   # same designs, same code: same numbers
            assert cell["frac_of_oracle"][e] == old[label]["frac_of_oracle"][e], (label, e)
        ridge = np.array(cell["frac_of_oracle"]["linear"])
        for e in ("ridgepairs", "ridgemean"):
            diff = 100 * (np.array(cell["frac_of_oracle"][e]) - ridge)
            assert f"{_signed(diff.mean())} ± {mod.interval95(list(diff)):.1f}" in readme, (label, e)
            assert diff.mean() - mod.interval95(list(diff)) <= 0   # "neither is ahead"


def test_sixteenth_pass_calibration_numbers_are_what_the_artifact_gives() -> None:
    # the README's coverage of the 95% band, raw -> calibrated, per estimator and cell
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text().replace("\n", " ")
    cells = json.loads((art / "probe_calibration16.json").read_text())["cells"]
    assert list(cells) == ["taskonomy", "ettm1", "etth1", "synth8g2", "synth8g4"]
    for e in ("mtgnet", "mtgnet-plain"):
        pairs = ", ".join(f"{np.mean(c[e]['coverage_raw']):.2f} → "
                          f"{np.mean(c[e]['coverage_calibrated']):.2f}" for c in cells.values())
        assert f"`{e}` {pairs}" in readme, (e, pairs)
        for c in cells.values():   # calibration moves every cell towards the nominal 0.95
            assert np.mean(c[e]["coverage_calibrated"]) > np.mean(c[e]["coverage_raw"])
    z, zc = ([np.mean(c[e][f"median_z_{k}"]) for c in cells.values()
              for e in ("mtgnet", "mtgnet-plain")] for k in ("raw", "calibrated"))
    assert f"raw {min(z):.2f}–{max(z):.2f}, calibrated {min(zc):.2f}–{max(zc):.2f}" in readme
    # N = 27 after the spread change: the same choices, the README's timing
    old27 = json.loads((art / "replay_synthetic27_20k_k13_final15.json").read_text())["rounds"]
    new27 = json.loads((art / "replay_synthetic27_20k_k13_final16.json").read_text())["rounds"]
    assert new27["13"]["mtgnet"]["curve"] == old27["13"]["mtgnet"]["curve"]
    t = new27["13"]["timing"]["mtgnet"]
    assert t["fits_per_seed"] == 40
    assert f"the estimator {t['estimator_cpu_s_per_seed']:.0f} s CPU over 40 refits" in readme


def test_sixteenth_pass_calibrated_optimism_table_is_what_the_artifacts_give() -> None:
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    cells = ("taskonomy", "ettm1", "etth1", "n8g2", "n8g4", "n10g3", "n8g7", "n9g5")
    diffs = []
    for c in cells:
        f = art / f"replay_calblend16_{c}.json"
        rep = json.loads(f.read_text())
        assert rep["options"] == {"blend": "ridge"}
        other, default = _default_at_hoa_equal(art, c)
        key = "frac_above_random" if rep["dataset"] == "etth1" else "frac_of_oracle"
        ((k, r),) = rep["rounds"].items()
        t = r["mtgnet-calibrated"]
        (row,) = mod.paired([str(f), str(other)], "mtgnet-calibrated", default)
        diffs.append(row["diff"])
        line = (f"| {k} | {100 * t[key]:.1f}% ± {100 * t['ci95_' + key]:.1f} | "
                f"{_signed(row['diff'])} ± {row['ci95']:.1f} ({row['wins']} / {row['losses']}) |")
        assert line in readme, (c, line)
    assert f"Mean {_signed(float(np.mean(diffs)))}, all of it ETTh1's" in readme
    assert f"on the † cells {_signed(float(np.mean(diffs[-3:])))}: **not adopted**" in readme
    assert np.mean(diffs[-3:]) <= 0   # the rule's third condition failed
    # the noisy fresh draws: the paired differences and the default's standing the README gives
    for c, text in (("n8g7", "N = 8 gen. 7 "), ("n9g5", "N = 9\ngen. 5 ")):
        f = art / f"replay_noisy16_{c}.json"
        (row,) = mod.paired([str(f)], "mtgnet-calibrated", "mtgnet")
        assert f"{text}{_signed(row['diff'])} ± {row['ci95']:.1f}" in readme, (c, row)
        ((_, r),) = json.loads(f.read_text())["rounds"].items()
        m = r["mtgnet"]
        assert f"{100 * m['frac_of_oracle']:.1f}% ± {100 * m['ci95_frac_of_oracle']:.1f}" in readme
        assert m["above_tag_every_budget"] == (c == "n9g5")


def _probe_tag_draws():
    spec = importlib.util.spec_from_file_location("probe_tag_draws_q17",
                                                  REPO / "benchmarks" / "probe_tag_draws.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pct(x: float) -> str:
    """A percentage as the README prints it (− below 0, one decimal)."""
    return ("−" if x < 0 else "") + f"{abs(x):.1f}"


def test_seventeenth_pass_tag_draws_table_is_what_the_artifacts_give() -> None:
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    probe = json.loads((art / "probe_tag_draws17.json").read_text())
    assert probe["draws"] == 20
    names = SYNTH_CELLS
    assert set(probe["synthetic"]) == set(names)

    def rho(x: float) -> str:
        return ("−" if x < 0 else "+") + f"{abs(x):.2f}"

    for c, v in probe["synthetic"].items():
        if c.startswith("noisy_"):
            f, col = art / f"replay_noisy16_{c[6:]}.json", "mtgnet"
        else:
            f, col = _default_at_hoa_equal(art, c)
        ((k, r),) = json.loads(f.read_text())["rounds"].items()
        # the probe's "replay's draw" is the replay's TAG column, recomputed
        assert abs(100 * r["tag"]["frac_of_oracle"] - v["replay_draw"]["pct"]) < 1e-9, c
        m = r[col]
        curve, budgets = np.asarray(m["curve"]), range(2, v["n_tasks"] + 1)

        def above(lab: str) -> str:
            below = [b for b, x, y in zip(budgets, curve, v[lab]["curve_mean"]) if x <= y]
            return "yes" if not below else "no (B = " + ", ".join(map(str, below)) + ")"

        g, mt = v["generator"], v["matched"]
        line = (f"| {names[c]} | {rho(v['valid_test_pair_rho'])} | "
                f"{rho(v['replay_draw']['pair_rho'])} | {_pct(v['replay_draw']['pct'])}% | "
                f"{_pct(g['pct_mean'])}% ± {g['pct_ci95']:.1f} [{_pct(g['pct_min'])}, "
                f"{_pct(g['pct_max'])}] | {_pct(mt['pct_mean'])}% ± {mt['pct_ci95']:.1f} "
                f"(noise {mt['affinity_noise']:.2f}) | {k}: {100 * m['frac_of_oracle']:.1f}% ± "
                f"{100 * m['ci95_frac_of_oracle']:.1f} | {above('generator')}; matched: "
                f"{above('matched')} |")
        assert line in readme, (c, line)
        if not c.startswith("noisy_"):   # "its one draw is typical (within 8 points ...)"
            assert abs(v["replay_draw"]["pct"] - g["pct_mean"]) < 8
    rec = probe["recorded"]
    assert (f"Spearman {rho(rec['taskonomy']['pair_rho'])} on Taskonomy-5, "
            f"{rho(rec['ett']['pair_rho'])} on\nETTm1-7 and {rho(rec['etth1']['pair_rho'])} "
            f"on ETTh1-7") in readme
    assert (f"{rho(rec['taskonomy']['valid_test_pair_rho'])} on Taskonomy, whose one recorded\n"
            f"table serves both, {rho(rec['ett']['valid_test_pair_rho'])} on ETTm1, "
            f"{rho(rec['etth1']['valid_test_pair_rho'])} on ETTh1") in readme
    # the noisy N = 8 gen. 7 numbers the text gives
    noisy = probe["synthetic"]["noisy_n8g7"]["generator"]
    assert (f"range from {_pct(noisy['pct_min'])}% to {_pct(noisy['pct_max'])}%" in readme
            and f"{_pct(noisy['pct_mean'])}% ± {noisy['pct_ci95']:.1f}, which is below" in readme)
    tag_means = noisy["curve_mean"]
    assert f"TAG's 20-draw means {tag_means[0]:.3f} and {tag_means[1]:.3f}" in readme
    ((_, r),) = json.loads((art / "replay_noisy16_n8g7.json").read_text())["rounds"].items()
    ours = r["mtgnet"]["curve"]
    assert f"the default's {ours[0]:.3f} and {ours[1]:.3f}" in readme


def test_seventeenth_pass_matched_tag_replays_change_only_tag() -> None:
    """The --affinity-noise replays: their TAG numbers are the README's, and every other column
    equals the same seeds' replay without the flag (the sixteenth pass's noisy runs)."""
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    pcts = []
    for c, noise in (("n8g7", 1.6274), ("n9g5", 1.1431)):
        rep = json.loads((art / f"replay_tagmatched17_{c}.json").read_text())
        old = json.loads((art / f"replay_noisy16_{c}.json").read_text())
        assert rep["generator"] == {**old["generator"], "affinity_noise": noise}
        ((k, r),), ((k0, r0),) = rep["rounds"].items(), old["rounds"].items()
        assert k == k0 and rep["seeds"] == old["seeds"] == 20
        for m in ("oracle", "hoa", "random"):
            assert r[m]["curve"] == r0[m]["curve"], (c, m)
        pcts.append(_pct(100 * r["tag"]["frac_of_oracle"]))
        # the probe's matched noise is the one the replay was given (4 decimals)
        probe = json.loads((art / "probe_tag_draws17.json").read_text())
        assert round(probe["synthetic"][f"noisy_{c}"]["matched"]["affinity_noise"], 4) == noise
    assert f"gives TAG {pcts[0]}% on\nthat cell and {pcts[1]}% on the noisy N = 9 gen. 5" in readme


def test_seventeenth_pass_probe_reproduces_its_artifact() -> None:
    """The probe's noisy N = 8 gen. 7 cell recomputed now equals the stored one."""
    mod = _probe_tag_draws()
    stored = json.loads((REPO / "benchmarks" / "artifacts" / "probe_tag_draws17.json")
                        .read_text())["synthetic"]["noisy_n8g7"]
    again = json.loads(json.dumps(mod.synth_cell(8, 7, mod.NOISY, 20)))
    assert again == stored


def test_seventeenth_pass_repshrunk_numbers_are_what_the_artifacts_give() -> None:
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    f = art / "replay_repshrunk17_etth1.json"
    rep = json.loads(f.read_text())
    assert rep["options"] == {"blend": "ridge"} and rep["seeds"] == 30
    ((_, r),) = rep["rounds"].items()
    t = r["mtgnet-repshrunk"]
    other, default = _default_at_hoa_equal(art, "etth1")
    (row,) = mod.paired([str(f), str(other)], "mtgnet-repshrunk", default)
    assert row["diff"] - row["ci95"] < 0 < row["diff"] + row["ci95"]   # ETTh1's crosses 0
    assert (f"{100 * t['frac_above_random']:.1f}% ± {100 * t['ci95_frac_above_random']:.1f} "
            f"above\nrandom, paired − the default") in readme
    assert (f"{_signed(row['diff'])} ± {row['ci95']:.1f}\n({row['wins']} / {row['losses']})"
            in readme)
    rows = mod.paired([str(art / f"replay_repshrunk17_{c}.json") for c in ("n8g7", "n9g5")],
                      "mtgnet-repshrunk", "mtgnet")
    for row, text in zip(rows, ("N = 8 gen. 7\n", "N = 9 gen. 5 ")):
        assert (f"{text}{_signed(row['diff'])} ± {row['ci95']:.1f} ({row['wins']} / "
                f"{row['losses']})") in readme, row
        assert row["diff"] > 0 and row["diff"] + row["ci95"] > 0   # the rule met
    # "the N = 8 interval lies above 0, the others cross it"
    assert rows[0]["diff"] - rows[0]["ci95"] > 0 and rows[1]["diff"] - rows[1]["ci95"] < 0
    for c in ("n8g7", "n9g5"):
        gen = json.loads((art / f"replay_repshrunk17_{c}.json").read_text())["generator"]
        assert gen["replicates"] == 2 and gen["valid_noise"] == 0.05


def test_tag_over_draws_is_the_probes_draws_and_the_replays_own() -> None:
    """--tag-draws D: TAG's column is the mean over the table's own affinity and the probe's
    first D - 1 fresh draws at the generator's noise, each scored as the replay scores TAG (the
    probe's stored fraction is recomputed from it), and one draw is the replay's usual column."""
    from mtgfast.replay import replay

    mod = _runner()
    probe = json.loads((REPO / "benchmarks" / "artifacts" / "probe_tag_draws17.json")
                       .read_text())["synthetic"]["n8g4"]
    tabs = mod.load("synthetic", n_tasks=8, gen_seed=4)
    assert tabs["affinity_noise"] == probe["generator"]["affinity_noise"] == 0.5
    first = replay(tabs["valid"], tabs["test"], methods=["tag"], tag=tabs["tag"],
                   dataset="synthetic", search="auto").to_dict()["methods"]["tag"]
    one = mod.tag_over_draws(tabs, tabs["test"], 4, 1, first, dataset="synthetic", search="auto")
    assert one["average_test_gain"] == first["average_test_gain"] and one["draws"] == 1
    d = 6
    many = mod.tag_over_draws(tabs, tabs["test"], 4, d, first, dataset="synthetic",
                              search="auto")
    curves = np.asarray(many["per_seed"])
    assert curves.shape == (d, 8) and many["first_draw"] == first["average_test_gain"]
    np.testing.assert_allclose(many["average_test_gain"], curves.mean(axis=0))
    oracle = float(np.mean(mod.score(tabs["valid"], tabs["test"], tabs["valid"].gains,
                                     list(range(2, 9)))))   # the probe's scoring, B = 2..N
    pcts = [100 * float(np.mean(c[1:])) / oracle for c in curves]   # budgets 2..N
    np.testing.assert_allclose(pcts[0], probe["replay_draw"]["pct"], rtol=1e-12)
    np.testing.assert_allclose(pcts[1:], probe["generator"]["per_draw_pct"][:d - 1], rtol=1e-12)
    # the draws differ from one another and from the table's own
    assert len({round(p, 9) for p in pcts}) == d


def test_tag_draws_flag_refused_where_there_is_one_tag_run() -> None:
    script = str(REPO / "benchmarks" / "replay_mtgnet.py")
    for argv, why in ((["--dataset", "ett", "--tag-draws", "3"], "needs --dataset synthetic"),
                      (["--dataset", "synthetic", "--n-tasks", "4", "--methods", "oracle,hoa",
                        "--tag-draws", "3"], "tag among --methods"),
                      (["--dataset", "synthetic", "--tag-draws", "0"], "must be >= 1")):
        p = subprocess.run([sys.executable, script, *argv], check=False, capture_output=True,
                           text=True)
        assert p.returncode == 2 and why in p.stderr, (argv, p.stderr)


def _earlier_default(art: Path, cell: str) -> tuple[Path, str]:
    """The earlier pass's artifact of the default at HOA-equal K on ``cell`` and its column."""
    if cell.startswith("noisy_"):
        return art / f"replay_noisy16_{cell[6:]}.json", "mtgnet"
    return _default_at_hoa_equal(art, cell)


def test_eighteenth_pass_tag_draws_table_is_what_the_artifacts_give() -> None:
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    probe = json.loads((art / "probe_tag_draws17.json").read_text())["synthetic"]

    def yes(below: list[int]) -> str:
        return "yes" if not below else "no (B = " + ", ".join(map(str, below)) + ")"

    for c, name in SYNTH_CELLS.items():
        rep = json.loads((art / f"replay_tagdraws18_{c}.json").read_text())
        assert rep["tag_draws"] == 21 and rep["options"] == {}
        assert rep["seeds"] == (30 if c in ("n8g2", "n8g4") else 20)
        assert rep["environment"]["torch"].startswith("2.13.0")
        old_f, _ = _earlier_default(art, c)
        old = json.loads(old_f.read_text())
        assert rep["generator"] == old["generator"]
        ((k_old, r_old),) = old["rounds"].items()
        assert list(rep["rounds"]) == ["1", k_old]
        for k, r in rep["rounds"].items():
            m, t, h = r["mtgnet"], r["tag"], r["hoa"]
            # the tables are the earlier ones: same oracle and HOA curves; TAG's first draw is
            # the earlier replays' one-draw column, its mean over draws the probe's 20 and it
            assert r["oracle"]["curve"] == r_old["oracle"]["curve"] and h["curve"] == \
                r_old["hoa"]["curve"]
            assert t["per_seed_frac_of_oracle"][0] == round(r_old["tag"]["frac_of_oracle"], 4)
            want = (20 * probe[c]["generator"]["pct_mean"] + probe[c]["replay_draw"]["pct"]) / 21
            assert abs(100 * t["frac_of_oracle"] - want) < 1e-9, c
            curve = np.asarray(m["curve"])
            bt = [b for b, x, y in zip(r["budgets"], curve, t["curve"]) if x <= y]
            bh = [b for b, x, y in zip(r["budgets"], curve, h["curve"]) if x <= y]
            assert m["above_tag_every_budget"] == (not bt)   # taken against TAG's mean
            line = (f"| {name} | {k} | {100 * m['frac_of_oracle']:.1f}% ± "
                    f"{100 * m['ci95_frac_of_oracle']:.1f} | {_pct(100 * h['frac_of_oracle'])}% | "
                    f"{_pct(100 * t['per_seed_frac_of_oracle'][0])}% | "
                    f"{_pct(100 * t['frac_of_oracle'])}% ± {100 * t['ci95_frac_of_oracle']:.1f} | "
                    f"{yes(bh)} | {yes(bt)} |")
            assert line in readme, (c, k, line)
    # the targets paragraph's eighteenth-pass sentence
    flat = " ".join(readme.split())
    for c in ("n8g2", "n8g4", "n8g7", "n9g5"):
        r = json.loads((art / f"replay_tagdraws18_{c}.json").read_text())["rounds"]
        a, b = (100 * r[k]["mtgnet"]["frac_of_oracle"] for k in r)
        name = SYNTH_CELLS[c].replace("synthetic ", "")
        assert f"{name} {a:.1f}% / {b:.1f}%" in flat, (c, a, b)
    r = json.loads((art / "replay_tagdraws18_noisy_n8g7.json").read_text())["rounds"]["3"]
    assert (f"N = 8 gen. 7 at {100 * r['mtgnet']['frac_of_oracle']:.1f}%, below TAG's 21-draw "
            f"mean ({100 * r['tag']['frac_of_oracle']:.1f}% ± "
            f"{100 * r['tag']['ci95_frac_of_oracle']:.1f}) at B = 2, 3") in flat


def test_eighteenth_pass_rerun_against_the_earlier_artifacts() -> None:
    """The paired rerun − earlier artifact numbers and the equal-seed counts the README gives."""
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = " ".join((REPO / "README.md").read_text().split())
    same, parts = [], []
    for c, name in SYNTH_CELLS.items():
        new_f = art / f"replay_tagdraws18_{c}.json"
        old_f, col = _earlier_default(art, c)
        ((k, r_old),) = json.loads(old_f.read_text())["rounds"].items()
        a = r_old[col]["per_seed_frac_of_oracle"]
        b = json.loads(new_f.read_text())["rounds"][k]["mtgnet"]["per_seed_frac_of_oracle"]
        same.append(f"{sum(x == y for x, y in zip(a, b))} of {len(a)}")
        # one method paired with itself across two artifacts (METHOD@FILE columns)
        (row,) = mod.paired([str(new_f), str(old_f)], f"mtgnet@{new_f.name}",
                            f"{col}@{old_f.name}")
        d = [100 * (y - x) for x, y in zip(a, b)]   # the same difference by hand
        assert row["K"] == int(k) and row["seeds"] == len(a)
        np.testing.assert_allclose([row["diff"], row["ci95"]], [np.mean(d), mod.interval95(d)],
                                   rtol=1e-12)
        diff, ci = row["diff"], row["ci95"]
        assert abs(diff) < ci, c   # "every mean above moved by less than its interval"
        label = name.replace("synthetic ", "").replace(", as noisy as ETTh1", "")
        parts.append(("noisy " if c.startswith("noisy_") else "") + f"{label} "
                     f"{_signed(diff)} ± {ci:.1f}")
    assert ("(" + ", ".join(same[:-1]) + " and " + same[-1] + " seeds equal") in readme
    # the diagnosis' Taskonomy-5 K = 1 seeds 0-2: the network alone in the earlier artifacts,
    # the default in the fifteenth pass's
    plain = json.loads((art / "replay_taskonomy_final5.json").read_text())["rounds"]["1"]
    blend = json.loads((art / "replay_k1_15_taskonomy.json").read_text())["rounds"]["1"]
    for r, col in ((plain, "mtgnet"), (blend, "mtgnet-ridgeblend")):
        seeds = ", ".join(f"{x:.4f}" for x in r[col]["per_seed_frac_of_oracle"][:3])
        assert f"({seeds})" in readme or f"pass's {seeds};" in readme, (col, seeds)
    assert ", ".join(parts) in readme


def test_eighteenth_pass_one_seed_replays_bit_for_bit_on_the_artifacts_machine_kind(
        tmp_path: Path) -> None:
    """Same kind of machine (CPU, vector flags, torch's kernels, library versions): seed 0 of
    N = 8 gen. 2, K = 1, gives the artifact's curve exactly; elsewhere the check cannot hold
    (README: trajectories part between CPU types) and is skipped, saying why."""
    mod = _runner()
    rep = json.loads((REPO / "benchmarks" / "artifacts" / "replay_tagdraws18_n8g2.json")
                     .read_text())
    here = mod.environment()
    if here != rep["environment"]:
        pytest.skip(f"another kind of machine than the artifact's: {here} != "
                    f"{rep['environment']}")
    out = tmp_path / "seed0.json"
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "replay_mtgnet.py"),
                        "--dataset", "synthetic", "--n-tasks", "8", "--gen-seed", "2",
                        "--rounds", "1", "--seeds", "1", "--methods", "oracle,mtgnet",
                        "--json", str(out)], check=False, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    got = json.loads(out.read_text())["rounds"]["1"]["mtgnet"]["per_seed_frac_of_oracle"]
    assert got == rep["rounds"]["1"]["mtgnet"]["per_seed_frac_of_oracle"][:1]


def test_paired_columns_name_a_file_or_are_refused() -> None:
    """``--paired A@FILE,B@FILE``: one method across two artifacts; an unknown file, an empty
    name or the same column twice is refused, naming the problem (argparse: exit 2)."""
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    f = str(art / "replay_tagdraws18_n8g2.json")
    with pytest.raises(ValueError, match="same"):
        mod.paired([f], "mtgnet", "mtgnet")
    with pytest.raises(ValueError, match="not among the files"):
        mod.paired([f], "mtgnet@other.json", "hoa")
    with pytest.raises(ValueError, match="METHOD@FILE"):
        mod.paired([f], "mtgnet@", "hoa")
    # columns naming their file read that file alone: with a second artifact of the same cell
    # given (whose mtgnet and tag columns hold other seeds' values), the rows are the one file's
    old = str(art / "replay_default14_n8g2.json")   # the fourteenth pass's K = 3, 30 seeds
    name = Path(f).name
    rows = mod.paired([f, old], f"mtgnet@{name}", f"tag@{name}")
    ref = mod.paired([f], "mtgnet", "tag")
    assert rows and [(r["K"], r["seeds"], r["diff"], r["ci95"]) for r in rows] == \
        [(r["K"], r["seeds"], r["diff"], r["ci95"]) for r in ref]
    assert mod.paired([f, old], "mtgnet", "tag") != ref   # (the bare names mix the two files)
    script = str(REPO / "benchmarks" / "replay_mtgnet.py")
    for cols, why in (("mtgnet", "two columns"), ("mtgnet@x.json,hoa", "not among the files")):
        p = subprocess.run([sys.executable, script, "--paired", cols, f], check=False,
                           capture_output=True, text=True)
        assert p.returncode == 2 and why in p.stderr, (cols, p.stderr)


def test_nineteenth_pass_numbers_are_what_the_artifacts_give() -> None:
    """The nineteenth pass's two tables, paired numbers and the targets paragraph's sentence,
    against the committed artifacts; its mtgnet-repshrunk column is the seventeenth pass's."""
    mod = _runner()
    art = REPO / "benchmarks" / "artifacts"
    readme = (REPO / "README.md").read_text()
    flat = " ".join(readme.split())
    names = {"etth1": "ETTh1-7 (30 seeds, above random)",
             "n8g7": "noisy N = 8 gen. 7, 2 replicates (20)",
             "n9g5": "noisy N = 9 gen. 5, 2 replicates (20)"}
    for c, name in names.items():
        f = art / f"replay_repsample19_{c}.json"
        rep = json.loads(f.read_text())
        assert rep["options"] == {"blend": "ridge"} and "environment" in rep
        old_f = art / f"replay_repshrunk17_{c}.json"
        old = json.loads(old_f.read_text())
        assert rep.get("generator") == old.get("generator") and rep["seeds"] == old["seeds"]
        ((k, r),) = rep["rounds"].items()
        key = "frac_above_random" if c == "etth1" else "frac_of_oracle"
        a, b = r["mtgnet-repshrunk"], r["mtgnet-repsample"]
        # the baseline is the seventeenth pass's column, seed for seed
        assert a[f"per_seed_{key}"] == old["rounds"][k]["mtgnet-repshrunk"][f"per_seed_{key}"]
        (row,) = mod.paired([str(f)], "mtgnet-repsample", "mtgnet-repshrunk")
        assert row["diff"] < 0   # the rule (> 0 on all three) is not met
        line = (f"| {name} | {k} | {_pct(100 * a[key])}% ± {100 * a['ci95_' + key]:.1f} | "
                f"{_pct(100 * b[key])}% ± {100 * b['ci95_' + key]:.1f} | "
                f"{_signed(row['diff'])} ± {row['ci95']:.1f} ({row['wins']} / {row['losses']}) |")
        assert line in readme, line
    f = art / "replay_tagbias19_synthetic10.json"
    rep = json.loads(f.read_text())
    assert rep["generator"] == {"n_tasks": 10, "n_random": None, "seed": 1} and \
        rep["seeds"] == 10 and rep["options"] == {}
    tb = {r["K"]: r for r in mod.paired([str(f)], "mtgnet-tagbias", "mtgnet-plain")}
    dp = {r["K"]: r for r in mod.paired([str(f)], "mtgnet", "mtgnet-plain")}
    assert (f"{_signed(tb[1]['diff'])} ± {tb[1]['ci95']:.1f} ({tb[1]['wins']} / "
            f"{tb[1]['losses']}) at K = 1, {_signed(tb[4]['diff'])} ± {tb[4]['ci95']:.1f} "
            f"({tb[4]['wins']} / {tb[4]['losses']}) at K = 4") in flat
    for k, label in (("1", "TAG-equal"), ("4", "HOA-equal (41 ≤ 46)")):
        r = rep["rounds"][k]
        m = r["mtgnet"]
        assert m["above_hoa_every_budget"] and m["above_tag_every_budget"]
        cells = " | ".join(f"{100 * r[x]['frac_of_oracle']:.1f}% ± "
                           f"{100 * r[x]['ci95_frac_of_oracle']:.1f}"
                           for x in ("mtgnet", "mtgnet-plain", "mtgnet-tagbias"))
        d = dp[int(k)]
        line = (f"| {label} | {k} | {cells} | {_signed(d['diff'])} ± {d['ci95']:.1f} "
                f"({d['wins']} / {d['losses']}) | {_pct(100 * r['hoa']['frac_of_oracle'])}% | "
                f"{_pct(100 * r['tag']['frac_of_oracle'])}% | yes, yes |")
        assert line in readme, line
    lo = [100 * min(rep["rounds"][k]["mtgnet"]["per_seed_frac_of_oracle"]) for k in ("1", "4")]
    hi = [100 * max(rep["rounds"][k]["mtgnet"]["per_seed_frac_of_oracle"]) for k in ("1", "4")]
    assert (f"per-seed {lo[0]:.1f}–{hi[0]:.1f}% and {lo[1]:.1f}–{hi[1]:.1f}%") in flat
    # the network alone against the fifth pass's artifact (one method across two files)
    five = art / "replay_synthetic10_final5.json"
    rr = {r["K"]: r for r in mod.paired([str(f), str(five)], f"mtgnet-plain@{f.name}",
                                         f"mtgnet@{five.name}")}
    assert (f"{_signed(rr[1]['diff'])} ± {rr[1]['ci95']:.1f} at K = 1, "
            f"{_signed(rr[4]['diff'])} ± {rr[4]['ci95']:.1f} at K = 4") in flat
    # seeds 10..29 of the default in a second run: the same tables, and the 30-seed means
    more = json.loads((art / "replay_default19_synthetic10_s10-29.json").read_text())
    assert more["first_seed"] == 10 and more["seeds"] == 20 and \
        more["generator"] == rep["generator"]
    pooled = []
    for k in ("1", "4"):
        r2 = more["rounds"][k]
        assert r2["oracle"]["curve"] == rep["rounds"][k]["oracle"]["curve"]
        m2 = r2["mtgnet"]
        assert m2["above_hoa_every_budget"] and m2["above_tag_every_budget"]
        x = [100 * v for v in rep["rounds"][k]["mtgnet"]["per_seed_frac_of_oracle"] +
             m2["per_seed_frac_of_oracle"]]
        pooled.append((float(np.mean(x)), mod.interval95(x)))
    assert (f"{100 * more['rounds']['1']['mtgnet']['frac_of_oracle']:.1f}% ± "
            f"{100 * more['rounds']['1']['mtgnet']['ci95_frac_of_oracle']:.1f} / "
            f"{100 * more['rounds']['4']['mtgnet']['frac_of_oracle']:.1f}% ± "
            f"{100 * more['rounds']['4']['mtgnet']['ci95_frac_of_oracle']:.1f}, above") in flat
    (p1, c1), (p4, c4) = pooled
    assert (f"over 30 seeds: {p1:.1f}% ± {c1:.1f} at TAG-equal and {p4:.1f}% ± {c4:.1f} at "
            "HOA-equal cost") in flat
    assert p1 >= 85 and p4 >= 95   # the targets, as the README says they are met
    assert (f"{_signed(tb[1]['diff'])} ± {tb[1]['ci95']:.1f} / {_signed(tb[4]['diff'])} ± "
            f"{tb[4]['ci95']:.1f}) and a sampler aware") in flat
    assert f"{p1:.1f}% at TAG-equal and {p4:.1f}% at HOA-equal cost (30 seeds)" in flat
