// Exact grouping search: subset DP over task partitions (all budgets at once).
#pragma once
#include <cstdint>
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"

namespace mtgfast {

// Bytes the partition DP needs for n tasks and budgets up to max_budget.
std::uint64_t dp_bytes(int n_tasks, int max_budget) noexcept;

// Proven optimum for each budget by dynamic programming over partitions of the task set:
// w[T] = max over rows C >= T of sum_{j in T} g_C[j];  f_k[S] = best split of S into <= k parts
// (under Alone a task may also be left out at 0). Time O(min(B, N) * 3^N), memory O(B * 2^N).
// Throws std::length_error when the tables would exceed max_bytes. Stops at the deadline: budgets
// whose layer was not completed come back infeasible, not proven, with timed_out set.
std::vector<GroupingResult> exact_dp(const Problem& p, const std::vector<int>& budgets,
                                     std::uint64_t max_bytes, const Deadline& deadline);

}  // namespace mtgfast
