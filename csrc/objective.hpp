// Grouping objective: candidate tables, and turning a set of chosen candidates into a grouping.
// Pure C++17. All gains are double; entries outside a combination are ignored (stored as -inf).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "masks.hpp"

namespace mtgfast {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
// Largest |gain| the core searches (2^64): sums of 64 of them, the Lagrangian bounds and the
// beam's float32 copy stay finite. The Python layer scales larger (and tiny) tables first.
constexpr double kMaxGain = 18446744073709551616.0;

// What happens to a task that no chosen group contains.
enum class Uncovered {
  Singleton,  // it needs its singleton {j}, which costs one unit of budget like any group (default)
  Alone,      // it is trained alone at gain 0 for free; a task's value is max(0, best chosen gain)
};

// A validated candidate table. Rows are sorted by mask (ties in every search break towards smaller
// masks). Under Uncovered::Singleton each missing singleton {j} is added as a row with gain 0.
struct Problem {
  int n_tasks = 0;
  Uncovered uncovered = Uncovered::Singleton;
  std::vector<mask_t> masks;           // sorted ascending, distinct, non-zero
  int stride = 0;                      // row length of gains: n_tasks rounded up to 4 (SIMD lanes)
  std::vector<double> gains;           // masks.size() x stride, row-major, -inf outside the mask
  std::vector<std::int64_t> singleton_row;  // row of {j}, -1 when absent (only under Alone)
  std::vector<double> alone_value;     // value of task j when served by nothing but itself
  double gain_abs_max = 0.0;           // largest |gain| inside a combination
  double unit = 1.0;                   // power of two at or above gain_abs_max (1 if it is 0):
                                       // the gap tolerance's scale

  // The gap below which a result of value v counts as optimal: gap_tol * max(unit, |v|), relative
  // to the table's own scale, so a table in other units (times 2^k) is proven alike.
  double tolerance(double gap_tol, double v) const noexcept {
    return gap_tol * (std::fabs(v) > unit ? std::fabs(v) : unit);
  }

  std::size_t size() const noexcept { return masks.size(); }
  const double* row(std::size_t i) const noexcept { return gains.data() + i * std::size_t(stride); }
  bool alone() const noexcept { return uncovered == Uncovered::Alone; }
};

// Validates and sorts a candidate table. masks: n_masks values; gains: n_masks x n_tasks row-major.
// Throws std::invalid_argument for n_tasks outside [1, 64], a zero mask, a bit >= n_tasks, duplicate
// masks, or a non-finite gain (or one above kMaxGain in magnitude) inside a combination.
Problem make_problem(const mask_t* masks, const double* gains, std::size_t n_masks, int n_tasks,
                     Uncovered uncovered);

// Which search produced a result.
enum class Method {
  DP,           // partition DP over task subsets (exact)
  BranchBound,  // branch-and-bound with Lagrangian bounds, warm-started by beam + local search
  Beam,         // beam search (+ local search), with a Lagrangian bound
};

constexpr double kInf = std::numeric_limits<double>::infinity();

struct GroupingResult {
  int budget = 0;
  bool feasible = false;
  bool optimal = false;                   // bound - value <= the gap tolerance (or proven by DP)
  bool timed_out = false;                 // the time limit stopped the search for this budget
  Method method = Method::Beam;
  double bound = kInf;                    // upper bound of the optimum for this budget
  std::uint64_t nodes = 0;                // branch-and-bound nodes (0 for the other methods)
  std::vector<mask_t> groups;             // ascending masks; every group serves >= 1 task
  std::vector<std::int64_t> assignment;   // index into groups per task, -1: trained alone (Alone)
  std::vector<double> task_gains;         // gain each task gets
  double value = kNegInf;                 // sum of task_gains
};

// Scores a set of chosen rows: each task is served by the chosen group where its gain is highest
// (ties: smaller mask); under Alone a task whose best gain is negative (or that no group contains)
// is trained alone at 0. Groups that serve no task are dropped (same value, less budget).
// Under Singleton every task must be contained in some chosen row (std::logic_error otherwise).
GroupingResult finalize(const Problem& p, std::vector<std::size_t> rows, int budget, bool optimal);

// An infeasible result for `budget` (no valid grouping known); `proven` tells whether none exists.
GroupingResult infeasible(int budget, bool proven);

// sum_j max(0, g_j - x_j) over a padded row of `stride` (a multiple of 4) entries, in four
// lanes: a row's Lagrangian profit (x = multipliers) and its gain over the incumbent (x = best).
inline double positive_excess(const double* g, const double* x, int stride) noexcept {
  double a[4] = {0.0, 0.0, 0.0, 0.0};
  for (int j = 0; j < stride; j += 4)
    for (int l = 0; l < 4; ++l) {
      const double d = g[j + l] - x[j + l];
      a[l] += d > 0.0 ? d : 0.0;
    }
  return (a[0] + a[1]) + (a[2] + a[3]);
}

}  // namespace mtgfast
