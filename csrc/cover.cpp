#include "cover.hpp"

#include <algorithm>

namespace mtgfast {

namespace {

struct CoverSearch {
  CoverSearch(const Problem& problem, const Deadline& until, const TaskIndex& index)
      : p(problem), deadline(until), ix(index) {}
  const Problem& p;
  const Deadline& deadline;
  const TaskIndex& ix;  // per task: the rows that contain it
  mask_t all = 0;
  int widest = 1;
  int enough = 0;
  std::uint64_t work = 0, work_limit = 0;
  std::vector<std::uint32_t> chosen, best;
  std::size_t best_size = 0;  // 0: none found yet

  bool done() const { return best_size != 0 && int(best_size) <= enough; }

  void dfs(mask_t covered) {
    if (done() || work >= work_limit || deadline.passed()) return;
    ++work;
    if (covered == all) {
      if (best_size == 0 || chosen.size() < best_size) best = chosen, best_size = chosen.size();
      return;
    }
    const int left = popcount(all & ~covered);
    const std::size_t lower = chosen.size() + std::size_t((left + widest - 1) / widest);
    if (best_size != 0 && lower >= best_size) return;
    const int j = lowest_bit(all & ~covered);
    const std::size_t first = ix.start[std::size_t(j)], last = ix.start[std::size_t(j) + 1];
    work += last - first;  // the work of this node: one pass over j's rows
    std::vector<std::pair<int, std::uint32_t>> order;
    order.reserve(last - first);
    for (std::size_t k = first; k < last; ++k)
      order.emplace_back(-popcount(p.masks[ix.row[k]] & ~covered), ix.row[k]);
    std::sort(order.begin(), order.end());
    for (const auto& [neg_new, r] : order) {
      chosen.push_back(r);
      dfs(covered | p.masks[r]);
      chosen.pop_back();
      if (done() || work >= work_limit) return;
    }
  }
};

}  // namespace

std::vector<std::uint32_t> fewest_rows_cover(const Problem& p, const TaskIndex& ix, int enough,
                                             std::uint64_t work_limit, const Deadline& deadline) {
  const int n = p.n_tasks;
  CoverSearch s(p, deadline, ix);
  s.all = n == 64 ? ~mask_t{0} : (mask_t{1} << n) - 1;
  s.enough = enough;
  s.work_limit = work_limit;
  mask_t seen = 0;
  for (std::size_t r = 0; r < p.size(); ++r) {
    s.widest = std::max(s.widest, popcount(p.masks[r]));
    seen |= p.masks[r];
  }
  if (seen != s.all) return {};
  s.dfs(0);
  std::sort(s.best.begin(), s.best.end());
  return s.best;
}

}  // namespace mtgfast
