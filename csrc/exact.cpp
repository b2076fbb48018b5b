#include "exact.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>


namespace mtgfast {

namespace {

int max_of(const std::vector<int>& budgets) {
  int mb = 0;
  for (int b : budgets) {
    if (b < 1) throw std::invalid_argument("budget must be >= 1, got " + std::to_string(b));
    mb = std::max(mb, b);
  }
  return mb;
}

}  // namespace

std::uint64_t dp_bytes(int n_tasks, int max_budget) noexcept {
  if (n_tasks < 1 || n_tasks > 40 || max_budget < 1) return ~std::uint64_t{0};
  const std::uint64_t size = std::uint64_t{1} << n_tasks;
  const std::uint64_t layers = std::uint64_t(std::min(max_budget, n_tasks)) + 1;
  // f tables + w + the row achieving w + the per-row subset scratch (at most 2^n sums and masks)
  return size * (layers * sizeof(double) + 2 * sizeof(double) + sizeof(std::uint32_t) +
                 sizeof(mask_t));
}

std::vector<GroupingResult> exact_dp(const Problem& p, const std::vector<int>& budgets,
                                     std::uint64_t max_bytes, const Deadline& deadline) {
  const int n = p.n_tasks;
  const int kmax = std::min(max_of(budgets), n);
  if (n > 30 || dp_bytes(n, kmax) > max_bytes)
    throw std::length_error("the partition DP for " + std::to_string(n) +
                            " tasks needs more memory than allowed; use branch-and-bound or beam");
  if (p.size() >= (std::size_t{1} << 32)) throw std::length_error("too many candidates");
  const std::size_t size = std::size_t{1} << n;
  const mask_t full = full_mask(n);

  // w[T] and the row achieving it: enumerate each row's subsets in compressed form (2^|C| work).
  std::vector<double> w(size, kNegInf);
  std::vector<std::uint32_t> arg(size, 0);
  std::vector<double> sub_sum;
  std::vector<mask_t> sub_mask;
  int bits[64];
  auto timed_out = [&] {  // stopped before any layer: no budget answered
    std::vector<GroupingResult> out;
    for (int b : budgets) {
      GroupingResult g = infeasible(b, false);
      g.timed_out = true;
      out.push_back(g);
    }
    return out;
  };
  for (std::size_t r = 0; r < p.size(); ++r) {
    if ((r & 63) == 0 && deadline.passed()) return timed_out();
    const mask_t c = p.masks[r];
    const double* g = p.row(r);
    int k = 0;
    for (mask_t b = c; b; b &= b - 1) bits[k++] = lowest_bit(b);
    const std::size_t cnt = std::size_t{1} << k;
    sub_sum.resize(cnt);
    sub_mask.resize(cnt);
    sub_sum[0] = 0.0;
    sub_mask[0] = 0;
    for (std::size_t x = 1; x < cnt; ++x) {
      // a row of many tasks is 2^|C| steps on its own: honour the time limit inside it too
      if ((x & 0xFFFF) == 0 && deadline.passed()) return timed_out();
      const std::size_t prev = x & (x - 1);
      const int j = bits[ctz64(x)];
      sub_sum[x] = sub_sum[prev] + g[j];
      sub_mask[x] = sub_mask[prev] | (mask_t{1} << j);
      const std::size_t t = std::size_t(sub_mask[x]);
      // Strict '>' keeps the smallest row (rows are sorted by mask) on ties.
      if (sub_sum[x] > w[t]) {
        w[t] = sub_sum[x];
        arg[t] = std::uint32_t(r);
      }
    }
  }

  const bool alone = p.alone();
  // f[k][S]: best value of S with at most k groups. f[0]: nothing chosen.
  std::vector<std::vector<double>> f(std::size_t(kmax) + 1, std::vector<double>(size, kNegInf));
  if (alone)
    std::fill(f[0].begin(), f[0].end(), 0.0);
  else
    f[0][0] = 0.0;
  int done = 0;  // layers completed before the time limit
  for (int k = 1; k <= kmax; ++k) {
    bool stop = false;
    const std::vector<double>& prev = f[std::size_t(k - 1)];
    std::vector<double>& cur = f[std::size_t(k)];
    cur[0] = 0.0;
    for (std::size_t s = 1; s < size; ++s) {
      if ((s & 4095) == 0 && deadline.passed()) {
        stop = true;
        break;
      }
      const mask_t low = mask_t(s) & (~mask_t(s) + 1);
      const mask_t rest = mask_t(s) ^ low;
      // Under Alone the lowest task may simply be trained alone (free).
      double best = alone ? cur[std::size_t(rest)] : kNegInf;
      // Every part T that contains the lowest task: T = low | sub, sub a subset of rest.
      mask_t sub = rest;
      while (true) {
        const double v = w[std::size_t(low | sub)] + prev[std::size_t(rest ^ sub)];
        if (v > best) best = v;
        if (sub == 0) break;
        sub = (sub - 1) & rest;
      }
      cur[s] = best;
    }
    if (stop) break;
    done = k;
  }

  std::vector<GroupingResult> out;
  out.reserve(budgets.size());
  for (int b : budgets) {
    const int k0 = std::min(b, kmax);
    if (k0 > done) {  // the time limit came first: no proven answer for this budget
      GroupingResult g = infeasible(b, false);
      g.timed_out = true;
      out.push_back(g);
      continue;
    }
    if (f[std::size_t(k0)][std::size_t(full)] == kNegInf) {
      out.push_back(infeasible(b, true));
      continue;
    }
    // Walk back through the same recurrence, picking the first choice that attains the value.
    std::vector<std::size_t> rows;
    mask_t s = full;
    int k = k0;
    while (s) {
      const double target = f[std::size_t(k)][std::size_t(s)];
      const mask_t low = s & (~s + 1);
      const mask_t rest = s ^ low;
      if (alone && f[std::size_t(k)][std::size_t(rest)] == target) {
        s = rest;
        continue;
      }
      mask_t sub = rest;
      bool found = false;
      while (true) {
        const double v = w[std::size_t(low | sub)] + f[std::size_t(k - 1)][std::size_t(rest ^ sub)];
        if (v == target) {
          rows.push_back(arg[std::size_t(low | sub)]);
          s = rest ^ sub;
          --k;
          found = true;
          break;
        }
        if (sub == 0) break;
        sub = (sub - 1) & rest;
      }
      if (!found) throw std::logic_error("exact_dp: reconstruction failed");
    }
    GroupingResult g = finalize(p, std::move(rows), b, true);
    g.method = Method::DP;
    g.bound = g.value;
    out.push_back(g);
  }
  return out;
}

}  // namespace mtgfast
