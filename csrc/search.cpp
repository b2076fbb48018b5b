#include "search.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>

#include "beam.hpp"
#include "bnb.hpp"
#include "bound.hpp"
#include "cover.hpp"
#include "deadline.hpp"
#include "exact.hpp"
#include "local_search.hpp"

namespace mtgfast {

namespace {

std::vector<std::uint32_t> rows_of(const Problem& p, const GroupingResult& g) {
  std::vector<std::uint32_t> rows;
  for (mask_t m : g.groups)
    rows.push_back(
        std::uint32_t(std::lower_bound(p.masks.begin(), p.masks.end(), m) - p.masks.begin()));
  return rows;
}

bool is_optimal(const Problem& p, const GroupingResult& g, double gap_tol) {
  if (!g.feasible) return g.bound == kNegInf;
  return g.bound - g.value <= p.tolerance(gap_tol, g.value);
}

GroupingResult make_result(const Problem& p, const std::vector<std::uint32_t>& rows, int budget,
                           Method method, double bound, double gap_tol) {
  GroupingResult g = finalize(p, std::vector<std::size_t>(rows.begin(), rows.end()), budget, false);
  g.method = method;
  g.bound = std::max(bound, g.value);  // a bound below a found value would be a bug; never report it
  g.optimal = is_optimal(p, g, gap_tol);
  return g;
}

// Subgradient iterations that fit a work budget of multiply-adds per bound: ~3e7 (about 10 ms)
// with local search, ~3e5 for the plain beam (a few steps: about what the beam itself costs).
int bound_iterations(const Problem& p, bool thorough) {
  const double work = double(p.size()) * double(p.stride);
  return int(std::clamp((thorough ? 3e7 : 3e5) / std::max(work, 1.0), 1.0, thorough ? 300.0 : 5.0));
}

// L_k(lambda) for every budget k from one pass over the rows: lambda = the per-task values of up
// to three of the beam's results (any lambda gives a valid bound; >= 0 under Alone, as these are).
std::vector<double> cheap_bounds(const Problem& p, const std::vector<GroupingResult>& res,
                                 const std::vector<int>& sorted) {
  const int n = p.n_tasks;
  std::vector<double> out(sorted.size(), kInf);
  std::vector<std::size_t> picks;
  for (std::size_t k = 0; k < res.size(); ++k)
    if (res[k].feasible) picks.push_back(k);
  if (picks.size() > 3) picks = {picks.front(), picks[picks.size() / 2], picks.back()};
  std::vector<double> lam(std::size_t(p.stride), 0.0), rho(p.size());
  for (std::size_t k : picks) {
    for (int j = 0; j < n; ++j) lam[std::size_t(j)] = res[k].task_gains[std::size_t(j)];
    if (p.alone())
      for (int j = 0; j < n; ++j) lam[std::size_t(j)] = std::max(0.0, lam[std::size_t(j)]);
    double base = 0.0;
    for (int j = 0; j < n; ++j) base += lam[std::size_t(j)];
    for (std::size_t r = 0; r < p.size(); ++r) {
      const double* g = p.row(r);
      double a = 0.0;
      for (int j = 0; j < p.stride; ++j) a += g[j] > lam[std::size_t(j)] ? g[j] - lam[std::size_t(j)] : 0.0;
      rho[r] = a;
    }
    const std::size_t top = std::min<std::size_t>(std::size_t(n), rho.size());
    std::partial_sort(rho.begin(), rho.begin() + std::ptrdiff_t(top), rho.end(),
                      std::greater<double>());
    for (std::size_t q = 0; q < sorted.size(); ++q) {
      const std::size_t kb = std::min<std::size_t>(std::size_t(sorted[q]), top);
      double L = base;
      for (std::size_t t = 0; t < kb; ++t) L += rho[t];
      L += 1e-12 * (1.0 + std::fabs(L));
      out[q] = std::min(out[q], L);
    }
  }
  return out;
}

// Beam (+ local search) for the sorted distinct budgets, each with a bound.
std::vector<GroupingResult> heuristic(const Problem& p, const std::vector<int>& sorted,
                                      const SearchOptions& opt, const Deadline& deadline,
                                      Method label, const TaskIndex* ix) {
  std::vector<GroupingResult> res = beam_search(p, sorted, std::max(opt.beam_width, 1), deadline);
  const int n = p.n_tasks;
  // The beam ranks by value and can prune every path to a small feasible budget (sparse pools
  // under Singleton): with local search on, those budgets start from the fewest rows that cover
  // every task. Budgets the beam answered keep its result; local_search=False is the plain beam.
  if (opt.local_search && !p.alone() && !res.empty() && !res.front().feasible) {
    std::optional<TaskIndex> own;  // past kLocalSearchMaxRows the call builds no index
    const TaskIndex& index = ix ? *ix : own.emplace(p);
    const std::vector<std::uint32_t> cover =
        fewest_rows_cover(p, index, std::min(sorted.front(), n), kCoverWorkLimit, deadline);
    for (std::size_t k = 0; k < sorted.size() && !res[k].feasible; ++k)
      if (!cover.empty() && int(cover.size()) <= sorted[k])
        res[k] = finalize(p, std::vector<std::size_t>(cover.begin(), cover.end()), sorted[k], false);
  }
  std::vector<std::uint32_t> prev;
  double prev_value = kNegInf;
  std::vector<double> lambda;
  const double trivial = best_gain_bound(p);
  std::vector<double> cheap;
  std::vector<std::uint32_t> all(p.size());
  for (std::size_t r = 0; r < p.size(); ++r) all[r] = std::uint32_t(r);
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    const int b = sorted[k];
    const int kb = std::min(b, n);
    std::vector<std::uint32_t> rows;
    double v = kNegInf;
    if (res[k].feasible) {
      rows = rows_of(p, res[k]);
      v = res[k].value;
    }
    const bool improve = opt.local_search && p.size() <= kLocalSearchMaxRows;
    if (improve && prev_value > v) rows = prev, v = prev_value;  // feasible for this budget too
    if (improve && v != kNegInf && !deadline.passed()) {
      rows = local_search(p, rows, kb, 200, true, 0, 16, ix, &deadline);
      v = value_of(p, rows.data(), rows.size());
    }
    double bound = trivial;
    if (!improve) {  // the plain beam: the bounds of a few fixed multipliers, for all budgets
      if (k == 0) cheap = cheap_bounds(p, res, sorted);
      bound = std::min(bound, cheap[k]);
    } else if (!deadline.passed()) {
      BoundOptions bo;
      bo.max_iter = bound_iterations(p, improve);
      if (v != kNegInf) bo.target = v + p.tolerance(opt.gap_tol, v);
      bo.deadline = &deadline;
      const BoundResult R = lagrangian_bound(p, {}, all, kb, lambda, v, bo, ix);
      bound = std::min(bound, R.bound);
      lambda = R.lambda;
      // The Lagrangian's own best set is a second start when the gap is still open.
      for (const auto& start : R.primals) {
        if (!improve || bound <= v + p.tolerance(opt.gap_tol, v) ||
            int(start.size()) > kb || deadline.passed())
          break;
        std::vector<std::uint32_t> other =
            local_search(p, start, kb, 200, true, 0, 16, ix, &deadline);
        const double ov = value_of(p, other.data(), other.size());
        if (ov > v) rows = other, v = ov;
      }

    }
    if (v == kNegInf) {
      GroupingResult g = infeasible(b, bound == kNegInf);
      g.bound = bound;
      g.method = label;
      g.timed_out = deadline.passed();
      res[k] = g;
      continue;
    }
    // Under Alone a tie-free beam result keeps the beam's exact groups when nothing improved it.
    if (!(res[k].feasible && v == res[k].value))
      res[k] = make_result(p, rows, b, label, bound, opt.gap_tol);
    else {
      res[k].method = label;
      res[k].bound = std::max(bound, res[k].value);
      res[k].optimal = is_optimal(p, res[k], opt.gap_tol);
    }
    res[k].timed_out = deadline.passed();
    prev = rows;
    prev_value = v;
  }
  // Backward pass: the set of budget b + 1 less its cheapest row is a start for budget b.
  if (opt.local_search && p.size() <= kLocalSearchMaxRows) {
    for (std::size_t k = sorted.size() - 1; k-- > 0;) {
      if (deadline.passed()) break;
      GroupingResult& g = res[k];
      const GroupingResult& up = res[k + 1];
      if (!up.feasible || g.optimal) continue;
      const int kb = std::min(sorted[k], n);
      std::vector<std::uint32_t> start = rows_of(p, up);
      while (int(start.size()) > kb) {
        double best = kNegInf;
        std::size_t arg = start.size();
        for (std::size_t t = 0; t < start.size(); ++t) {
          std::vector<std::uint32_t> less = start;
          less.erase(less.begin() + std::ptrdiff_t(t));
          const double lv = value_of(p, less.data(), less.size());
          if (lv > best) best = lv, arg = t;
        }
        if (arg == start.size()) break;
        start.erase(start.begin() + std::ptrdiff_t(arg));
      }
      if (int(start.size()) > kb) continue;
      std::vector<std::uint32_t> rows =
          local_search(p, start, kb, 200, true, 0, 16, ix, &deadline);
      const double v = value_of(p, rows.data(), rows.size());
      if (v > (g.feasible ? g.value : kNegInf)) {
        const double bound = g.bound;
        const bool to = g.timed_out;
        g = make_result(p, rows, sorted[k], label, bound, opt.gap_tol);
        g.timed_out = to;
      }
    }
  }
  return res;
}

std::vector<GroupingResult> in_order(const std::vector<int>& budgets,
                                     const std::vector<int>& sorted,
                                     const std::vector<GroupingResult>& solved) {
  std::vector<GroupingResult> out;
  out.reserve(budgets.size());
  for (int b : budgets) {
    const auto it = std::lower_bound(sorted.begin(), sorted.end(), b);
    GroupingResult g = solved[std::size_t(it - sorted.begin())];
    g.budget = b;
    out.push_back(g);
  }
  return out;
}

}  // namespace

std::vector<GroupingResult> search(const Problem& p, const std::vector<int>& budgets, Method method,
                                   const SearchOptions& opt) {
  for (int b : budgets)
    if (b < 1) throw std::invalid_argument("budget must be >= 1, got " + std::to_string(b));
  if (budgets.empty()) throw std::invalid_argument("no budget given");
  if (!(opt.gap_tol >= 0.0)) throw std::invalid_argument("gap_tol must be >= 0");
  if (p.size() >= (std::size_t{1} << 32)) throw std::length_error("too many candidates");
  const Deadline deadline(opt.time_limit);
  // p's per-task index, built once for every local search and bound of this call (DP: lazily)
  std::optional<TaskIndex> index;
  auto ix = [&]() -> const TaskIndex* {
    if (!index && p.size() <= kLocalSearchMaxRows) index.emplace(p);
    return index ? &*index : nullptr;
  };
  std::vector<int> sorted = budgets;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());

  if (method == Method::DP) {
    std::vector<GroupingResult> res = exact_dp(p, sorted, opt.max_dp_bytes, deadline);
    bool missing = false;
    for (const auto& g : res) missing |= g.timed_out;
    if (missing) {  // budgets the DP did not reach: the heuristic, with bounds, in what is left
      // of the call's time (at least a twentieth of the limit: the beam's first layer and bounds)
      SearchOptions quick = opt;
      const Deadline rest(std::max({deadline.left(), 0.05 * opt.time_limit, 1e-9}));
      const std::vector<GroupingResult> h = heuristic(p, sorted, quick, rest, Method::Beam,
                                                      quick.local_search ? ix() : nullptr);
      for (std::size_t k = 0; k < res.size(); ++k)
        if (res[k].timed_out) {
          res[k] = h[k];
          res[k].timed_out = true;
        }
    }
    return in_order(budgets, sorted, res);
  }
  if (method == Method::Beam) {
    SearchOptions o = opt;
    return in_order(budgets, sorted, heuristic(p, sorted, o, deadline, Method::Beam,
                                             o.local_search ? ix() : nullptr));
  }
  // Branch-and-bound
  SearchOptions o = opt;
  o.local_search = true;
  std::vector<GroupingResult> res = heuristic(p, sorted, o, deadline, Method::BranchBound, ix());
  const int n = p.n_tasks;
  std::vector<std::uint32_t> prev;
  double prev_value = kNegInf;
  std::vector<double> lambda;
  for (std::size_t k = 0; k < sorted.size(); ++k) {
    const int b = sorted[k];
    GroupingResult& g = res[k];
    std::vector<std::uint32_t> start;
    double v = kNegInf;
    if (g.feasible) start = rows_of(p, g), v = g.value;
    if (prev_value > v) start = prev, v = prev_value;
    if (g.optimal || deadline.passed()) {
      if (g.feasible) prev = rows_of(p, g), prev_value = g.value;
      g.timed_out = !g.optimal;
      continue;
    }
    const double share = deadline.has() ? std::max(deadline.left() / double(sorted.size() - k), 1e-3)
                                        : 0.0;
    const Deadline local = deadline.has() ? deadline.sub(share) : Deadline();
    const BnbOutcome o2 = branch_and_bound(p, std::min(b, n), start, opt.gap_tol, local, lambda,
                                            ix());
    lambda = o2.root_lambda;
    const double bound = std::min(g.bound, o2.bound);
    if (o2.value == kNegInf) {
      GroupingResult inf = infeasible(b, o2.complete && bound == kNegInf);
      inf.method = Method::BranchBound;
      inf.bound = bound;
      inf.timed_out = !o2.complete;
      inf.nodes = o2.nodes;
      g = inf;
      continue;
    }
    if (!(g.feasible && o2.value <= g.value)) {
      g = make_result(p, o2.rows, b, Method::BranchBound, bound, opt.gap_tol);
    } else {
      g.bound = std::max(bound, g.value);
      g.optimal = is_optimal(p, g, opt.gap_tol);
    }
    g.nodes = o2.nodes;
    g.timed_out = !o2.complete && !g.optimal;
    prev = rows_of(p, g);
    prev_value = g.value;
  }
  return in_order(budgets, sorted, res);
}

}  // namespace mtgfast
