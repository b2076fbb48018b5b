#include "bound.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

namespace mtgfast {

double value_of(const Problem& p, const std::uint32_t* rows, std::size_t count) {
  const int n = p.n_tasks;
  double cur[64];
  const double floor = p.alone() ? 0.0 : kNegInf;
  for (int j = 0; j < n; ++j) cur[j] = floor;
  for (std::size_t q = 0; q < count; ++q) {
    const double* g = p.row(rows[q]);
    for (mask_t b = p.masks[rows[q]]; b; b &= b - 1) {
      const int j = lowest_bit(b);
      if (g[j] > cur[j]) cur[j] = g[j];
    }
  }
  double v = 0.0;
  for (int j = 0; j < n; ++j) {
    if (cur[j] == kNegInf) return kNegInf;
    v += cur[j];
  }
  return v;
}

double best_gain_bound(const Problem& p) {
  const int n = p.n_tasks;
  std::vector<double> best(std::size_t(n), p.alone() ? 0.0 : kNegInf);
  for (std::size_t r = 0; r < p.size(); ++r) {
    const double* g = p.row(r);
    for (mask_t b = p.masks[r]; b; b &= b - 1) {
      const int j = lowest_bit(b);
      best[std::size_t(j)] = std::max(best[std::size_t(j)], g[j]);
    }
  }
  double v = 0.0;
  for (double x : best) v += x;  // -inf when a task is in no row (Singleton adds all singletons)
  return v;
}

BoundResult lagrangian_bound(const Problem& p, const std::vector<std::uint32_t>& fixed,
                             const std::vector<std::uint32_t>& active, int k,
                             const std::vector<double>& lambda0, double lower,
                             const BoundOptions& opt, const TaskIndex* index) {
  const int n = p.n_tasks;
  const int stride = p.stride;
  const bool alone = p.alone();
  BoundResult out;
  // Feasibility under Singleton: every task needs a fixed or an active row.
  if (!alone) {
    mask_t reach = 0;
    for (std::uint32_t r : fixed) reach |= p.masks[r];
    mask_t fixed_cover = reach;
    for (std::uint32_t r : active) reach |= p.masks[r];
    if (reach != full_mask(n)) return out;
    if (k <= 0 && fixed_cover != full_mask(n)) return out;
  }
  k = std::max(0, std::min<int>(k, int(active.size())));
  std::vector<double> lam(std::size_t(stride), 0.0);
  if (lambda0.size() == std::size_t(n)) {
    std::copy(lambda0.begin(), lambda0.end(), lam.begin());
  } else {  // each task at the best gain it can get: L = sum of best gains
    std::vector<double> best(std::size_t(n), alone ? 0.0 : kNegInf);
    auto take = [&](std::uint32_t r) {
      const double* g = p.row(r);
      for (mask_t b = p.masks[r]; b; b &= b - 1) {
        const int j = lowest_bit(b);
        best[std::size_t(j)] = std::max(best[std::size_t(j)], g[j]);
      }
    };
    for (std::uint32_t r : fixed) take(r);
    for (std::uint32_t r : active) take(r);
    for (int j = 0; j < n; ++j) lam[std::size_t(j)] = best[std::size_t(j)];
  }
  if (alone)
    for (int j = 0; j < n; ++j) lam[std::size_t(j)] = std::max(0.0, lam[std::size_t(j)]);
  for (int j = n; j < stride; ++j) lam[std::size_t(j)] = 0.0;

  const std::size_t m = active.size();
  std::vector<double> rho(m), sorted(m);
  std::vector<std::uint32_t> idx(m);
  std::vector<double> sub(static_cast<std::size_t>(n), 0.0);
  std::vector<std::uint32_t> primal;
  std::vector<double> primal_values;
  double theta = opt.theta;
  int stall = 0;
  double scale = 1.0;
  // every row active, in order: rho from the per-task lists when few rows beat lambda
  bool whole = index != nullptr && fixed.empty() && m == p.size() && index->rows == m;
  for (std::size_t q = 0; whole && q < m; ++q) whole = active[q] == q;
  std::optional<RowMarks> marks;
  std::vector<std::uint32_t> members;
  std::vector<double> lanes;
  if (whole) marks.emplace(m), lanes.resize(4 * m);
  const int iters = std::max(1, opt.max_iter);
  for (int it = 0; it < iters; ++it) {
    if (it > 0 && opt.deadline && opt.deadline->passed()) break;  // every L so far is a bound
    // L(lambda)
    double L = 0.0;
    for (int j = 0; j < n; ++j) L += lam[std::size_t(j)];
    for (std::uint32_t r : fixed) L += positive_excess(p.row(r), lam.data(), stride);
    if (whole && 4 * excess_work(*index, lam.data()) < m * std::size_t(stride)) {
      std::fill(rho.begin(), rho.end(), 0.0);  // what positive_excess gives a row beating nothing
      excess_over(*index, lam.data(), *marks, members, lanes, rho.data());
    } else {
      for (std::size_t q = 0; q < m; ++q)
        rho[q] = positive_excess(p.row(active[q]), lam.data(), stride);
    }
    // the k largest rho: partial sort of indices
    std::iota(idx.begin(), idx.end(), std::uint32_t{0});
    if (k > 0 && std::size_t(k) < m)
      std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(),
                       [&](std::uint32_t a, std::uint32_t b) { return rho[a] > rho[b]; });
    for (int q = 0; q < k; ++q) L += rho[idx[std::size_t(q)]];
    L += 1e-12 * (1.0 + std::fabs(L));  // rounding slack: the bound stays valid
    scale = std::max(scale, std::fabs(L));
    ++out.iterations;
    if (L < out.bound || out.bound == kNegInf) {
      if (out.bound != kNegInf && L > out.bound - 1e-9 * (1.0 + std::fabs(L))) ++stall;
      else stall = 0;
      out.bound = L;
      out.lambda.assign(lam.begin(), lam.begin() + n);
      out.selected.clear();
      for (int q = 0; q < k; ++q)
        if (rho[idx[std::size_t(q)]] > 0.0) out.selected.push_back(active[idx[std::size_t(q)]]);
      out.rho = rho;
    } else {
      ++stall;
    }
    // a primal candidate: the fixed rows and the selected ones
    primal.assign(fixed.begin(), fixed.end());
    for (int q = 0; q < k; ++q)
      if (rho[idx[std::size_t(q)]] > 0.0) primal.push_back(active[idx[std::size_t(q)]]);
    const double pv = value_of(p, primal.data(), primal.size());
    if (pv > out.best_primal_value) {
      out.best_primal_value = pv;
      out.best_primal = primal;
    }
    if (pv != kNegInf) {  // keep a few distinct good sets (best first) as local-search starts
      std::sort(primal.begin(), primal.end());
      bool seen = false;
      for (const auto& q : out.primals) seen |= q == primal;
      if (!seen) {
        std::size_t pos = 0;
        while (pos < out.primals.size() && primal_values[pos] >= pv) ++pos;
        if (pos < 4) {
          out.primals.insert(out.primals.begin() + std::ptrdiff_t(pos), primal);
          primal_values.insert(primal_values.begin() + std::ptrdiff_t(pos), pv);
          if (out.primals.size() > 4) out.primals.pop_back(), primal_values.pop_back();
        }
      }
    }
    const double lo = std::max(lower, out.best_primal_value);
    if (out.bound <= opt.target) break;
    if (stall >= opt.patience) {
      theta *= 0.5;
      stall = 0;
      if (theta < opt.min_theta) break;
    }
    // subgradient: 1 - (number of taken rows that serve j above lambda_j)
    for (int j = 0; j < n; ++j) sub[std::size_t(j)] = 1.0;
    auto count = [&](std::uint32_t r) {
      const double* g = p.row(r);
      for (mask_t b = p.masks[r]; b; b &= b - 1) {
        const int j = lowest_bit(b);
        if (g[j] > lam[std::size_t(j)]) sub[std::size_t(j)] -= 1.0;
      }
    };
    for (std::uint32_t r : fixed) count(r);
    for (int q = 0; q < k; ++q)
      if (rho[idx[std::size_t(q)]] > 0.0) count(active[idx[std::size_t(q)]]);
    double norm = 0.0;
    for (int j = 0; j < n; ++j) {
      double s = sub[std::size_t(j)];
      if (alone && lam[std::size_t(j)] <= 0.0 && s > 0.0) s = 0.0;  // projected
      sub[std::size_t(j)] = s;
      norm += s * s;
    }
    if (norm == 0.0) break;  // lambda is optimal
    const double gapv = (lo == kNegInf) ? 0.01 * scale : std::max(L - lo, 1e-9 * scale);
    const double step = theta * gapv / norm;
    for (int j = 0; j < n; ++j) {
      double v = lam[std::size_t(j)] - step * sub[std::size_t(j)];
      if (alone && v < 0.0) v = 0.0;
      lam[std::size_t(j)] = v;
    }
  }
  return out;
}

}  // namespace mtgfast
