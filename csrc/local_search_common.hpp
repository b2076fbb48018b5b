// What both local searches share (local_search.cpp, local_search_scan.cpp): the incumbent's
// per-task best and second best, and the objective change of a swap. Internal to the core.
#pragma once
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

}  // namespace ls_detail
}  // namespace mtgfast
