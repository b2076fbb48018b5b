#include "local_search.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "local_search_common.hpp"

namespace mtgfast {

using ls_detail::Incumbent;
using ls_detail::swap_delta;
using ls_detail::MergeCand;
using ls_detail::pair_terms;
using ls_detail::take_a_merge;
using ls_detail::Term;

namespace {

// A best move so far, with the tie-break of an ascending scan with a strict ">": the smaller row.
struct Best {
  double d = kNegInf;
  std::size_t a = ~std::size_t{0};
  void offer(double v, std::size_t r) {
    if (v > d || (v == d && r < a)) d = v, a = r;
  }
};

// Why the scan can skip candidates. A move's delta is gain0[a] - loss plus one term per freed task
// j (the dropped rows' tasks D); that term is exactly 0 unless a contains j and beats j's fallback
// (a task left unserved, U, always counts). So: when U is not empty only the rows containing U
// can be taken (a bitset AND, scanned in ascending order as before); otherwise the rows beating a
// fallback (prefixes of the per-task lists) are evaluated in full, and every other row has
// delta = gain0[a] - loss, whose best is the first of the rows ranked by gain0 (descending) that is
// not among them. gain0 itself is 0 except on the rows beating the incumbent on some task.

// A freed task of a move: its index, its fallback (the best that remains) and its current best.
struct Freed { std::size_t j; double fb, cur; };

class Scanner {
 public:
  Scanner(const Problem& p, const TaskIndex& ix)
      : p_(p), ix_(ix), gain0(p.size(), 0.0), in(p.size(), 0), marks_(p.size()),
        acc_(p.size(), 0.0), lanes_(4 * p.size(), 0.0) {}

  // gain0 (each row's gain over the incumbent; 0 for the chosen rows) and the rows where it is
  // positive, ranked by (gain0 descending, row ascending).
  void rank(const Incumbent& inc) {
    for (std::uint32_t r : ranked) gain0[r] = 0.0;
    ranked.clear();
    excess_over(ix_, inc.cur.data(), marks_, members_, lanes_, acc_.data());
    for (std::uint32_t r : members_)
      if (!in[r]) gain0[r] = acc_[r], ranked.push_back(r);
    std::sort(ranked.begin(), ranked.end(), [this](std::uint32_t x, std::uint32_t y) {
      return gain0[x] > gain0[y] || (gain0[x] == gain0[y] && x < y);
    });
  }

  // The best row a (not chosen, containing U) for a move freeing the tasks `freed` (ascending,
  // each with its fallback and current best; U: those left unserved) under delta(a) = gain0[a]
  // - loss + the freed tasks' terms; ties: the smaller row.
  template <class Delta>
  Best best_for(mask_t U, double loss, const std::vector<Freed>& freed, Delta delta) {
    Best b;
    if (U & (U - 1)) {  // two or more unserved tasks: the few rows containing them all
      bits_.assign(ix_.words, ~std::uint64_t{0});
      for (mask_t u = U; u; u &= u - 1) {
        const std::uint64_t* h = ix_.has.data() + std::size_t(lowest_bit(u)) * ix_.words;
        for (std::size_t w = 0; w < ix_.words; ++w) bits_[w] &= h[w];
      }
      for (std::size_t w = 0; w < ix_.words; ++w)
        for (std::uint64_t x = bits_[w]; x; x &= x - 1) {
          const std::size_t r = w * 64 + std::size_t(lowest_bit(x));
          if (in[r]) continue;
          const double d = delta(r);
          if (d > b.d) b.d = d, b.a = r;
        }
      return b;
    }
    // Otherwise delta accumulated task by task in ascending order from the per-task lists, only
    // the terms delta(a) adds that are not exactly 0: a freed task's rows beating its fallback,
    // and every row containing the one unserved task (the only rows that can be taken then).
    const std::uint32_t t = marks_.next();
    members_.clear();
    for (const Freed& f : freed) {
      const bool unserved = (U >> f.j) & 1;
      for (std::size_t k = ix_.start[f.j]; k < ix_.start[f.j + 1] && (unserved || ix_.gain[k] > f.fb);
           ++k) {
        const std::uint32_t r = ix_.row[k];
        const double g = ix_.gain[k];
        if (marks_.stamp[r] != t) marks_.stamp[r] = t, acc_[r] = gain0[r] - loss, members_.push_back(r);
        acc_[r] -= g > f.cur ? g - f.cur : 0.0;
        acc_[r] += unserved ? g : g - f.fb;
      }
    }
    for (std::uint32_t r : members_)
      if (!in[r] && (p_.masks[r] & U) == U) b.offer(acc_[r], r);
    if (U != 0) return b;
    // the rest: delta = gain0 - loss, non-increasing along `ranked`; equal deltas from different
    // gain0 (rounding) still go to the smaller row
    bool found = false;
    Best o;
    for (std::uint32_t r : ranked) {
      if (marks_.stamp[r] == t) continue;
      const double d = gain0[r] - loss;
      if (!found) o.d = d, o.a = r, found = true;
      else if (d == o.d) o.a = std::min<std::size_t>(o.a, r);
      else break;
    }
    const double d0 = 0.0 - loss;  // the rows with gain0 = 0, the smallest first
    if (!found || d0 == o.d)
      for (std::size_t r = 0; r < p_.size(); ++r)
        if (!in[r] && gain0[r] == 0.0 && marks_.stamp[r] != t) {
          if (!found) o.d = d0, o.a = r, found = true;
          else o.a = std::min(o.a, r);
          break;
        }
    if (found) b.offer(o.d, o.a);
    return b;
  }

  // The best add over `cur` (a row beating it on some task), gain > 0; ties: the smaller row.
  Best best_add(const double* cur) {
    excess_over(ix_, cur, marks_, members_, lanes_, acc_.data());
    Best b;
    b.d = 0.0;
    for (std::uint32_t r : members_) {
      const double gv = acc_[r];
      if (gv > b.d || (gv == b.d && b.a != ~std::size_t{0} && r < b.a)) b.d = gv, b.a = r;
    }
    return b;
  }


 private:
  const Problem& p_;
  const TaskIndex& ix_;

 public:
  std::vector<double> gain0;
  std::vector<char> in;
  std::vector<std::uint32_t> ranked;

 private:
  RowMarks marks_;
  std::vector<std::uint32_t> members_;
  std::vector<double> acc_, lanes_;
  std::vector<std::uint64_t> bits_;
};

}  // namespace

std::vector<std::uint32_t> local_search(const Problem& p, std::vector<std::uint32_t> start,
                                        int budget, int max_rounds, bool merge,
                                        std::uint64_t kick_seed, int kick_choices,
                                        const TaskIndex* index, const Deadline* deadline) {
  if (kick_seed != 0 && max_rounds > 0) {  // the kicked first round: the scan's, as it was
    start = local_search_scan(p, std::move(start), budget, 1, merge, kick_seed, kick_choices);
    --max_rounds;
  }
  std::optional<TaskIndex> own;
  if (index == nullptr) index = &own.emplace(p);
  const int n = p.n_tasks;
  const std::size_t m = p.size();
  budget = std::min(budget, n);
  Incumbent inc(p, std::move(start));
  if (inc.value == kNegInf) return inc.rows;  // not a valid set: nothing to improve
  Scanner sc(p, *index);
  std::vector<double>& gain0 = sc.gain0;
  std::vector<char>& in = sc.in;
  std::vector<Freed> freed;
  for (int round = 0; round < max_rounds; ++round) {
    if (deadline && deadline->passed()) break;
    const double eps = 1e-12 * (1.0 + std::fabs(inc.value));
    std::fill(in.begin(), in.end(), 0);
    for (std::uint32_t r : inc.rows) in[r] = 1;
    sc.rank(inc);
    // add: the first ranked row (largest gain0, then the smallest row)
    if (int(inc.rows.size()) < budget && !sc.ranked.empty() && gain0[sc.ranked[0]] > eps) {
      inc.rows.push_back(sc.ranked[0]);
      inc.recompute();
      continue;
    }
    // swap: row at position t out, row a in; the best over (t, a), ties: smaller t, then a
    double best_delta = eps;
    int best_t = -1;
    std::size_t best_a = m;
    for (std::size_t t = 0; t < inc.rows.size(); ++t) {
      mask_t D = 0, U = 0;
      double loss = 0.0;
      freed.clear();
      for (int j = 0; j < n; ++j)
        if (inc.who[std::size_t(j)] == int(t)) {
          D |= mask_t{1} << j;
          loss += inc.cur[std::size_t(j)];
          if (inc.second[std::size_t(j)] == kNegInf) U |= mask_t{1} << j;
          else loss -= inc.second[std::size_t(j)];
          freed.push_back({std::size_t(j), inc.second[std::size_t(j)], inc.cur[std::size_t(j)]});
        }
      if (D == 0) {  // serves nothing: dropping it is free, and any add is a swap
        if (!sc.ranked.empty() && gain0[sc.ranked[0]] > best_delta)
          best_delta = gain0[sc.ranked[0]], best_t = int(t), best_a = sc.ranked[0];
        continue;
      }
      const Best b = sc.best_for(U, loss, freed, [&](std::size_t a) {
        return swap_delta(p, a, gain0[a], loss, D, U, inc.cur.data(), inc.second.data());
      });
      if (b.a < m && b.d > best_delta) best_delta = b.d, best_t = int(t), best_a = b.a;
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
    std::vector<Term> terms;
    if (deadline && deadline->passed()) break;  // no merge started past the deadline
    for (std::size_t s = 0; s < inc.rows.size(); ++s)
      for (std::size_t t = s + 1; t < inc.rows.size(); ++t) {
        mask_t D = 0, U = 0;
        double loss = 0.0;
        terms.clear();
        pair_terms(p, inc, s, t, terms, D, U, loss);
        freed.clear();
        for (const Term& tm : terms) freed.push_back({tm.j, tm.fb, tm.cur});
        // the sum of swap_delta's terms in its order, branch-free over every freed task
        const Best b = sc.best_for(U, loss, freed, [&](std::size_t a) {
          const double* g = p.row(a);
          double d = gain0[a] - loss;
          for (const Term& tm : terms) {
            const double gj = g[tm.j];
            d -= std::max(gj - tm.cur, 0.0);
            d += tm.unserved ? gj : std::max(gj - tm.fb, 0.0);
          }
          return d;
        });
        if (b.a < m) cands.push_back({b.d, s, t, b.a});
      }
    const bool moved = take_a_merge(p, inc, cands, eps, [&](const double* cur) {
      const Best add = sc.best_add(cur);
      return std::pair<double, std::size_t>{add.d, add.a};
    });
    if (!moved) break;
  }
  return inc.rows;
}

}  // namespace mtgfast
