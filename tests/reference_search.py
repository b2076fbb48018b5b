"""Plain Python/numpy references of the grouping search and of mask enumeration.

The objective, the brute force over subsets and the mask order live in ``mtgfast._reference``
(the installed self-test needs them too); the partition brute force, the subset DP, the beam and
the MILP (which only the tests need) live here.

Slow on purpose: each follows the definition (or the same algorithm written without tricks) so
that the C++ core can be checked against it. Gains are (n_masks, n_tasks) with NaN outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# one definition of the objective and of mask order: the installed wheel's self-test uses it too
from mtgfast._reference import (brute_force_subsets, brute_force_value, candidate_dict, colex_rank,
                                lex_masks, mask_of, score, table_dict, tasks_of)

__all__ = ["brute_force_partitions", "brute_force_subsets", "brute_force_value", "candidate_dict",
           "colex_rank", "lex_masks", "mask_of", "milp_optimum", "reference_beam", "reference_dp",
           "score", "set_partitions", "table_dict", "tasks_of"]

NEG_INF = -np.inf


def set_partitions(items):
    """All partitions of a list into non-empty blocks."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1:]
        yield [[first], *part]


def brute_force_partitions(masks, gains, budgets, uncovered: str = "singleton"):
    """Best value per budget by enumerating every partition of the tasks: each block is served by
    the candidate containing it with the largest block sum (or, under "alone", trained alone)."""
    n = np.asarray(gains).shape[1]
    cand = candidate_dict(masks, gains, uncovered)
    block_value: dict[int, float] = {}

    def value_of(block_mask: int) -> float:
        if block_mask not in block_value:
            vals = [float(np.sum(g[tasks_of(block_mask, n)])) for c, g in cand.items()
                    if c & block_mask == block_mask]
            block_value[block_mask] = max(vals) if vals else NEG_INF
        return block_value[block_mask]

    best = {b: None for b in budgets}
    for part in set_partitions(list(range(n))):
        vals = sorted((value_of(mask_of(block)) for block in part), reverse=True)
        for b in budgets:
            if uncovered == "alone":
                v = sum(x for x in vals[:b] if x > 0)
            else:
                if len(vals) > b or vals[-1] == NEG_INF:
                    continue
                v = sum(vals)
            if best[b] is None or v > best[b]:
                best[b] = v
    return best


# -- exact: the same partition DP in numpy ------------------------------------------------------
def reference_dp(masks, gains, budgets, uncovered: str = "singleton"):
    """Values per budget by the subset DP of the C++ core, vectorised over submasks with numpy."""
    n = np.asarray(gains).shape[1]
    cand = candidate_dict(masks, gains, uncovered)
    size = 1 << n
    cmasks = np.array(sorted(cand), dtype=np.int64)
    cgains = np.nan_to_num(np.stack([cand[c] for c in sorted(cand)]), nan=0.0) if len(cand) \
        else np.zeros((0, n))
    w = np.full(size, NEG_INF)
    for t in range(1, size):  # w[T] = best block sum over the candidates containing T
        sup = (cmasks & t) == t
        if sup.any():
            w[t] = cgains[sup][:, tasks_of(t, n)].sum(axis=1).max()
    kmax = min(max(budgets), n)
    # submasks of each `rest`, built once
    subs = [None] * size
    f = np.full(size, NEG_INF)
    if uncovered == "alone":
        f[:] = 0.0
    else:
        f[0] = 0.0
    layers = [f]
    for _ in range(kmax):
        prev, cur = layers[-1], np.full(size, NEG_INF)
        cur[0] = 0.0
        for s in range(1, size):
            low = s & -s
            rest = s ^ low
            if subs[rest] is None:
                sub, lst = rest, []
                while True:
                    lst.append(sub)
                    if sub == 0:
                        break
                    sub = (sub - 1) & rest
                subs[rest] = np.array(lst, dtype=np.int64)
            sm = subs[rest]
            v = np.max(w[low | sm] + prev[rest ^ sm])
            if uncovered == "alone":
                v = max(v, cur[rest])
            cur[s] = v
        layers.append(cur)
    full = size - 1
    out = {}
    for b in budgets:
        v = layers[min(b, kmax)][full]
        out[b] = None if v == NEG_INF else float(v)
    return out


# -- beam ------------------------------------------------------------------------------------
@dataclass
class _State:
    rows: tuple[int, ...]
    cur: np.ndarray
    uncovered: int
    value: float
    cost: int


def reference_beam(masks, gains, budgets, width: int, uncovered: str = "singleton"):
    """The beam search of the C++ core in numpy: returns {budget: (groups, value) or None}.

    Same rules: children ranked by (completed value desc, completed cost asc, row asc, parent
    rank asc), duplicate sets dropped, every valid child a candidate answer for cost <= budget.
    A value is the in-order float64 sum of the child's task gains, as in the core (which ranks
    on a float32 scan only what its rounding slack cannot rule out).
    """
    gains = np.asarray(gains, dtype=np.float64)
    n = gains.shape[1]
    cand = candidate_dict(masks, gains, uncovered)
    rows = sorted(cand)
    mask_arr = np.array(rows, dtype=np.uint64)
    G = np.stack([cand[r] for r in rows]) if rows else np.zeros((0, n))
    inside = np.array([[(r >> j) & 1 for j in range(n)] for r in rows], dtype=bool).reshape(-1, n)
    G = np.where(inside, G, NEG_INF)
    alone = uncovered == "alone"
    alone_value = np.zeros(n) if alone else np.array([cand[1 << j][j] for j in range(n)])
    full = (1 << n) - 1
    max_cost = min(max(budgets), n)

    def total(cur):   # summed over tasks in order, as the C++ core sums a state's value
        v = 0.0
        for x in cur:
            v += float(x)
        return v

    def make(rows_, cur, unc):
        return _State(tuple(sorted(rows_)), cur, unc, total(cur),
                      len(rows_) + (unc).bit_count())

    root = make((), alone_value.copy(), 0 if alone else full)
    layers = [[root]]
    best: dict[int, tuple[float, int, int, int]] = {}
    if root.cost <= max_cost:
        best[root.cost] = (root.value, 0, 0, 0)

    def extend(st: _State, r: int) -> _State:
        cur = st.cur.copy()
        unc = st.uncovered
        for j in tasks_of(rows[r], n):
            if (unc >> j) & 1:
                cur[j] = G[r, j]
                unc &= ~(1 << j)
            else:
                cur[j] = max(cur[j], G[r, j])
        return make((*st.rows, r), cur, unc)

    for layer in range(1, max_cost + 1):
        beam = layers[-1]
        if not beam:
            break
        vals, costs, members = [], [], []
        for st in beam:
            unc_bits = np.array([(st.uncovered >> j) & 1 for j in range(n)], dtype=bool)
            newly = np.bitwise_count(mask_arr & np.uint64(st.uncovered)).astype(np.int64)
            # each child's task gains: its row's gain where the task was uncovered, the better
            # of the two where covered; its value the in-order sum (ranked exactly, in float64)
            child = np.where(inside, np.where(unc_bits[None, :], G,
                                              np.maximum(st.cur[None, :], G)), st.cur[None, :])
            v = np.zeros(len(rows))
            for j in range(n):
                v = v + child[:, j]
            vals.append(v)
            costs.append(st.cost + 1 - newly)
            members.append(np.isin(np.arange(len(rows)), np.array(st.rows, dtype=np.int64)))
        V = np.stack(vals, axis=1)  # (rows, states): scan order is row-major
        C = np.stack(costs, axis=1)
        member = np.stack(members, axis=1)
        flat_v, flat_c, flat_ok = V.ravel(), C.ravel(), ~member.ravel()
        # records: per cost, the first (in scan order) child of largest value
        ok = np.flatnonzero(flat_ok & (flat_c <= max_cost))
        rec = ok[np.lexsort((ok, -flat_v[ok], flat_c[ok]))]
        first = np.ones(rec.size, dtype=bool)
        first[1:] = flat_c[rec[1:]] != flat_c[rec[:-1]]
        for k in rec[first]:
            c = int(flat_c[k])
            if c not in best or flat_v[k] > best[c][0]:
                best[c] = (float(flat_v[k]), layer, int(k % len(beam)), int(k // len(beam)))
        order = np.lexsort((flat_c, -flat_v))  # stable: ties keep scan order
        nxt, seen = [], set()
        for k in order:
            if not flat_ok[k]:
                continue
            s, r = int(k % len(beam)), int(k // len(beam))
            key = frozenset((*beam[s].rows, r))
            if key in seen:
                continue
            seen.add(key)
            nxt.append(extend(beam[s], r))
            if len(nxt) == width:
                break
        layers.append(nxt)

    out = {}
    for b in budgets:
        arg = None
        for c in range(min(b, max_cost) + 1):
            if c in best and (arg is None or best[c][0] > best[arg][0]):
                arg = c
        if arg is None:
            out[b] = None
            continue
        _, layer, parent, r = best[arg]
        st = layers[0][0] if layer == 0 else extend(layers[layer - 1][parent], r)
        chosen = [rows[i] for i in st.rows]
        chosen += [1 << j for j in range(n) if (st.uncovered >> j) & 1]
        t = score(cand, chosen, n, uncovered)
        # served groups only: the C++ core drops groups that serve no task
        served = set()
        for j in range(n):
            opts = [(cand[c][j], -c) for c in sorted(chosen) if (c >> j) & 1]
            if opts:
                g, negc = max(opts)
                if not (uncovered == "alone" and g < 0):
                    served.add(-negc)
        out[b] = (sorted(served), float(t.sum()))
    return out


# -- independent reference: the textbook MILP, solved by HiGHS (scipy.optimize.milp) ----------------
def milp_optimum(masks, gains, budget: int, uncovered: str = "singleton",
                 rel_gap: float = 1e-9, time_limit: float | None = None):
    """Optimum value for one budget by a MILP (choose-group binaries y_r, assignment variables
    x_rj <= y_r, sum_r x_rj = 1 per task (<= 1 under "alone"), sum_r y_r <= budget), or None when
    infeasible. Written from the problem statement, not from the C++ search."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    gains = np.asarray(gains, dtype=np.float64)
    n = gains.shape[1]
    cand = candidate_dict(masks, gains, uncovered)
    rows = sorted(cand)
    n_rows = len(rows)
    xs = [(i, j, float(cand[m][j])) for i, m in enumerate(rows) for j in tasks_of(m, n)
          if not (uncovered == "alone" and cand[m][j] <= 0)]
    nx = len(xs)
    if uncovered == "alone" and nx == 0:
        return 0.0
    c = np.zeros(n_rows + nx)
    c[n_rows:] = [-g for _, _, g in xs]
    ri, ci, v = [], [], []
    for k, (i, j, _) in enumerate(xs):  # x_rj - y_r <= 0
        ri += [k, k]
        ci += [n_rows + k, i]
        v += [1.0, -1.0]
    for k, (_, j, _) in enumerate(xs):  # assignment rows
        ri.append(nx + j)
        ci.append(n_rows + k)
        v.append(1.0)
    ri += [nx + n] * n_rows  # budget row
    ci += list(range(n_rows))
    v += [1.0] * n_rows
    a = coo_matrix((v, (ri, ci)), shape=(nx + n + 1, n_rows + nx)).tocsr()
    lo = np.concatenate([np.full(nx, -np.inf),
                         np.full(n, 1.0 if uncovered == "singleton" else -np.inf), [-np.inf]])
    hi = np.concatenate([np.zeros(nx), np.ones(n), [float(budget)]])
    integrality = np.zeros(n_rows + nx)
    integrality[:n_rows] = 1
    options = {"mip_rel_gap": rel_gap}
    if time_limit is not None:
        options["time_limit"] = time_limit
    res = milp(c, constraints=LinearConstraint(a, lo, hi), integrality=integrality,
               bounds=Bounds(0, 1), options=options)
    if res.status == 2:  # infeasible
        return None
    if res.x is None:
        raise RuntimeError(f"HiGHS gave no solution: {res.message}")
    return float(-res.fun)
