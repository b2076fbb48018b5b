#include "task_index.hpp"

#include <algorithm>
#include <utility>

namespace mtgfast {

TaskIndex::TaskIndex(const Problem& p) : n_tasks(p.n_tasks), rows(p.size()) {
  const std::size_t n = std::size_t(p.n_tasks), m = p.size();
  words = (m + 63) / 64;
  has.assign(n * words, 0);
  start.assign(n + 1, 0);
  for (std::size_t a = 0; a < m; ++a)
    for (mask_t b = p.masks[a]; b; b &= b - 1) {
      const std::size_t j = std::size_t(lowest_bit(b));
      has[j * words + a / 64] |= std::uint64_t{1} << (a % 64);
      ++start[j + 1];
    }
  for (std::size_t j = 0; j < n; ++j) start[j + 1] += start[j];
  std::vector<std::pair<double, std::uint32_t>> entries(start[n]);
  std::vector<std::size_t> next(start.begin(), start.end() - 1);
  for (std::size_t a = 0; a < m; ++a)
    for (mask_t b = p.masks[a]; b; b &= b - 1) {
      const std::size_t j = std::size_t(lowest_bit(b));
      entries[next[j]++] = {p.row(a)[j], std::uint32_t(a)};
    }
  for (std::size_t j = 0; j < n; ++j)  // rows are ascending already: stable keeps them so
    std::stable_sort(entries.begin() + std::ptrdiff_t(start[j]),
                     entries.begin() + std::ptrdiff_t(start[j + 1]),
                     [](const auto& x, const auto& y) { return x.first > y.first; });
  gain.resize(entries.size());
  row.resize(entries.size());
  for (std::size_t k = 0; k < entries.size(); ++k)
    gain[k] = entries[k].first, row[k] = entries[k].second;
}

std::size_t TaskIndex::beating(std::size_t j, double x) const noexcept {
  const auto first = gain.begin() + std::ptrdiff_t(start[j]);
  const auto last = gain.begin() + std::ptrdiff_t(start[j + 1]);
  // descending: the first entry that is not > x
  return std::size_t(std::partition_point(first, last, [x](double g) { return g > x; }) -
                     gain.begin());
}

std::uint32_t excess_over(const TaskIndex& ix, const double* x, RowMarks& marks,
                          std::vector<std::uint32_t>& members, std::vector<double>& lanes,
                          double* out) {
  const std::uint32_t t = marks.next();
  members.clear();
  for (std::size_t j = 0; j < std::size_t(ix.n_tasks); ++j) {
    const double xj = x[j];
    for (std::size_t k = ix.start[j]; k < ix.start[j + 1] && ix.gain[k] > xj; ++k) {
      const std::uint32_t r = ix.row[k];
      double* l = lanes.data() + 4 * std::size_t(r);
      if (marks.stamp[r] != t) marks.stamp[r] = t, l[0] = l[1] = l[2] = l[3] = 0.0, members.push_back(r);
      l[j % 4] += ix.gain[k] - xj;
    }
  }
  for (std::uint32_t r : members) {
    const double* l = lanes.data() + 4 * std::size_t(r);
    out[r] = (l[0] + l[1]) + (l[2] + l[3]);
  }
  return t;
}

std::size_t excess_work(const TaskIndex& ix, const double* x) {
  std::size_t w = 0;
  for (std::size_t j = 0; j < std::size_t(ix.n_tasks); ++j) w += ix.beating(j, x[j]) - ix.start[j];
  return w;
}

}  // namespace mtgfast
