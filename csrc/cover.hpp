// Fewest candidate rows that contain every task: the smallest budget a grouping can have under
// Uncovered::Singleton. The beam ranks states by value, so on sparse pools it can prune every path
// to a small budget that is feasible; this exact search gives those budgets a valid start.
#pragma once
#include <cstdint>
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"
#include "task_index.hpp"

namespace mtgfast {

// Depth-first over the lowest uncovered task's rows (largest new coverage first, ties: smaller
// row), pruned by chosen + ceil(uncovered / widest row). Stops at a cover of <= `enough` rows, after
// `work_limit` units of work (one per node and per row a node examines) or at the deadline;
// returns the fewest rows found so far (ascending row indices; empty when the pool cannot cover
// every task or the limit came before the first cover).
// `ix` is p's task index (its per-task row lists; their order does not matter).
std::vector<std::uint32_t> fewest_rows_cover(const Problem& p, const TaskIndex& ix, int enough,
                                             std::uint64_t work_limit, const Deadline& deadline);

}  // namespace mtgfast
