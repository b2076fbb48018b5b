// Exact grouping search: subset DP over task partitions (all budgets at once) and branch-and-bound.
#pragma once
#include <cstdint>
#include <vector>

#include "objective.hpp"

namespace mtgfast {

// Bytes the partition DP needs for n tasks and budgets up to max_budget.
std::uint64_t dp_bytes(int n_tasks, int max_budget) noexcept;

// Proven optimum for each budget by dynamic programming over partitions of the task set:
// w[T] = max over rows C >= T of sum_{j in T} g_C[j];  f_k[S] = best split of S into <= k parts
// (under Alone a task may also be left out at 0). Time O(min(B, N) * 3^N), memory O(B * 2^N).
// Throws std::length_error when the tables would exceed max_bytes.
std::vector<GroupingResult> exact_dp(const Problem& p, const std::vector<int>& budgets,
                                     std::uint64_t max_bytes);

// Branch-and-bound over sets of rows (DFS, rows in decreasing order of their positive gain), seeded
// with the beam search (width beam_width) and with the optimum of the previous budget. Bound at a
// node: min(sum_j best reachable gain of j, current + sum of the r largest single-row improvements)
// with r = budget left; infeasible nodes (tasks no remaining row can cover) are cut. Stops at the
// time limit (seconds, shared by all budgets; <= 0 or inf: none) and then reports optimal = false.
std::vector<GroupingResult> exact_bnb(const Problem& p, const std::vector<int>& budgets,
                                      double time_limit, int beam_width);

}  // namespace mtgfast
