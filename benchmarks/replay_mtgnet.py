"""Replay evidence for MTG-Net (issues 4, 13): curves vs oracle / HOA / TAG / random per seed.

Protocol (mtgfast.replay): each method's gains select groups for every budget B (exact search; beam
for N > 12), each task is served by its best chosen group under those gains, the grouping is scored
with test gains. MTG-Net methods run the active loop on the validation table (measure = lookup) with
``rounds`` K for seeds 0..S-1, in this process or in ``--jobs`` forked workers.

    python benchmarks/replay_mtgnet.py --dataset ett --rounds 1 3 --seeds 10 --json out.json
    python benchmarks/replay_mtgnet.py --dataset taskonomy --rounds 1 2 --set kappa=0
    python benchmarks/replay_mtgnet.py --dataset etth1 --rounds 1 3    # after collect_etth1.py
    python benchmarks/replay_mtgnet.py --dataset synthetic --n-tasks 10 --gen-seed 1 --rounds 1 4
    python benchmarks/replay_mtgnet.py --dataset synthetic --n-tasks 8 --gen-seed 2 --rounds 3 \
        --tag-draws 21          # TAG as a mean over 21 affinity draws, with an interval
    python benchmarks/replay_mtgnet.py --paired mtgnet,mtgnet-search a.json b.json   # per seed
    python benchmarks/replay_mtgnet.py --paired mtgnet@new.json,mtgnet@old.json new.json old.json

Prints, per K, the curve of each method over budgets 2..N, the mean over those budgets as a
fraction of the oracle's (and above random: (m - random) / (oracle - random)), the per-seed mean,
a 95% t-interval, whether MTG-Net beats HOA and TAG at every budget, and the seconds spent in
estimator fits and predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from mtgfast.cli import parse_option_value
from mtgfast.gains import GainTable
from mtgfast.generate import synthetic_gain_tables
from mtgfast.replay import replay

DATA = Path(os.environ.get("MTGFAST_DATA") or
            Path(__file__).resolve().parents[2] / "shared" / "data") / "mtgnet"
#: ETTh1-7, collected by benchmarks/collect_etth1.py (issue 5)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
#: noise options of the synthetic generator the runner passes on (held-out noisy tables)
NOISE_ARGS = ("valid_noise", "test_shift", "test_noise", "affinity_noise")


def etth1_replicate_var(valid: GainTable, runs: Path = ARTIFACTS / "etth1_runs.jsonl"
                        ) -> GainTable:
    """Per-entry variance of ETTh1-7's validation gains from its two seeds: the per-seed gains
    ``1 - MAE_C / MAE_single`` (validation), their sample variance / 2 (the table averages the
    seeds); 0 for singletons. Rows and task order are ``valid``'s (mask bit j = task j)."""
    rec: dict[tuple[int, str], dict[int, float]] = {}
    for line in runs.read_text().splitlines():
        r = json.loads(line)
        for task, (val, _test) in r["metrics"].items():
            rec.setdefault((int(r["mask"]), task), {})[int(r["seed"])] = float(val)
    names = list(dict.fromkeys(t for _, t in rec))
    var = np.where(valid.member(), 0.0, np.nan)
    for i, m in enumerate(valid.masks.tolist()):
        if bin(m).count("1") < 2:
            continue
        for j in range(valid.n_tasks):
            if (m >> j) & 1:
                single = rec[(1 << j, names[j])]
                g = [1.0 - rec[(m, names[j])][s] / single[s] for s in (0, 1)]
                var[i, j] = float(np.var(g, ddof=1)) / 2.0
    return GainTable(valid.masks, var, valid.task_names, {"split": "valid_var", "replicates": 2})


def replicate_noise(runs: Path = ARTIFACTS / "etth1_runs.jsonl") -> dict[str, Any]:
    """How much of ETTh1-7's validation-test disagreement is seed noise (issue 13, 7th pass).

    Per (combination >= 2 tasks, member) entry, the per-seed gains ``1 - MAE_C / MAE_single`` on
    validation (v0, v1) and test (t0, t1); the tables hold the gains of the seed-averaged MAEs.
    The variance of one seed's gain is ``mean((v0 - v1)^2) / 2`` (likewise test), that of the
    two-seed mean half of it; what the seeds leave of var(valid - test) is shift between the
    validation and the test months.
    """
    from scipy.stats import pearsonr, spearmanr

    rec: dict[tuple[int, str], dict[int, tuple[float, float]]] = {}
    for line in runs.read_text().splitlines():
        r = json.loads(line)
        for task, (val, test) in r["metrics"].items():
            rec.setdefault((int(r["mask"]), task), {})[int(r["seed"])] = (float(val), float(test))
    single = {t: d for (m, t), d in rec.items() if bin(m).count("1") == 1}
    cols: list[list[float]] = []
    for (m, t), d in rec.items():
        if bin(m).count("1") < 2:
            continue
        s = single[t]
        per_seed = [1.0 - d[k][i] / s[k][i] for i in (0, 1) for k in (0, 1)]   # v0 v1 t0 t1
        mean = [1.0 - (d[0][i] + d[1][i]) / (s[0][i] + s[1][i]) for i in (0, 1)]
        cols.append(per_seed + mean)
    v0, v1, t0, t1, vm, tm = np.array(cols).T
    rep_v, rep_t = float(np.mean((v0 - v1) ** 2) / 2), float(np.mean((t0 - t1) ** 2) / 2)
    var_v, var_t, var_d = float(np.var(vm)), float(np.var(tm)), float(np.var(vm - tm))
    noise_v, noise_t = rep_v / 2, rep_t / 2                 # of the two-seed means
    r_v, r_t = float(pearsonr(v0, v1)[0]), float(pearsonr(t0, t1)[0])
    rel_v, rel_t = 2 * r_v / (1 + r_v), 2 * r_t / (1 + r_t)  # Spearman-Brown, two seeds
    return {
        "entries": int(vm.size),
        "spearman_valid_test": float(spearmanr(vm, tm)[0]),
        "pearson_valid_test": float(pearsonr(vm, tm)[0]),
        "spearman_seed0_seed1_valid": float(spearmanr(v0, v1)[0]),
        "spearman_seed0_seed1_test": float(spearmanr(t0, t1)[0]),
        "pearson_seed0_seed1_valid": r_v, "pearson_seed0_seed1_test": r_t,
        "var_valid_mean": var_v, "var_test_mean": var_t, "var_valid_minus_test": var_d,
        "replicate_sd_per_seed_valid": float(np.sqrt(rep_v)),
        "replicate_sd_per_seed_test": float(np.sqrt(rep_t)),
        "noise_var_valid_mean": noise_v, "noise_var_test_mean": noise_t,
        "share_of_disagreement_valid_seed_noise": noise_v / var_d,
        "share_of_disagreement_test_seed_noise": noise_t / var_d,
        "share_of_disagreement_shift": (var_d - noise_v - noise_t) / var_d,
        "shift_sd": float(np.sqrt(max(var_d - noise_v - noise_t, 0.0))),
        "noise_share_of_valid_variance": noise_v / var_v,
        "reliability_valid_mean": rel_v, "reliability_test_mean": rel_t,
        "pearson_ceiling_from_seed_noise": float(np.sqrt(rel_v * rel_t)),
        "pearson_valid_test_disattenuated": float(pearsonr(vm, tm)[0] / np.sqrt(rel_v * rel_t)),
    }


def load(dataset: str, data: Path = DATA, *, n_tasks: int = 10, n_random: int | None = None,
         gen_seed: int = 0, noise: dict[str, float] | None = None,
         replicates: int = 1) -> dict[str, Any]:
    """Validation / test / HOA / TAG tables of one recorded (or generated) data set, and the
    validation gains' replicate variance (``valid_var``) where the data has replicates."""
    if dataset == "synthetic":
        from mtgfast.estimators.tag import TAG

        syn = synthetic_gain_tables(n_tasks, n_random=n_random, seed=gen_seed, **(noise or {}),
                                    replicates=replicates)
        tag = TAG().fit_affinity(syn.affinity.T, syn.valid.task_names)
        return {"valid": syn.valid, "test": syn.test, "hoa": None,
                "tag": tag.predict_table(syn.valid.masks), "valid_var": syn.valid_var,
                # what fresh TAG affinity draws need (--tag-draws): the true pair matrix and
                # the affinity's noise relative to its spread
                "pair": syn.pair, "affinity_noise": float(syn.valid.meta["affinity_noise"])}
    if dataset == "taskonomy":
        d = data / "taskonomy"
        x = d / "taskonomy_x.csv"
        valid = GainTable.from_mtgnet(x, d / "taskonomy.csv", meta={"dataset": "taskonomy-5"})
        return {"valid": valid, "test": valid,
                "hoa": GainTable.from_mtgnet(x, d / "taskonomy_HOA.csv"),
                "tag": GainTable.from_mtgnet(x, d / "taskonomy_TAGHOA.csv")}
    if dataset == "etth1":
        x = ARTIFACTS / "etth1_x.csv"
        valid = GainTable.from_mtgnet(x, ARTIFACTS / "etth1_val_y.csv", meta={"dataset": "etth1-7"})
        return {"valid": valid, "test": GainTable.from_mtgnet(x, ARTIFACTS / "etth1_y.csv"),
                # HOA from the validation pairs (the replay's default), TAG from its affinity run
                "hoa": None, "tag": GainTable.from_mtgnet(x, ARTIFACTS / "etth1_tag.csv"),
                "valid_var": etth1_replicate_var(valid)}
    d = data / "ETT"
    x = d / "ETTm1_x.csv"
    return {"valid": GainTable.from_mtgnet(x, d / "ETTm1_val_y.csv", meta={"dataset": "ettm1-7"}),
            "test": GainTable.from_mtgnet(x, d / "ETTm1_y.csv"),
            "hoa": GainTable.from_mtgnet(x, d / "ETTm1_HOA.csv"),
            # the TAG file is in percent (the paper's notebook multiplies by 0.01)
            "tag": GainTable.from_mtgnet(x, d / "ETTm1_TAG_HOA.csv", scale=0.01)}


def environment() -> dict[str, str]:
    """What a replay's per-seed curves depend on beyond its inputs: the library versions and the
    CPU kernels torch and numpy dispatch to (the MTG-Net fits' last bits, and through the blend
    weight and the sampler's choices whole trajectories, differ between CPU types; means over
    seeds agree, README "Eighteenth pass")."""
    import platform

    import torch

    info: dict[str, str] = {}   # the first core's lines of /proc/cpuinfo (Linux)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = info.get("model name") or platform.processor() or platform.machine()
    have = set(info.get("flags", "").split())
    flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                 "amx_tile") if f in have)
    out = {"python": platform.python_version(), "numpy": np.__version__,
           "torch": torch.__version__,
           "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
           "machine": platform.machine(), "cpu": cpu, "cpu_flags": flags}
    try:   # numpy's OpenBLAS kernel (threadpoolctl comes with scikit-learn)
        from threadpoolctl import threadpool_info

        out["openblas_core"] = ",".join(sorted({str(i.get("architecture")) for i in
                                                threadpool_info()
                                                if i.get("internal_api") == "openblas"}))
    except ImportError:
        pass
    return out


def affinity_draw(pair: np.ndarray, rel: float, gen_seed: int, r: int) -> np.ndarray:
    """Fresh TAG affinity draw ``r`` of a synthetic table: its true pair matrix plus noise of SD
    ``rel`` times the matrix's off-diagonal spread (the generator's own draw is the one the table
    comes with; these come from a stream of their own, keyed by the generator seed, N and r)."""
    n = pair.shape[0]
    spread = float(np.std(pair[~np.eye(n, dtype=bool)]))
    rng = np.random.default_rng([gen_seed, n, r, 0x746167])
    aff = pair + rng.normal(0.0, rel * spread, (n, n))
    np.fill_diagonal(aff, 0.0)
    return aff


def tag_over_draws(tabs: dict[str, Any], test: GainTable, gen_seed: int, draws: int,
                   first: dict[str, Any], **replay_kw: Any) -> dict[str, Any]:
    """TAG's replay result as the mean over ``draws`` affinity draws: the table's own (``first``,
    the replay's usual TAG column) and ``affinity_draw`` 0..draws-2, each scored as the replay
    scores TAG; ``per_seed`` holds one curve per draw, so TAG gets an interval like a seeded
    method and 'above TAG at every budget' is taken against TAG's mean over draws."""
    from mtgfast.estimators.tag import TAG

    valid = tabs["valid"]
    curves = [list(first["average_test_gain"])]
    for r in range(draws - 1):
        aff = affinity_draw(tabs["pair"], tabs["affinity_noise"], gen_seed, r)
        table = TAG().fit_affinity(aff.T, valid.task_names).predict_table(valid.masks)
        res = replay(valid, test, methods=["tag"], tag=table, **replay_kw).to_dict()
        curves.append(list(res["methods"]["tag"]["average_test_gain"]))
    return {**first, "average_test_gain": np.mean(curves, axis=0).tolist(),
            "std_over_seeds": np.std(curves, axis=0).tolist(), "per_seed": curves,
            "first_draw": curves[0], "draws": draws}


T95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26,
       11: 2.23, 12: 2.20, 15: 2.14, 20: 2.09}


def interval95(values: list[float]) -> float:
    """Half-width of the 95% t-interval of the mean of ``values`` (0 for one value)."""
    k = len(values)
    if k < 2:
        return 0.0
    t = T95.get(k, T95[max(x for x in T95 if x <= k)] if k < 20 else 1.96)
    return float(t * np.std(values, ddof=1) / np.sqrt(k))


def _search(n: int) -> str:
    return "exact" if n <= 12 else "beam"


def score(valid: GainTable, test: GainTable, pred: np.ndarray, budgets: list[int]) -> list[float]:
    """Test gain of the grouping chosen on ``pred`` for every budget."""
    from mtgfast.grouping import evaluate, group

    return [float(evaluate(g, test)) for g in group(valid.masks, pred, budgets,
                                                    method=_search(valid.n_tasks))]


_STATE: dict[str, Any] = {}


class _Progress(list):  # type: ignore[type-arg]
    """A stats list that also prints each value with the wall clock (``--progress``)."""

    def __init__(self, key: str, t0: float) -> None:
        super().__init__()
        self.key, self.t0 = key, t0

    def append(self, x: float) -> None:
        super().append(x)
        print(f"  [{time.perf_counter() - self.t0:7.1f} s] {self.key} {x:.3f}", file=sys.stderr,
              flush=True)


class _ProgressStats(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.t0 = time.perf_counter()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = _Progress(key, self.t0)
        return self[key]


def _one_seed(job: tuple[str, int, int]) -> tuple[list[float], int, dict[str, list[float]]]:
    """One (method, K, seed) replay of an mtgnet* method in this process."""
    import torch
    from mtgfast.study.replay_methods import (NEEDS_NOISE_METHODS, NEEDS_PRIOR_METHODS,
                                              replay_method)

    torch.set_num_threads(1)
    method, k, seed = job
    valid, test, budgets = _STATE["valid"], _STATE["test"], _STATE["budgets"]
    stats: dict[str, list[float]] = _ProgressStats() if _STATE.get("progress") else {}
    # mtgnet-tag learns the residual over TAG's estimate (one joint run: no measured combination)
    extra = {"prior": _STATE["tag"]} if method in NEEDS_PRIOR_METHODS else {}
    if method in NEEDS_NOISE_METHODS:   # mtgnet-repshrunk: the replicates' noise variance
        if _STATE.get("valid_var") is None:
            raise SystemExit(f"{method} needs replicates: --dataset etth1, or synthetic with "
                             "--replicates 2 or more")
        extra["noise"] = _STATE["valid_var"]
    pred, used = replay_method(method, valid, seed=seed, rounds=k, stats=stats, **extra,
                               **dict(_STATE["options"]))
    return score(valid, test, pred, budgets), used, stats


def summarize(d: dict[str, Any], n: int, mtg_methods: list[str]) -> dict[str, Any]:
    """Mean over budgets 2..N as a fraction of the oracle and above random, per-seed spread,
    'above HOA and TAG at every budget'."""
    budgets = list(d["budgets"])
    cols = [i for i, b in enumerate(budgets) if 2 <= b <= n]
    curve = {m: np.array(r["average_test_gain"])[cols] for m, r in d["methods"].items()}
    oracle = float(curve["oracle"].mean())
    rnd = float(curve["random"].mean()) if "random" in curve else None
    out: dict[str, Any] = {"budgets": [budgets[i] for i in cols]}
    for m, c in curve.items():
        e: dict[str, Any] = {"curve": c.round(5).tolist(), "mean": float(c.mean()),
                             "frac_of_oracle": float(c.mean() / oracle)}
        if rnd is not None and oracle != rnd:
            e["frac_above_random"] = float((c.mean() - rnd) / (oracle - rnd))
        per_seed = d["methods"][m].get("per_seed")
        if per_seed is not None:
            means = [float(np.mean(np.array(s)[cols])) for s in per_seed]
            fo = [x / oracle for x in means]
            e["per_seed_frac_of_oracle"] = [round(x, 4) for x in fo]
            e["ci95_frac_of_oracle"] = interval95(fo)
            if rnd is not None and oracle != rnd:
                fr = [(x - rnd) / (oracle - rnd) for x in means]
                e["per_seed_frac_above_random"] = [round(x, 4) for x in fr]
                e["ci95_frac_above_random"] = interval95(fr)
        out[m] = e
    for m in mtg_methods:
        for base in ("hoa", "tag"):
            if base in curve:
                out[m][f"above_{base}_every_budget"] = bool(np.all(curve[m] > curve[base]))
    return out


def _column(spec: str, files: list[str]) -> tuple[str, str | None]:
    """``method`` (from any file) or ``method@FILE`` (from that file only: its path or name)."""
    name, at, src = spec.partition("@")
    if not name or (at and not src):
        raise ValueError(f"a paired column is METHOD or METHOD@FILE, got {spec!r}")
    if at and not any(f == src or Path(f).name == src for f in files):
        raise ValueError(f"{spec!r} names {src!r}, which is not among the files given "
                         f"({', '.join(files)})")
    return name, (src if at else None)


def paired(files: list[str], a: str, b: str) -> list[dict[str, Any]]:
    """Per-seed differences ``a - b`` (points of the oracle's %, ETTh1 above random) with a 95%
    t-interval, per table and K, from artifacts of this script (methods may sit in different
    files of the same table and seed ranges; seeds are paired by number). A column
    ``method@FILE`` reads that file only, so one method pairs with itself across two artifacts
    (a rerun against its earlier run)."""
    cols = {spec: _column(spec, files) for spec in (a, b)}
    if a == b:
        raise ValueError(f"the two paired columns are the same ({a!r}); name a file for each "
                         "(METHOD@FILE) to pair one method across two artifacts")
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for f in files:
        rep = json.loads(Path(f).read_text())
        gen = rep.get("generator")
        table = rep["dataset"] + ("" if gen is None else
                                  f" N={gen['n_tasks']} gen={gen['seed']}" +
                                  ("" if gen.get("n_random") is None else
                                   f" random={gen['n_random']}") +
                                  "".join(f" {k}={gen[k]}" for k in (*NOISE_ARGS, "replicates")
                                          if k in gen)) + \
            ("" if rep.get("score_on", "test") == "test" else f" scored on {rep['score_on']}")
        key = "per_seed_frac_above_random" if rep["dataset"] == "etth1" else \
            "per_seed_frac_of_oracle"
        first = int(rep.get("first_seed", 0))
        for k, r in rep["rounds"].items():
            c = cells.setdefault((table, k), {})
            for spec, (m, src) in cols.items():
                if src is not None and f != src and Path(f).name != src:
                    continue
                if m in r and key in r[m]:
                    c.setdefault(spec, {}).update(
                        {first + i: x for i, x in enumerate(r[m][key])})
    out = []
    for (table, k), c in sorted(cells.items()):
        common = sorted(set(c.get(a, {})) & set(c.get(b, {})))
        if common:
            s = len(common)
            xa, xb = [c[a][i] for i in common], [c[b][i] for i in common]
            d = [100 * (x - y) for x, y in zip(xa, xb)]
            out.append({"table": table, "K": int(k), "seeds": s,
                        a: 100 * float(np.mean(xa)), b: 100 * float(np.mean(xb)),
                        "diff": float(np.mean(d)), "ci95": interval95(d),
                        "wins": int(sum(x > 0 for x in d)), "losses": int(sum(x < 0 for x in d))})
    return out


def main() -> None:
    if "--replicate-noise" in sys.argv:   # ETTh1-7's seeds: noise vs shift (seventh pass)
        rp = argparse.ArgumentParser(description="seed noise vs shift on ETTh1-7")
        rp.add_argument("--replicate-noise", action="store_true", required=True)
        rp.add_argument("--json", dest="json_path")
        ra = rp.parse_args()
        rn = replicate_noise()
        for key, val in rn.items():
            print(f"{key:<42s} {val:.4g}" if isinstance(val, float) else f"{key:<42s} {val}")
        if ra.json_path:
            Path(ra.json_path).write_text(json.dumps(rn, indent=1))
        return
    if "--paired" in sys.argv:
        pp = argparse.ArgumentParser(description="paired per-seed differences of two methods")
        pp.add_argument("--paired", required=True, metavar="A,B",
                        help="two columns: METHOD (any file) or METHOD@FILE (that file only)")
        pp.add_argument("files", nargs="+")
        pa = pp.parse_args()
        cols = pa.paired.split(",")
        if len(cols) != 2:
            pp.error(f"--paired takes two columns A,B, got {pa.paired!r}")
        a, b = cols
        try:
            rows = paired(pa.files, a, b)
        except ValueError as exc:
            pp.error(str(exc))
        for r in rows:
            print(f"{r['table']:<36s} K={r['K']:<2d} seeds={r['seeds']:<2d} {a} {r[a]:6.1f}  "
                  f"{b} {r[b]:6.1f}  diff {r['diff']:+6.1f} +- {r['ci95']:4.1f}  "
                  f"({r['wins']} up, {r['losses']} down)")
        if rows:
            print(f"mean over {len(rows)} cells: {np.mean([r['diff'] for r in rows]):+.1f} "
                  f"points ({a} {np.mean([r[a] for r in rows]):.1f}, "
                  f"{b} {np.mean([r[b] for r in rows]):.1f})")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("taskonomy", "ett", "etth1", "synthetic"), required=True)
    ap.add_argument("--n-tasks", type=int, default=10, help="synthetic: number of tasks")
    ap.add_argument("--n-random", type=int, default=None,
                    help="synthetic: random candidates of >= 3 tasks (default: all combinations)")
    ap.add_argument("--gen-seed", type=int, default=0, help="synthetic: generator seed")
    for noise in NOISE_ARGS:
        ap.add_argument(f"--{noise.replace('_', '-')}", type=float, default=None,
                        help=f"synthetic: the generator's {noise} (default: its own)")
    ap.add_argument("--replicates", type=int, default=1,
                    help="synthetic: validation = mean of this many noisy copies (replicate "
                         "variance for mtgnet-repshrunk)")
    ap.add_argument("--tag-draws", type=int, default=1,
                    help="synthetic: TAG's column as the mean over this many affinity draws "
                         "(the table's own + fresh ones), with an interval over draws")
    ap.add_argument("--rounds", type=int, nargs="+", default=[1])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--methods", default="oracle,hoa,tag,random,mtgnet")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="option of the mtgnet* methods (MTGNet args, alpha, kappa, warm_start, "
                         "use_measured, risk, final, shrink, max_size, shrink_rows)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in parallel forked workers")
    ap.add_argument("--score-on", choices=("test", "valid"), default="test",
                    help="score every method's groupings on this table (valid: the selection "
                         "criterion itself, to tell estimation error from validation-test shift)")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--progress", action="store_true",
                    help="print every fit's and prediction's seconds as they happen (stderr)")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    if args.tag_draws < 1:
        ap.error(f"--tag-draws must be >= 1, got {args.tag_draws}")
    if args.tag_draws > 1 and (args.dataset != "synthetic" or "tag" not in methods):
        ap.error("--tag-draws > 1 needs --dataset synthetic (a recorded table has one TAG run) "
                 "and tag among --methods")

    noise = {k: getattr(args, k) for k in NOISE_ARGS if getattr(args, k) is not None}
    tabs = load(args.dataset, n_tasks=args.n_tasks, n_random=args.n_random,
                gen_seed=args.gen_seed, noise=noise, replicates=args.replicates)
    valid, test = tabs["valid"], tabs["test"]
    if args.score_on == "valid":   # the oracle is then the best any method could score
        test = valid
    n = valid.n_tasks
    budgets = list(range(1, n + 1))
    options = {k: parse_option_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    mtg = [m for m in methods if m.startswith("mtgnet")]
    base = [m for m in methods if not m.startswith("mtgnet")]
    report: dict[str, Any] = {"dataset": args.dataset, "seeds": args.seeds,
                              **({"score_on": "valid"} if args.score_on == "valid" else {}),
                              "first_seed": args.first_seed, "options": options,
                              "environment": environment(), "rounds": {}}
    if args.dataset == "synthetic":
        report["generator"] = {"n_tasks": n, "n_random": args.n_random, "seed": args.gen_seed,
                               **noise, **({"replicates": args.replicates}
                                           if args.replicates > 1 else {})}
    # baselines do not depend on K: the replay module (same protocol) computes them once
    search = "auto" if n <= 12 else "beam"
    base_res = replay(valid, test, methods=base, hoa=tabs["hoa"], tag=tabs["tag"],
                      dataset=args.dataset, search=search).to_dict() if base else {"methods": {}}
    if args.tag_draws > 1:
        base_res["methods"]["tag"] = tag_over_draws(
            tabs, test, args.gen_seed, args.tag_draws, base_res["methods"]["tag"],
            dataset=args.dataset, search=search)
        report["tag_draws"] = args.tag_draws
    _STATE.update(valid=valid, test=test, budgets=budgets, options=options, tag=tabs["tag"],
                  progress=args.progress, valid_var=tabs.get("valid_var"))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for k in args.rounds:
        t0 = time.perf_counter()
        d: dict[str, Any] = {"budgets": budgets, "methods": dict(base_res["methods"])}
        timing: dict[str, Any] = {}
        for m in mtg:
            jobs = [(m, k, s) for s in seeds]
            if args.jobs > 1:
                import multiprocessing as mp

                with mp.get_context("fork").Pool(args.jobs) as pool:
                    outs = pool.map(_one_seed, jobs)
            else:
                outs = [_one_seed(j) for j in jobs]
            curves = [c for c, _, _ in outs]
            d["methods"][m] = {"average_test_gain": np.mean(curves, axis=0).tolist(),
                               "std_over_seeds": np.std(curves, axis=0).tolist(),
                               "measured": float(np.mean([u for _, u, _ in outs])),
                               "per_seed": curves}
            fit = [x for _, _, st in outs for x in st.get("fit_s", [])]
            prd = [x for _, _, st in outs for x in st.get("predict_s", [])]
            cpu = [x for _, _, st in outs for key in ("fit_cpu_s", "predict_cpu_s")
                   for x in st.get(key, [])]
            pcpu = [x for _, _, st in outs for x in st.get("predict_cpu_s", [])]
            timing[m] = {"fits_per_seed": len(fit) / len(outs),
                         "fit_s_mean": float(np.mean(fit)) if fit else 0.0,
                         "predict_s_mean": float(np.mean(prd)) if prd else 0.0,
                         "estimator_s_per_seed": (sum(fit) + sum(prd)) / len(outs),
                         # CPU seconds of the replay's thread: the work, whatever the load
                         "predict_cpu_s_mean": float(np.mean(pcpu)) if pcpu else 0.0,
                         "estimator_cpu_s_per_seed": sum(cpu) / len(outs),
                         "epochs_mean": float(np.mean([x for _, _, st in outs
                                                       for x in st.get("fit_epochs", [])] or [0])),
                         # every fit of the first seed: seconds, rows, epochs; predictions
                         "first_seed": {key: [round(x, 3) for x in outs[0][2].get(key, [])]
                                        for key in ("fit_s", "fit_cpu_s", "fit_rows",
                                                    "fit_epochs", "predict_s",
                                                    "predict_cpu_s", "fit_alpha")
                                         if key != "fit_alpha" or key in outs[0][2]}}
            alphas = [st["fit_alpha"] for _, _, st in outs if st.get("fit_alpha")]
            if alphas:   # mtgnet-blend: the network's weight, every fit and the last one
                timing[m]["alpha_mean"] = float(np.mean([a for al in alphas for a in al]))
                timing[m]["alpha_last_per_seed"] = [round(al[-1], 4) for al in alphas]
        s = summarize(d, n, mtg)
        s["seconds"] = round(time.perf_counter() - t0, 1)
        s["measured"] = {m: d["methods"][m].get("measured") for m in methods}
        s["timing"] = timing
        report["rounds"][str(k)] = s
        print(f"== {args.dataset} N={n} K={k} seeds={seeds[0]}..{seeds[-1]} options={options} "
              f"({s['seconds']} s)")
        print("budget      " + " ".join(f"{b:>8d}" for b in s["budgets"]) +
              "   mean  /oracle  >random")
        for m in methods:
            c = s[m]
            flag = ""
            if m in mtg:
                ci = c.get("ci95_frac_above_random", 0.0) if args.dataset == "etth1" else \
                    c["ci95_frac_of_oracle"]
                flag = f"+-{ci:.1%} "
                flag += " ".join(f">{b}:{'yes' if c.get(f'above_{b}_every_budget') else 'no'}"
                                 for b in ("hoa", "tag") if f"above_{b}_every_budget" in c)
                tm = timing[m]
                flag += (f" measured={s['measured'][m]:.0f} fits/seed={tm['fits_per_seed']:.0f}"
                         f" fit={tm['fit_s_mean']:.2f}s predict={tm['predict_s_mean']:.2f}s"
                         f" est/seed={tm['estimator_s_per_seed']:.0f}s"
                         f" (cpu {tm['estimator_cpu_s_per_seed']:.0f}s)")
            if m == "tag" and "ci95_frac_of_oracle" in c:   # --tag-draws (synthetic only)
                flag = f"+-{c['ci95_frac_of_oracle']:.1%} over {args.tag_draws} affinity draws"
            above = f"{c['frac_above_random']:7.1%}" if "frac_above_random" in c else "      -"
            print(f"{m:<11s} " + " ".join(f"{v:8.4f}" for v in c["curve"]) +
                  f" {c['mean']:7.4f} {c['frac_of_oracle']:6.1%} {above} {flag}", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
