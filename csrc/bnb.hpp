// Branch-and-bound over chosen rows with Lagrangian bounds (bound.hpp) and reduced-cost fixing.
#pragma once
#include <cstdint>
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"
#include "task_index.hpp"

namespace mtgfast {

struct BnbOutcome {
  std::vector<std::uint32_t> rows;  // best set found (empty + value -inf: none)
  double value = kNegInf;
  double bound = kInf;              // valid upper bound of the optimum for the budget
  bool complete = false;            // every node was closed (bound <= value + tolerance)
  std::uint64_t nodes = 0;
  std::vector<double> root_lambda;  // multipliers at the root (a warm start for the next budget)
};

// Best set of at most `budget` rows. `incumbent` (may be empty) is a valid set to start from. A
// node is closed when its bound is <= incumbent + p.tolerance(gap_tol, incumbent). DFS, the child
// that takes the branching row first; stops at the deadline with the bound of the open nodes.
// `index` (p's, optional) is handed to the local searches of the nodes.
BnbOutcome branch_and_bound(const Problem& p, int budget, std::vector<std::uint32_t> incumbent,
                            double gap_tol, const Deadline& deadline,
                            const std::vector<double>& lambda0,
                            const TaskIndex* index = nullptr);

}  // namespace mtgfast
