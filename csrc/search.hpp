// One entry point for the grouping searches: every result carries an upper bound of the optimum.
#pragma once
#include <cstdint>
#include <vector>

#include "objective.hpp"

namespace mtgfast {

// Local search (a few full passes over the candidates per move) runs up to this many candidates.
constexpr std::size_t kLocalSearchMaxRows = 50000;
// Work (nodes + rows examined) of the fewest-rows cover search that starts the budgets the beam
// left without a grouping: ~0.1 s at most.
constexpr std::uint64_t kCoverWorkLimit = 50000000;

struct SearchOptions {
  int beam_width = 5;
  double time_limit = 0.0;          // seconds for the whole call (<= 0: none)
  std::uint64_t max_dp_bytes = std::uint64_t{4} << 30;
  double gap_tol = 1e-6;            // optimal: bound - value <= Problem::tolerance
  bool local_search = true;         // improve beam results by local search (Beam, BranchBound)
};

// Beam: beam search (+ local search) and a Lagrangian bound per budget. DP: the partition DP
// (bound = value); budgets it does not reach within the time limit get the Beam treatment.
// BranchBound: beam + local search, then branch-and-bound per budget (increasing budgets; each
// gets an equal share of the time left). One result per entry of `budgets`, in that order.
std::vector<GroupingResult> search(const Problem& p, const std::vector<int>& budgets, Method method,
                                   const SearchOptions& opt);

}  // namespace mtgfast
