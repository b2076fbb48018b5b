// The former local search: every move scans the whole pool. Kept as the reference the new
// routine (local_search.cpp) is tested against move for move (tests/test_local_search.py).
#include "local_search.hpp"

#include <algorithm>
#include <cmath>

#include "local_search_common.hpp"

namespace mtgfast {

using ls_detail::Incumbent;
using ls_detail::swap_delta;
using ls_detail::MergeCand;
using ls_detail::pair_terms;
using ls_detail::take_a_merge;
using ls_detail::Term;


std::vector<std::uint32_t> local_search_scan(const Problem& p, std::vector<std::uint32_t> start,
                                             int budget, int max_rounds, bool merge,
                                             std::uint64_t kick_seed, int kick_choices) {
  const int n = p.n_tasks;
  const std::size_t m = p.size();
  budget = std::min(budget, n);
  Incumbent inc(p, std::move(start));
  if (inc.value == kNegInf) return inc.rows;  // not a valid set: nothing to improve
  std::vector<double> gain0(m);
  std::vector<char> in(m, 0);
  for (int round = 0; round < max_rounds; ++round) {
    const double eps = 1e-12 * (1.0 + std::fabs(inc.value));
    std::fill(in.begin(), in.end(), 0);
    for (std::uint32_t r : inc.rows) in[r] = 1;
    for (std::size_t a = 0; a < m; ++a)
      gain0[a] = in[a] ? 0.0 : positive_excess(p.row(a), inc.cur.data(), p.stride);
    // add
    if (int(inc.rows.size()) < budget) {
      std::size_t arg = m;
      double best = eps;
      for (std::size_t a = 0; a < m; ++a)
        if (gain0[a] > best) best = gain0[a], arg = a;
      if (arg < m) {
        inc.rows.push_back(std::uint32_t(arg));
        inc.recompute();
        continue;
      }
    }
    // swap: row at position t out, row a in (a kick: the first round takes a random one of the
    // `kick_choices` best swaps, improving or not)
    const bool kick = kick_seed != 0 && round == 0;
    std::vector<std::pair<double, std::pair<int, std::size_t>>> pool;
    double best_delta = kick ? kNegInf : eps;
    int best_t = -1;
    std::size_t best_a = m;
    for (std::size_t t = 0; t < inc.rows.size(); ++t) {
      mask_t D = 0, U = 0;
      double loss = 0.0;
      for (int j = 0; j < n; ++j)
        if (inc.who[std::size_t(j)] == int(t)) {
          D |= mask_t{1} << j;
          loss += inc.cur[std::size_t(j)];
          if (inc.second[std::size_t(j)] == kNegInf) U |= mask_t{1} << j;
          else loss -= inc.second[std::size_t(j)];
        }
      if (D == 0 && !kick) {  // serves nothing: dropping it is free, and any add is a swap
        std::size_t arg = m;
        double best = best_delta;
        for (std::size_t a = 0; a < m; ++a)
          if (gain0[a] > best) best = gain0[a], arg = a;
        if (arg < m) best_delta = best, best_t = int(t), best_a = arg;
        continue;
      }
      for (std::size_t a = 0; a < m; ++a) {
        if (in[a]) continue;
        const mask_t am = p.masks[a];
        if ((am & U) != U) continue;
        const double d = swap_delta(p, a, gain0[a], loss, D, U, inc.cur.data(), inc.second.data());
        if (kick) {
          if (pool.size() < std::size_t(kick_choices) || d > pool.back().first) {
            pool.push_back({d, {int(t), a}});
            std::sort(pool.begin(), pool.end(),
                      [](const auto& x, const auto& y) { return x.first > y.first; });
            if (pool.size() > std::size_t(kick_choices)) pool.pop_back();
          }
          continue;
        }
        if (d > best_delta) best_delta = d, best_t = int(t), best_a = a;
      }
    }
    if (kick && !pool.empty()) {
      std::uint64_t z = kick_seed + 0x9E3779B97F4A7C15ULL;  // splitmix64
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      z ^= z >> 31;
      const auto& pick = pool[std::size_t(z % pool.size())];
      best_t = pick.second.first;
      best_a = pick.second.second;
    }
    if (best_t >= 0) {
      inc.rows[std::size_t(best_t)] = std::uint32_t(best_a);
      inc.recompute();
      continue;
    }
    if (!merge) break;
    // merge: rows s < t out, the best row a in, then the best add with the freed unit
    if (inc.rows.size() < 2) break;
    std::vector<MergeCand> cands;
    // Every pair (s, t) first: the tasks it frees (D), those left unserved (U), what dropping it
    // costs, and each freed task's fallback. Then one pass over the candidates a with each
    // pair's best in the inner loop, so every row is read once per merge scan and not once per
    // pair (the scan was memory-bound). Per pair, a still runs in ascending order with a strict
    // ">", and each delta is the same sum in the same order as swap_delta's: same moves.
    struct Pair { mask_t D, U; double loss; std::size_t s, t, first, last; double best;
                  std::size_t arg; };
    std::vector<Pair> pairs;
    std::vector<Term> terms;
    for (std::size_t s = 0; s < inc.rows.size(); ++s)
      for (std::size_t t = s + 1; t < inc.rows.size(); ++t) {
        Pair pr{0, 0, 0.0, s, t, terms.size(), terms.size(), kNegInf, m};
        pair_terms(p, inc, s, t, terms, pr.D, pr.U, pr.loss);
        pr.last = terms.size();
        pairs.push_back(pr);
      }
    for (std::size_t a = 0; a < m; ++a) {
      if (in[a]) continue;
      const mask_t am = p.masks[a];
      const double* g = p.row(a);
      const double g0 = gain0[a];
      for (Pair& pr : pairs) {
        if ((am & pr.U) != pr.U) continue;
        // Branch-free over every freed task: outside a's mask g is -inf, so both terms are
        // exactly 0 there (an unserved task is always inside: a covers U), and d is the sum of
        // swap_delta's terms in its order.
        double d = g0 - pr.loss;
        for (std::size_t k = pr.first; k < pr.last; ++k) {
          const Term& tm = terms[k];
          const double gj = g[tm.j];
          d -= std::max(gj - tm.cur, 0.0);
          d += tm.unserved ? gj : std::max(gj - tm.fb, 0.0);
        }
        if (d > pr.best) pr.best = d, pr.arg = a;
      }
    }
    for (const Pair& pr : pairs)
      if (pr.arg < m) cands.push_back({pr.best, pr.s, pr.t, pr.arg});
    const bool moved = take_a_merge(p, inc, cands, eps, [&](const double* cur) {
      std::size_t arg = m;
      double best = 0.0;
      for (std::size_t a = 0; a < m; ++a) {
        const double gv = positive_excess(p.row(a), cur, p.stride);
        if (gv > best) best = gv, arg = a;
      }
      return std::pair<double, std::size_t>{best, arg};
    });
    if (!moved) break;
  }
  return inc.rows;
}

}  // namespace mtgfast
