// Upper bounds on the best grouping: a Lagrangian relaxation of the per-task assignment rows.
//
// The problem as an integer program: y_r = 1 when row r is chosen (sum_r y_r <= B), x_rj <= y_r the
// share of task j served by r, sum_r x_rj = 1 (Singleton) or <= 1 (Alone); maximise sum g_rj x_rj.
// Dualising the assignment rows with multipliers lambda_j (free; >= 0 under Alone) leaves
//   L(lambda) = sum_j lambda_j + sum_{r fixed in} rho_r + (sum of the k largest rho_r of the free
//   rows),   rho_r = sum_{j in r} max(0, g_rj - lambda_j),
// a valid upper bound at every lambda (its minimum equals the LP relaxation's value). The
// multipliers are improved by subgradient steps (Polyak step towards the incumbent, halving).
#pragma once
#include <cstdint>
#include <vector>

#include "deadline.hpp"
#include "objective.hpp"
#include "task_index.hpp"

namespace mtgfast {

struct BoundOptions {
  int max_iter = 300;        // subgradient iterations
  double target = kNegInf;   // stop once the bound is <= target (a node that can be pruned)
  double theta = 1.0;        // initial Polyak step factor
  int patience = 8;          // halve theta after this many iterations without improvement
  double min_theta = 1e-4;   // stop when theta falls below this
  const Deadline* deadline = nullptr;  // stop after the iteration it passed in (the bound so far)
};

struct BoundResult {
  double bound = kNegInf;               // best (smallest) L(lambda) found; -inf: infeasible
  std::vector<double> lambda;           // multipliers that gave it
  std::vector<std::uint32_t> selected;  // free rows taken at those multipliers (the k largest rho)
  std::vector<double> rho;              // rho of each row of `active` at those multipliers
  std::vector<std::uint32_t> best_primal;  // best feasible set seen (fixed + selected), if any
  double best_primal_value = kNegInf;
  std::vector<std::vector<std::uint32_t>> primals;  // the best distinct feasible sets seen (<= 4)
  int iterations = 0;
};

// Bound over the sets S with fixed <= S <= fixed + active and |S| <= |fixed| + k. `lambda0` (size
// n_tasks, may be empty) starts the multipliers. `lower` is a known achievable value (the incumbent)
// used by the step rule. Never below the true optimum of that subproblem (up to rounding; a slack
// of 1e-12 relative is added). `index` (p's, optional) lets a bound over all rows (no fixed
// rows, active = 0..M-1) compute rho only for the rows that beat lambda somewhere (the same values).
BoundResult lagrangian_bound(const Problem& p, const std::vector<std::uint32_t>& fixed,
                             const std::vector<std::uint32_t>& active, int k,
                             const std::vector<double>& lambda0, double lower,
                             const BoundOptions& opt, const TaskIndex* index = nullptr);

// Sum over tasks of the best gain any row gives them (max(0, .) under Alone): the bound for
// budgets >= n_tasks, and the trivial one for all budgets.
double best_gain_bound(const Problem& p);

// Value of a set of rows under the max rule, or -inf if a task is uncovered under Singleton.
double value_of(const Problem& p, const std::uint32_t* rows, std::size_t count);

}  // namespace mtgfast
