#include "exact.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "beam.hpp"

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
  if (n_tasks < 1 || n_tasks > 40) return ~std::uint64_t{0};
  const std::uint64_t size = std::uint64_t{1} << n_tasks;
  const std::uint64_t layers = std::uint64_t(std::min(max_budget, n_tasks)) + 1;
  // f tables + w + the row achieving w + the per-row subset scratch (at most 2^n sums and masks)
  return size * (layers * sizeof(double) + 2 * sizeof(double) + sizeof(std::uint32_t) +
                 sizeof(mask_t));
}

std::vector<GroupingResult> exact_dp(const Problem& p, const std::vector<int>& budgets,
                                     std::uint64_t max_bytes) {
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
  for (std::size_t r = 0; r < p.size(); ++r) {
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
      const std::size_t prev = x & (x - 1);
      const int j = bits[__builtin_ctzll(x)];
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
  for (int k = 1; k <= kmax; ++k) {
    const std::vector<double>& prev = f[std::size_t(k - 1)];
    std::vector<double>& cur = f[std::size_t(k)];
    cur[0] = 0.0;
    for (std::size_t s = 1; s < size; ++s) {
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
  }

  std::vector<GroupingResult> out;
  out.reserve(budgets.size());
  for (int b : budgets) {
    const int k0 = std::min(b, kmax);
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
    out.push_back(finalize(p, std::move(rows), b, true));
  }
  return out;
}

namespace {

using Clock = std::chrono::steady_clock;

class BranchBound {
 public:
  BranchBound(const Problem& p, Clock::time_point deadline, bool has_deadline)
      : p_(p), n_(p.n_tasks), deadline_(deadline), has_deadline_(has_deadline) {
    const std::size_t m = p.size();
    // Visit rows with more positive gain first: good incumbents early, tighter bounds.
    std::vector<double> potential(m, 0.0);
    for (std::size_t r = 0; r < m; ++r)
      for (mask_t b = p.masks[r]; b; b &= b - 1) potential[r] += std::max(0.0, p.row(r)[lowest_bit(b)]);
    order_.resize(m);
    std::iota(order_.begin(), order_.end(), std::uint32_t{0});
    std::stable_sort(order_.begin(), order_.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return potential[a] > potential[b]; });
    // suffix_[q * n + j] = best gain of task j among rows order_[q..m).
    suffix_.assign((m + 1) * std::size_t(n_), kNegInf);
    for (std::size_t q = m; q-- > 0;) {
      const double* g = p.row(order_[q]);
      for (int j = 0; j < n_; ++j)
        suffix_[q * std::size_t(n_) + std::size_t(j)] =
            std::max(suffix_[(q + 1) * std::size_t(n_) + std::size_t(j)], g[j]);
    }
    improve_.resize(m);
    cover_.resize(m);
    scratch_.resize(m);
  }

  // Best grouping with <= budget rows whose value exceeds `incumbent` (rows of it given).
  // Returns false when the deadline stopped the search.
  bool solve(int budget, double incumbent, std::vector<std::uint32_t> incumbent_rows) {
    budget_ = std::min(budget, n_);
    best_ = incumbent;
    best_rows_ = std::move(incumbent_rows);
    chosen_.clear();
    timed_out_ = false;
    cur_.assign(std::size_t(budget_) + 1, std::vector<double>(std::size_t(n_), 0.0));
    mask_t covered = full_mask(n_);
    if (!p_.alone()) {
      std::fill(cur_[0].begin(), cur_[0].end(), kNegInf);
      covered = 0;
    }
    dfs(0, 0, covered);
    return !timed_out_;
  }

  double best() const { return best_; }
  const std::vector<std::uint32_t>& best_rows() const { return best_rows_; }

 private:
  void dfs(std::size_t pos, int depth, mask_t covered) {
    if (timed_out_) return;
    if (has_deadline_ && (++nodes_ & 1023) == 0 && Clock::now() > deadline_) {
      timed_out_ = true;
      return;
    }
    const std::size_t n = std::size_t(n_);
    const mask_t full = full_mask(n_);
    const std::vector<double>& cur = cur_[std::size_t(depth)];
    const mask_t uncovered = full & ~covered;
    double here = 0.0;
    for (std::size_t j = 0; j < n; ++j) here += (covered >> j) & 1 ? cur[j] : 0.0;
    if (uncovered == 0 && here > best_) {
      best_ = here;
      best_rows_ = chosen_;
    }
    const int left = budget_ - depth;
    const std::size_t m = order_.size();
    if (left == 0 || pos >= m) return;

    // Bound 1: every task gets the best gain any remaining row offers it.
    const double* suf = &suffix_[pos * n];
    double bound1 = 0.0;
    double base = 0.0;  // covered tasks at their current gain, uncovered ones at their best
    for (std::size_t j = 0; j < n; ++j) {
      if ((covered >> j) & 1) {
        bound1 += std::max(cur[j], suf[j]);
        base += cur[j];
      } else {
        if (suf[j] == kNegInf) return;  // no remaining row can cover task j
        bound1 += suf[j];
        base += suf[j];
      }
    }
    if (bound1 <= best_) return;
    // Bound 2: improvements are subadditive, so at most the `left` largest single-row ones.
    const int need = popcount(uncovered);
    for (std::size_t q = pos; q < m; ++q) {
      const std::uint32_t r = order_[q];
      const double* g = p_.row(r);
      const mask_t c = p_.masks[r];
      double d = 0.0;
      for (mask_t b = c & covered; b; b &= b - 1) {
        const int j = lowest_bit(b);
        d += std::max(0.0, g[j] - cur[std::size_t(j)]);
      }
      improve_[q] = d;
      cover_[q] = popcount(c & uncovered);
    }
    const std::size_t rem = m - pos;
    const std::size_t take = std::min<std::size_t>(std::size_t(left), rem);
    if (need > 0) {
      // Feasibility: the `left` rows covering most uncovered tasks must cover them all.
      std::vector<int> cov(cover_.begin() + std::ptrdiff_t(pos), cover_.end());
      std::nth_element(cov.begin(), cov.begin() + std::ptrdiff_t(take - 1), cov.end(),
                       std::greater<int>());
      int total = 0;
      for (std::size_t q = 0; q < take; ++q) total += cov[q];
      if (total < need) return;
    }
    std::copy(improve_.begin() + std::ptrdiff_t(pos), improve_.end(), scratch_.begin());
    std::nth_element(scratch_.begin(), scratch_.begin() + std::ptrdiff_t(take - 1),
                     scratch_.begin() + std::ptrdiff_t(rem), std::greater<double>());
    double top = 0.0;
    for (std::size_t q = 0; q < take; ++q) top += scratch_[q];
    if (std::min(bound1, base + top) <= best_) return;

    // Children: add one more row, later in the order (each set is visited once).
    std::vector<std::pair<double, std::uint32_t>> kids;
    for (std::size_t q = pos; q < m; ++q)
      if (improve_[q] > 0.0 || cover_[q] > 0) kids.push_back({improve_[q], std::uint32_t(q)});
    std::vector<double>& next = cur_[std::size_t(depth) + 1];
    for (const auto& kid : kids) {
      const std::size_t q = kid.second;
      const std::uint32_t r = order_[q];
      const double* g = p_.row(r);
      next = cur;
      for (mask_t b = p_.masks[r]; b; b &= b - 1) {
        const std::size_t j = std::size_t(lowest_bit(b));
        next[j] = ((covered >> j) & 1) ? std::max(cur[j], g[j]) : g[j];
      }
      chosen_.push_back(r);
      dfs(q + 1, depth + 1, covered | p_.masks[r]);
      chosen_.pop_back();
      if (timed_out_) return;
    }
  }

  const Problem& p_;
  int n_;
  Clock::time_point deadline_;
  bool has_deadline_;
  std::vector<std::uint32_t> order_;
  std::vector<double> suffix_;
  std::vector<double> improve_, scratch_;
  std::vector<int> cover_;
  std::vector<std::vector<double>> cur_;
  std::vector<std::uint32_t> chosen_, best_rows_;
  int budget_ = 0;
  double best_ = kNegInf;
  bool timed_out_ = false;
  std::uint64_t nodes_ = 0;
};

}  // namespace

std::vector<GroupingResult> exact_bnb(const Problem& p, const std::vector<int>& budgets,
                                      double time_limit, int beam_width) {
  max_of(budgets);
  if (p.size() >= (std::size_t{1} << 32)) throw std::length_error("too many candidates");
  const auto start = Clock::now();
  const bool has_deadline = time_limit > 0.0 && std::isfinite(time_limit);
  const auto deadline =
      has_deadline ? start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(std::min(time_limit, 1e9)))
                   : Clock::time_point::max();
  // Solve budgets in increasing order: the optimum of b - 1 is feasible for b.
  std::vector<int> sorted = budgets;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  const std::vector<GroupingResult> seeds = beam_search(p, sorted, std::max(beam_width, 1));

  // Row index of each finalized group: groups are masks of rows, and rows are sorted by mask.
  auto rows_of = [&](const GroupingResult& g) {
    std::vector<std::uint32_t> rows;
    for (mask_t m : g.groups)
      rows.push_back(std::uint32_t(std::lower_bound(p.masks.begin(), p.masks.end(), m) -
                                   p.masks.begin()));
    return rows;
  };
  BranchBound bb(p, deadline, has_deadline);
  double prev_value = kNegInf;
  std::vector<std::uint32_t> prev_rows;
  std::vector<GroupingResult> solved;
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    double inc = prev_value;
    std::vector<std::uint32_t> inc_rows = prev_rows;
    if (seeds[k].feasible && seeds[k].value > inc) {
      inc = seeds[k].value;
      inc_rows = rows_of(seeds[k]);
    }
    const bool complete = bb.solve(sorted[k], inc, inc_rows);
    if (bb.best() == kNegInf) {
      solved.push_back(infeasible(sorted[k], complete));
      continue;
    }
    prev_value = bb.best();
    prev_rows = bb.best_rows();
    solved.push_back(finalize(p, std::vector<std::size_t>(prev_rows.begin(), prev_rows.end()),
                              sorted[k], complete));
  }
  std::vector<GroupingResult> out;
  out.reserve(budgets.size());
  for (int b : budgets) {
    const auto it = std::lower_bound(sorted.begin(), sorted.end(), b);
    out.push_back(solved[std::size_t(it - sorted.begin())]);
  }
  return out;
}

}  // namespace mtgfast
