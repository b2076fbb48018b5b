#include "objective.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <iomanip>
#include <sstream>
#include <string>

namespace mtgfast {

namespace {

std::string short_number(double v) {  // 1.7e+308, not std::to_string's 309 digits
  std::ostringstream os;
  os << std::setprecision(6) << v;
  return os.str();
}

}  // namespace

Problem make_problem(const mask_t* masks_in, const double* gains, std::size_t n_masks,
                     int n_tasks, Uncovered uncovered) {
  check_n_tasks(n_tasks);
  const std::size_t n = std::size_t(n_tasks);
  const mask_t full = full_mask(n_tasks);
  // The caller's buffers may change under us (another thread, the GIL released): every input
  // value is read exactly once, into owned storage, and only that copy is checked and used.
  const std::vector<mask_t> masks(masks_in, masks_in + n_masks);
  for (std::size_t i = 0; i < n_masks; ++i) {
    if (masks[i] == 0)
      throw std::invalid_argument("masks contains the empty combination (mask 0) at index " +
                                  std::to_string(i));
    if (masks[i] & ~full)
      throw std::invalid_argument("masks[" + std::to_string(i) + "] = " + std::to_string(masks[i]) +
                                  " uses a task bit >= n_tasks=" + std::to_string(n_tasks));
  }
  // Sort (mask, input row) pairs: no indirection in the comparisons.
  std::vector<std::pair<mask_t, std::size_t>> keyed(n_masks);
  for (std::size_t i = 0; i < n_masks; ++i) keyed[i] = {masks[i], i};
  if (!std::is_sorted(keyed.begin(), keyed.end())) std::sort(keyed.begin(), keyed.end());
  std::vector<std::size_t> order(n_masks);
  for (std::size_t k = 0; k < n_masks; ++k) order[k] = keyed[k].second;
  for (std::size_t k = 1; k < n_masks; ++k)
    if (keyed[k].first == keyed[k - 1].first)
      throw std::invalid_argument("duplicate combination (mask " + std::to_string(keyed[k].first) +
                                  ") in masks");
  keyed = {};

  Problem p;
  p.n_tasks = n_tasks;
  p.uncovered = uncovered;
  p.stride = (n_tasks + 3) / 4 * 4;
  const std::size_t st = std::size_t(p.stride);
  std::vector<mask_t> sorted(n_masks);
  for (std::size_t k = 0; k < n_masks; ++k) sorted[k] = masks[order[k]];
  std::vector<mask_t> extra;  // missing singletons, ascending
  if (uncovered == Uncovered::Singleton) {
    for (int j = 0; j < n_tasks; ++j) {
      const mask_t s = mask_t{1} << j;
      if (!std::binary_search(sorted.begin(), sorted.end(), s)) extra.push_back(s);
    }
  }
  const std::size_t total = n_masks + extra.size();
  p.masks.reserve(total);
  p.gains.assign(total * st, kNegInf);
  // Merge the sorted input rows with the sorted added singletons; each gain inside a combination
  // is read once, stored and checked there (the first bad one in input order is reported).
  std::size_t bad_row = n_masks, bad_task = 0;
  double bad_value = 0.0;
  std::size_t a = 0, b = 0;
  while (a < n_masks || b < extra.size()) {
    const bool take_input = b == extra.size() || (a < n_masks && sorted[a] < extra[b]);
    const std::size_t r = p.masks.size();
    if (take_input) {
      const mask_t m = sorted[a];
      const std::size_t i = order[a];
      p.masks.push_back(m);
      for (mask_t bits = m; bits; bits &= bits - 1) {
        const std::size_t j = std::size_t(lowest_bit(bits));
        const double v = gains[i * n + j];
        p.gains[r * st + j] = v;
        p.gain_abs_max = std::max(p.gain_abs_max, std::fabs(v));
        // non-finite, or so large that sums, bounds and the beam's float copy could overflow
        if (!(std::fabs(v) <= kMaxGain) && (i < bad_row || (i == bad_row && j < bad_task)))
          bad_row = i, bad_task = j, bad_value = v;
      }
      ++a;
    } else {
      p.masks.push_back(extra[b]);
      p.gains[r * st + std::size_t(lowest_bit(extra[b]))] = 0.0;
      ++b;
    }
  }
  if (bad_row < n_masks) {
    const std::string where = "row " + std::to_string(bad_row) + " (mask " +
                              std::to_string(masks[bad_row]) + "), task " +
                              std::to_string(bad_task) + " is ";
    if (!std::isfinite(bad_value))
      throw std::invalid_argument("gains must be finite inside each combination: " + where +
                                  std::to_string(bad_value));
    throw std::invalid_argument(
        "gains must be at most 2^64 in magnitude for the core (mtgfast.group scales any "
        "finite table by a power of two first): " + where + short_number(bad_value));
  }
  if (p.gain_abs_max > 0.0) {
    int e = 0;
    const double f = std::frexp(p.gain_abs_max, &e);   // = f * 2^e, f in [0.5, 1)
    p.unit = std::ldexp(1.0, f == 0.5 ? e - 1 : e);
  }
  p.singleton_row.assign(n, -1);
  p.alone_value.assign(n, 0.0);
  for (std::size_t r = 0; r < p.masks.size(); ++r) {
    if (popcount(p.masks[r]) == 1) {
      const std::size_t j = std::size_t(lowest_bit(p.masks[r]));
      p.singleton_row[j] = std::int64_t(r);
      if (uncovered == Uncovered::Singleton) p.alone_value[j] = p.gains[r * st + j];
    }
  }
  return p;
}

GroupingResult infeasible(int budget, bool proven) {
  GroupingResult g;
  g.budget = budget;
  g.feasible = false;
  g.optimal = proven;
  g.bound = proven ? kNegInf : kInf;
  return g;
}

GroupingResult finalize(const Problem& p, std::vector<std::size_t> rows, int budget, bool optimal) {
  const int n = p.n_tasks;
  for (std::size_t r : rows)
    if (r >= p.size()) throw std::logic_error("finalize: row index out of range");
  std::sort(rows.begin(), rows.end());  // rows are sorted by mask, so this sorts groups by mask
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  std::vector<std::int64_t> serve(std::size_t(n), -1);  // position in rows
  std::vector<double> best(std::size_t(n), kNegInf);
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const double* g = p.row(rows[k]);
    for (mask_t bits = p.masks[rows[k]]; bits; bits &= bits - 1) {
      const int j = lowest_bit(bits);
      if (g[j] > best[std::size_t(j)]) {
        best[std::size_t(j)] = g[j];
        serve[std::size_t(j)] = std::int64_t(k);
      }
    }
  }
  GroupingResult out;
  out.budget = budget;
  out.feasible = true;
  out.optimal = optimal;
  out.task_gains.assign(std::size_t(n), 0.0);
  out.assignment.assign(std::size_t(n), -1);
  std::vector<std::int64_t> new_index(rows.size(), -1);
  for (int j = 0; j < n; ++j) {
    const std::size_t jj = std::size_t(j);
    if (serve[jj] < 0 || (p.alone() && best[jj] < 0.0)) {
      if (!p.alone()) throw std::logic_error("finalize: task " + std::to_string(j) + " uncovered");
      continue;  // trained alone: assignment -1, gain 0
    }
    new_index[std::size_t(serve[jj])] = 0;
  }
  for (std::size_t k = 0; k < rows.size(); ++k) {
    if (new_index[k] < 0) continue;
    new_index[k] = std::int64_t(out.groups.size());
    out.groups.push_back(p.masks[rows[k]]);
  }
  double value = 0.0;
  for (int j = 0; j < n; ++j) {
    const std::size_t jj = std::size_t(j);
    if (serve[jj] < 0 || (p.alone() && best[jj] < 0.0)) continue;
    out.assignment[jj] = new_index[std::size_t(serve[jj])];
    out.task_gains[jj] = best[jj];
  }
  for (int j = 0; j < n; ++j) value += out.task_gains[std::size_t(j)];
  out.value = value;
  return out;
}

}  // namespace mtgfast
