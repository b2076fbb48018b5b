// Beam search for groupings (the polynomial method of the MTG-Net appendix), all budgets in one pass.
#pragma once
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"

namespace mtgfast {

// Layer k of the beam holds the `width` best sets of k chosen rows. A child (state s, row i) is
// scored by its completed value V(s) + sum_j max(0, g_ij - cur_s[j]) (an uncovered task j of row i
// contributes g_ij - alone_value[j] instead). Ties: smaller completed cost, then smaller mask, then
// the parent's rank. Every child evaluated (not only the kept ones) is a candidate answer for the
// budgets >= its completed cost = |rows| + #uncovered tasks (each needs its singleton; 0 under
// Alone), so every result is a valid grouping. One result per entry of `budgets`, in that order;
// feasible = false where no state of cost <= budget was seen. Never claims optimality.
// Past `deadline` the scan stops with the records so far (the first layer still completes its
// one pass over the rows, keeping records only); then `*timed_out` (when given) and every
// result's timed_out are true.
std::vector<GroupingResult> beam_search(const Problem& p, const std::vector<int>& budgets, int width,
                                        const Deadline& deadline = Deadline(),
                                        bool* timed_out = nullptr);

}  // namespace mtgfast
