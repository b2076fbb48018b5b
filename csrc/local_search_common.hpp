// What both local searches share (local_search.cpp, local_search_scan.cpp): the incumbent's
// per-task best and second best, and the objective change of a swap. Internal to the core.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "objective.hpp"

namespace mtgfast {
namespace ls_detail {

struct Incumbent {
  const Problem& p;
  std::vector<std::uint32_t> rows;
  std::vector<double> cur, second;  // best and second-best value per task (floor included)
  std::vector<int> who;             // position in rows of the best (-1: the floor)
  double value = kNegInf;
  double floor;

  Incumbent(const Problem& pr, std::vector<std::uint32_t> r)
      : p(pr), rows(std::move(r)), floor(pr.alone() ? 0.0 : kNegInf) {
    recompute();
  }

  void recompute() {
    const int n = p.n_tasks;
    cur.assign(std::size_t(p.stride), floor);
    second.assign(std::size_t(n), floor);
    who.assign(std::size_t(n), -1);
    for (std::size_t t = 0; t < rows.size(); ++t) {
      const double* g = p.row(rows[t]);
      for (mask_t b = p.masks[rows[t]]; b; b &= b - 1) {
        const std::size_t j = std::size_t(lowest_bit(b));
        if (g[j] > cur[j]) {
          second[j] = cur[j];
          cur[j] = g[j];
          who[j] = int(t);
        } else if (g[j] > second[j]) {
          second[j] = g[j];
        }
      }
    }
    value = 0.0;
    for (int j = 0; j < n; ++j) value += cur[std::size_t(j)];
    for (int j = n; j < p.stride; ++j) cur[std::size_t(j)] = 0.0;
  }

};

// Objective change of bringing candidate a in after a group was dropped: ``gain0_a`` is its gain
// over the incumbent, ``loss`` what dropping cost; for the dropped group's tasks D, a's gain is
// measured against ``fallback`` (the best that remains) instead of ``cur``, and a task left
// unserved (U) counts fully.
inline double swap_delta(const Problem& p, std::size_t a, double gain0_a, double loss, mask_t D,
                         mask_t U, const double* cur, const double* fallback) noexcept {
  const double* g = p.row(a);
  double d = gain0_a - loss;
  for (mask_t b = p.masks[a] & D; b; b &= b - 1) {
    const std::size_t j = std::size_t(lowest_bit(b));
    d -= g[j] > cur[j] ? g[j] - cur[j] : 0.0;
    if ((U >> j) & 1) d += g[j];
    else d += g[j] > fallback[j] ? g[j] - fallback[j] : 0.0;
  }
  return d;
}

// A task a merge of the rows at positions s and t frees: its current best and its fallback (the
// best over the other rows, the floor included; -inf: unserved).
struct Term { std::size_t j; double cur, fb; bool unserved; };

// Appends the terms of the pair (s, t), in ascending task order, and adds their tasks to D, the
// unserved ones to U and what dropping both rows costs to loss.
inline void pair_terms(const Problem& p, const Incumbent& inc, std::size_t s, std::size_t t,
                       std::vector<Term>& terms, mask_t& D, mask_t& U, double& loss) {
  for (int j = 0; j < p.n_tasks; ++j) {
    const int w = inc.who[std::size_t(j)];
    if (w != int(s) && w != int(t)) continue;
    D |= mask_t{1} << j;
    double f = inc.floor;  // best over the other rows
    for (std::size_t q = 0; q < inc.rows.size(); ++q) {
      if (q == s || q == t || !((p.masks[inc.rows[q]] >> j) & 1)) continue;
      f = std::max(f, p.row(inc.rows[q])[j]);
    }
    loss += inc.cur[std::size_t(j)];
    if (f == kNegInf) U |= mask_t{1} << j;
    else loss -= f;
    terms.push_back({std::size_t(j), inc.cur[std::size_t(j)], f, f == kNegInf});
  }
}

// A merge: the rows at positions s < t out, row a in, delta d.
struct MergeCand { double d; std::size_t s, t, a; };

// Tries the (at most 8) best merges in order of delta, each followed by the best add with the
// freed unit (best_add(cur) -> {gain > 0, row}, or {0, none}); takes the first that improves
// the incumbent by more than eps. Returns whether one was taken.
template <class BestAdd>
bool take_a_merge(const Problem& p, Incumbent& inc, std::vector<MergeCand>& cands, double eps,
                  BestAdd best_add) {
  std::sort(cands.begin(), cands.end(),
            [](const MergeCand& x, const MergeCand& y) { return x.d > y.d; });
  for (std::size_t c = 0; c < std::min<std::size_t>(cands.size(), 8); ++c) {
    std::vector<std::uint32_t> trial;
    for (std::size_t q = 0; q < inc.rows.size(); ++q)
      if (q != cands[c].s && q != cands[c].t) trial.push_back(inc.rows[q]);
    trial.push_back(std::uint32_t(cands[c].a));
    Incumbent next(p, trial);
    if (next.value == kNegInf) continue;  // a task left uncovered: never taken
    // A row of the trial set gains exactly 0 over it (each of its gains is <= the best), so it
    // can never beat 0 and needs no membership test.
    const std::pair<double, std::size_t> add = best_add(next.cur.data());
    const double v = next.value + add.first;
    if (v > inc.value + eps) {
      if (add.second < p.size()) trial.push_back(std::uint32_t(add.second));
      inc.rows = trial;
      inc.recompute();
      return true;
    }
  }
  return false;
}

}  // namespace ls_detail
}  // namespace mtgfast
