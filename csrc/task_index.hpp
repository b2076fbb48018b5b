// Per-task candidate indices of a Problem, built once per search and shared by the local searches
// and the Lagrangian bound: which rows contain task j (a bitset), and those rows sorted by their
// gain on j, so "the rows that beat x on task j" is a prefix of a list.
#pragma once
#include <cstdint>
#include <vector>

#include "objective.hpp"

namespace mtgfast {

struct TaskIndex {
  explicit TaskIndex(const Problem& p);
  int n_tasks = 0;
  std::size_t rows = 0;                  // p.size()
  std::size_t words = 0;                 // 64-bit words of one task's bitset
  std::vector<std::uint64_t> has;        // n_tasks x words: bit r of task j: row r contains j
  std::vector<std::size_t> start;        // n_tasks + 1 offsets into gain / row
  std::vector<double> gain;              // per task: the gains on it, descending
  std::vector<std::uint32_t> row;        // the rows they belong to (ties: ascending)

  // End of task j's prefix of rows whose gain on j is > x.
  std::size_t beating(std::size_t j, double x) const noexcept;
};

// Rows marked once each: a stamp per row and a counter (no clearing between uses).
struct RowMarks {
  explicit RowMarks(std::size_t m) : stamp(m, 0) {}
  std::vector<std::uint32_t> stamp;
  std::uint32_t tick = 0;
  std::uint32_t next() {
    if (++tick == 0) std::fill(stamp.begin(), stamp.end(), 0u), tick = 1;
    return tick;
  }
};

// positive_excess(p.row(r), x, p.stride) for every row r with a gain above x on some task (x:
// n_tasks values; every other row's is exactly 0): the same four lane sums in the same order, the
// terms that are exactly 0 left out. Appends those rows to `members` (cleared first) and writes
// their values to out[r]; `lanes` (4 per row) is scratch. Returns the mark of `members`.
std::uint32_t excess_over(const TaskIndex& ix, const double* x, RowMarks& marks,
                          std::vector<std::uint32_t>& members, std::vector<double>& lanes,
                          double* out);

// How many (task, row) entries excess_over(ix, x) visits: to choose it or a dense scan.
std::size_t excess_work(const TaskIndex& ix, const double* x);

}  // namespace mtgfast
