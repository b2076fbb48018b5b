#include "bnb.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "bound.hpp"
#include "local_search.hpp"

namespace mtgfast {

namespace {

struct Node {
  std::vector<std::uint32_t> fixed;   // rows in
  std::vector<std::uint32_t> active;  // rows still free (others are out)
  std::vector<double> lambda;
  double bound;                       // a valid bound of this node (the parent's)
  int depth;
};

}  // namespace

BnbOutcome branch_and_bound(const Problem& p, int budget, std::vector<std::uint32_t> incumbent,
                            double gap_tol, const Deadline& deadline,
                            const std::vector<double>& lambda0, const TaskIndex* index) {
  const int n = p.n_tasks;
  const int kmax = std::min(budget, n);
  BnbOutcome out;
  double z = kNegInf;
  if (!incumbent.empty()) {
    z = value_of(p, incumbent.data(), incumbent.size());
    if (z != kNegInf && int(incumbent.size()) <= kmax) out.rows = incumbent;
    else z = kNegInf;
  }
  auto offer = [&](const std::vector<std::uint32_t>& rows, double v) {
    if (v > z && int(rows.size()) <= kmax) {
      z = v;
      out.rows = rows;
      return true;
    }
    return false;
  };
  auto tol = [&] { return z == kNegInf ? 0.0 : p.tolerance(gap_tol, z); };

  Node root;
  for (std::size_t r = 0; r < p.size(); ++r) {
    bool useful = !p.alone();
    if (!useful)
      for (mask_t b = p.masks[r]; b; b &= b - 1)
        if (p.row(r)[lowest_bit(b)] > 0.0) useful = true;
    if (useful) root.active.push_back(std::uint32_t(r));
  }
  root.lambda = lambda0;
  root.bound = kInf;
  root.depth = 0;
  std::vector<Node> stack;
  stack.push_back(std::move(root));
  double closed = kNegInf;  // largest bound of a closed subspace
  bool first = true;
  std::vector<std::size_t> order;
  // out of time: the incumbent, bounded by the closed subspaces and every node still open
  // (``held``: the bound of the node in hand, which stays open too)
  auto stopped = [&](double held) {
    double open = held;
    for (const Node& nd : stack) open = std::max(open, nd.bound);
    out.bound = std::max({z, closed, open});
    out.value = z;
    out.complete = false;
    return out;
  };
  while (!stack.empty()) {
    if (deadline.passed()) return stopped(kNegInf);
    Node node = std::move(stack.back());
    stack.pop_back();
    ++out.nodes;
    if (node.bound <= z + tol()) {
      closed = std::max(closed, node.bound);
      continue;
    }
    const int k = kmax - int(node.fixed.size());
    if (k <= 0 || node.active.empty()) {  // a leaf: the bound is the value of the fixed rows
      const double v = value_of(p, node.fixed.data(), node.fixed.size());
      offer(node.fixed, v);
      closed = std::max(closed, v);
      continue;
    }
    BoundOptions opt;
    opt.max_iter = first ? 400 : 80;
    opt.target = z + tol();
    opt.deadline = &deadline;
    BoundResult R = lagrangian_bound(p, node.fixed, node.active, k, node.lambda, z, opt);
    if (first) out.root_lambda = R.lambda;
    first = false;
    if (R.best_primal_value > z) {
      if (!deadline.passed()) {
        std::vector<std::uint32_t> better =
            local_search(p, R.best_primal, kmax, 200, true, 0, 16, index, &deadline);
        offer(better, value_of(p, better.data(), better.size()));
      }
      offer(R.best_primal, R.best_primal_value);
    }
    const double bound = std::min(R.bound, node.bound);
    if (bound <= z + tol()) {
      closed = std::max(closed, bound);
      continue;
    }
    if (deadline.passed()) return stopped(bound);  // no fixing or branching past it
    // Reduced-cost fixing at these multipliers: L changes by (rho_r - rho_k) when a row outside
    // the k largest is forced in, and by (rho_{k+1} - rho_r) when one inside is forced out.
    const std::size_t m = node.active.size();
    order.resize(m);
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return R.rho[a] > R.rho[b] || (R.rho[a] == R.rho[b] && a < b);
    });
    const std::size_t kk = std::min<std::size_t>(std::size_t(k), m);
    const double rk = R.rho[order[kk - 1]];
    const double rk1 = kk < m ? R.rho[order[kk]] : 0.0;
    const double lim = z + tol();
    Node next;
    next.fixed = node.fixed;
    next.lambda = R.lambda;
    next.bound = bound;
    next.depth = node.depth;
    bool changed = false;
    for (std::size_t q = 0; q < m; ++q) {
      const std::size_t a = order[q];
      const std::uint32_t r = node.active[a];
      if (q < kk) {
        const double without = bound - R.rho[a] + rk1;
        if (without <= lim && R.rho[a] > 0.0) {
          next.fixed.push_back(r);
          closed = std::max(closed, without);
          changed = true;
          continue;
        }
      } else {
        const double with = bound - rk + R.rho[a];
        if (with <= lim) {
          closed = std::max(closed, with);
          changed = true;
          continue;
        }
      }
      next.active.push_back(r);
    }
    if (changed) {  // solve the reduced node again
      stack.push_back(std::move(next));
      continue;
    }
    // Branch on the free row with the largest rho: take it first, then leave it out.
    const std::uint32_t r = node.active[order[0]];
    Node out_child;
    out_child.fixed = node.fixed;
    out_child.active.reserve(m - 1);
    for (std::uint32_t x : node.active)
      if (x != r) out_child.active.push_back(x);
    out_child.lambda = R.lambda;
    out_child.bound = bound;
    out_child.depth = node.depth + 1;
    Node in_child;
    in_child.fixed = node.fixed;
    in_child.fixed.push_back(r);
    in_child.active = out_child.active;
    in_child.lambda = R.lambda;
    in_child.bound = bound;
    in_child.depth = node.depth + 1;
    stack.push_back(std::move(out_child));
    stack.push_back(std::move(in_child));
  }
  out.value = z;
  out.bound = std::max(z, closed);
  out.complete = true;
  return out;
}

}  // namespace mtgfast
